#!/usr/bin/env bash
# Benchmark: the command round trip's floors, on this machine, in one run
# (docs/benchmarks.md, "Fleet load"):
#
#   B3    HTTPS POST → Redis XADD → XREADGROUP → WebSocket push → agent's answer back
#         (tether-loadgen relay-server + relay)
#   NATS  request-reply through the nats-server (tether-loadgen nats)
#
# Both sign the command with an Ed25519 key and verify it at the agent, which answers
# with a signed reply the sender verifies: the crypto Tether's command path has at each
# end. Tether's own round trip is measured by bench/fleet.sh; the ratios are in
# docs/benchmarks.md.
#
#   bench/floors.sh
#
# Environment: REQUESTS (default 20000), CONCURRENCY (default 1: one command in flight,
# as an idle system sees it), REDIS_URL (redis://127.0.0.1:6379), NATS_ADDR
# (127.0.0.1:4222), OUT (target/bench/floors: the JSON reports).
set -euo pipefail
cd "$(dirname "$0")/.."

REQUESTS=${REQUESTS:-20000}
CONCURRENCY=${CONCURRENCY:-1}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
NATS_ADDR=${NATS_ADDR:-127.0.0.1:4222}
OUT=${OUT:-target/bench/floors}

cargo build --release --locked -p tether-loadgen
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

echo "== B3: the relay (Redis at $REDIS_URL)"
"$bin/tether-loadgen" relay-server --redis "$REDIS_URL" --out-ready-file "$work/relay.json" \
    2>"$work/relay.log" &
pid=$!
for _ in $(seq 300); do
    [ -f "$work/relay.json" ] && break
    kill -0 "$pid" 2>/dev/null || { cat "$work/relay.log" >&2; exit 1; }
    sleep 0.1
done
"$bin/tether-loadgen" --ready-file "$work/relay.json" relay \
    --requests "$REQUESTS" --concurrency "$CONCURRENCY" --json "$OUT/b3.json"
kill -TERM "$pid"
wait "$pid"
pid=""

echo "== NATS request-reply ($NATS_ADDR)"
"$bin/tether-loadgen" nats --addr "$NATS_ADDR" \
    --requests "$REQUESTS" --concurrency "$CONCURRENCY" --json "$OUT/nats.json"
echo "reports: $OUT/b3.json $OUT/nats.json"
