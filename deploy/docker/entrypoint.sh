#!/bin/sh
# Picks the binary from the first argument: coordinator | worker | healthcheck | probe.
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
    # With metrics on (TESSERA_METRICS_ADDRESS, TESSERA_WORKER_METRICS_ADDRESS): the
    # coordinator is healthy when GET /readyz answers 200 (endpoints bound, store
    # writable), a worker when GET /healthz does (its socket loop goes round).
    # Without: the coordinator answers a status request (configured by the container's
    # TESSERA_CLIENT_* variables: endpoint, default tcp://127.0.0.1:5556; CURVE keys),
    # a worker's binary and OpenBLAS load.
    if tr '\0' ' ' < /proc/1/cmdline | grep -q 'tessera-coordinator serve'; then
      [ -n "${TESSERA_METRICS_ADDRESS:-}" ] && exec "$0" probe "$TESSERA_METRICS_ADDRESS" /readyz
      exec /usr/local/bin/tessera-coordinator status
    fi
    [ -n "${TESSERA_WORKER_METRICS_ADDRESS:-}" ] && exec "$0" probe "$TESSERA_WORKER_METRICS_ADDRESS" /healthz
    exec /usr/local/bin/tessera-worker --info
    ;;
  probe)
    # probe ADDRESS PATH: exit 0 when http://ADDRESS/PATH answers 200 within 5 s
    # (ADDRESS as --metrics-address takes it; an unspecified host means loopback).
    # bash's /dev/tcp: the runtime image has no curl.
    address="$2"; path="$3"
    port="${address##*:}"; host="${address%:*}"
    [ "$host" = "$address" ] && host=""
    case "$host" in ""|0.0.0.0|"[::]"|"::") host=127.0.0.1 ;; esac
    exec timeout 5 bash -c 'exec 3<>"/dev/tcp/$0/$1" || exit 1
      printf "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n" "$2" "$0" >&3
      IFS= read -r status <&3 || exit 1
      case "$status" in "HTTP/1."?" 200 "*) exit 0 ;; *) echo "$2: $status" >&2; exit 1 ;; esac' \
      "$host" "$port" "$path"
    ;;
  tessera-coordinator|tessera-worker)
    shift
    exec "/usr/local/bin/$role" "$@"
    ;;
  *)
    exec "$@"
    ;;
esac
