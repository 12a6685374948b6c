//! The Unix transport: a socket file, mode 0660, owned by the agent's user; the caller is
//! who the kernel's peer credentials say it is ([`peer`](super::peer)).

use std::io;
use std::path::{Path, PathBuf};

use tokio::net::{UnixListener, UnixStream};

use super::HelperConfig;
pub(super) use super::peer::PeerPolicy;
use crate::error::HelperError;
use crate::platform;

/// What the transport needs of the configuration before anything is opened.
pub(super) fn check_config(config: &HelperConfig) -> Result<(), HelperError> {
    if config.allow_uids.is_empty() {
        return Err(HelperError::Config("no uid is allowed to connect".into()));
    }
    Ok(())
}

/// The listening socket.
#[derive(Debug)]
pub(super) struct Listener {
    listener: UnixListener,
    path: PathBuf,
}

impl Listener {
    /// Binds the socket and says who may call (`agent_exe` is canonicalized).
    pub(super) fn bind(
        config: &HelperConfig,
        agent_exe: Option<PathBuf>,
    ) -> Result<(Self, PeerPolicy), HelperError> {
        let listener = listen(&config.socket, config.socket_owner)?;
        let peers = PeerPolicy {
            allow_uids: config.allow_uids.clone(),
            agent_exe,
        };
        Ok((
            Self {
                listener,
                path: config.socket.clone(),
            },
            peers,
        ))
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn endpoint(&self) -> String {
        self.path.display().to_string()
    }

    /// The next connection.
    pub(super) async fn accept(&mut self) -> io::Result<UnixStream> {
        self.listener.accept().await.map(|(stream, _)| stream)
    }

    /// Stops listening and removes the socket file.
    pub(super) fn close(self) {
        drop(self.listener);
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::debug!(error = %e, "removing the socket");
        }
    }
}

/// Binds the socket: a stale socket file is removed (anything else at the path is an
/// error), the mode is 0660 and the owner the agent's user.
fn listen(path: &Path, owner: Option<(u32, u32)>) -> Result<UnixListener, HelperError> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            std::fs::remove_file(path).map_err(|e| HelperError::io(path, e))?;
        }
        Ok(_) => {
            return Err(HelperError::Config(format!(
                "{} exists and is not a socket; not removing it",
                path.display()
            )));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(HelperError::io(path, e)),
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        platform::create_dir(parent, 0o755).map_err(|e| HelperError::io(parent, e))?;
    }
    let listener = UnixListener::bind(path).map_err(|e| HelperError::io(path, e))?;
    // Until the mode is set the umask's applies; the peer check guards that moment.
    platform::set_mode(path, 0o660).map_err(|e| HelperError::io(path, e))?;
    platform::hand_to(path, owner).map_err(|e| HelperError::io(path, e))?;
    Ok(listener)
}
