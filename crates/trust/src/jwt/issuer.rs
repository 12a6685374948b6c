//! Making tokens.

use std::time::Duration;

use serde::Serialize;
use tether_proto::UnixMillis;

use super::claims::{Claims, TokenType};
use super::keys::SharedKeyRing;
use super::{ALG, MAX_TOKEN_BYTES, TYP, b64};
use crate::error::TrustError;
use crate::random;

/// How long each kind of token lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenLifetimes {
    /// Access tokens (default 900 s).
    pub access: Duration,
    /// Refresh tokens (default 7 days).
    pub refresh: Duration,
    /// Pairing tokens (default 10 minutes).
    pub pair: Duration,
    /// Step-up tokens (default 5 minutes).
    pub step_up: Duration,
}

impl Default for TokenLifetimes {
    fn default() -> Self {
        Self {
            access: Duration::from_secs(900),
            refresh: Duration::from_secs(7 * 24 * 3600),
            pair: Duration::from_secs(600),
            step_up: Duration::from_secs(300),
        }
    }
}

impl TokenLifetimes {
    /// The lifetime of `token_type`.
    pub fn of(&self, token_type: TokenType) -> Duration {
        match token_type {
            TokenType::Access => self.access,
            TokenType::Refresh => self.refresh,
            TokenType::Pair => self.pair,
            TokenType::StepUp => self.step_up,
        }
    }

    fn all(&self) -> [Duration; 4] {
        [self.access, self.refresh, self.pair, self.step_up]
    }
}

/// Who issues and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerConfig {
    /// The `iss` of every token (e.g. the server's public URL).
    pub issuer: String,
    /// Lifetimes per token type.
    pub lifetimes: TokenLifetimes,
}

impl IssuerConfig {
    /// Default lifetimes for `issuer`.
    pub fn new(issuer: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            lifetimes: TokenLifetimes::default(),
        }
    }
}

/// Signs tokens with the ring's current key.
#[derive(Debug, Clone)]
pub struct Issuer {
    ring: SharedKeyRing,
    config: IssuerConfig,
}

#[derive(Serialize)]
struct Header<'a> {
    alg: &'a str,
    typ: &'a str,
    kid: &'a str,
}

impl Issuer {
    /// An issuer over `ring`. Refuses a configuration where a token could outlive the
    /// key that signed it: every lifetime must be at most the ring's overlap window.
    pub fn new(ring: SharedKeyRing, config: IssuerConfig) -> Result<Self, TrustError> {
        if config.issuer.is_empty() {
            return Err(TrustError::InvalidConfig("issuer must not be empty".into()));
        }
        let overlap = ring.read().config().overlap;
        for lifetime in config.lifetimes.all() {
            if lifetime < Duration::from_secs(1) {
                return Err(TrustError::InvalidConfig(
                    "token lifetimes must be ≥ 1 s".into(),
                ));
            }
            if lifetime > overlap {
                return Err(TrustError::InvalidConfig(format!(
                    "a token lifetime of {} s exceeds the key overlap window of {} s: tokens \
                     would outlive the key that signed them",
                    lifetime.as_secs(),
                    overlap.as_secs()
                )));
            }
        }
        Ok(Self { ring, config })
    }

    /// The configuration.
    pub fn config(&self) -> &IssuerConfig {
        &self.config
    }

    /// Claims for a new token of `token_type` for `subject` and `audience`: `iss` from
    /// the configuration, `iat` = `nbf` = `now`, `exp` = `now` + the type's lifetime, a
    /// random 128-bit `jti`, and no optional claims (set them before [`Issuer::issue`]).
    pub fn claims(
        &self,
        token_type: TokenType,
        subject: &str,
        audience: &str,
        now: UnixMillis,
    ) -> Result<Claims, TrustError> {
        let iat = now.as_secs();
        Ok(Claims {
            iss: self.config.issuer.clone(),
            sub: subject.to_owned(),
            aud: audience.to_owned(),
            exp: iat.saturating_add(self.config.lifetimes.of(token_type).as_secs()),
            nbf: iat,
            iat,
            jti: b64::encode(&random::array::<16>()?),
            token_type,
            device_id: None,
            sid: None,
            scope: None,
            amr: Vec::new(),
            ext: serde_json::Map::new(),
        })
    }

    /// Signs `claims` into a compact token. The claims must carry this issuer's `iss`,
    /// non-empty `sub`, `aud` and `jti`, `iat` ≤ `nbf` < `exp`, and live no longer than
    /// their type's lifetime; the token must fit [`MAX_TOKEN_BYTES`].
    pub fn issue(&self, claims: &Claims) -> Result<String, TrustError> {
        let bad = |why: &str| TrustError::input("claims", why.to_owned());
        if claims.iss != self.config.issuer {
            return Err(bad("iss is not this issuer"));
        }
        if claims.sub.is_empty() || claims.aud.is_empty() || claims.jti.is_empty() {
            return Err(bad("sub, aud and jti must not be empty"));
        }
        if !(claims.iat <= claims.nbf && claims.nbf < claims.exp) {
            return Err(bad("need iat <= nbf < exp"));
        }
        let lifetime = self.config.lifetimes.of(claims.token_type).as_secs();
        if claims.exp.saturating_sub(claims.iat) > lifetime {
            return Err(bad("exp is later than the token type's lifetime allows"));
        }

        let payload = serde_json::to_vec(claims).map_err(|e| bad(&e.to_string()))?;
        let ring = self.ring.read();
        let kid = ring.current_kid().clone();
        let header = serde_json::to_vec(&Header {
            alg: ALG,
            typ: TYP,
            kid: kid.as_str(),
        })
        .map_err(|e| bad(&e.to_string()))?;
        let mut token = b64::encode(&header);
        token.push('.');
        token.push_str(&b64::encode(&payload));
        let (signed_kid, sig) = ring.sign(token.as_bytes());
        drop(ring);
        debug_assert_eq!(signed_kid, kid);
        token.push('.');
        token.push_str(&b64::encode(&sig.to_bytes()));
        if token.len() > MAX_TOKEN_BYTES {
            return Err(bad("the token would exceed the size limit"));
        }
        Ok(token)
    }
}
