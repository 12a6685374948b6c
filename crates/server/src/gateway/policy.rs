//! Flow 7 on the gateway: the policy in force goes to every agent as a signed
//! `policy_update`.
//!
//! - At connect, the agent's `auth` says which version it holds (`policy_version`; an
//!   older agent says nothing and counts as holding the built-in policy). The gateway
//!   reads the policy in force from the store and, when it is newer, sends it right after
//!   `connected` and before any command, so the agent checks those commands against it.
//! - When an admin saves a policy ([`crate::policy::save`] publishes
//!   `LiveKind::PolicyChanged`), each server process's live hub reads the policy once
//!   ([`relay_policy`]) and hands it to every agent session it holds, which sends it.
//!
//! The built-in policy (version 0) is never sent: every agent has it compiled in, and a
//! `policy_update` carries version 1 or above.

use std::sync::Arc;

use tether_proto::messages::notify::PolicyUpdate;
use tether_proto::validate::Validate;

use crate::error::ApiError;
use crate::state::AppState;

/// The policy in force: its version, and the `policy_update` that carries it (none for
/// the built-in policy, version 0).
pub(crate) async fn in_force(
    state: &AppState,
) -> Result<(u64, Option<Arc<PolicyUpdate>>), ApiError> {
    let current = crate::policy::current(state).await?;
    if current.version == 0 {
        return Ok((0, None));
    }
    let update = PolicyUpdate {
        policy_version: current.version,
        policy_hash: current.hash,
        bundle: current.bundle,
    };
    // A stored policy whose hash does not match its bundle would be refused by every
    // agent (1005); say so here rather than send it.
    update.validate().map_err(|e| {
        ApiError::internal(format!(
            "stored policy {} cannot be sent: {e}",
            current.version
        ))
    })?;
    Ok((current.version, Some(Arc::new(update))))
}

/// Reads the policy in force and hands it to every agent session of this process (the
/// live hub calls it when a `policy_changed` event arrives).
pub async fn relay_policy(state: &AppState) {
    match in_force(state).await {
        Ok((_, Some(update))) => state.live.publish_policy((*update).clone()),
        Ok((_, None)) => {}
        Err(e) => tracing::warn!(error = %e, "the new policy could not be read to relay it"),
    }
}
