//! The profile directory: which server this CLI talks to, the CA it pinned, the session
//! tokens and the owner's signing key. Every file is written whole (temporary file, then
//! rename) and, on unix, readable by the owner only (files 0600, directory 0700). On
//! Windows the default directory is under %APPDATA%, which only the user can read.
//!
//! Layout:
//!
//! ```text
//! config.json     {"server": "https://...", "ca_fingerprint": "AB:..", "email": "..."}
//! ca.pem          the pinned root CA of that server
//! session.json    access + refresh tokens of the logged-in session (secret)
//! session.lock    taken while refreshing, so two `tether` processes never spend one
//!                 refresh token twice (which would revoke the session)
//! owner-key.json  the user's Ed25519 key (the seed's MobilePub) (secret)
//! ```

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tether_proto::UnixMillis;

use crate::error::CliError;

const CONFIG_FILE: &str = "config.json";
const CA_FILE: &str = "ca.pem";
const SESSION_FILE: &str = "session.json";
const SESSION_LOCK: &str = "session.lock";
/// The owner key's file name.
pub const OWNER_KEY_FILE: &str = "owner-key.json";

/// The default profile directory, from the environment `var` gives:
/// `$XDG_CONFIG_HOME/tether` or `$HOME/.config/tether` on unix, `%APPDATA%\tether` on
/// Windows. `None` when none of those is set.
pub fn default_dir(var: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let set = |name: &str| var(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if cfg!(windows) {
        return set("APPDATA").map(|d| d.join("tether"));
    }
    // The XDG spec says a relative XDG_CONFIG_HOME is invalid and must be ignored.
    set("XDG_CONFIG_HOME")
        .filter(|d| d.is_absolute())
        .map(|d| d.join("tether"))
        .or_else(|| set("HOME").map(|h| h.join(".config").join("tether")))
}

/// What the profile remembers about the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileConfig {
    /// The server's base URL.
    pub server: String,
    /// SHA-256 fingerprint of the pinned CA (as `ca.pem` holds it), for display.
    pub ca_fingerprint: String,
    /// The last account used, the default for `tether login`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// A logged-in session.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The server the tokens are for.
    pub server: String,
    /// The account's email.
    pub email: String,
    /// The account's id.
    pub user_id: String,
    /// The session (refresh family) id.
    pub session_id: String,
    /// The current access token (a short-lived JWT).
    pub access_token: String,
    /// When the access token expires, by the local clock at issuance.
    pub access_expires_at: UnixMillis,
    /// The single-use refresh token; rotated on every refresh.
    pub refresh_token: String,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("server", &self.server)
            .field("email", &self.email)
            .field("user_id", &self.user_id)
            .field("session_id", &self.session_id)
            .field("access_token", &"<redacted>")
            .field("access_expires_at", &self.access_expires_at)
            .field("refresh_token", &"<redacted>")
            .finish()
    }
}

/// A profile directory.
#[derive(Debug, Clone)]
pub struct Profile {
    dir: PathBuf,
}

/// Holds the session lock until dropped (closing the file releases it).
#[derive(Debug)]
pub struct SessionLock {
    _file: File,
}

impl Profile {
    /// The profile in `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of a file in the profile.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The saved server settings, if any.
    pub fn config(&self) -> Result<Option<ProfileConfig>, CliError> {
        self.read_json(CONFIG_FILE)
    }

    /// Saves the server settings.
    pub fn save_config(&self, c: &ProfileConfig) -> Result<(), CliError> {
        self.write_json(CONFIG_FILE, c)
    }

    /// The pinned CA (PEM), if any.
    pub fn ca_pem(&self) -> Result<Option<String>, CliError> {
        self.read_text(CA_FILE)
    }

    /// Pins a CA (PEM).
    pub fn save_ca_pem(&self, pem: &str) -> Result<(), CliError> {
        self.write_private(CA_FILE, pem.as_bytes())
    }

    /// The stored session, if any.
    pub fn session(&self) -> Result<Option<Session>, CliError> {
        self.read_json(SESSION_FILE)
    }

    /// Stores a session (replacing any other).
    pub fn save_session(&self, s: &Session) -> Result<(), CliError> {
        self.write_json(SESSION_FILE, s)
    }

    /// Forgets the session. No error if there was none.
    pub fn clear_session(&self) -> Result<(), CliError> {
        let p = self.path(SESSION_FILE);
        match fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(CliError::io(format!("removing {}", p.display()))(e))
            }
            _ => Ok(()),
        }
    }

    /// Takes the session lock, waiting for another `tether` process that holds it. This
    /// blocks: call it off the async workers.
    pub fn lock_session(&self) -> Result<SessionLock, CliError> {
        self.ensure_dir()?;
        let p = self.path(SESSION_LOCK);
        let file = private_options()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&p)
            .map_err(CliError::io(format!("opening {}", p.display())))?;
        file.lock()
            .map_err(CliError::io(format!("locking {}", p.display())))?;
        Ok(SessionLock { _file: file })
    }

    /// Reads a JSON file of the profile; `None` if it does not exist.
    pub fn read_json<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, CliError> {
        let Some(text) = self.read_text(name)? else {
            return Ok(None);
        };
        serde_json::from_str(&text).map(Some).map_err(|e| {
            CliError::usage(format!(
                "{} is damaged ({e}); remove it or use another --profile-dir",
                self.path(name).display()
            ))
        })
    }

    /// Writes a JSON file of the profile, owner-only.
    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<(), CliError> {
        let mut text = serde_json::to_string_pretty(value)
            .map_err(|e| CliError::usage(format!("encoding {name}: {e}")))?;
        text.push('\n');
        self.write_private(name, text.as_bytes())
    }

    fn read_text(&self, name: &str) -> Result<Option<String>, CliError> {
        let p = self.path(name);
        match fs::read_to_string(&p) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CliError::io(format!("reading {}", p.display()))(e)),
        }
    }

    fn ensure_dir(&self) -> Result<(), CliError> {
        let mut b = fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            b.mode(0o700);
        }
        b.create(&self.dir)
            .map_err(CliError::io(format!("creating {}", self.dir.display())))
    }

    /// Writes `name` whole: a new owner-only file beside it, synced, then renamed over
    /// it, so a crash leaves the old or the new contents and never a readable moment.
    pub fn write_private(&self, name: &str, bytes: &[u8]) -> Result<(), CliError> {
        self.ensure_dir()?;
        let target = self.path(name);
        let tmp = self.path(&format!(".{name}.{}.tmp", std::process::id()));
        // A leftover from a crashed run could have other permissions: never reuse it.
        let _ = fs::remove_file(&tmp);
        let result = (|| {
            let mut f = private_options().write(true).create_new(true).open(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            drop(f);
            fs::rename(&tmp, &target)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map_err(CliError::io(format!("writing {}", target.display())))
    }
}

/// Open options that create files readable by the owner only.
fn private_options() -> OpenOptions {
    #[allow(unused_mut)] // `mut` is needed on unix only
    let mut o = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o
}

#[cfg(test)]
mod tests;
