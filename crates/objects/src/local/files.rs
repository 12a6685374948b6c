//! Atomic file writes for the local backend.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::AsyncWriteExt;

use crate::{ObjectKey, ObjectsError};

/// A temporary file next to an object's final path, removed unless committed.
#[derive(Debug)]
pub(super) struct TempFile {
    path: PathBuf,
    file: Option<tokio::fs::File>,
}

impl TempFile {
    /// Creates the object's directories and a new, uniquely named temporary file in the
    /// object's directory (same file system, so the rename is atomic). The name starts
    /// with `.`, which no key segment may, so it can never be taken for an object.
    pub(super) async fn create(final_path: &Path) -> io::Result<Self> {
        let dir = final_path.parent().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "object path has no parent")
        })?;
        tokio::fs::create_dir_all(dir).await?;
        let path = dir.join(temp_name());
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await?;
        Ok(Self {
            path,
            file: Some(file),
        })
    }

    pub(super) async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.write_all(data).await,
            None => Err(io::Error::other("temporary file already closed")),
        }
    }

    /// Flushes and fsyncs the data, renames it over `final_path` and fsyncs the
    /// directory so the rename itself survives a crash.
    pub(super) async fn commit(mut self, final_path: &Path) -> io::Result<()> {
        let Some(mut file) = self.file.take() else {
            return Err(io::Error::other("temporary file already closed"));
        };
        // tokio's File finishes writes in the background: flush before syncing.
        file.flush().await?;
        file.sync_all().await?;
        drop(file);
        tokio::fs::rename(&self.path, final_path).await?;
        // Renamed: from here on there is no temporary file to remove.
        self.path = PathBuf::new();
        sync_dir(final_path).await
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            // Also runs when an upload's future is dropped mid-way (the client went
            // away), where no async clean-up can run. Unlinking one file is a single
            // short system call; an error leaves a `.tmp-` file, which is harmless.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(unix)]
async fn sync_dir(final_path: &Path) -> io::Result<()> {
    match final_path.parent() {
        Some(dir) => tokio::fs::File::open(dir).await?.sync_all().await,
        None => Ok(()),
    }
}

#[cfg(not(unix))]
async fn sync_dir(_final_path: &Path) -> io::Result<()> {
    // Windows cannot open a directory as a file to flush it; NTFS journals the rename.
    Ok(())
}

/// `.tmp-<pid>-<random>-<counter>`.
fn temp_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let random = RandomState::new().hash_one(n);
    format!(".tmp-{}-{random:016x}-{n}", std::process::id())
}

/// Whether an error means "no object there" (a missing file, or a path through a file).
pub(super) fn not_there(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// Maps a write's I/O error: a key that collides with a directory or goes through a file
/// is [`ObjectsError::Conflict`].
pub(super) fn map_write_err(key: &ObjectKey) -> impl Fn(io::Error) -> ObjectsError + '_ {
    move |e| match e.kind() {
        io::ErrorKind::NotADirectory
        | io::ErrorKind::IsADirectory
        | io::ErrorKind::AlreadyExists
        | io::ErrorKind::DirectoryNotEmpty => ObjectsError::Conflict(format!(
            "{key}: a file and a directory cannot share a path in the local backend"
        )),
        _ => ObjectsError::Backend(e.to_string()),
    }
}
