//! Windows implementations.
//!
//! Deferred to the Windows service work: an owner-only ACL on the state directory and its
//! key (today the files inherit the directory's ACL, so put the state directory somewhere
//! only the agent's account can read, e.g. under %ProgramData% with restricted access),
//! and reading the registry's MachineGuid (today the agent uses a random id kept in the
//! state directory).

use std::io::{self, Write};
use std::path::Path;

pub(super) fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

pub(super) fn create_private_dir(path: &Path) -> io::Result<()> {
    std::fs::create_dir_all(path)
}

pub(super) fn machine_id() -> Option<String> {
    None
}

pub(super) fn hostname() -> Option<String> {
    std::env::var("COMPUTERNAME")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

pub(super) fn report_disk(_mount: &str, _file_system: &str) -> bool {
    true
}

pub(super) fn is_loopback_interface(name: &str) -> bool {
    name.to_ascii_lowercase().contains("loopback")
}

pub(super) async fn shutdown_signal() {
    use tokio::signal::windows::{ctrl_break, ctrl_shutdown};
    let (Ok(mut brk), Ok(mut shutdown)) = (ctrl_break(), ctrl_shutdown()) else {
        tracing::warn!("cannot listen for Ctrl-Break or shutdown; only Ctrl-C stops the agent");
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = brk.recv() => {}
        _ = shutdown.recv() => {}
    }
}
