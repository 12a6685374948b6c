//! What the local PC's agent is at, read from its state dir (the files `tether-agent`
//! keeps there: `pairing.json` while it waits for its owner, `device.json` once paired),
//! and what of it is new enough to tell the user.

use std::path::Path;

use tether_agent::state::{DeviceRecord, PairingTicket, ServerRecord, StateDir};
use tether_proto::UnixMillis;

use crate::error::LocalError;

/// The agent's state, as far as the user cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PcView {
    /// Not known yet: starting, talking to the server, or a pairing request expired.
    Starting,
    /// Waiting for its owner to confirm this pairing request.
    Pairing(PairingTicket),
    /// Paired.
    Paired(DeviceRecord),
}

impl PcView {
    /// Reads the agent's state dir at `now`.
    pub fn read(agent_state: &Path, now: UnixMillis) -> Self {
        let Ok(state) = StateDir::existing(agent_state) else {
            return PcView::Starting;
        };
        if let Ok(Some(device)) = state.device() {
            return PcView::Paired(device.record);
        }
        match state.pairing_ticket() {
            Ok(Some(t)) if t.expires_at > now.0 => PcView::Pairing(t),
            _ => PcView::Starting,
        }
    }
}

/// What to tell the user about the PC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A pairing request to show (QR code and link).
    Pairing(PairingTicket),
    /// The PC is paired (now, or from an earlier run).
    Paired(DeviceRecord),
}

/// Remembers what was shown, so each change is told once.
#[derive(Debug, Default)]
pub struct Watch {
    shown_url: Option<String>,
    shown_paired: bool,
}

impl Watch {
    /// What `view` adds to what the user has already been told.
    pub fn update(&mut self, view: PcView) -> Option<Notice> {
        match view {
            PcView::Starting => None,
            PcView::Pairing(_) if self.shown_paired => None,
            PcView::Pairing(t) => {
                if self.shown_url.as_deref() == Some(t.pair_url.as_str()) {
                    return None;
                }
                self.shown_url = Some(t.pair_url.clone());
                Some(Notice::Pairing(t))
            }
            PcView::Paired(_) if self.shown_paired => None,
            PcView::Paired(d) => {
                self.shown_paired = true;
                Some(Notice::Paired(d))
            }
        }
    }

    /// The pair URL of the last pairing request shown.
    pub fn shown_request(&self) -> Option<&str> {
        self.shown_url.as_deref()
    }

    /// Whether a pairing request was shown and the PC is still not paired: if the agent
    /// then ends, its request expired unconfirmed and a new agent asks again.
    pub fn waiting_for_owner(&self) -> bool {
        self.shown_url.is_some() && !self.shown_paired
    }
}

/// Refuses a data dir whose local PC belongs to another server than the one just
/// started (another `--public-url` or port, or a server whose keys were replaced): the
/// agent would refuse it too, with less to go on.
pub fn check_same_server(
    agent_state: &Path,
    pc_dir: &Path,
    url: &str,
    ca_fingerprint: &str,
) -> Result<(), LocalError> {
    let Ok(state) = StateDir::existing(agent_state) else {
        return Ok(());
    };
    let saved: Option<ServerRecord> = state.server().map_err(|e| {
        LocalError::DataDir(format!("the local PC's state in {}: {e}", pc_dir.display()))
    })?;
    let Some(saved) = saved else {
        return Ok(());
    };
    let what = if saved.server_url != url {
        format!(
            "the local PC in {} belongs to the server at {}, but the server now runs at \
             {url}. Run with the --listen (and --public-url) of that run",
            pc_dir.display(),
            saved.server_url
        )
    } else if saved.ca_fingerprint != ca_fingerprint {
        format!(
            "the local PC in {} trusts another CA ({}) than this server's ({ca_fingerprint})",
            pc_dir.display(),
            saved.ca_fingerprint
        )
    } else {
        return Ok(());
    };
    Err(LocalError::DataDir(format!(
        "{what}, or delete {} to pair this PC again",
        pc_dir.display()
    )))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn ticket(url: &str, expires_at: u64) -> PairingTicket {
        PairingTicket {
            pair_url: url.into(),
            pair_token: "tok".into(),
            device_id: "dev_1".into(),
            expires_at,
        }
    }

    fn device() -> DeviceRecord {
        DeviceRecord {
            device_id: "dev_1".into(),
            server_url: "https://localhost:8443".into(),
            paired_at: 1,
            pairing_code: "123 456".into(),
            gateway_keys: Vec::new(),
            owner_keys: Vec::new(),
            owner_keys_version: 0,
        }
    }

    #[test]
    fn each_change_is_told_once() {
        let mut w = Watch::default();
        assert_eq!(w.update(PcView::Starting), None);
        let first = ticket("https://h/pair#token=a", 10);
        assert_eq!(
            w.update(PcView::Pairing(first.clone())),
            Some(Notice::Pairing(first.clone()))
        );
        assert_eq!(w.update(PcView::Pairing(first)), None);
        assert!(w.waiting_for_owner());
        // A new request (the first expired): its code is shown.
        let second = ticket("https://h/pair#token=b", 20);
        assert_eq!(
            w.update(PcView::Pairing(second.clone())),
            Some(Notice::Pairing(second))
        );
        assert_eq!(
            w.update(PcView::Paired(device())),
            Some(Notice::Paired(device()))
        );
        assert_eq!(w.update(PcView::Paired(device())), None);
        assert!(!w.waiting_for_owner());
    }

    #[test]
    fn an_expired_request_is_not_shown() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        state
            .save_pairing_ticket(&ticket("https://h/pair#token=a", 1_000))
            .unwrap();
        assert!(matches!(
            PcView::read(dir.path(), UnixMillis(999)),
            PcView::Pairing(_)
        ));
        assert_eq!(
            PcView::read(dir.path(), UnixMillis(1_000)),
            PcView::Starting
        );
        assert_eq!(
            PcView::read(&dir.path().join("none"), UnixMillis(0)),
            PcView::Starting
        );
    }

    #[test]
    fn a_pc_of_another_server_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let agent = dir.path().join("agent");
        let state = StateDir::open(&agent).unwrap();
        check_same_server(&agent, dir.path(), "https://localhost:8443", "AA").unwrap();
        state
            .save_server(&ServerRecord {
                server_url: "https://localhost:8443".into(),
                ca_fingerprint: "AA".into(),
            })
            .unwrap();
        check_same_server(&agent, dir.path(), "https://localhost:8443", "AA").unwrap();
        let e = check_same_server(&agent, dir.path(), "https://localhost:9443", "AA").unwrap_err();
        assert!(e.to_string().contains("--listen"), "{e}");
        assert_eq!(e.exit_code(), 2);
        let e = check_same_server(&agent, dir.path(), "https://localhost:8443", "BB").unwrap_err();
        assert!(e.to_string().contains("another CA"), "{e}");
    }
}
