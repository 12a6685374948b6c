//! When to show what: the banner once, when the local PC's state is known (or after a
//! while without it); afterwards, each new pairing request and the pairing itself. A
//! change is shown once it has settled for a moment, so it comes after the agent's own
//! lines about it instead of being pushed up the screen by them.

use std::time::Duration;

use tokio::time::Instant;

use crate::banner::{self, Facts};
use crate::pc::{Notice, PcView, Watch};

/// How long a change waits before it is shown (the agent prints its lines right after
/// writing the file the change was read from).
pub const SETTLE: Duration = Duration::from_millis(400);
/// How long the banner waits for the PC's state before it is shown without it (the QR
/// code then follows on its own).
pub const PC_STATE_WITHIN: Duration = Duration::from_secs(15);

/// What has been shown, and what waits to be.
#[derive(Debug)]
pub struct Announcer {
    watch: Watch,
    pending: Option<(Notice, Instant)>,
    banner_shown: bool,
    started: Instant,
}

impl Announcer {
    /// Starts counting [`PC_STATE_WITHIN`] from `started`.
    pub fn new(started: Instant) -> Self {
        Self {
            watch: Watch::default(),
            pending: None,
            banner_shown: false,
            started,
        }
    }

    /// What has been told about the PC.
    pub fn watch(&self) -> &Watch {
        &self.watch
    }

    /// The text to show at `now`, given the PC's state (`None` without a local PC).
    pub fn tick(
        &mut self,
        now: Instant,
        view: Option<PcView>,
        facts: &Facts<'_>,
    ) -> Option<String> {
        if let Some(n) = view.and_then(|v| self.watch.update(v)) {
            self.pending = Some((n, now));
        }
        let settled = self
            .pending
            .as_ref()
            .is_some_and(|(_, at)| now.saturating_duration_since(*at) >= SETTLE);
        if !self.banner_shown {
            let without_pc = facts.device_name.is_none();
            let waited = now.saturating_duration_since(self.started) >= PC_STATE_WITHIN;
            if !(settled || without_pc || waited) {
                return None;
            }
            self.banner_shown = true;
            let notice = if settled { self.pending.take() } else { None };
            return Some(banner::banner(facts, notice.as_ref().map(|(n, _)| n)));
        }
        if !settled {
            return None;
        }
        let (notice, _) = self.pending.take()?;
        let name = facts.device_name?;
        Some(match notice {
            Notice::Pairing(t) => banner::pairing(
                &t,
                name,
                facts.now,
                "\ntether-local: a new pairing code.\n    ",
            ),
            Notice::Paired(d) => banner::paired_now(&d, name),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::arithmetic_side_effects)]

    use std::path::Path;

    use tether_agent::state::{DeviceRecord, PairingTicket};
    use tether_proto::UnixMillis;

    use super::*;
    use crate::layout::Layout;

    fn facts<'a>(layout: &'a Layout, name: Option<&'a str>) -> Facts<'a> {
        Facts {
            url: "https://localhost:8443",
            fingerprint: "AA:BB",
            layout,
            device_name: name,
            no_pc_reason: name.is_none().then_some("--no-pc"),
            now: UnixMillis(0),
        }
    }

    fn pairing(token: &str) -> PcView {
        PcView::Pairing(PairingTicket {
            pair_url: format!("https://localhost:8443/pair#token={token}"),
            pair_token: token.into(),
            device_id: "dev_1".into(),
            expires_at: 300_000,
        })
    }

    fn paired() -> PcView {
        PcView::Paired(DeviceRecord {
            device_id: "dev_1".into(),
            server_url: "https://localhost:8443".into(),
            paired_at: 1,
            pairing_code: "123 456".into(),
            gateway_keys: Vec::new(),
            owner_keys: Vec::new(),
            owner_keys_version: 0,
        })
    }

    #[test]
    fn the_banner_waits_for_the_pairing_request_to_settle_then_changes_follow() {
        let layout = Layout::new(Path::new("/srv/t")).unwrap();
        let f = facts(&layout, Some("lab"));
        let mut t = Instant::now();
        let mut a = Announcer::new(t);
        assert_eq!(a.tick(t, Some(PcView::Starting), &f), None);
        assert_eq!(a.tick(t, Some(pairing("a")), &f), None, "not settled yet");
        t += SETTLE;
        let banner = a.tick(t, Some(pairing("a")), &f).unwrap();
        assert!(banner.contains("Tether is running") && banner.contains("token=a"));
        assert_eq!(a.tick(t, Some(pairing("a")), &f), None, "shown once");

        assert_eq!(a.tick(t, Some(pairing("b")), &f), None);
        t += SETTLE;
        let again = a.tick(t, Some(pairing("b")), &f).unwrap();
        assert!(again.contains("a new pairing code") && again.contains("token=b"));
        assert!(!again.contains("Tether is running"));

        assert_eq!(a.tick(t, Some(paired()), &f), None);
        t += SETTLE;
        let done = a.tick(t, Some(paired()), &f).unwrap();
        assert!(done.contains("this PC is paired") && done.contains("123 456"));
        assert_eq!(a.tick(t, Some(paired()), &f), None);
    }

    #[test]
    fn a_slow_pc_does_not_hold_the_banner_back_for_long() {
        let layout = Layout::new(Path::new("/srv/t")).unwrap();
        let f = facts(&layout, Some("lab"));
        let mut t = Instant::now();
        let mut a = Announcer::new(t);
        assert_eq!(a.tick(t, Some(PcView::Starting), &f), None);
        t += PC_STATE_WITHIN;
        let banner = a.tick(t, Some(PcView::Starting), &f).unwrap();
        assert!(banner.contains("still starting"), "{banner}");
        assert_eq!(a.tick(t, Some(pairing("a")), &f), None);
        t += SETTLE;
        assert!(
            a.tick(t, Some(pairing("a")), &f)
                .unwrap()
                .contains("token=a")
        );
    }

    #[test]
    fn without_a_pc_the_banner_comes_at_once() {
        let layout = Layout::new(Path::new("/srv/t")).unwrap();
        let f = facts(&layout, None);
        let t = Instant::now();
        let mut a = Announcer::new(t);
        assert!(a.tick(t, None, &f).unwrap().contains("No local PC"));
        assert_eq!(a.tick(t, None, &f), None);
    }
}
