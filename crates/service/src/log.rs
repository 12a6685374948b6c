//! Where a service's diagnostics go when it has no console: `<logs dir>\<name>.log`,
//! appended to, and moved to `<name>.log.1` (replacing the previous one) when the next
//! write would take it past its size cap, so a service that logs forever uses at most
//! twice the cap. The logs directory (`%ProgramData%\Tether\logs` for the services) is
//! kept when Tether is uninstalled.
//!
//! [`init`] sets up the agent's and the helper's tracing: to stderr at a prompt, to the
//! log file under the service control manager. Platform-independent and tested everywhere.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The default cap of one log file: 10 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 10 * 1024 * 1024;

/// The services' logs directory: `logs` beside the state directory, so
/// `%ProgramData%\Tether\logs` for the default `%ProgramData%\Tether\agent` and
/// `…\helper`. Derived from the state dir in the service's own command line rather than
/// from `%ProgramData%`, which a service's environment may set differently (Wine does).
pub fn logs_dir(state_dir: &Path) -> PathBuf {
    state_dir.parent().unwrap_or(state_dir).join("logs")
}

/// Creates the services' logs directory (`%ProgramData%\Tether\logs`) if needed, with
/// its inherited ACL replaced: SYSTEM and Administrators full control (the helper runs as
/// LocalSystem), the agent's virtual account may write its own log there, other users
/// may not read it. Both services' `install` call it; the grants do not depend on order.
pub fn prepare_dir(dir: &Path) -> Result<(), crate::ServiceError> {
    crate::acl::restrict_dir(
        dir,
        &[crate::acl::Grant {
            sid: crate::sid::service_sid(crate::AGENT_SERVICE),
            rights: crate::acl::Rights::Modify,
        }],
    )
}

/// Sends the process's diagnostics, filtered by `TETHER_LOG` (else `default_filter`), to
/// `file` (`(dir, name)`: [`RotatingLog`] `dir/<name>.log`) when given, else to stderr.
/// A log file that cannot be opened is reported on stderr and stderr is used instead:
/// a service must not fail to start over its log.
pub fn init(default_filter: &str, file: Option<(PathBuf, &str)>) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TETHER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if let Some((dir, name)) = file {
        match RotatingLog::open(&dir, name, DEFAULT_MAX_BYTES) {
            Ok(log) => {
                let _ = builder
                    .with_ansi(false)
                    .with_writer(std::sync::Mutex::new(log))
                    .try_init();
                return;
            }
            Err(e) => eprintln!(
                "warning: cannot open the log file in {}: {e}; logging to stderr",
                dir.display()
            ),
        }
    }
    let _ = builder.with_writer(io::stderr).try_init();
}

/// An append-only log file that rotates once at `max_bytes`.
#[derive(Debug)]
pub struct RotatingLog {
    path: PathBuf,
    file: File,
    len: u64,
    max_bytes: u64,
}

impl RotatingLog {
    /// Opens (creating `dir` and the file if needed) `dir/<name>.log` for appending.
    pub fn open(dir: &Path, name: &str, max_bytes: u64) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{name}.log"));
        let file = open_append(&path)?;
        let len = file.metadata()?.len();
        Ok(Self {
            path,
            file,
            len,
            max_bytes: max_bytes.max(1),
        })
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The previous file, `<name>.log.1`.
    pub fn rotated_path(&self) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(".1");
        PathBuf::from(p)
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        let rotated = self.rotated_path();
        // Windows' rename does not replace an existing file.
        match std::fs::remove_file(&rotated) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::fs::rename(&self.path, &rotated)?;
        self.file = open_append(&self.path)?;
        self.len = 0;
        Ok(())
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl Write for RotatingLog {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let add = u64::try_from(buf.len()).unwrap_or(u64::MAX);
        // A write is one formatted event: it never splits across the two files. One
        // that alone exceeds the cap still goes into a fresh file.
        if self.len > 0 && self.len.saturating_add(add) > self.max_bytes {
            self.rotate()?;
        }
        let n = self.file.write(buf)?;
        self.len = self
            .len
            .saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap()
    }

    #[test]
    fn appends_across_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = RotatingLog::open(dir.path(), "tether-agent", 1000).unwrap();
        log.write_all(b"one\n").unwrap();
        drop(log);
        let mut log = RotatingLog::open(dir.path(), "tether-agent", 1000).unwrap();
        log.write_all(b"two\n").unwrap();
        assert_eq!(log.path(), dir.path().join("tether-agent.log"));
        assert_eq!(read(log.path()), "one\ntwo\n");
    }

    #[test]
    fn rotates_once_at_the_cap_and_keeps_one_previous_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = RotatingLog::open(dir.path(), "h", 10).unwrap();
        log.write_all(b"aaaaaa\n").unwrap(); // 7
        log.write_all(b"bbbbbb\n").unwrap(); // 14 > 10: rotate first
        assert_eq!(read(log.path()), "bbbbbb\n");
        assert_eq!(read(&log.rotated_path()), "aaaaaa\n");
        log.write_all(b"cccccc\n").unwrap(); // rotate again: .1 replaced
        assert_eq!(read(log.path()), "cccccc\n");
        assert_eq!(read(&log.rotated_path()), "bbbbbb\n");
        // Larger than the cap on its own: still written whole, in its own file.
        log.write_all(b"dddddddddddddddd\n").unwrap();
        assert_eq!(read(log.path()), "dddddddddddddddd\n");
        let files = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(files, 2);
    }

    #[test]
    fn the_services_log_beside_their_state_dirs() {
        let pd = crate::program_data_dir(Some("PD".into()), "agent");
        assert_eq!(
            logs_dir(&pd),
            crate::program_data_dir(Some("PD".into()), "logs")
        );
        assert_eq!(logs_dir(Path::new("state")), Path::new("logs"));
    }
}
