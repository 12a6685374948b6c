//! The Tether object store: where large command results (screenshots, log bundles) and
//! update packages live, and the expiring URLs that let a PC upload them and a phone
//! download them without holding any storage credential.
//!
//! The server holds an `Arc<dyn Objects>`. Two backends implement it:
//! - [`LocalObjects`] (the default): files under a directory in the server's data dir,
//!   written atomically (temporary file, fsync, rename). Its URLs point at the server
//!   itself (`<public_url>/api/objects/<key>?method=…&expires=…&sig=…`) and are signed
//!   with HMAC-SHA256 under a key the server keeps; the server's route checks them with
//!   [`LocalObjects::verify_url`] and stores uploads with [`LocalObjects::put_stream`].
//!   The exact string that is signed is documented on [`UrlSigner`].
//! - [`S3Objects`]: an S3 bucket (AWS or any S3-compatible service) through `object_store`;
//!   its URLs are SigV4 presigned URLs that the S3 service checks itself.
//!
//! [`ObjectsConfig`] is the `[objects]` section of the server's configuration and
//! [`open`] turns it into a backend.
//!
//! Keys are [`ObjectKey`]s, checked when made. Time is an input: presigning and URL
//! checks take `now` from the caller's clock. (The S3 backend's SigV4 date is the one
//! exception: `object_store` reads the system clock for it, and S3 checks the expiry
//! against its own clock.) A URL is valid up to and including its `expires_at` and
//! expired once `now > expires_at`.

mod config;
mod error;
mod key;
mod local;
mod s3;
pub mod testing;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub use config::{LocalConfig, ObjectsBackend, ObjectsConfig, S3Config, Secret, open};
pub use error::ObjectsError;
pub use key::{MAX_KEY_LEN, MAX_KEY_SEGMENTS, MAX_SEGMENT_LEN, ObjectKey};
pub use local::{LocalObjects, SignedQuery, URL_KEY_LEN, UrlSigner};
pub use s3::S3Objects;
pub use tether_proto::UnixMillis;

/// Result alias for object store operations.
pub type ObjectsResult<T> = Result<T, ObjectsError>;

/// The longest lifetime a presigned URL may have: seven days, S3's own limit.
pub const MAX_URL_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// The shortest lifetime a presigned URL may have (SigV4 counts whole seconds).
pub const MIN_URL_LIFETIME: Duration = Duration::from_secs(1);

/// What the store knows about an object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    /// Its size in bytes.
    pub size: u64,
    /// Lowercase hex SHA-256 of its bytes, where known without reading them: `put` and
    /// [`LocalObjects::put_stream`] return it (they hashed what they wrote); `head` does
    /// not (neither backend keeps it), so it is `None` there.
    pub sha256: Option<String>,
}

/// The HTTP method a presigned URL is good for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    /// Upload (`PUT`).
    Put,
    /// Download (`GET`).
    Get,
}

impl Method {
    /// `PUT` or `GET`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Method::Put => "PUT",
            Method::Get => "GET",
        }
    }

    /// From an HTTP method name (exactly `PUT` or `GET`; HTTP methods are case-sensitive).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "PUT" => Some(Method::Put),
            "GET" => Some(Method::Get),
            _ => None,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An expiring URL that lets its holder do one kind of request on one object.
///
/// The URL is a bearer credential until it expires: `Debug` shows it without its query
/// (where the signature is), so it does not end up in logs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresignedUrl {
    /// The full URL, signature included.
    pub url: String,
    /// The method it is good for.
    pub method: Method,
    /// Headers the request must carry exactly as given (none for now on either backend;
    /// S3 would need them for signed checksums or server-side encryption).
    pub headers: BTreeMap<String, String>,
    /// When it stops working (valid up to and including this instant).
    pub expires_at: UnixMillis,
}

impl fmt::Debug for PresignedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let without_query = self.url.split('?').next().unwrap_or_default();
        f.debug_struct("PresignedUrl")
            .field("url", &format_args!("{without_query}?<redacted>"))
            .field("method", &self.method)
            .field("headers", &self.headers)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// The object store.
