#!/usr/bin/env bash
# Runs the tests of the PC-side crates as Windows executables under Wine: cross-builds
# them (`cargo test --no-run` for x86_64-pc-windows-gnu), then runs each test executable
# in one fresh Wine prefix (with the bcryptprimitives.dll shim in its system32) from its
# crate's directory, as `cargo test` would. Fails if any test fails, if an executable
# cannot run, or if Wine is missing.
#
#   packaging/windows/wine-test.sh [CRATE...]     default: tether-proto tether-service tether-agent tether-helper
#   extra arguments for every test executable:    WINE_TEST_ARGS="--test-threads=1"
set -euo pipefail
# shellcheck source=env.sh
. "$(dirname "$0")/env.sh"
[ -x /usr/lib/wine/wine64 ] || { echo "wine-test: /usr/lib/wine/wine64 missing: apt-get install wine64" >&2; exit 1; }
command -v jq >/dev/null || { echo "wine-test: jq missing: apt-get install jq" >&2; exit 1; }

crates=("$@")
[ ${#crates[@]} -gt 0 ] || crates=(tether-proto tether-service tether-agent tether-helper)
pkgs=()
for c in "${crates[@]}"; do pkgs+=(-p "$c"); done

artifacts="$(mktemp)"
WINEPREFIX="$(mktemp -d "${TMPDIR:-/tmp}/tether-wine-test-XXXXXX")"
export WINEPREFIX
cleanup() {
    /usr/lib/wine/wineserver -k 2>/dev/null || true
    /usr/lib/wine/wineserver -w 2>/dev/null || true
    rm -rf "$WINEPREFIX" "$artifacts" "${out:-}"
}
trap cleanup EXIT

echo "wine-test: building the test executables of ${crates[*]} for $win_target" >&2
win_cargo test --locked --no-run --message-format=json "${pkgs[@]}" >"$artifacts"
# "<executable>\t<crate dir>" for every test executable cargo made.
mapfile -t tests < <(jq -r 'select(.reason == "compiler-artifact" and .profile.test == true and .executable != null)
    | "\(.executable)\t\(.manifest_path | sub("/Cargo.toml$"; ""))"' "$artifacts")
[ ${#tests[@]} -gt 0 ] || { echo "wine-test: cargo made no test executables" >&2; exit 1; }

t0=$SECONDS
# One wineserver for the whole run: one that exits after each executable races the next
# one's start ("wine client error: recvmsg: Connection reset by peer").
/usr/lib/wine/wineserver -p
win_wine wineboot --init >/dev/null 2>&1
install -m 0644 "$("$(dirname "$0")/build-shim.sh")" "$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll"
echo "wine-test: prefix $WINEPREFIX ready in $((SECONDS - t0)) s" >&2

# run_one EXE DIR: runs a test executable from its crate's directory, as `cargo test`
# would, its output shown and kept in $out.
out="$(mktemp)"
run_one() {
    # shellcheck disable=SC2086 # WINE_TEST_ARGS is a list of arguments
    (cd "$2" && timeout 900 env WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml=" \
        /usr/lib/wine/wine64 "$1" ${WINE_TEST_ARGS:-}) 2>&1 | tee "$out"
}

failed=()
for entry in "${tests[@]}"; do
    exe="${entry%%$'\t'*}"
    dir="${entry#*$'\t'}"
    name="$(basename "$exe")"
    echo "wine-test: running $name (in ${dir#"$win_root"/})" >&2
    t0=$SECONDS
    rc=0
    run_one "$exe" "$dir" || rc=$?
    # Wine's own client/server link failing is not the test's failure: once more.
    if [ "$rc" -ne 0 ] && grep -q "^wine client error" "$out"; then
        echo "wine-test: $name: Wine itself failed ($(grep -m1 '^wine client error' "$out")); running it again" >&2
        rc=0
        run_one "$exe" "$dir" || rc=$?
    fi
    if [ "$rc" -eq 0 ]; then
        echo "wine-test: $name passed in $((SECONDS - t0)) s" >&2
    else
        echo "wine-test: $name FAILED (exit $rc) after $((SECONDS - t0)) s" >&2
        failed+=("$name")
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "wine-test: ${#failed[@]} of ${#tests[@]} test executables failed under Wine: ${failed[*]}" >&2
    exit 1
fi
echo "wine-test: all ${#tests[@]} test executables passed under Wine" >&2
