//! Who may use a service's state directory. `install` replaces the directory's inherited
//! ACL (from `%ProgramData%`, where every user may read and create files) with explicit
//! grants: SYSTEM and Administrators full control, plus the service accounts named here.
//! Applied with the OS's own `icacls`, run without a shell; the arguments are built here,
//! purely, so they are tested on every platform.

use std::ffi::OsString;
use std::path::Path;

use crate::ServiceError;
use crate::sid::{ADMINISTRATORS, LOCAL_SYSTEM};

/// What an account may do in the directory (and, inherited, in everything under it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rights {
    /// Everything, including changing the ACL (`F`).
    Full,
    /// Read, write, create and delete (`M`).
    Modify,
    /// Read and list (`RX`).
    Read,
}

impl Rights {
    fn icacls(self) -> &'static str {
        match self {
            Rights::Full => "F",
            Rights::Modify => "M",
            Rights::Read => "RX",
        }
    }
}

/// One grant: an account (by SID) and its rights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// `S-1-…`.
    pub sid: String,
    /// What it may do.
    pub rights: Rights,
}

/// `icacls <dir> /inheritance:r /grant:r *S-1-5-18:(OI)(CI)F *S-1-5-32-544:(OI)(CI)F
/// *<sid>:(OI)(CI)<rights>…`: inheritance from the parent removed, the grants replacing
/// any earlier ones for the same accounts, inherited by files and subdirectories.
pub fn icacls_args(dir: &Path, extra: &[Grant]) -> Vec<OsString> {
    let mut a = vec![
        dir.as_os_str().to_owned(),
        "/inheritance:r".into(),
        "/grant:r".into(),
    ];
    let base = [
        Grant {
            sid: LOCAL_SYSTEM.to_owned(),
            rights: Rights::Full,
        },
        Grant {
            sid: ADMINISTRATORS.to_owned(),
            rights: Rights::Full,
        },
    ];
    for g in base.iter().chain(extra) {
        a.push(format!("*{}:(OI)(CI){}", g.sid, g.rights.icacls()).into());
    }
    a
}

/// Creates `dir` if needed and applies [`icacls_args`] with the OS's `icacls`.
pub fn restrict_dir(dir: &Path, extra: &[Grant]) -> Result<(), ServiceError> {
    let setup = |reason: String| ServiceError::Setup {
        what: format!("restricting {}", dir.display()),
        reason,
    };
    std::fs::create_dir_all(dir).map_err(|e| setup(e.to_string()))?;
    let out = std::process::Command::new("icacls")
        .args(icacls_args(dir, extra))
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| setup(format!("cannot run icacls: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        let text = String::from_utf8_lossy(&out.stderr);
        let text = if text.trim().is_empty() {
            String::from_utf8_lossy(&out.stdout)
        } else {
            text
        };
        Err(setup(format!(
            "icacls failed ({}): {}",
            out.status,
            text.trim()
        )))
    }
}
