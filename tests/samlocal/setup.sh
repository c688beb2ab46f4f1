#!/usr/bin/env bash
# Everything `sam local invoke` needs on a Debian machine with no container registry, from nothing:
#   1. a container engine: Debian's docker.io (apt), its daemon started by hand (no systemd here);
#   2. the Lambda base image for RUNTIME and ARCH, built locally (image/Dockerfile says what is in it)
#      from a Debian root filesystem made by debootstrap, tagged IMAGE.
# Each step is skipped when its result is already there (a running engine, an image whose recipe
# label matches), so only the first run pays for it (about 3 minutes; README, "Tests").
#
# Usage: setup.sh RUNTIME ARCH IMAGE      e.g. setup.sh python3.13 x86_64 batchpipe-samlocal/python:3.13-x86_64
# Environment: PYTHON, a Python with pip (the host's) to install the runtime interface client with.
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

apt_install() {
  # APT's download sandbox user (_apt) cannot write to /dev/null on machines where its mode is 0644,
  # which breaks `apt-get update` there; as root the downloads need no sandbox.
  local apt=(apt-get -o APT::Sandbox::User=root -o Dpkg::Use-Pty=0)
  "${apt[@]}" update -qq
  DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y -qq --no-install-recommends "$@" >/dev/null
}

# ---------------------------------------------------------------- 1. the container engine
if ! engine_up; then
  if ! command -v dockerd >/dev/null; then
    [ "$(id -u)" = 0 ] || no_engine "dockerd is not installed, and installing docker.io needs root"
    command -v apt-get >/dev/null || no_engine "dockerd is not installed and there is no apt-get to install it"
    echo "installing docker.io (apt)" >&2
    apt_install docker.io || no_engine "apt-get install docker.io failed"
  fi
  if [ ! -S /var/run/docker.sock ] || ! engine_up; then
    [ "$(id -u)" = 0 ] || no_engine "dockerd is not running, and starting it needs root"
    # overlay2: the driver that works on the ext4/xfs roots of these machines without extra modules.
    # setsid: the daemon outlives this script and the test session; later runs find it running.
    echo "starting dockerd (log: /var/log/batchpipe-dockerd.log)" >&2
    setsid dockerd --storage-driver=overlay2 >/var/log/batchpipe-dockerd.log 2>&1 </dev/null &
    for _ in $(seq 1 60); do
      engine_up && break
      sleep 1
    done
    engine_up || no_engine "dockerd did not start: $(tail -n 3 /var/log/batchpipe-dockerd.log | tr '\n' ' ')"
  fi
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

command -v debootstrap >/dev/null || apt_install debootstrap
scratch=$(mktemp -d /var/tmp/batchpipe-samlocal.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
echo "building $image: debootstrap $suite (minbase + $runtime), ${runtime_packages[*]}" >&2
# The host's Debian archive keyring checks the suite's signatures.
debootstrap --variant=minbase --include="$debian_packages" \
  --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
  "$suite" "$scratch/rootfs" http://deb.debian.org/debian >"$scratch/debootstrap.log" 2>&1 \
  || { tail -n 20 "$scratch/debootstrap.log" >&2; exit 1; }
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
