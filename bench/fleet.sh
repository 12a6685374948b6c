#!/usr/bin/env bash
# Benchmark: a fleet of N mTLS agents on one tether-server, held by two load generator
# processes, with signed telemetry, signed commands and a reconnect storm. Not part of
# CI (see docs/benchmarks.md, "Fleet load").
#
#   bench/fleet.sh [N]          # N defaults to 18000
#
# Environment:
#   HOLD_S        how long the measuring process holds its sessions (default 300)
#   TELEMETRY_MS  each session sends a signed telemetry sample this often while held
#                 (unset: idle sessions; 1800 with N = 18000 is 10,000 samples/s)
#   SENDERS       command senders in the measuring process (default 4; 0: none)
#   PAUSE_MS      each sender's pause between commands (default 50)
#   STORM_N       sessions of the measuring process, which drop at once after the
#                 hold and reconnect (default min(N, 10000); the other process holds
#                 the rest and stays connected through the storm)
#   SOURCES       source addresses, comma-separated (default 127.0.0.1..127.0.0.4)
#   CONCURRENCY   sessions being set up at once, per process (default 128)
#   KEEP_LOGS     a directory to copy the logs and reports to at the end
#   SERVER_CPUS / LOADGEN_CPUS   taskset CPU lists (default: no pinning)
#   LOADGEN_NICE  the nice value the load generator processes run at (default 0). They
#                 stand in for machines of their own and share the server's cores: at 0
#                 they win the CPU over the server's bulk work when it runs at a lower
#                 priority (telemetry.bulk_nice), which a server alone would not meet
#   SERVER_LOG    the server's TETHER_LOG (default info,sqlx=warn; info,sqlx::query=debug
#                 shows every statement)
#   SERVER_BIN    a tether-server binary to measure instead of this checkout's (an A/B
#                 against another build; the load generator is still this checkout's)
#   BACKENDS      embedded (default: SQLite store, embedded bus) or mariadb-redis: the
#                 MariaDB on 127.0.0.1:3306 (root, no password) in a new database, and
#                 Redis Streams on 127.0.0.1:6379 under a new key prefix; both are
#                 removed at the end
#
# What it does, all on loopback:
#   1. builds tether-server and tether-loadgen (release); starts the server on port 0
#      with a temp data dir and pairs N devices through the real API (enroll);
#   2. restarts the server (clean memory baseline) and reads its VmRSS;
#   3. process B opens N - STORM_N sessions and holds them for the whole run;
#   4. process A opens STORM_N sessions, holds them HOLD_S seconds with telemetry and
#      command senders, measures the server (RSS, CPU, /metrics counters), then drops
#      all its connections at once and waits for them to re-authenticate;
#   5. B closes; the script prints both reports and the fleet-wide figures.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-18000}
HOLD_S=${HOLD_S:-300}
TELEMETRY_MS=${TELEMETRY_MS:-}
SENDERS=${SENDERS:-4}
PAUSE_MS=${PAUSE_MS:-50}
STORM_N=${STORM_N:-$((N < 10000 ? N : 10000))}
SOURCES=${SOURCES:-127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4}
CONCURRENCY=${CONCURRENCY:-128}
SERVER_CPUS=${SERVER_CPUS:-}
LOADGEN_CPUS=${LOADGEN_CPUS:-}
BACKENDS=${BACKENDS:-embedded}
B_N=$((N - STORM_N))
db="tether_bench_$$_$(date +%s)"
case "$BACKENDS" in
embedded) ;;
mariadb-redis) mariadb -uroot -h127.0.0.1 -e "CREATE DATABASE $db" ;;
*) echo "BACKENDS must be embedded or mariadb-redis" >&2; exit 2 ;;
esac

ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt $((STORM_N + 1024)) ] || [ "$(ulimit -n)" -lt $((N + 512)) ]; then
    echo "the open-file limit $(ulimit -n) is too low for $N sessions" >&2
    exit 1
fi

cargo build --release --locked -p tether-server -p tether-loadgen
bin="${CARGO_TARGET_DIR:-target}/release"
server_bin="${SERVER_BIN:-$bin/tether-server}"
pin() { if [ -n "$1" ]; then echo taskset -c "$1"; fi; }
# The load generator's prefix: its CPUs and its nice value.
loadgen() {
    pin "$LOADGEN_CPUS"
    if [ "${LOADGEN_NICE:-0}" != 0 ]; then echo nice -n "$LOADGEN_NICE"; fi
}

