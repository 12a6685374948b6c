#!/usr/bin/env bash
# Benchmark: command round trip against telemetry load, for the plot in
# docs/benchmarks.md ("Fleet load"). N agents are enrolled once; then, for each rate in
# RATES, the server is started fresh on the same data, the N sessions are held HOLD_S
# seconds sending that many signed telemetry samples a second in all, while SENDERS
# command senders time their commands; the server is stopped between rates.
#
#   bench/latency_vs_telemetry.sh [N]          # N defaults to 5000
#
# Environment: RATES (samples/s, default "0 1000 2000 3000 4000 5000"), HOLD_S (30),
# SENDERS (1), PAUSE_MS (20), OUT (target/bench/latency_vs_telemetry: one JSON report
# per rate, named <rate>.json, and points.csv), PLOT (a PNG path: drawn from points.csv
# by bench/plot_latency.py, which needs matplotlib; unset: no plot).
#
# Embedded backends, release builds, everything on 127.0.0.1, nothing pinned.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-5000}
RATES=${RATES:-0 1000 2000 3000 4000 5000}
HOLD_S=${HOLD_S:-30}
SENDERS=${SENDERS:-1}
PAUSE_MS=${PAUSE_MS:-20}
OUT=${OUT:-target/bench/latency_vs_telemetry}
command -v jq >/dev/null || { echo "jq missing: apt-get install jq" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -ge $((N + 512)) ] || { echo "the open-file limit is too low for $N" >&2; exit 1; }

cargo build --release --locked -p tether-server -p tether-loadgen
bin="${CARGO_TARGET_DIR:-target}/release"
mkdir -p "$OUT"
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

token="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
cat >"$work/bench.toml" <<TOML
[auth]
login_per_minute = 1000
access_ttl_s = 3600
[pairing]
discovery_per_minute = 1000000
[metrics]
token = "$token"
TOML
start_server() {
    rm -f "$work/ready.json"
    TETHER_LOG="warn,sqlx=warn" "$bin/tether-server" --config "$work/bench.toml" \
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

echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (with local changes)')"
echo "nproc: $(nproc); cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "== enrolling $N devices"
start_server
"$bin/tether-loadgen" --ready-file "$work/ready.json" enroll --count "$N" \
    --concurrency 32 --out "$work/identities.json"
stop_server

echo "rate_offered,telemetry_sent_per_s,telemetry_accepted_per_s,completed,p50_ms,p90_ms,p99_ms,max_ms,server_cpu_pct" >"$OUT/points.csv"
for rate in $RATES; do
    echo "== $rate samples/s"
    start_server
    tele=()
    [ "$rate" = 0 ] || tele=(--telemetry-interval-ms $((N * 1000 / rate)))
    "$bin/tether-loadgen" --ready-file "$work/ready.json" connect \
        --identities "$work/identities.json" --concurrency 128 \
        --source-addrs 127.0.0.1,127.0.0.2 "${tele[@]}" --hold-s "$HOLD_S" \
        --server-pid "$server_pid" --metrics-token "$token" \
        --command-senders "$SENDERS" --command-pause-ms "$PAUSE_MS" \
        --json "$OUT/$rate.json" >"$work/connect.out" 2>"$work/connect.err" || {
        echo "the run at $rate/s failed:" >&2
        tail -n 20 "$work/connect.err" >&2
    }
    stop_server
    [ -f "$OUT/$rate.json" ] || continue
    jq -r --arg rate "$rate" '[$rate, .telemetry_sent_per_s, (.telemetry_accepted_per_s // 0),
        .commands.completed, .commands.p50_ms, .commands.p90_ms, .commands.p99_ms,
        .commands.max_ms, (.server_cpu_pct // 0)] | @csv' "$OUT/$rate.json" >>"$OUT/points.csv"
    tail -n 1 "$OUT/points.csv"
done
cat "$OUT/points.csv"
if [ -n "${PLOT:-}" ]; then
    python3 bench/plot_latency.py "$OUT/points.csv" "$PLOT" "$N"
fi
