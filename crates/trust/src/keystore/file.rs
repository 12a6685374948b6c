//! The default keystore: a directory on disk.
//!
//! Layout: `<dir>/kek.bin` holds the 32 raw bytes of the key-encryption key, created with
//! mode 0600 on Unix (on Windows the file inherits the directory's ACL: put the directory
//! somewhere only the service account can read). Every blob is the file `<dir>/<name>`,
//! written to a temporary file in the same directory, flushed, then renamed over the old
//! one, so a crash leaves either the old or the new blob.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::{Keystore, check_name};
use crate::error::TrustError;
use crate::random;
use crate::seal::{self, KEY_LEN, Kek};

/// The KEK's file name inside the keystore directory. No blob may take this name.
pub const KEK_FILE: &str = "kek.bin";

/// A directory holding a KEK file and one file per blob.
#[derive(Debug)]
pub struct FileKeystore {
    dir: PathBuf,
    kek: Kek,
}

impl FileKeystore {
    /// Opens the keystore in `dir`, creating the directory (mode 0700 on Unix) and a fresh
    /// random KEK if there is none yet.
    pub fn open_or_create(dir: impl AsRef<Path>) -> Result<Self, TrustError> {
        let dir = dir.as_ref().to_path_buf();
        create_dir(&dir)?;
        let kek_path = dir.join(KEK_FILE);
        let kek = Kek::generate()?;
        // create_new: if another process made the KEK first, theirs is kept and used.
        match write_new_private(&kek_path, kek.expose_secret()) {
            Ok(()) => sync_dir(&dir)?,
            Err(TrustError::Storage { source, .. })
                if source.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        Self::open(dir)
    }

    /// Opens an existing keystore; its KEK file must exist and be exactly 32 bytes.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, TrustError> {
        let dir = dir.as_ref().to_path_buf();
        let kek = read_kek(&dir.join(KEK_FILE))?;
        Ok(Self { dir, kek })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Keystore for FileKeystore {
    fn seal(&self, label: &str, plaintext: &[u8]) -> Result<Vec<u8>, TrustError> {
        seal::seal(&self.kek, label, plaintext)
    }

    fn open(&self, label: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, TrustError> {
        seal::open(&self.kek, label, sealed)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> Result<(), TrustError> {
        check_name(name)?;
        let suffix = hex::encode(random::array::<8>()?);
        // A leading dot keeps temporaries out of the blob namespace (names cannot start
        // with one).
        let tmp = self.dir.join(format!(".{name}.tmp-{suffix}"));
        let target = self.dir.join(name);
        write_new_private(&tmp, bytes)?;
        if let Err(e) = fs::rename(&tmp, &target) {
            let _ = fs::remove_file(&tmp);
            return Err(TrustError::storage("rename", name, e));
        }
        sync_dir(&self.dir)
    }

    fn read(&self, name: &str) -> Result<Option<Vec<u8>>, TrustError> {
        check_name(name)?;
        match fs::read(self.dir.join(name)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(TrustError::storage("read", name, e)),
        }
    }
}

const KEY_LEN_PLUS_ONE: u64 = KEY_LEN as u64 + 1;

fn read_kek(path: &Path) -> Result<Kek, TrustError> {
    let shown = path.display().to_string();
    let mut f = File::open(path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            TrustError::KekInvalid(format!("{shown} does not exist"))
        } else {
            TrustError::storage("open", shown.clone(), e)
        }
    })?;
    let len = f
        .metadata()
        .map_err(|e| TrustError::storage("stat", shown.clone(), e))?
        .len();
    if len != KEY_LEN as u64 {
        return Err(TrustError::KekInvalid(format!(
            "{shown} is {len} bytes; a key-encryption key is exactly {KEY_LEN} bytes \
             (refusing to use it; restore the right file rather than replacing it, or every \
             sealed blob becomes unreadable)"
        )));
    }
    let mut buf = Zeroizing::new(Vec::with_capacity(KEY_LEN));
    // Read one byte more than expected, so a file that grew after the stat is noticed too.
    Read::by_ref(&mut f)
        .take(KEY_LEN_PLUS_ONE)
        .read_to_end(&mut buf)
        .map_err(|e| TrustError::storage("read", shown.clone(), e))?;
    Kek::from_slice(&buf)
        .map_err(|_| TrustError::KekInvalid(format!("{shown} changed length while being read")))
}

fn create_dir(dir: &Path) -> Result<(), TrustError> {
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
        .map_err(|e| TrustError::storage("create directory", dir.display().to_string(), e))
}

/// Creates `path` (which must not exist) readable only by its owner on Unix, writes
/// `bytes` and flushes them to disk.
fn write_new_private(path: &Path, bytes: &[u8]) -> Result<(), TrustError> {
    let shown = || path.display().to_string();
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .map_err(|e| TrustError::storage("create", shown(), e))?;
    let written = f
        .write_all(bytes)
        .map_err(|e| TrustError::storage("write", shown(), e))
        .and_then(|()| {
            f.sync_all()
                .map_err(|e| TrustError::storage("sync", shown(), e))
        });
    if written.is_err() {
        // The file is ours (create_new succeeded) and incomplete: never leave it behind,
        // least of all as a short KEK.
        drop(f);
        let _ = fs::remove_file(path);
    }
    written
}

/// Makes a rename or create in `dir` durable (Unix; Windows has no directory handle to
/// flush this way and NTFS journals the metadata).
fn sync_dir(dir: &Path) -> Result<(), TrustError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| TrustError::storage("sync directory", dir.display().to_string(), e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}
