//! Central policy: the saved bundles (the current one is the highest version); owners'
//! signed key statements.

use serde_json::Value;
use tether_proto::UnixMillis;

/// A saved policy bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRecord {
    /// Its version, from 1, strictly increasing.
    pub version: u64,
    /// The bundle (a JSON object), as the admin saved it.
    pub bundle: Value,
    /// SHA-256 (lowercase hex) of the bundle's RFC 8785 form (`policy_hash`).
    pub hash: String,
    /// The admin who saved it.
    pub author: String,
    /// When.
    pub created_at: UnixMillis,
}

/// An owner-keys statement a user submitted, as signed (`POST /api/me/keys`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerKeysRecord {
    /// The user whose keys it changes.
    pub user_id: String,
    /// The statement's `version`, unique per user.
    pub version: u64,
    /// `{"statement", "user_sig"}` (an `owner_keys_update` body), as submitted.
    pub body: Value,
    /// The kid of the key that signed it.
    pub signer_kid: String,
    /// When the server stored it.
    pub created_at: UnixMillis,
}
