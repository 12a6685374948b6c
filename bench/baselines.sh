#!/usr/bin/env bash
# Benchmark: Tether's gateway beside the bare servers it is measured against, with the
# same N devices, in one run on one machine (docs/benchmarks.md, "Fleet load"):
#
#   idle       Tether holding N sessions with heartbeats   vs  B1, a bare TLS 1.3
#              (memory per connection)                          WebSocket server
#   telemetry  Tether with each session sending a signed   vs  B2, the bare server
#              sample every TELEMETRY_MS ms (accepted/s)        verifying each message
#
#   bench/baselines.sh [N]        # N defaults to 2000
#
# Environment: HOLD_S (default 40), TELEMETRY_MS (default 100: N × 10 samples/s offered,
# more than either server takes on 2 cores, so the accepted rate is each one's
# ceiling), CONCURRENCY (64), ENROLL_CONCURRENCY (32), SERVER_CPUS and LOADGEN_CPUS
# (taskset CPU lists, e.g. 0 and 1; unset: not pinned), LOADGEN_NICE (the nice value the
# load generator runs at while it loads either server, default 0: it stands in for
# machines of its own, and at 0 it wins the CPU over Tether's bulk work, which runs at
# telemetry.bulk_nice when that is set).
#
# All on 127.0.0.1, embedded backends (SQLite, embedded bus) in a temp data dir; release
# builds; each server (Tether or baseline) runs alone while measured, restarted between
# runs; the load generator is a separate process. Prints each run's report and a table of
# ratios; writes the JSON reports to $OUT (default target/bench/baselines).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-2000}
HOLD_S=${HOLD_S:-40}
TELEMETRY_MS=${TELEMETRY_MS:-100}
CONCURRENCY=${CONCURRENCY:-64}
ENROLL_CONCURRENCY=${ENROLL_CONCURRENCY:-32}
OUT=${OUT:-target/bench/baselines}
server_pin=(); [ -z "${SERVER_CPUS:-}" ] || server_pin=(taskset -c "$SERVER_CPUS")
loadgen_pin=(); [ -z "${LOADGEN_CPUS:-}" ] || loadgen_pin=(taskset -c "$LOADGEN_CPUS")
[ "${LOADGEN_NICE:-0}" = 0 ] || loadgen_pin+=(nice -n "$LOADGEN_NICE")

want=$((N + 1024))
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt "$want" ]; then
    echo "need $want open files per process, the limit here is $(ulimit -n)" >&2
    exit 1
fi
command -v jq >/dev/null || { echo "baselines: jq missing: apt-get install jq" >&2; exit 1; }

cargo build --release --locked -p tether-server -p tether-loadgen
bin="${CARGO_TARGET_DIR:-target}/release"
mkdir -p "$OUT"
work=$(mktemp -d)
pid=""
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

token="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
cat >"$work/bench.toml" <<EOF
[auth]
login_per_minute = 1000
access_ttl_s = 3600
[pairing]
discovery_per_minute = 1000000
[metrics]
token = "$token"
EOF

wait_file() {
    for _ in $(seq 600); do
        [ -f "$1" ] && return 0
        kill -0 "$pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
        sleep 0.1
    done
    echo "no $1" >&2
    exit 1
}
start_tether() {
    rm -f "$work/ready.json"
    TETHER_LOG="warn,sqlx=warn" "${server_pin[@]}" "$bin/tether-server" --config "$work/bench.toml" \
        --data-dir "$work/data" --listen 127.0.0.1:0 --ready-file "$work/ready.json" \
        >>"$work/server.log" 2>&1 &
    pid=$!
    wait_file "$work/ready.json"
    sleep 2
}
start_baseline() {
    rm -f "$work/b-ready.json" "$work/b-stats.json"
    "${server_pin[@]}" "$bin/tether-loadgen" --ready-file "$work/ready.json" baseline --kind "$1" \
        --identities "$work/identities.json" --out-ready-file "$work/b-ready.json" \
        --stats-file "$work/b-stats.json" >>"$work/server.log" 2>&1 &
    pid=$!
    wait_file "$work/b-ready.json"
    sleep 2
}
stop() {
    kill -TERM "$pid"
    wait "$pid" || true
    pid=""
}
connect() { # NAME READY [extra connect options…]
    local name="$1" ready="$2"
    shift 2
    echo "== $name"
    # An overloaded server may not have counted every sample within the drain timeout:
    # the run then says so and the script goes on (the JSON has both counts).
    "${loadgen_pin[@]}" "$bin/tether-loadgen" --ready-file "$ready" connect \
        --identities "$work/identities.json" --count "$N" --concurrency "$CONCURRENCY" \
        --hold-s "$HOLD_S" --server-pid "$pid" --json "$OUT/$name.json" "$@" \
        || echo "== $name: the load generator reported an unmet expectation (above)"
}

echo "== machine"
echo "nproc: $(nproc); cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "memory: $(free -g | awk '/^Mem:/ {print $2 " GiB"}'); kernel: $(uname -sr); rustc: $(rustc --version)"
echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (with local changes)')"
echo "N: $N; hold: $HOLD_S s; telemetry: every $TELEMETRY_MS ms per session; pinned: server ${SERVER_CPUS:-no}, loadgen ${LOADGEN_CPUS:-no}; loadgen nice ${LOADGEN_NICE:-0}; Tether's telemetry.bulk_nice ${TETHER_SERVER_TELEMETRY__BULK_NICE:-0}"

echo "== enrolling $N devices through the API"
start_tether
"$bin/tether-loadgen" --ready-file "$work/ready.json" enroll --count "$N" \
    --concurrency "$ENROLL_CONCURRENCY" --out "$work/identities.json"
stop

start_tether
connect tether-idle "$work/ready.json"
stop
start_baseline idle
connect b1-idle "$work/b-ready.json" --bare-stats "$work/b-stats.json"
stop
start_tether
TETHER_LOADGEN_METRICS_TOKEN="$token" connect tether-telemetry "$work/ready.json" \
    --telemetry-interval-ms "$TELEMETRY_MS"
stop
start_baseline verify
connect b2-telemetry "$work/b-ready.json" --bare-stats "$work/b-stats.json" \
    --telemetry-interval-ms "$TELEMETRY_MS"
stop

j() { jq -r "$2" "$OUT/$1.json"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
t_kib=$(j tether-idle '.bytes_per_connection / 1024')
b1_kib=$(j b1-idle '.bytes_per_connection / 1024')
t_rate=$(j tether-telemetry '.telemetry_accepted_per_s')
b2_rate=$(j b2-telemetry '.telemetry_accepted_per_s')
echo
echo "== results (N = $N)"
printf '| figure | Tether | baseline | ratio |\n|---|---|---|---|\n'
printf '| memory per connection, KiB | %.1f | %.1f (B1) | %s × B1 |\n' "$t_kib" "$b1_kib" "$(ratio "$t_kib" "$b1_kib")"
printf '| telemetry accepted, msg/s | %.0f | %.0f (B2) | %s of B2 |\n' "$t_rate" "$b2_rate" "$(ratio "$t_rate" "$b2_rate")"
printf '| server CPU under telemetry, %% of a core | %.0f | %.0f (B2) | |\n' \
    "$(j tether-telemetry '.server_cpu_pct')" "$(j b2-telemetry '.server_cpu_pct')"
echo "reports: $OUT/{tether-idle,b1-idle,tether-telemetry,b2-telemetry}.json"
