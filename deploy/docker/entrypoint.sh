#!/bin/sh
# Picks the binary from the first argument: coordinator | worker | healthcheck.
set -eu
role="${1:-worker}"
case "$role" in
  coordinator)
    shift
    exec /usr/local/bin/tessera-coordinator "$@"
    ;;
  worker)
    shift
    exec /usr/local/bin/tessera-worker "$@"
    ;;
  healthcheck)
    # The health check runs as a separate process: it reads the role from PID 1's arguments.
    # The coordinator: a status request, configured by the container's TESSERA_CLIENT_*
    # variables (endpoint, default tcp://127.0.0.1:5556; CURVE keys).
    if tr '\0' ' ' < /proc/1/cmdline | grep -q 'tessera-coordinator serve'; then
      exec /usr/local/bin/tessera-coordinator status
    fi
    exec /usr/local/bin/tessera-worker --info
    ;;
  tessera-coordinator|tessera-worker)
    shift
    exec "/usr/local/bin/$role" "$@"
    ;;
  *)
    exec "$@"
    ;;
esac
