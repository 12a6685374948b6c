//! The agent's policy in force, as the agent last told the helper (`SET_POLICY`).
//!
//! `policy.json` (`{"policy_version","policy_hash"}`, 0600) is replaced atomically before
//! a `SET_POLICY` is answered `ok`. From then on every command request must carry that
//! `policy_hash` — the hash of the bundle the agent checked the command against — or it
//! is refused `4004 POLICY_HASH_MISMATCH` and journaled like any refusal. A lower version
//! than the one held, or the same version with another hash, is refused
//! `4006 POLICY_VERSION_ROLLBACK`: the helper never goes back to an older policy.
//!
//! `SET_POLICY` is a `helper_request` like any other: signed by the agent key and
//! sequenced, so another local process can neither forge nor replay one. Until the agent
//! has told it anything (a helper installed beside an agent that predates `SET_POLICY`),
//! the helper has no policy to compare with and takes the request's hash as given.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};

use crate::error::HelperError;
use crate::platform;

/// The file in the state directory.
pub(crate) const POLICY_FILE: &str = "policy.json";

/// The policy the agent said is in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PolicyInForce {
    /// Its version (0: the agent's built-in policy).
    pub(crate) policy_version: u64,
    /// Its hash.
    pub(crate) policy_hash: String,
}

/// The persisted policy mark of one state directory.
#[derive(Debug)]
pub(crate) struct PolicyMark {
    path: PathBuf,
    current: Mutex<Option<PolicyInForce>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The value is replaced whole, after its file: a panicking holder cannot leave half.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl PolicyMark {
    /// Reads the mark of a state directory (none yet: nothing told). Blocking.
    pub(crate) fn open(state_dir: &Path) -> Result<Self, HelperError> {
        let path = state_dir.join(POLICY_FILE);
        let current = match std::fs::read(&path) {
            Ok(b) => Some(serde_json::from_slice::<PolicyInForce>(&b).map_err(|e| {
                // A mark that cannot be read must not silently reset to "accept anything".
                HelperError::CorruptState {
                    path: path.clone(),
                    reason: format!("not a policy mark ({e}); fix or remove it by hand"),
                }
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(HelperError::io(&path, e)),
        };
        Ok(Self {
            path,
            current: Mutex::new(current),
        })
    }

    /// The policy in force, if the agent told one.
    pub(crate) fn current(&self) -> Option<PolicyInForce> {
        lock(&self.current).clone()
    }

    /// Takes a new policy from the agent: refused if older than the one held (or the same
    /// version with another hash); otherwise persisted, then in force. Blocking.
    pub(crate) fn set(&self, new: PolicyInForce) -> Result<(), HelperError> {
        let mut current = lock(&self.current);
        if let Some(c) = current.as_ref() {
            if new.policy_version < c.policy_version
                || (new.policy_version == c.policy_version && new.policy_hash != c.policy_hash)
            {
                return Err(HelperError::PolicyRollback {
                    got: new.policy_version,
                    current: c.policy_version,
                });
            }
            if *c == new {
                return Ok(());
            }
        }
        let mut bytes = serde_json::to_vec(&new).map_err(|e| HelperError::CorruptState {
            path: self.path.clone(),
            reason: format!("cannot encode the policy mark: {e}"),
        })?;
        bytes.push(b'\n');
        platform::write_atomic(&self.path, &bytes, 0o600)
            .map_err(|e| HelperError::io(&self.path, e))?;
        *current = Some(new);
        Ok(())
    }

    /// Whether a command request's `policy_hash` is the one in force.
    pub(crate) fn check(&self, policy_hash: &str) -> Result<(), HelperError> {
        match lock(&self.current).as_ref() {
            Some(c) if c.policy_hash != policy_hash => Err(HelperError::PolicyHashMismatch {
                got: policy_hash.to_owned(),
                version: c.policy_version,
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn mark(v: u64, h: char) -> PolicyInForce {
        PolicyInForce {
            policy_version: v,
            policy_hash: h.to_string().repeat(64),
        }
    }

    #[test]
    fn versions_only_go_up_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let p = PolicyMark::open(dir.path()).unwrap();
        assert_eq!(p.current(), None);
        // Nothing told yet: any hash passes.
        p.check(&"f".repeat(64)).unwrap();
        p.set(mark(0, 'a')).unwrap();
        p.set(mark(0, 'a')).unwrap();
        p.set(mark(3, 'b')).unwrap();
        p.check(&"b".repeat(64)).unwrap();
        let e = p.check(&"a".repeat(64)).unwrap_err();
        assert_eq!(e.code(), tether_proto::ErrorCode::PolicyHashMismatch);
        for stale in [mark(2, 'c'), mark(3, 'c'), mark(0, 'a')] {
            let e = p.set(stale).unwrap_err();
            assert_eq!(e.code(), tether_proto::ErrorCode::PolicyVersionRollback);
        }
        drop(p);
        let again = PolicyMark::open(dir.path()).unwrap();
        assert_eq!(again.current(), Some(mark(3, 'b')));
        assert!(again.check(&"a".repeat(64)).is_err());
        assert!(again.set(mark(2, 'c')).is_err());
    }

    #[test]
    fn an_unreadable_mark_is_an_error_not_a_reset() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(POLICY_FILE), b"garbage").unwrap();
        assert!(matches!(
            PolicyMark::open(dir.path()),
            Err(HelperError::CorruptState { .. })
        ));
    }
}
