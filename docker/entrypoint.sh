#!/bin/sh
# Entry point of the pifa-service images. Creates TMPDIR, which an empty bind mount at /data
# lacks, and checks that the service user can write to it. Then it replaces itself with the
# command, so that the command runs as PID 1 and receives the SIGTERM of `docker stop`.
set -eu

scratch="${TMPDIR:-/tmp}"
if ! mkdir -p "$scratch" 2>/dev/null || [ ! -w "$scratch" ]; then
  echo "pifa-entrypoint: TMPDIR=$scratch is not writable by uid $(id -u). Make the volume mounted at ${PIFA_DATA_DIR:-/data} writable for uid $(id -u) (for a bind mount: chown $(id -u) DIR on the host), or set TMPDIR to a writable directory." >&2
  exit 1
fi

exec "$@"
