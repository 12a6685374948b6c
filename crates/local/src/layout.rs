//! Where everything lives under the data dir. The server's files are its own (store, bus,
//! keys, objects, as `tether-server --data-dir` lays them out); the local PC's are under
//! `local-pc/`.

use std::path::{Path, PathBuf};

use crate::error::LocalError;

/// The longest Unix socket path the kernel takes (`sun_path` is 108 bytes on Linux, with
/// the terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

/// The paths of one local system.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The server's data dir (absolute).
    pub data_dir: PathBuf,
    /// Where the server writes `{"addr","public_url","ca_pem"}` once it listens.
    pub ready_file: PathBuf,
    /// The local PC's directory.
    pub pc_dir: PathBuf,
    /// The server's root CA, as the agent is given it (`--ca-file`).
    pub ca_file: PathBuf,
    /// The agent's state dir.
    pub agent_state: PathBuf,
    /// The agent's public key, which the helper trusts (`agent.pub` in its state dir).
    pub agent_pub: PathBuf,
    /// The helper's state dir.
    pub helper_state: PathBuf,
    /// The helper's public key, which the agent trusts (`helper.pub` in its state dir).
    pub helper_pub: PathBuf,
    /// The helper's socket.
    pub helper_socket: PathBuf,
    /// The recording executor's record: one JSON line per command carried out.
    pub record: PathBuf,
}

impl Layout {
    /// The layout under `data_dir` (made absolute against the current directory).
    pub fn new(data_dir: &Path) -> Result<Self, LocalError> {
        let data_dir = std::path::absolute(data_dir).map_err(LocalError::io(data_dir))?;
        let pc_dir = data_dir.join("local-pc");
        let agent_state = pc_dir.join("agent");
        let helper_state = pc_dir.join("helper");
        Ok(Self {
            ready_file: data_dir.join("local-ready.json"),
            ca_file: pc_dir.join("ca.pem"),
            agent_pub: agent_state.join(tether_agent::state::files::AGENT_PUB),
            helper_pub: helper_state.join(tether_helper::state::files::HELPER_PUB),
            helper_socket: pc_dir.join("helper.sock"),
            record: pc_dir.join("recorded.jsonl"),
            agent_state,
            helper_state,
            pc_dir,
            data_dir,
        })
    }

    /// Checks what the local PC needs of the paths: a socket path the kernel accepts.
    pub fn check_for_pc(&self) -> Result<(), LocalError> {
        let len = self.helper_socket.as_os_str().len();
        if len > MAX_SOCKET_PATH {
            return Err(LocalError::Usage(format!(
                "the helper's socket path {} is {len} bytes long, more than the {MAX_SOCKET_PATH} \
                 a Unix socket may have: choose a shorter --data-dir",
                self.helper_socket.display()
            )));
        }
        Ok(())
    }

    /// Creates the directories tether-local itself writes in.
    pub fn create(&self, with_pc: bool) -> Result<(), LocalError> {
        let dir = if with_pc {
            &self.pc_dir
        } else {
            &self.data_dir
        };
        std::fs::create_dir_all(dir).map_err(LocalError::io(dir))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn everything_lives_under_the_data_dir() {
        let l = Layout::new(Path::new("/srv/tether")).unwrap();
        assert_eq!(
            l.agent_pub,
            Path::new("/srv/tether/local-pc/agent/agent.pub")
        );
        assert_eq!(
            l.helper_pub,
            Path::new("/srv/tether/local-pc/helper/helper.pub")
        );
        assert_eq!(l.record, Path::new("/srv/tether/local-pc/recorded.jsonl"));
        assert!(l.check_for_pc().is_ok());
    }

    #[test]
    fn a_relative_data_dir_is_made_absolute() {
        let l = Layout::new(Path::new("tether-data")).unwrap();
        assert!(l.data_dir.is_absolute());
        assert!(l.data_dir.ends_with("tether-data"));
    }

    #[test]
    fn a_socket_path_too_long_for_the_kernel_is_refused_up_front() {
        let deep = format!("/{}", "d".repeat(120));
        let err = Layout::new(Path::new(&deep))
            .unwrap()
            .check_for_pc()
            .unwrap_err();
        assert!(err.to_string().contains("--data-dir"), "{err}");
        assert_eq!(err.exit_code(), 2);
    }
}
