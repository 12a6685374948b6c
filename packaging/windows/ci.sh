#!/usr/bin/env bash
# The Windows build and its tests under Wine (issue 8): clippy for x86_64-pc-windows-gnu,
# the Windows unit tests as .exe files under Wine, tether-agent.exe + tether-helper.exe
# under Wine against a Linux tether-server (pairing, telemetry, lock_screen over the
# named pipe), and the MSI. Needs the packages .ci/run installs (rustc-web, cargo-web,
# rust-web-src, rust-web-clippy, gcc-mingw-w64-x86-64, wine64, wixl, msitools, jq).
#
#   packaging/windows/ci.sh
#
# .ci/run runs it after the Linux tests (the Wine end-to-end test uses the Linux server
# they built).
set -euo pipefail
cd "$(dirname "$0")/../.."

step() { printf "\n==> [%s] %s\n" "$(date -u +%H:%M:%S)" "$*"; }

# The Windows build, with Debian's toolchain in target/windows (packaging/windows/env.sh).
# Timings of each step are printed; docs/windows.md has those of a cold run.
. packaging/windows/env.sh
step "clippy for x86_64-pc-windows-gnu: every crate the agent and the helper build from, and the CLI (warnings are errors)"
# --all-targets: their unit and integration tests are Windows programs too (the CLI's tests
# need the server, which is not built for Windows: lib and bin only).
win_cargo clippy --locked --all-targets \
    -p tether-proto -p tether-trust -p tether-policy -p tether-client -p tether-service \
    -p tether-helper -p tether-agent -- -D warnings
win_cargo clippy --locked --lib --bins -p tether-cli -- -D warnings

step "Windows: the tests of tether-proto, tether-service, tether-agent and tether-helper as .exe files under Wine"
packaging/windows/wine-test.sh tether-proto tether-service tether-agent tether-helper

step "Windows: tether-agent.exe and tether-helper.exe under Wine against the Linux server (pairing, telemetry, lock_screen over the named pipe)"
# The test builds the debug .exe files (packaging/windows/build-exes.sh; current after
# wine-test.sh) and fails, never skips, when TETHER_WINE_TESTS=1 and Wine or an .exe is missing.
TETHER_WINE_TESTS=1 cargo test --locked -p tether-e2e --test windows_wine -- --test-threads=1

step "Windows: both services installed, started at boot, logging and uninstalled under Wine"
packaging/windows/wine-services.sh

# The MSI of the debug .exe files: the same tether.wxs and wixl as a release one
# (packaging/windows/build-msi.sh without --debug, which adds a release build from cold,
# about 12 minutes here), checked with msiinfo.
step "Windows: the MSI (wixl), checked with msiinfo"
packaging/windows/build-msi.sh --debug