#[async_trait]
pub trait Objects: Send + Sync + fmt::Debug {
    /// Which backend (`local` or `s3`).
    fn backend(&self) -> &'static str;

    /// Stores `data` under `key`, replacing any object there. Readers see the old object
    /// or the new one, never a part of one. Returns the new object's size and SHA-256.
    async fn put(&self, key: &ObjectKey, data: Bytes) -> ObjectsResult<ObjectMeta>;

    /// The object's bytes, or `None` if there is none. An object larger than `max_bytes`
    /// is [`ObjectsError::TooLarge`] (and is not read into memory).
    async fn get(&self, key: &ObjectKey, max_bytes: u64) -> ObjectsResult<Option<Bytes>>;

    /// The object's size, or `None` if there is none.
    async fn head(&self, key: &ObjectKey) -> ObjectsResult<Option<ObjectMeta>>;

    /// Deletes the object. Deleting an object that does not exist succeeds.
    async fn delete(&self, key: &ObjectKey) -> ObjectsResult<()>;

    /// A URL that lets its holder upload the object with one `PUT` (body = the bytes),
    /// valid from `now` for `expires_in` ([`MIN_URL_LIFETIME`]..=[`MAX_URL_LIFETIME`]).
    /// Neither backend's URL limits the upload's size: check it afterwards with `head`
    /// (the local route also caps what it accepts, see [`LocalObjects::put_stream`]).
    async fn presign_put(
        &self,
        key: &ObjectKey,
        expires_in: Duration,
        now: UnixMillis,
    ) -> ObjectsResult<PresignedUrl>;

    /// A URL that lets its holder download the object with `GET`, valid from `now` for
    /// `expires_in` ([`MIN_URL_LIFETIME`]..=[`MAX_URL_LIFETIME`]). The object need not
    /// exist yet; a `GET` of a missing object is a 404.
    async fn presign_get(
        &self,
        key: &ObjectKey,
        expires_in: Duration,
        now: UnixMillis,
    ) -> ObjectsResult<PresignedUrl>;
}

/// Refuses URL lifetimes outside [`MIN_URL_LIFETIME`]..=[`MAX_URL_LIFETIME`].
fn check_lifetime(expires_in: Duration) -> ObjectsResult<()> {
    if (MIN_URL_LIFETIME..=MAX_URL_LIFETIME).contains(&expires_in) {
        Ok(())
    } else {
        Err(ObjectsError::InvalidArgument(format!(
            "a URL lifetime must be 1 s to 7 days, not {expires_in:?}"
        )))
    }
}

/// Lowercase hex SHA-256.
fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presigned_url_debug_hides_the_signature() {
        let u = PresignedUrl {
            url: "https://h/api/objects/a?method=GET&expires=1&sig=SECRET".into(),
            method: Method::Get,
            headers: BTreeMap::new(),
            expires_at: UnixMillis(1),
        };
        let d = format!("{u:?}");
        assert!(
            !d.contains("SECRET") && d.contains("https://h/api/objects/a?<redacted>"),
            "{d}"
        );
    }

    #[test]
    fn lifetimes() {
        assert!(check_lifetime(Duration::from_secs(1)).is_ok());
        assert!(check_lifetime(MAX_URL_LIFETIME).is_ok());
        for bad in [
            Duration::ZERO,
            Duration::from_millis(999),
            MAX_URL_LIFETIME + Duration::from_millis(1),
        ] {
            assert!(matches!(
                check_lifetime(bad),
                Err(ObjectsError::InvalidArgument(_))
            ));
        }
    }

    #[test]
    fn methods() {
        assert_eq!(Method::parse("PUT"), Some(Method::Put));
        assert_eq!(Method::parse("GET"), Some(Method::Get));
        assert_eq!(Method::parse("put"), None);
        assert_eq!(Method::parse("POST"), None);
        assert_eq!(Method::Put.to_string(), "PUT");
    }
}
