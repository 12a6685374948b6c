//! Owner key changes on the gateway (docs/protocol.md section 4.8): the owner's signed
//! statements go to their PCs as `owner_keys_update`, signed by a server key like every
//! gateway → agent frame (a signature that proves nothing about the change: the agent
//! applies a statement only if a key it pins signed it).
//!
//! - At connect, the agent's `auth` says which statement version it applied last
//!   (`owner_keys_version`; an older agent says nothing: 0). The gateway sends, in
//!   version order and before any command, the owner's statements above it that were
//!   stored since the device was paired (pairing pins the keys registered then), are
//!   for this device or every device, and have not expired.
//! - When the owner submits one (`POST /api/me/keys`), the live hub hands it to the
//!   device's session wherever it runs ([`crate::live::AgentPush::OwnerKeys`]).

use tether_proto::owner_sig::OwnerKeysUpdate;
use tether_store::Device;

use super::{Refusal, Session};
use crate::state::AppState;

/// The statements `device` has not applied yet, oldest first: its owner's, above
/// `applied`, stored since pairing, for it, unexpired.
pub(crate) async fn pending(
    state: &AppState,
    device: &Device,
    applied: u64,
) -> Vec<OwnerKeysUpdate> {
    let Some(owner) = &device.owner_id else {
        return Vec::new();
    };
    let all = match crate::owner_keys::statements(state, owner).await {
        Ok(all) => all,
        Err(e) => {
            // Not fatal: the statements go out at the next connect.
            tracing::warn!(device = %device.id, error = %e.code(), "owner-keys statements not read");
            return Vec::new();
        }
    };
    let paired_at = device.paired_at.unwrap_or(tether_proto::UnixMillis(0));
    let now = state.now();
    all.into_iter()
        .filter(|(u, stored)| {
            let s = &u.statement;
            s.version > applied
                && *stored >= paired_at
                && s.not_after >= now
                && s.device_id.as_ref().is_none_or(|d| *d == device.id)
        })
        .map(|(u, _)| u)
        .collect()
}

impl Session {
    /// Sends the agent an owner-keys statement unless it applied that version (or a
    /// newer one) already, as far as this session knows.
    pub(super) async fn send_owner_keys(
        &mut self,
        device_id: &str,
        update: &OwnerKeysUpdate,
    ) -> Result<(), Refusal> {
        if update.statement.version <= self.owner_keys_sent {
            return Ok(());
        }
        if update
            .statement
            .device_id
            .as_ref()
            .is_some_and(|d| d != device_id)
        {
            return Ok(());
        }
        tracing::info!(device = %device_id, version = update.statement.version,
            signed_by = %update.user_sig.kid(), "owner-keys statement sent to the agent");
        self.send(update).await?;
        self.owner_keys_sent = update.statement.version;
        Ok(())
    }
}
