#!/bin/sh
# Picks the binary from the first argument: coordinator | worker | healthcheck | probe.
set -eu
role="${1:-worker}"
# The role's own arguments follow it (none: a worker configured by TESSERA_WORKER_*).
[ $# -gt 0 ] && shift
case "$role" in
  coordinator)
    exec /usr/local/bin/tessera-coordinator "$@"
    ;;
  worker)
    exec /usr/local/bin/tessera-worker "$@"
    ;;
  healthcheck)
    # healthcheck [coordinator|worker]: the health check runs as a separate process.
    # Without an argument it finds the service among this container's processes (not
    # only PID 1, which is an init under `docker run --init` or a pod's shared PID
    # namespace): a coordinator runs `serve`, a worker the worker binary.
    # With metrics on (TESSERA_METRICS_ADDRESS, TESSERA_WORKER_METRICS_ADDRESS): the
    # coordinator is healthy when GET /readyz answers 200 (endpoints bound, store
    # writable), a worker when GET /healthz does (its socket loop goes round).
    # Without: the coordinator answers a status request (configured by the container's
    # TESSERA_CLIENT_* variables: endpoint, default tcp://127.0.0.1:5556; CURVE keys),
    # a worker's binary and OpenBLAS load (also what a container running neither gets).
    service="${1:-}"
    if [ -z "$service" ]; then
      for cmdline in /proc/[0-9]*/cmdline; do
        # The first two words of the process' argument list (NUL-separated); a
        # process gone meanwhile reads as none.
        words=$(tr '\0' '\n' < "$cmdline" 2>/dev/null | head -n 2) || words=""
        program="" first=""
        { IFS= read -r program || :; IFS= read -r first || :; } <<ARGS
$words
ARGS
        case "${program##*/}:${first:-}" in
          tessera-coordinator:serve) service=coordinator; break ;;
          tessera-worker:--info|tessera-worker:--help|tessera-worker:-h) ;;
          tessera-worker:*) service=worker ;;
        esac
      done
    fi
    if [ "$service" = coordinator ]; then
      [ -n "${TESSERA_METRICS_ADDRESS:-}" ] && exec "$0" probe "$TESSERA_METRICS_ADDRESS" /readyz
      # Within the check's timeout; CURVE settings from TESSERA_CLIENT_CURVE* (deploy/README.md):
      # a coordinator configured by flags needs those or TESSERA_METRICS_ADDRESS.
      exec /usr/local/bin/tessera-coordinator status --reconnect-timeout 5
    fi
    [ -n "${TESSERA_WORKER_METRICS_ADDRESS:-}" ] && exec "$0" probe "$TESSERA_WORKER_METRICS_ADDRESS" /healthz
    exec /usr/local/bin/tessera-worker --info
    ;;
  probe)
    # probe ADDRESS PATH: exit 0 when http://ADDRESS/PATH answers 200 within 5 s.
    # ADDRESS as --metrics-address takes it: HOST:PORT, :PORT or PORT (loopback); an
    # IPv6 host in brackets ([::1]:9090); a wildcard host (0.0.0.0, [::]) means loopback.
    # bash's /dev/tcp: the runtime image has no curl.
    if [ $# -ne 2 ]; then
      echo "usage: tessera-entrypoint probe ADDRESS PATH (e.g. probe :9090 /readyz)" >&2
      exit 2
    fi
    address="$1"; path="$2"
    port="${address##*:}"; host="${address%:*}"
    [ "$host" = "$address" ] && host=""
    case "$host" in
      ""|0.0.0.0) host=127.0.0.1 ;;
      "[::]"|"::") host=::1 ;;
    esac
    # /dev/tcp takes an IPv6 address without brackets; the Host header keeps them.
    header="$host"
    case "$host" in "["*"]") host="${host#\[}"; host="${host%\]}" ;; *:*) header="[$host]" ;; esac
    exec timeout 5 bash -c 'exec 3<>"/dev/tcp/$0/$1" || exit 1
      printf "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n" "$2" "$3" >&3
      IFS= read -r status <&3 || exit 1
      case "$status" in "HTTP/1."?" 200 "*) exit 0 ;; *) echo "$2: $status" >&2; exit 1 ;; esac' \
      "$host" "$port" "$path" "$header"
    ;;
  tessera-coordinator|tessera-worker)
    exec "/usr/local/bin/$role" "$@"
    ;;
  *)
    exec "$role" "$@"
    ;;
esac
