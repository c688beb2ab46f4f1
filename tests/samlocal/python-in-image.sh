#!/bin/sh
# The `python3.X` command `sam build` looks for on PATH (tests/samlocal makes a link of that name to
# this script): the Lambda base image's own interpreter, so the build resolves and installs the
# dependencies for the runtime's Python version even where the machine has another one (pip markers
# such as layers/arrow's `python_version >= "3.12"` are evaluated by it).
# It runs in a container that sees the repository and /tmp at their own paths (where sam build puts
# its sources, scratch and build folders), with the host's network (pip reaches PyPI as the host's
# pip does) and the host's CA certificates (a machine whose PyPI traffic passes a TLS proxy trusts it
# there). BATCHPIPE_SAMLOCAL_IMAGE and BATCHPIPE_SAMLOCAL_ROOT are set by the test.
set -eu
exec docker run --rm --network host --user "$(id -u):$(id -g)" --env HOME=/tmp \
  --volume "$BATCHPIPE_SAMLOCAL_ROOT:$BATCHPIPE_SAMLOCAL_ROOT" --volume /tmp:/tmp \
  --volume /etc/ssl/certs:/etc/ssl/certs:ro --workdir "$PWD" \
  --entrypoint "$(basename "$0")" "$BATCHPIPE_SAMLOCAL_IMAGE" "$@"
