//! The claims a Tether token carries.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What a token is for. A validator is always told which kind it expects, so a refresh
/// token is never accepted where an access token is needed, and so on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TokenType {
    /// Short-lived bearer token for API calls (`"access"`).
    Access,
    /// Long-lived token exchanged for new access tokens (`"refresh"`).
    Refresh,
    /// Pairing a PC with an account (`"pair"`).
    Pair,
    /// Proof of a fresh second factor for one sensitive action (`"step_up"`).
    StepUp,
}

impl TokenType {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            TokenType::Access => "access",
            TokenType::Refresh => "refresh",
            TokenType::Pair => "pair",
            TokenType::StepUp => "step_up",
        }
    }
}

impl fmt::Display for TokenType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A token's claims. Times are whole seconds since the Unix epoch (JWT NumericDate,
/// integers only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer: the server's configured issuer name.
    pub iss: String,
    /// Subject: the user (or device) the token speaks for.
    pub sub: String,
    /// Audience: the one service the token is for.
    pub aud: String,
    /// Expiry.
    pub exp: u64,
    /// Not before.
    pub nbf: u64,
    /// Issued at.
    pub iat: u64,
    /// Unique token id (random, base64url), for revocation lists and replay checks.
    pub jti: String,
    /// What the token is for.
    pub token_type: TokenType,
    /// The device the token is bound to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// The session (refresh-token family) the token belongs to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Space-separated scopes (RFC 9068 style), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Authentication methods used (RFC 8176 values such as `"pwd"`, `"otp"`, `"hwk"`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
    /// Anything else, under one object so it can never shadow a registered claim.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub ext: Map<String, Value>,
}

impl Claims {
    /// The scopes, split on spaces.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope
            .as_deref()
            .unwrap_or_default()
            .split(' ')
            .filter(|s| !s.is_empty())
    }

    /// Whether `scope` is among the scopes.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes().any(|s| s == scope)
    }
}
