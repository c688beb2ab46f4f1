#!/usr/bin/env bash
# Everything `sam local invoke` needs on a Debian machine with no container registry, from nothing:
#   1. a container engine: Debian's docker.io (apt), its daemon started by hand (no systemd here);
#   2. the Lambda base image for RUNTIME and ARCH, built locally (image/Dockerfile says what is in it)
#      from a Debian root filesystem made by debootstrap, tagged IMAGE.
# Each step is skipped when its result is already there (a running engine, an image whose recipe
# label matches), so only the first run pays for it (about 4 minutes; docs/LOCAL.md, "sam local invoke").
#
# Usage: setup.sh RUNTIME ARCH IMAGE      e.g. setup.sh python3.13 x86_64 batchpipe-samlocal/python:3.13-x86_64
# Environment: PYTHON, a Python with pip (the host's) to install the runtime interface client with;
# BATCHPIPE_DEBIAN_MIRROR, the Debian archive to debootstrap from (default: the one apt uses here);
# BATCHPIPE_DOCKERD_TIMEOUT, seconds to wait for a started dockerd to answer (default 90).
# Exit status 0: ready. 10: no container engine can run here (the reason is the last line on stderr);
# tests/samlocal skips on 10 locally and fails under CI. Anything else: a set-up step failed.
set -euo pipefail

runtime=$1 arch=$2 image=$3
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
python=${PYTHON:-python3}

# The Debian suite whose python3.X is the runtime's version (Debian's release notes list one Python per
# release). python3.12 has no Debian release: build it with PythonRuntime=python3.11 or python3.13.
case $runtime in
  python3.11) suite=bookworm ;;
  python3.13) suite=trixie ;;
  *) echo "setup.sh: no Debian suite ships $runtime (python3.11: bookworm, python3.13: trixie)" >&2; exit 2 ;;
esac
# The runtime interface client (PyPI) and its two dependencies, pinned: it speaks the Lambda Runtime API
# with SAM's emulator.
runtime_packages=(awslambdaric==4.2.2 simplejson==4.3.0 snapshot-restore-py==1.0.0)
case $arch in
  x86_64) wheel_platform=manylinux2014_x86_64 ;;
  arm64) wheel_platform=manylinux2014_aarch64 ;;
  *) echo "setup.sh: unknown architecture $arch" >&2; exit 2 ;;
esac

no_engine() {
  echo "setup.sh: no container engine: $*" >&2
  exit 10
}

engine_up() { docker info >/dev/null 2>&1; }

# APT's download sandbox user (_apt) cannot write to /dev/null on machines where its mode is 0644,
# which breaks `apt-get update` there; as root the downloads need no sandbox. Each download is retried,
# and another apt-get holding the package lock (another engineer's, a daily job) is waited for.
apt=(apt-get -o APT::Sandbox::User=root -o Dpkg::Use-Pty=0 -o Acquire::Retries=3 -o DPkg::Lock::Timeout=300)

apt_update() {
  # The lists lock is not covered by DPkg::Lock::Timeout, and a mirror can fail for a moment: try
  # again a few times before giving up.
  local attempt
  for attempt in 1 2 3 4; do
    "${apt[@]}" update -qq && return 0
    [ "$attempt" = 4 ] || { echo "apt-get update failed (attempt $attempt); retrying" >&2; sleep $((attempt * 10)); }
  done
  return 1
}

apt_install() {
  apt_update && DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y -qq --no-install-recommends "$@" >/dev/null
}

# The Debian archive this machine's apt uses (its sources, as apt reads them: deb822 or one-line files,
# any mirror or caching proxy in front of it), so the root filesystem comes from where the machine's
# own packages come from. BATCHPIPE_DEBIAN_MIRROR overrides; deb.debian.org is the fallback for a machine
# whose apt has no Debian archive (Ubuntu, say).
debian_mirror() {
  local found
  if [ -n "${BATCHPIPE_DEBIAN_MIRROR:-}" ]; then echo "$BATCHPIPE_DEBIAN_MIRROR"; return; fi
  # ORIGIN and LABEL come from each archive's Release file: "Debian" for the main archive, where the
  # security archive says "Debian-Security". Known only once apt-get update has fetched them.
  found=$(apt-get indextargets --format '$(ORIGIN) $(LABEL) $(REPO_URI)' 2>/dev/null | awk '$1 == "Debian" && $2 == "Debian" { print $3; exit }')
  if [ -z "$found" ] && command -v apt-get >/dev/null && apt_update >&2; then
    found=$(apt-get indextargets --format '$(ORIGIN) $(LABEL) $(REPO_URI)' 2>/dev/null | awk '$1 == "Debian" && $2 == "Debian" { print $3; exit }')
  fi
  echo "${found:-http://deb.debian.org/debian/}"
}

# ---------------------------------------------------------------- 1. the container engine
dockerd_log=/var/log/batchpipe-dockerd.log
dockerd_timeout=${BATCHPIPE_DOCKERD_TIMEOUT:-90}

dockerd_failed() {
  # The daemon's own words first (they say why), then the one line the test reports.
  echo "---- last lines of $dockerd_log" >&2
  tail -n 30 "$dockerd_log" >&2 || true
  echo "----" >&2
  no_engine "dockerd did not answer on /var/run/docker.sock within ${dockerd_timeout} s: $*; its log is $dockerd_log"
}

