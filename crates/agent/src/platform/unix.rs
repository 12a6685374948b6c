//! Unix (Linux) implementations.

use std::fs::{DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

pub(super) fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // `mode` only applies when the file is created; tighten an existing one too.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Unix keeps secrets in owner-only files as they are: the file mode is the protection.
pub(super) fn seal_secret(_purpose: &str, plain: &[u8]) -> io::Result<Vec<u8>> {
    Ok(plain.to_vec())
}

pub(super) fn open_secret(
    _purpose: &str,
    sealed: &[u8],
) -> io::Result<zeroize::Zeroizing<Vec<u8>>> {
    Ok(zeroize::Zeroizing::new(sealed.to_vec()))
}

pub(super) fn create_private_dir(path: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(path)
}

pub(super) fn machine_id() -> Option<String> {
    ["/etc/machine-id", "/var/lib/dbus/machine-id"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_owned())
        .find(|s| !s.is_empty())
}

/// Linux: sysinfo reads /proc/stat itself.
pub(super) fn cpu_times() -> Option<super::CpuTimes> {
    None
}

pub(super) fn hostname() -> Option<String> {
    let from_file = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    from_file.or_else(|| {
        let out = std::process::Command::new("uname")
            .arg("-n")
            .output()
            .ok()?;
        let name = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        (out.status.success() && !name.is_empty()).then_some(name)
    })
}

pub(super) fn report_disk(_mount: &str, file_system: &str) -> bool {
    !file_system.eq_ignore_ascii_case("squashfs")
}

pub(super) fn is_loopback_interface(name: &str) -> bool {
    name == "lo"
}

pub(super) async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the agent");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
