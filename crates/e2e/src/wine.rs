//! The Windows binaries under Wine: `tether-agent.exe` and `tether-helper.exe`,
//! cross-built by `packaging/windows/build-exes.sh`, run in a fresh Wine prefix of their
//! own, so the Windows build is tested against the Linux server on a Linux machine
//! (docs/windows.md says what that does and does not prove).
//!
//! Opt-in: these tests run only with `TETHER_WINE_TESTS=1` (`.ci/run` sets it). Then a
//! missing Wine, toolchain or executable fails the test; it never skips.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::Proc;

/// The variable that turns the Wine tests on.
pub const ENABLE_VAR: &str = "TETHER_WINE_TESTS";

/// Whether the Wine tests run: `TETHER_WINE_TESTS=1`. Otherwise the caller says why it
/// does nothing (a plain `cargo test` on a machine without Wine stays green).
pub fn enabled() -> bool {
    std::env::var(ENABLE_VAR).is_ok_and(|v| v == "1")
}

/// The workspace root (this crate is `crates/e2e`).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs one of the `packaging/windows` scripts and returns the last line it printed (the
/// path it made).
fn script(name: &str, args: &[&str]) -> PathBuf {
    let path = workspace_root().join("packaging/windows").join(name);
    let out = Command::new("bash")
        .arg(&path)
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", path.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{} failed ({}): {stdout}",
        path.display(),
        out.status
    );
    let last = stdout.lines().last().unwrap_or_default().trim().to_owned();
    assert!(!last.is_empty(), "{} printed no path", path.display());
    PathBuf::from(last)
}

/// The path Windows programs under Wine see for a Linux path: drive Z: is `/`.
pub fn win_path(path: &Path) -> String {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    format!("Z:{}", abs.to_string_lossy().replace('/', "\\"))
}

/// A Wine prefix of its own (a fresh `C:` drive, registry and wineserver) holding the
/// Windows executables' shim. Dropped: every process in it is killed (`wineserver -k`)
/// and the prefix is removed.
#[derive(Debug)]
pub struct Wine {
    prefix: tempfile::TempDir,
    wine: PathBuf,
    wineserver: PathBuf,
    bin_dir: PathBuf,
}

/// Finds a Wine program: Debian's wine64 package puts them in /usr/lib/wine.
fn wine_program(name: &str) -> PathBuf {
    let candidates = [
        PathBuf::from("/usr/lib/wine").join(name),
        PathBuf::from("/usr/bin").join(name),
    ];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "{ENABLE_VAR}=1 but {name} is not installed (looked in {candidates:?}): \
                 apt-get install wine64"
            )
        })
}

impl Wine {
    /// Builds the Windows executables (a no-op when current; or takes them from
    /// `TETHER_WINDOWS_BIN_DIR`) and the shim, creates a prefix and puts the shim in its
    /// `C:\windows\system32`, where Wine 8 lacks `bcryptprimitives.dll`.
    pub fn start() -> Wine {
        assert!(enabled(), "Wine::start without {ENABLE_VAR}=1");
        let wine = wine_program("wine64");
        let wineserver = wine_program("wineserver");
        let bin_dir = match std::env::var_os("TETHER_WINDOWS_BIN_DIR") {
            Some(d) => PathBuf::from(d),
            None => script("build-exes.sh", &[]),
        };
        for exe in ["tether-agent.exe", "tether-helper.exe"] {
            assert!(
                bin_dir.join(exe).is_file(),
                "{} is missing",
                bin_dir.join(exe).display()
            );
        }
        let shim = script("build-shim.sh", &[]);
        let prefix = tempfile::Builder::new()
            .prefix("tether-wine-")
            .tempdir()
            .unwrap_or_else(|e| panic!("temp dir: {e}"));
        let w = Wine {
            prefix,
            wine,
            wineserver,
            bin_dir,
        };
        // The first start of a prefix sets it up (registry, C: drive, services): seconds.
        let started = Instant::now();
        let status = w
            .command(Path::new("wineboot"))
            .arg("--init")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("running wineboot: {e}"));
        assert!(status.success(), "wineboot --init failed: {status}");
        let system32 = w.prefix.path().join("drive_c/windows/system32");
        assert!(system32.is_dir(), "wineboot made no {}", system32.display());
        std::fs::copy(&shim, system32.join("bcryptprimitives.dll"))
            .unwrap_or_else(|e| panic!("copying the shim: {e}"));
        eprintln!(
            "wine: prefix {} ready in {:?}",
            w.prefix.path().display(),
            started.elapsed()
        );
        w
    }

    /// The prefix directory.
    pub fn prefix(&self) -> &Path {
        self.prefix.path()
    }

    /// A Windows executable of this build (`tether-agent.exe`, …), as a Linux path.
    pub fn exe(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    /// `wine64 PROGRAM` in this prefix, quiet, without the Gecko/Mono installers.
    pub fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new(&self.wine);
        cmd.arg(program)
            .env("WINEPREFIX", self.prefix.path())
            .env("WINEDEBUG", "-all")
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=")
            // No window: these are console programs, and CI has no display.
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY");
        cmd
    }

    /// Starts `exe` (a Linux path to a Windows executable) with `args` in this prefix,
    /// collecting its output.
    pub fn spawn(&self, name: &str, exe: &Path, args: &[String]) -> Proc {
        let mut cmd = self.command(exe);
        cmd.args(args);
        Proc::spawn(name, cmd)
    }

    /// Runs `exe` with `args` to its end (at most `timeout`); returns its status and
    /// output.
    pub fn run(&self, exe: &Path, args: &[String], timeout: Duration) -> (i32, String) {
        let mut p = self.spawn("wine", exe, args);
        let status = p.wait_exit(timeout).unwrap_or_else(|| {
            panic!(
                "{} {args:?} still runs after {timeout:?}:\n{}",
                exe.display(),
                p.output()
            )
        });
        // The output threads may still be draining the pipes.
        std::thread::sleep(Duration::from_millis(200));
        (status.code().unwrap_or(-1), p.output())
    }
}

impl Drop for Wine {
    fn drop(&mut self) {
        // Every process of the prefix (the exes, and Wine's services.exe, explorer.exe,
        // …), then the wineserver itself; nothing outlives the test.
        let _ = Command::new(&self.wineserver)
            .arg("-k")
            .env("WINEPREFIX", self.prefix.path())
            .status();
        let _ = Command::new(&self.wineserver)
            .arg("-w")
            .env("WINEPREFIX", self.prefix.path())
            .status();
    }
}
