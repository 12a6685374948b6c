//! The local backend's own URL signatures: HMAC-SHA256 over the method, key and expiry.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use serde::Deserialize;

use crate::{
    Method, ObjectKey, ObjectsError, ObjectsResult, PresignedUrl, UnixMillis, check_lifetime,
};

/// How long a URL-signing key must be, in bytes (it is the HMAC-SHA256 key).
pub const URL_KEY_LEN: usize = 32;

/// The path under the server's public URL where the local backend's objects are served.
const ROUTE: &str = "/api/objects/";

/// Separates the domain and version of the signed string from the rest; also names what
/// the key is for, so a signature made for something else never verifies here.
const DOMAIN: &str = "tether-objects-v1";

/// Signs and checks the local backend's URLs:
///
/// ```text
/// <public_base_url>/api/objects/<key>?method=<PUT|GET>&expires=<unix_ms>&sig=<sig>
/// ```
///
/// `sig` is the unpadded base64url of HMAC-SHA256(url key, string-to-sign), where the
/// string-to-sign is the UTF-8 of
///
/// ```text
/// tether-objects-v1|<METHOD>|<key>|<expires>
/// ```
///
/// `<METHOD>` is `PUT` or `GET`, `<key>` the [`ObjectKey`] exactly as in the path, and
/// `<expires>` the decimal milliseconds since the epoch with no leading zeros — e.g.
/// `tether-objects-v1|PUT|artifacts/c_1|1700000300000`. `|` cannot occur in a key or a
/// method, so the fields cannot be shifted into each other. Neither the host nor the
/// query's order is signed: the URL is good at whatever address reaches this server.
pub struct UrlSigner {
    key: hmac::Key,
    base: String,
}

impl fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UrlSigner")
            .field("base", &self.base)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// The query of one of our URLs, as the route receives it (`axum::extract::Query` can
/// decode it; [`SignedQuery::parse`] reads a raw query string).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedQuery {
    /// The method the URL was signed for (`PUT` or `GET`).
    pub method: String,
    /// Its expiry, milliseconds since the epoch.
    pub expires: u64,
    /// The signature: unpadded base64url of the HMAC.
    pub sig: String,
}

impl SignedQuery {
    /// Reads `method=…&expires=…&sig=…` (in any order, each exactly once, nothing else).
    /// Our URLs never need percent-escapes, so a query that has one is not ours. Anything
    /// malformed is [`ObjectsError::SignatureInvalid`]: the URL was not issued by us.
    pub fn parse(query: &str) -> ObjectsResult<Self> {
        let mut fields: BTreeMap<&str, &str> = BTreeMap::new();
        for pair in query.split('&') {
            let (name, value) = pair.split_once('=').ok_or(ObjectsError::SignatureInvalid)?;
            if !matches!(name, "method" | "expires" | "sig") || fields.insert(name, value).is_some()
            {
                return Err(ObjectsError::SignatureInvalid);
            }
        }
        let field = |name| {
            fields
                .get(name)
                .copied()
                .ok_or(ObjectsError::SignatureInvalid)
        };
        let expires = field("expires")?;
        if expires.is_empty() || !expires.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ObjectsError::SignatureInvalid);
        }
        Ok(Self {
            method: field("method")?.to_owned(),
            expires: expires
                .parse()
                .map_err(|_| ObjectsError::SignatureInvalid)?,
            sig: field("sig")?.to_owned(),
        })
    }
}

impl UrlSigner {
    /// A signer for URLs under `public_base_url` (`https://host[:port][/prefix]`, or
    /// `http://` for tests; a trailing `/` is dropped) with an HMAC key of at least
    /// [`URL_KEY_LEN`] random bytes.
    pub fn new(public_base_url: &str, url_key: &[u8]) -> ObjectsResult<Self> {
        if url_key.len() < URL_KEY_LEN {
            return Err(ObjectsError::Config(format!(
                "the URL-signing key must be at least {URL_KEY_LEN} bytes"
            )));
        }
        let base = public_base_url.trim_end_matches('/');
        let rest = base
            .strip_prefix("https://")
            .or_else(|| base.strip_prefix("http://"))
            .unwrap_or_default();
        if rest.is_empty() || rest.contains(['?', '#', ' ']) || rest.starts_with('/') {
            return Err(ObjectsError::Config(
                "the public base URL must be http(s)://host[:port][/path] with no query".to_owned(),
            ));
        }
        Ok(Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, url_key),
            base: base.to_owned(),
        })
    }

    /// The exact string that is signed (see the type's docs).
    pub fn string_to_sign(method: Method, key: &ObjectKey, expires: UnixMillis) -> String {
        format!(
            "{DOMAIN}|{}|{}|{}",
            method.as_str(),
            key.as_str(),
            expires.0
        )
    }

    /// A URL for `method` on `key`, valid from `now` for `expires_in`
    /// (1 s..=7 days; the expiry is `now + expires_in`, to the millisecond).
    pub fn sign(
        &self,
        method: Method,
        key: &ObjectKey,
        expires_in: Duration,
        now: UnixMillis,
    ) -> ObjectsResult<PresignedUrl> {
        check_lifetime(expires_in)?;
        let expires_at = now.saturating_add(expires_in);
        let tag = hmac::sign(
            &self.key,
            Self::string_to_sign(method, key, expires_at).as_bytes(),
        );
        let sig = URL_SAFE_NO_PAD.encode(tag.as_ref());
        Ok(PresignedUrl {
            url: format!(
                "{}{ROUTE}{}?method={}&expires={}&sig={sig}",
                self.base,
                key.as_str(),
                method.as_str(),
                expires_at.0
            ),
            method,
            headers: BTreeMap::new(),
            expires_at,
        })
    }

    /// Checks a request for `method` on `key` carrying `query`: the query names the same
    /// method, the signature verifies (compared in constant time), and `now` is not past
    /// the expiry. The signature is checked first, so [`ObjectsError::UrlExpired`] is only
    /// ever said of a URL we issued.
    pub fn verify(
        &self,
        method: Method,
        key: &ObjectKey,
        query: &SignedQuery,
        now: UnixMillis,
    ) -> ObjectsResult<()> {
        if query.method != method.as_str() {
            return Err(ObjectsError::SignatureInvalid);
        }
        let expires = UnixMillis(query.expires);
        let tag = URL_SAFE_NO_PAD
            .decode(&query.sig)
            .map_err(|_| ObjectsError::SignatureInvalid)?;
        hmac::verify(
            &self.key,
            Self::string_to_sign(method, key, expires).as_bytes(),
            &tag,
        )
        .map_err(|_| ObjectsError::SignatureInvalid)?;
        if now > expires {
            return Err(ObjectsError::UrlExpired {
                expires_at: expires,
            });
        }
        Ok(())
    }
}
