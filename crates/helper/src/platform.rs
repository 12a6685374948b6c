//! File modes, ownership, durable writes and stop signals: what differs between Unix and
//! Windows. No unsafe code here: `std` offers chown and modes on Unix, and tokio offers the
//! signals. On Windows modes and owners are not applied yet (files inherit the
//! directory's ACL; hardening comes with the Windows service). The Win32 calls the named
//! pipe needs are in [`windows`], the crate's one module allowed `unsafe`.

#[cfg(windows)]
pub(crate) mod windows;

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// Writes `bytes` to `path` so that a crash leaves either the old file or the new one:
/// a temporary file in the same directory (created with `mode`), fsync, rename, fsync of
/// the directory.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    {
        let mut f = create_with_mode(&tmp, mode, true)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    sync_parent(path)
}

/// Opens a file for appending, creating it with `mode` if it does not exist.
pub(crate) fn open_append(path: &Path, mode: u32) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.create(true).append(true).read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    o.open(path)
}

/// Creates (or truncates) a file with `mode`, tightening the mode of an existing one.
pub(crate) fn create_with_mode(path: &Path, mode: u32, truncate: bool) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.write(true).create(true).truncate(truncate);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(mode);
    }
    let f = o.open(path)?;
    set_mode(path, mode)?;
    Ok(f)
}

/// Creates a directory (and its parents) with `mode`; an existing one keeps its mode.
pub(crate) fn create_dir(path: &Path, mode: u32) -> io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    b.create(path)
}

/// Sets a file's permission bits (Unix only).
pub(crate) fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
    }
    #[cfg(not(unix))]
    {
        let _ = (path, mode);
        Ok(())
    }
}

/// Makes a rename or a new file in `path`'s directory durable.
pub(crate) fn sync_parent(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        File::open(parent)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}

/// The owner (uid, gid) of a file, where the platform has them.
pub(crate) fn owner_of(path: &Path) -> io::Result<Option<(u32, u32)>> {
    let meta = std::fs::metadata(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Ok(Some((meta.uid(), meta.gid())))
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        Ok(None)
    }
}

/// Hands a file to `owner` if it is not theirs already (the helper runs as root, the
/// agent as its own user, and the agent must read artifacts and the socket).
pub(crate) fn hand_to(path: &Path, owner: Option<(u32, u32)>) -> io::Result<()> {
    #[cfg(unix)]
    if let Some((uid, gid)) = owner
        && owner_of(path)? != Some((uid, gid))
    {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
    }
    #[cfg(not(unix))]
    let _ = (path, owner);
    Ok(())
}

/// Resolves when the user or the service manager asks the helper to stop.
#[cfg_attr(
    not(unix),
    allow(
        clippy::manual_async_fn,
        reason = "one body for both: on Unix the SIGTERM handler is installed before the future"
    )
)]
pub(crate) fn shutdown_signal() -> impl Future<Output = ()> {
    // The SIGTERM handler is installed here, when the future is made, not when it is
    // first polled: a caller that makes it before announcing it is ready cannot be
    // killed by a SIGTERM that arrives in between.
    #[cfg(unix)]
    let term = {
        use tokio::signal::unix::{SignalKind, signal};
        signal(SignalKind::terminate())
            .map_err(|e| {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the helper");
            })
            .ok()
    };
    async move {
        #[cfg(unix)]
        {
            match term {
                Some(mut term) => {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                    }
                }
                None => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
