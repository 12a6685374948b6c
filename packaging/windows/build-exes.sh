#!/usr/bin/env bash
# Cross-builds tether-agent.exe and tether-helper.exe for x86_64-pc-windows-gnu on Linux
# into target/windows/x86_64-pc-windows-gnu/<profile>/ and prints that directory. A no-op
# (a few seconds) when they are current.
#
#   packaging/windows/build-exes.sh [--release]
set -euo pipefail
# shellcheck source=env.sh
. "$(dirname "$0")/env.sh"
profile=debug
args=()
if [ "${1:-}" = "--release" ]; then profile=release; args+=(--release); fi
win_cargo build --locked "${args[@]}" -p tether-agent -p tether-helper --bins >&2
echo "$win_target_dir/$win_target/$profile"