if ! engine_up; then
  if ! command -v dockerd >/dev/null; then
    [ "$(id -u)" = 0 ] || no_engine "dockerd is not installed, and installing docker.io needs root"
    command -v apt-get >/dev/null || no_engine "dockerd is not installed and there is no apt-get to install it"
    echo "installing docker.io (apt)" >&2
    apt_install docker.io || no_engine "apt-get install docker.io failed"
  fi
  [ "$(id -u)" = 0 ] || no_engine "dockerd is not running, and starting it needs root"
  # A daemon that stopped uncleanly leaves its PID file; dockerd refuses to start while the PID in it
  # names a live process, which after a restart can be any process that reused the number.
  if [ -f /var/run/docker.pid ]; then
    pid=$(cat /var/run/docker.pid 2>/dev/null || true)
    if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ]; then
      echo "dockerd (pid $pid) is running but not answering yet; waiting for it" >&2
      started_pid=$pid
    else
      rm -f /var/run/docker.pid
    fi
  fi
  if [ -z "${started_pid:-}" ]; then
    # By hand, not through systemd (these machines have none). overlay2: the driver that works on the
    # ext4/xfs roots of these machines without extra modules. setsid: the daemon outlives this script
    # and the test session, so later runs find it running.
    echo "starting dockerd (log: $dockerd_log)" >&2
    setsid dockerd --storage-driver=overlay2 >"$dockerd_log" 2>&1 </dev/null &
    started_pid=$!
  fi
  waited=0
  until engine_up; do
    kill -0 "$started_pid" 2>/dev/null || dockerd_failed "it exited"
    [ "$waited" -lt "$dockerd_timeout" ] || dockerd_failed "still starting"
    sleep 1
    waited=$((waited + 1))
  done
fi

# ---------------------------------------------------------------- 2. the base image
# The recipe's own hash labels the image: an edited recipe builds a new image, an unchanged one is reused.
# minbase: the smallest system with a package manager's essentials. Then the runtime's python3.X, plus
# pip and CA certificates for `sam build`, which runs pip with this image's interpreter (the test's
# python3.X command, tests/samlocal/python-in-image.sh).
debian_packages="$runtime,python3-pip,ca-certificates"
recipe=$( { cat "$here/image/Dockerfile" "$here/image/bootstrap" "$here/image/aws-config"
            echo "$suite $debian_packages ${runtime_packages[*]} $arch"; } | sha256sum | cut -c1-16)
if [ "$(docker image inspect --format '{{ index .Config.Labels "batchpipe.recipe" }}' "$image" 2>/dev/null)" = "$recipe" ]; then
  exit 0
fi

# debootstrap runs as root (it chroots into the new system to configure its packages).
[ "$(id -u)" = 0 ] || no_engine "building $image needs root (debootstrap)"
if ! command -v debootstrap >/dev/null; then
  command -v apt-get >/dev/null || no_engine "building $image needs debootstrap, and there is no apt-get to install it"
  apt_install debootstrap || { echo "setup.sh: apt-get install debootstrap failed" >&2; exit 1; }
fi
mirror=$(debian_mirror)
# A proxy apt is configured with (Acquire::http::Proxy) is debootstrap's too (it reads http_proxy).
if [ -z "${http_proxy:-}" ] && command -v apt-config >/dev/null; then
  eval "$(apt-config shell http_proxy Acquire::http::Proxy)"
  [ -z "${http_proxy:-}" ] || export http_proxy
fi
scratch=$(mktemp -d /var/tmp/batchpipe-samlocal.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
echo "building $image: debootstrap $suite (minbase + $runtime) from $mirror, ${runtime_packages[*]}" >&2
# The host's Debian archive keyring checks the suite's signatures.
debootstrap --variant=minbase --include="$debian_packages" \
  --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
  "$suite" "$scratch/rootfs" "$mirror" >"$scratch/debootstrap.log" 2>&1 \
  || { tail -n 30 "$scratch/debootstrap.log" >&2; echo "setup.sh: debootstrap $suite from $mirror failed" >&2; exit 1; }
# Downloaded packages, package lists, documentation and translations: never read by a function.
rm -rf "$scratch"/rootfs/var/cache/apt/archives/*.deb "$scratch"/rootfs/var/lib/apt/lists/* \
  "$scratch"/rootfs/usr/share/doc/* "$scratch"/rootfs/usr/share/man/* "$scratch"/rootfs/usr/share/locale/*
rootfs_image="batchpipe-samlocal/rootfs:$suite-$arch"
tar -C "$scratch/rootfs" -c . | docker import - "$rootfs_image" >/dev/null

context="$scratch/context"
mkdir -p "$context"
cp "$here/image/Dockerfile" "$here/image/bootstrap" "$here/image/aws-config" "$context/"
"$python" -m pip install --quiet --disable-pip-version-check --no-compile --only-binary=:all: \
  --python-version "${runtime#python}" --implementation cp --platform "$wheel_platform" \
  --no-deps --target "$context/runtime" "${runtime_packages[@]}"
docker build --quiet --label "batchpipe.recipe=$recipe" \
  --build-arg "ROOTFS=$rootfs_image" --build-arg "PYTHON=$runtime" -t "$image" "$context" >/dev/null
docker image rm "$rootfs_image" >/dev/null
# SAM adds its emulator to the base image in images of its own (<repo>:rapid-<arch>, and
# samcli/lambda-<runtime>... for a function with layers) and reuses them while they exist: those of
# the previous base image must go, or the functions would keep running on it.
stale=$(docker image ls --format '{{.Repository}}:{{.Tag}}' | grep -E "^(${image%%:*}:rapid-|samcli/lambda-)" || true)
[ -z "$stale" ] || docker image rm $stale >/dev/null
echo "built $image" >&2
