//! Who is calling: the kernel's credentials of the socket's peer. The uid must be one the
//! helper was told to serve, and when the agent's executable is configured, the peer
//! process must be running exactly that file (`/proc/<pid>/exe`). Everything runs as one
//! user in tests, so the executable is what tells the agent from any other process there.

use std::path::PathBuf;

use tokio::net::UnixStream;

/// The peer check's configuration.
#[derive(Debug, Clone)]
pub(crate) struct PeerPolicy {
    pub(crate) allow_uids: Vec<u32>,
    /// Canonicalized.
    pub(crate) agent_exe: Option<PathBuf>,
}

/// A caller that passed the check.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer {
    pub(crate) uid: u32,
    pub(crate) pid: Option<i32>,
}

impl PeerPolicy {
    /// Checks the process at the other end of `stream`; `Err` says why it is refused.
    pub(crate) async fn check(&self, stream: &UnixStream) -> Result<Peer, String> {
        let cred = stream
            .peer_cred()
            .map_err(|e| format!("cannot read the caller's credentials: {e}"))?;
        let peer = Peer {
            uid: cred.uid(),
            pid: cred.pid(),
        };
        if !self.allow_uids.contains(&peer.uid) {
            return Err(format!("uid {} is not allowed", peer.uid));
        }
        if let Some(exe) = &self.agent_exe {
            let pid = peer
                .pid
                .ok_or("the kernel did not report the caller's pid")?;
            let link = tokio::fs::read_link(format!("/proc/{pid}/exe"))
                .await
                .map_err(|e| format!("cannot read the executable of process {pid}: {e}"))?;
            // A replaced binary reads as "<path> (deleted)" and is refused too: the
            // agent must be restarted after an update.
            if &link != exe {
                return Err(format!(
                    "process {pid} runs {}, not the agent ({})",
                    link.display(),
                    exe.display()
                ));
            }
        }
        Ok(peer)
    }
}
