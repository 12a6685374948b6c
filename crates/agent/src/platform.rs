//! What differs between Windows (the primary platform) and Linux: private files and
//! sealed secrets, the machine's id and name, and the signals that stop the agent. No
//! unsafe code here: the Win32 calls (DPAPI, the registry's MachineGuid) live in
//! `platform/windows.rs`, the only module of the crate that may use it.

use std::io;
use std::path::Path;

use tether_proto::messages::discovery::OsFamily;

#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as imp;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as imp;

/// The OS family this build runs on, as the protocol names it.
pub fn os_family() -> OsFamily {
    if cfg!(windows) {
        OsFamily::Windows
    } else {
        OsFamily::Linux
    }
}

/// Creates (or truncates) `path` so that only the current user can read it, and writes
/// `bytes`. On Unix the file is created with mode 0600. On Windows it inherits the
/// directory's ACL for now (hardening comes with the Windows service).
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    imp::write_private(path, bytes)
}

/// Seals a secret (the agent key, the queue key) for storage in the state directory under
/// `purpose` (its file name). On Unix the bytes are stored as they are, in an owner-only
/// file; on Windows they are sealed with DPAPI in machine scope, bound to `purpose`.
pub fn seal_secret(purpose: &str, plain: &[u8]) -> io::Result<Vec<u8>> {
    imp::seal_secret(purpose, plain)
}

/// Opens what [`seal_secret`] stored under the same `purpose`.
pub fn open_secret(purpose: &str, sealed: &[u8]) -> io::Result<zeroize::Zeroizing<Vec<u8>>> {
    imp::open_secret(purpose, sealed)
}

/// Creates a directory (and its parents) that only the current user can enter, where the
/// platform allows it.
pub fn create_private_dir(path: &Path) -> io::Result<()> {
    imp::create_private_dir(path)
}

/// A stable id of this machine provided by the OS, if there is one we can read.
pub fn machine_id() -> Option<String> {
    imp::machine_id()
}

/// The machine's name, if the OS tells it.
pub fn hostname() -> Option<String> {
    imp::hostname()
}

/// Whether a disk belongs in telemetry. Read-only images that are always full (snap's
/// squashfs loops on Linux) would only add noise.
pub fn report_disk(mount: &str, file_system: &str) -> bool {
    imp::report_disk(mount, file_system)
}

/// Whether a network interface is the loopback, whose traffic never leaves the machine
/// and is left out of the network counters.
pub fn is_loopback_interface(name: &str) -> bool {
    imp::is_loopback_interface(name)
}

/// System-wide CPU time counters: idle and total (idle + busy), in the OS's ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTimes {
    /// Time all CPUs spent idle.
    pub idle: u64,
    /// Time all CPUs spent, idle or busy.
    pub total: u64,
}

impl CpuTimes {
    /// The busy share, in percent, of the time between `before` and `self`.
    pub fn busy_percent_since(self, before: CpuTimes) -> f32 {
        let total = self.total.saturating_sub(before.total);
        let idle = self.idle.saturating_sub(before.idle).min(total);
        if total == 0 {
            return 0.0;
        }
        // Ticks between two samples fit an f64 exactly enough for a percentage.
        #[allow(clippy::cast_precision_loss, reason = "a percentage of tick deltas")]
        let pct = (total.saturating_sub(idle)) as f64 * 100.0 / total as f64;
        #[allow(clippy::cast_possible_truncation, reason = "0..=100 fits an f32")]
        let pct = pct as f32;
        pct
    }
}

/// The system's CPU time counters where telemetry reads CPU use from them (Windows:
/// `GetSystemTimes`); `None` where sysinfo's own CPU use is used (Linux).
pub fn cpu_times() -> Option<CpuTimes> {
    imp::cpu_times()
}

/// Resolves when the user or the service manager asks the agent to stop.
pub async fn shutdown_signal() {
    imp::shutdown_signal().await;
}
