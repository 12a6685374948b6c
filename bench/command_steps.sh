#!/usr/bin/env bash
# A command's steps as the server logged them: for every pair of consecutive steps
# (policy decision, each `command state` change, delivery to the agent), how long
# commands took between them, p50 / p90 / p99 / max in ms, and the whole way from the
# policy decision to the last step logged. Reads a server log written at `info` or
# finer (bench/fleet.sh keeps it with KEEP_LOGS=DIR: DIR/server.log).
#
#   bench/command_steps.sh DIR/server.log
#
# The sums show which steps the commands spent most of their time in
# (docs/benchmarks.md, "Run to run, thread priority, a write gate and batched heartbeats").
set -euo pipefail
log=${1:?usage: bench/command_steps.sh SERVER_LOG}

# Colour codes off; then one line per logged step: command id, seconds, step.
sed 's/\x1b\[[0-9;]*m//g' "$log" | awk '
    /command=[0-9a-f-]{36}/ {
        match($0, /command=[0-9a-f-]{36}/); id = substr($0, RSTART + 8, 36)
        step = ""
        if ($0 ~ /policy decision/) step = "policy"
        else if ($0 ~ /command delivered/) step = "delivered"
        else if (match($0, /to="[a-z_]+"/)) step = substr($0, RSTART + 4, RLENGTH - 5)
        if (step == "") next
        # 2026-12-06T19:12:08.449693Z: days are enough to order within a run.
        split(substr($1, 1, 10), d, "-"); split(substr($1, 12), t, ":")
        s = ((d[1] * 372 + d[2] * 31 + d[3]) * 86400) + t[1] * 3600 + t[2] * 60 + t[3]
        printf "%s %.6f %s\n", id, s, step
    }' | sort -k1,1 -k2,2n | awk '
    $1 == prev { printf "%s->%s %.3f\n", step, $3, ($2 - at) * 1000 }
    $1 != prev { if (prev != "") printf "total %.3f\n", (last - first) * 1000; first = $2 }
    { prev = $1; step = $3; at = $2; last = $2 }
    END { if (prev != "") printf "total %.3f\n", (last - first) * 1000 }' |
    sort -k1,1 -k2,2n | awk '
    function flush() {
        if (n == 0) return
        printf "%-32s n=%5d  p50 %8.1f  p90 %8.1f  p99 %8.1f  max %8.1f  sum %9.0f ms\n",
            name, n, v[int(n * 0.5) + 1], v[int(n * 0.9) + 1], v[int(n * 0.99) + 1], v[n], sum
    }
    $1 != name { flush(); name = $1; n = 0; sum = 0 }
    { v[++n] = $2; sum += $2 }
    END { flush() }'