work=$(mktemp -d)
server_pid=""
b_pid=""
cleanup() {
    for p in $b_pid $server_pid; do
        if kill -0 "$p" 2>/dev/null; then
            kill -TERM "$p" 2>/dev/null || true
            wait "$p" 2>/dev/null || true
        fi
    done
    if [ -n "${KEEP_LOGS:-}" ]; then
        mkdir -p "$KEEP_LOGS" && cp "$work"/*.log "$work"/*.out "$work"/*.err "$work"/*.json "$KEEP_LOGS"/ 2>/dev/null || true
        rm -f "$KEEP_LOGS/identities.json"
    fi
    rm -rf "$work"
    if [ "$BACKENDS" = mariadb-redis ]; then
        mariadb -uroot -h127.0.0.1 -e "DROP DATABASE IF EXISTS $db" || true
        redis-cli --scan --pattern "$db:*" | xargs -r -n 500 redis-cli del >/dev/null || true
    fi
}
trap cleanup EXIT

token="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
{
    echo "[auth]"
    echo "login_per_minute = 1000"
    echo "access_ttl_s = 3600"
    echo "[pairing]"
    echo "discovery_per_minute = 1000000"
    echo "[metrics]"
    echo "token = \"$token\""
    if [ "$BACKENDS" = mariadb-redis ]; then
        echo "[store]"
        echo "backend = \"mysql\""
        echo "url = \"mysql://root@127.0.0.1:3306/$db\""
        echo "[bus]"
        echo "backend = \"redis\""
        echo "url = \"redis://127.0.0.1:6379\""
        echo "namespace = \"$db\""
    fi
} >"$work/bench.toml"

start_server() {
    rm -f "$work/ready.json"
    # shellcheck disable=SC2046
    TETHER_LOG="${SERVER_LOG:-info,sqlx=warn}" $(pin "$SERVER_CPUS") "$server_bin" \
        --config "$work/bench.toml" --data-dir "$work/data" --listen 127.0.0.1:0 \
        --ready-file "$work/ready.json" >>"$work/server.log" 2>&1 &
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
rss() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$server_pid/status"; }

echo "== machine"
echo "nproc: $(nproc); cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
free -g | sed 's/^/  /'
echo "kernel: $(uname -sr); rustc: $(rustc --version); open files limit: $(ulimit -n)"
echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (with local changes)')"
echo "backends: $BACKENDS"

echo "== enrolling $N devices through the API"
start_server
"$bin/tether-loadgen" --ready-file "$work/ready.json" enroll --count "$N" \
    --concurrency 32 --out "$work/identities.json"
stop_server

echo "== the fleet: $B_N sessions held by B, $STORM_N measured by A"
start_server
sleep 2
rss_start=$(rss)
common=(--identities "$work/identities.json" --concurrency "$CONCURRENCY"
    --source-addrs "$SOURCES" --setup-timeout-s 600)
tele=()
[ -z "$TELEMETRY_MS" ] || tele=(--telemetry-interval-ms "$TELEMETRY_MS")
if [ "$B_N" -gt 0 ]; then
    # shellcheck disable=SC2046
    $(loadgen) "$bin/tether-loadgen" --ready-file "$work/ready.json" connect \
        "${common[@]}" "${tele[@]}" --offset "$STORM_N" --count "$B_N" \
        --hold-s $((HOLD_S + 3600)) --json "$work/b.json" >"$work/b.out" 2>"$work/b.err" &
    b_pid=$!
    until grep -q "holding for" "$work/b.err"; do
        kill -0 "$b_pid" 2>/dev/null || { cat "$work/b.err" >&2; exit 1; }
        sleep 1
    done
    grep "established" "$work/b.err"
fi
a=("$bin/tether-loadgen" --ready-file "$work/ready.json" connect "${common[@]}" "${tele[@]}"
    --count "$STORM_N" --hold-s "$HOLD_S" --server-pid "$server_pid"
    --metrics-token "$token" --storm --json "$work/a.json")
[ "$SENDERS" = 0 ] || a+=(--command-senders "$SENDERS" --command-pause-ms "$PAUSE_MS")
echo "+ ${a[*]}"
status=0
# shellcheck disable=SC2046
$(loadgen) "${a[@]}" || status=$?
rss_all=$(jq -r '.rss_held_peak_kib // 0' "$work/a.json")
if [ -n "$b_pid" ]; then
    kill -TERM "$b_pid" 2>/dev/null || true
    wait "$b_pid" || true
    b_pid=""
    # B was stopped early: its own hold is over when it is killed, so only its drops
    # count; its report is printed for those.
    echo "== process B"
    tail -n 5 "$work/b.err"
fi
stop_server
echo "== fleet-wide"
echo "sessions: $N ($B_N held by B, $STORM_N by A)"
echo "server RSS before any session: $rss_start KiB; with all $N held (peak): $rss_all KiB"
if [ "$rss_all" -gt 0 ]; then
    echo "per agent: $(( (rss_all - rss_start) * 1024 / N )) bytes"
fi
if grep -qiE ' (WARN|ERROR) ' "$work/server.log"; then
    echo "== server warnings and errors (first 20)"
    grep -iE ' (WARN|ERROR) ' "$work/server.log" | head -20
fi
echo "== report of A (JSON)"
cat "$work/a.json"
echo
exit "$status"
