//! What differs between Windows (the primary platform) and Linux: private files, the
//! machine's id and name, and the signals that stop the agent. No unsafe code here: the
//! Windows pieces that need Win32 calls (ACLs, the registry's MachineGuid) come with the
//! Windows service work.

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

/// Resolves when the user or the service manager asks the agent to stop.
pub async fn shutdown_signal() {
    imp::shutdown_signal().await;
}
