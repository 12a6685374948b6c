#!/usr/bin/env bash
# Builds the Wine-only bcryptprimitives.dll shim (see shim/bcryptprimitives.c) into DIR
# (default: target/windows/shim). Test harnesses copy it next to the .exe they run under
# Wine; it is never part of the installer.
#
#   packaging/windows/build-shim.sh [DIR]    prints the DLL's path
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${1:-$root/target/windows/shim}"
mkdir -p "$out"
dll="$out/bcryptprimitives.dll"
src="$here/shim/bcryptprimitives.c"
if [ ! -f "$dll" ] || [ "$src" -nt "$dll" ]; then
    x86_64-w64-mingw32-gcc -O2 -shared -Wall -Werror -o "$dll.tmp" "$src" -ladvapi32
    mv "$dll.tmp" "$dll"
fi
echo "$dll"
