#!/usr/bin/env bash
# Benchmark: N idle mTLS agent sessions held against one tether-server, and the server's
# resident memory per session. Not part of CI (see docs/benchmarks.md).
#
#   bench/idle_connections.sh [N]        # N defaults to 10000
#
# Environment: HOLD_S (seconds to hold the sessions idle, default 45: longer than the
# 30 s heartbeat interval), CONCURRENCY (sessions being set up at once, default 64),
# ENROLL_CONCURRENCY (pairings at once, default 32), SERVER_BIN (another build's
# tether-server to measure, for an A/B; the load generator is still this checkout's), MAX_KIB (fail when the server's
# memory per session is not under this, default 32), TELEMETRY_MS (each session also
# sends a signed telemetry sample every TELEMETRY_MS ms while held, and the report has
# the rate the server accepted, from its /metrics; unset: idle sessions),
# MIN_TELEMETRY_PER_S (fail when the server accepted fewer samples a second).
#
# What it does, all on 127.0.0.1 with the default embedded backends (SQLite store,
# embedded bus) in a temp data dir:
#   1. builds tether-server and tether-loadgen (release);
#   2. starts the server on port 0 and pairs N devices through the real API
#      (tether-loadgen enroll), then stops it;
#   3. starts the server again on the same data dir, so that the memory pairing used is
#      not counted in (nor hidden by) the baseline, samples its VmRSS, opens N sessions
#      from a separate tether-loadgen process, holds them idle with heartbeats, samples
#      again, and prints the figures.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-10000}
HOLD_S=${HOLD_S:-45}
CONCURRENCY=${CONCURRENCY:-64}
ENROLL_CONCURRENCY=${ENROLL_CONCURRENCY:-32}
MAX_KIB=${MAX_KIB:-32}
TELEMETRY_MS=${TELEMETRY_MS:-}
MIN_TELEMETRY_PER_S=${MIN_TELEMETRY_PER_S:-}

# One descriptor per session in each process, plus their own.
want=$((N + 1024))
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt "$want" ]; then
    echo "need $want open files per process, the limit here is $(ulimit -n)" >&2
    exit 1
fi

cargo build --release --locked -p tether-server -p tether-loadgen
bin="${CARGO_TARGET_DIR:-target}/release"

work=$(mktemp -d)
server_pid=""
cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# A benchmark server: every pairing comes from one address, so the per-source limits go
# up; the access token must outlive enrollment.
cat >"$work/bench.toml" <<EOF
[auth]
login_per_minute = 1000
access_ttl_s = 3600
[pairing]
discovery_per_minute = 1000000
[metrics]
token = "$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
EOF
metrics_token="$(sed -n 's/^token = "\(.*\)"$/\1/p' "$work/bench.toml")"

start_server() {
    rm -f "$work/ready.json"
    TETHER_LOG="info,sqlx=warn" "${SERVER_BIN:-$bin/tether-server}" --config "$work/bench.toml" \
        --data-dir "$work/data" --listen 127.0.0.1:0 --ready-file "$work/ready.json" \
        >>"$work/server.log" 2>&1 &
    server_pid=$!
    for _ in $(seq 600); do
        [ -f "$work/ready.json" ] && return 0
        kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
        sleep 0.1
    done
    echo "tether-server did not start" >&2
    exit 1
}

stop_server() {
    kill -TERM "$server_pid"
    wait "$server_pid" || true
    server_pid=""
}

echo "== machine"
echo "nproc: $(nproc)"
free -g | sed 's/^/  /'
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "kernel: $(uname -sr)"
echo "rustc: $(rustc --version)"
echo "open files limit: $(ulimit -n)"
echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (with local changes)')"

echo "== enrolling $N devices through the API"
start_server
"$bin/tether-loadgen" --ready-file "$work/ready.json" enroll --count "$N" \
    --concurrency "$ENROLL_CONCURRENCY" --out "$work/identities.json"
stop_server

echo "== holding $N idle sessions (server restarted: clean baseline)"
start_server
sleep 2
cmd=("$bin/tether-loadgen" --ready-file "$work/ready.json" connect
    --identities "$work/identities.json" --count "$N" --concurrency "$CONCURRENCY"
    --hold-s "$HOLD_S" --server-pid "$server_pid" --json "$work/report.json"
    --max-kib-per-connection "$MAX_KIB")
if [ -n "$TELEMETRY_MS" ]; then
    cmd+=(--telemetry-interval-ms "$TELEMETRY_MS")
    [ -z "$MIN_TELEMETRY_PER_S" ] || cmd+=(--min-telemetry-per-s "$MIN_TELEMETRY_PER_S")
fi
echo "+ ${cmd[*]}"
status=0
TETHER_LOADGEN_METRICS_TOKEN="$metrics_token" "${cmd[@]}" || status=$?
stop_server
if grep -qiE ' (WARN|ERROR) ' "$work/server.log"; then
    echo "== server warnings and errors (first 20)"
    grep -iE ' (WARN|ERROR) ' "$work/server.log" | head -20
fi
echo "== report (JSON)"
cat "$work/report.json"
echo
exit "$status"
