#!/usr/bin/env bash
# The two Windows services under Wine, registered the way the MSI's custom actions
# register them and started the way Windows starts them, at boot:
#   1. a fresh Wine prefix (with the bcryptprimitives.dll shim in its system32);
#      tether-agent.exe and tether-helper.exe copied to %ProgramFiles%\Tether;
#   2. `tether-helper.exe service install` and `tether-agent.exe service install
#      --server URL --ca-fingerprint FP`;
#   3. Wine shut down and booted again: its SCM starts both auto-start services;
#   4. checks: both registered with the command lines `service install` wrote (the
#      agent's names the server and the fingerprint and runs as NT SERVICE\tether-agent,
#      the helper's requires that account and runs as LocalSystem); both RUNNING; no
#      server answers here, so the agent waits for one and the helper waits for the
#      agent's key, each saying so in its log under %ProgramData%\Tether\logs;
#   5. `service uninstall` of both: the services are gone, the logs stay.
# The prefix is deleted afterwards (KEEP_PREFIX=1 keeps it).
#
#   packaging/windows/wine-services.sh [BIN_DIR]     default: the debug build (build-exes.sh)
#
# Not msiexec: under Wine, msiexec keeps the service database locked while its install
# script runs, so the MSI's own start of the services fails there and the install rolls
# back (docs/windows.md, "What was tested where").
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=env.sh
. "$here/env.sh"
[ -x /usr/lib/wine/wine64 ] || { echo "wine-services: /usr/lib/wine/wine64 missing: apt-get install wine64" >&2; exit 1; }
bin_dir="${1:-$("$here/build-exes.sh")}"

WINEPREFIX="$(mktemp -d "${TMPDIR:-/tmp}/tether-wine-svc-XXXXXX")"
export WINEPREFIX
cleanup() {
    /usr/lib/wine/wineserver -k 2>/dev/null || true
    /usr/lib/wine/wineserver -w 2>/dev/null || true
    [ -n "${KEEP_PREFIX:-}" ] || rm -rf "$WINEPREFIX"
}
trap cleanup EXIT
c="$WINEPREFIX/drive_c"
pf="$c/Program Files/Tether"
logs="$c/ProgramData/Tether/logs"
fail() {
    echo "wine-services: $*" >&2
    for f in "$logs"/*.log; do
        [ -f "$f" ] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }
    done
    exit 1
}
w() { timeout 120 env WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml=" /usr/lib/wine/wine64 "$@"; }
agent='C:\Program Files\Tether\tether-agent.exe'
helper='C:\Program Files\Tether\tether-helper.exe'
# A port nothing listens on: the agent must wait for its server.
server="https://127.0.0.1:9"
fp="$(printf 'AB:%.0s' $(seq 31))AB"

t0=$SECONDS
w wineboot --init >/dev/null 2>&1
install -m 0644 "$("$here/build-shim.sh")" "$c/windows/system32/bcryptprimitives.dll"
mkdir -p "$pf"
cp "$bin_dir/tether-agent.exe" "$bin_dir/tether-helper.exe" "$pf/"
echo "wine-services: prefix ready in $((SECONDS - t0)) s" >&2

w "$helper" service install || fail "tether-helper service install failed"
w "$agent" service install --server "$server" --ca-fingerprint "$fp" || fail "tether-agent service install failed"

echo "wine-services: shutting Wine down and booting it again" >&2
/usr/lib/wine/wineserver -k || true
/usr/lib/wine/wineserver -w || true
# From here on one wineserver, and so one SCM, for the rest of the script.
/usr/lib/wine/wineserver -p
t0=$SECONDS
running() { w sc query "$1" 2>/dev/null | tr -d '\r' | grep -q "RUNNING"; }
for _ in $(seq 60); do running tether-agent && running tether-helper && break; sleep 1; done
running tether-agent || fail "tether-agent was not started at boot"
running tether-helper || fail "tether-helper was not started at boot"
echo "wine-services: both services started at boot in $((SECONDS - t0)) s" >&2

# The services' registry keys (what `sc qc` shows on Windows; Wine's sc lacks qc).
qc() { w reg query "HKLM\\System\\CurrentControlSet\\Services\\$1" 2>/dev/null | tr -d '\r'; }
agent_qc="$(qc tether-agent)" || fail "no registry key for tether-agent"
helper_qc="$(qc tether-helper)" || fail "no registry key for tether-helper"
grep -q -- "service run" <<<"$agent_qc" || fail "tether-agent's command line: $agent_qc"
grep -q -- "--server $server" <<<"$agent_qc" || fail "tether-agent's command line lacks the server: $agent_qc"
grep -q -- "--ca-fingerprint $fp" <<<"$agent_qc" || fail "tether-agent's command line lacks the fingerprint: $agent_qc"
grep -q "NT SERVICE" <<<"$agent_qc" || fail "tether-agent does not run as its virtual account: $agent_qc"
grep -q -- "--require-agent-account" <<<"$helper_qc" || fail "tether-helper's command line: $helper_qc"
grep -q "LocalSystem" <<<"$helper_qc" || fail "tether-helper does not run as LocalSystem: $helper_qc"
grep -qE "Start +REG_DWORD +0x2$" <<<"$agent_qc" || fail "tether-agent does not start at boot: $agent_qc"
grep -qE "Start +REG_DWORD +0x2$" <<<"$helper_qc" || fail "tether-helper does not start at boot: $helper_qc"

for _ in $(seq 30); do
    grep -qs "trying again in" "$logs/tether-agent.log" \
        && grep -qs "waiting for the agent's key" "$logs/tether-helper.log" && break
    sleep 1
done
grep -qs "trying again in" "$logs/tether-agent.log" || fail "tether-agent.log does not show the agent waiting for its server"
grep -qs "waiting for the agent's key" "$logs/tether-helper.log" || fail "tether-helper.log does not show the helper waiting for the agent's key"
echo "wine-services: both running as services, waiting for the server and the agent's key, as their logs say" >&2

w "$agent" service uninstall || fail "tether-agent service uninstall failed"
w "$helper" service uninstall || fail "tether-helper service uninstall failed"
if qc tether-agent >/dev/null; then fail "the tether-agent service is still registered"; fi
if qc tether-helper >/dev/null; then fail "the tether-helper service is still registered"; fi
[ -s "$logs/tether-agent.log" ] && [ -s "$logs/tether-helper.log" ] || fail "the logs were not kept"
echo "wine-services: service uninstall stopped and removed both; the logs stay" >&2
