#!/usr/bin/env bash
# Builds the Windows installer on Linux: tether-agent.exe and tether-helper.exe
# (cross-built, release unless --debug), packed by wixl from tether.wxs into
# target/windows/tether-<version>-x64.msi, then checked with msiinfo: the files, the
# services' control entries and the custom actions must be in it. Prints the MSI's path.
#
#   packaging/windows/build-msi.sh [--debug]
#   BIN_DIR=DIR packaging/windows/build-msi.sh     package exes built elsewhere
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=env.sh
. "$here/env.sh"
command -v wixl >/dev/null || { echo "build-msi: wixl missing: apt-get install wixl" >&2; exit 1; }
command -v msiinfo >/dev/null || { echo "build-msi: msiinfo missing: apt-get install msitools" >&2; exit 1; }

if [ -z "${BIN_DIR:-}" ]; then
    if [ "${1:-}" = "--debug" ]; then
        BIN_DIR="$("$here/build-exes.sh")"
    else
        BIN_DIR="$("$here/build-exes.sh" --release)"
    fi
fi
# The workspace's version ([workspace.package] version = "x.y.z").
version="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\([0-9.]*\)".*/\1/p' "$win_root/Cargo.toml")"
[ -n "$version" ] || { echo "build-msi: no version in Cargo.toml" >&2; exit 1; }
msi="$win_target_dir/tether-$version-x64.msi"
mkdir -p "$win_target_dir"
# wixl finds the File sources relative to the working directory (absolute ones it rejects).
(cd "$BIN_DIR" && wixl -a x64 -D Version="$version" -o "$msi.tmp" "$here/tether.wxs")
mv "$msi.tmp" "$msi"

# What must be in it. (msiinfo export prints three header lines, then one row per line.)
rows() { msiinfo export "$msi" "$1" | tail -n +4; }
expect() {
    local table="$1" pattern="$2"
    rows "$table" | grep -qE "$pattern" || {
        echo "build-msi: $msi: no row matching /$pattern/ in $table:" >&2
        rows "$table" >&2
        exit 1
    }
}
expect File $'^AgentExe\t'
expect File $'^HelperExe\t'
expect Directory $'^INSTALLDIR\t.*Tether'
expect ServiceControl $'^AgentService\ttether-agent\t'
expect ServiceControl $'^HelperService\ttether-helper\t'
expect CustomAction $'^HelperServiceInstall\t.*service install'
expect CustomAction $'^AgentServiceInstall\t.*\\[SERVER_URL\\].*\\[CA_FINGERPRINT\\]'
expect CustomAction $'^RemoveStateDirs\t.*rmdir'
expect LaunchCondition 'SERVER_URL'
expect LaunchCondition 'CA_FINGERPRINT'
# Never the Wine-only shim.
if rows File | grep -qi bcryptprimitives; then
    echo "build-msi: the Wine shim must not be in the installer" >&2
    exit 1
fi
echo "$msi"
