# Sourced by the scripts here: the toolchain that builds for x86_64-pc-windows-gnu on
# Debian (../../../shared/notes/windows-on-linux.md): Debian's rustc/cargo (rustc-web,
# cargo-web) with the std sources (rust-web-src) under -Zbuild-std, linked by mingw.
# rustup's cargo stays first on PATH, so these are named by full path, and /usr/bin goes
# first on PATH for cargo's subcommands (`cargo clippy` is rust-web-clippy's cargo-clippy,
# matching Debian's rustc; rustup's would not).
# shellcheck shell=bash
win_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
win_target=x86_64-pc-windows-gnu
win_target_dir="$win_root/target/windows"
# win_cargo SUBCOMMAND [ARGS…]: the target options go right after the subcommand, so
# ARGS may end with `-- <rustc or clippy options>`. Debug builds keep line tables only
# (backtraces with lines): full debug info made tether-agent.exe 300 MB, slow to link,
# to pack and to load under Wine.
win_cargo() {
    # Cargo variables of an outer cargo (a test that calls a script) must not leak in.
    # shellcheck disable=SC2046 # one word per -u NAME
    env $(compgen -e | grep -E '^CARGO_' | grep -vx CARGO_HOME | sed 's/^/-u /') \
        -u CARGO -u RUSTC_WRAPPER -u RUSTFLAGS \
        CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc \
        RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 PATH="/usr/bin:$PATH" \
        CARGO_PROFILE_DEV_DEBUG="${CARGO_PROFILE_DEV_DEBUG:-line-tables-only}" \
        /usr/bin/cargo "$1" -Zbuild-std --target "$win_target" --target-dir "$win_target_dir" "${@:2}"
}
# Wine, quiet, without the Gecko/Mono installers a new prefix would otherwise offer.
win_wine() {
    WINEDEBUG="${WINEDEBUG:--all}" WINEDLLOVERRIDES="${WINEDLLOVERRIDES:-mscoree,mshtml=}" \
        /usr/lib/wine/wine64 "$@"
}
