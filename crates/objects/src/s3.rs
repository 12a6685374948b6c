//! The S3 backend: `object_store`'s S3 client over our own HTTPS client, and SigV4
//! presigned URLs from its `Signer`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::client::{HttpClient, HttpConnector};
use object_store::path::Path as StorePath;
use object_store::signer::Signer;
use object_store::{ClientOptions, ObjectStoreExt, PutPayload, RetryConfig};

use crate::{
    Method, ObjectKey, ObjectMeta, Objects, ObjectsError, ObjectsResult, PresignedUrl, S3Config,
    UnixMillis, check_lifetime,
};

/// Objects in an S3 bucket.
///
/// Presigned URLs are SigV4 query-string signatures made by `object_store` (only the
/// `host` header is signed; the payload is `UNSIGNED-PAYLOAD`). Their date is the
/// system clock's, not the `now` passed in — `object_store` does not take one — and the
/// S3 service checks expiry against its own clock. `expires_at` is `now` plus the
/// lifetime in whole seconds (SigV4's unit).
#[derive(Debug)]
pub struct S3Objects {
    store: AmazonS3,
    bucket: String,
}

impl S3Objects {
    /// A client for the configured bucket. Makes no request.
    pub fn connect(cfg: &S3Config) -> ObjectsResult<Self> {
        cfg.validate()?;
        let timeout = Duration::from_secs(cfg.timeout_s);
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&cfg.bucket)
            .with_region(&cfg.region)
            .with_access_key_id(&cfg.access_key_id)
            .with_secret_access_key(cfg.secret_access_key.expose())
            .with_virtual_hosted_style_request(cfg.virtual_hosted_style)
            .with_allow_http(cfg.dangerous_allow_http)
            .with_http_connector(Connector {
                allow_http: cfg.dangerous_allow_http,
                timeout,
            })
            .with_retry(RetryConfig {
                max_retries: 3,
                retry_timeout: timeout,
                ..RetryConfig::default()
            });
        if let Some(endpoint) = &cfg.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        let store = builder
            .build()
            .map_err(|e| ObjectsError::Config(format!("objects: {e}")))?;
        Ok(Self {
            store,
            bucket: cfg.bucket.clone(),
        })
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn presign(
        &self,
        method: Method,
        key: &ObjectKey,
        expires_in: Duration,
        now: UnixMillis,
    ) -> ObjectsResult<PresignedUrl> {
        check_lifetime(expires_in)?;
        // SigV4 counts whole seconds: the URL lives exactly this long.
        let expires_in = Duration::from_secs(expires_in.as_secs());
        let http_method = match method {
            Method::Put => http::Method::PUT,
            Method::Get => http::Method::GET,
        };
        let url = self
            .store
            .signed_url(http_method, &path(key), expires_in)
            .await
            .map_err(backend_err)?;
        Ok(PresignedUrl {
            url: url.to_string(),
            method,
            headers: BTreeMap::new(),
            expires_at: now.saturating_add(expires_in),
        })
    }
}

#[async_trait]
impl Objects for S3Objects {
    fn backend(&self) -> &'static str {
        "s3"
    }

    async fn put(&self, key: &ObjectKey, data: Bytes) -> ObjectsResult<ObjectMeta> {
        let meta = ObjectMeta {
            size: u64::try_from(data.len()).unwrap_or(u64::MAX),
            sha256: Some(crate::sha256_hex(&data)),
        };
        self.store
            .put(&path(key), PutPayload::from_bytes(data))
            .await
            .map_err(backend_err)?;
        Ok(meta)
    }

    async fn get(&self, key: &ObjectKey, max_bytes: u64) -> ObjectsResult<Option<Bytes>> {
        let result = match self.store.get(&path(key)).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(backend_err(e)),
        };
        if result.meta.size > max_bytes {
            return Err(ObjectsError::TooLarge { limit: max_bytes });
        }
        // The body is read with the cap too: the length S3 announced is not trusted.
        let mut buf = BytesMut::with_capacity(usize::try_from(result.meta.size).unwrap_or(0));
        let mut body = result.into_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(backend_err)?;
            let total = u64::try_from(buf.len().saturating_add(chunk.len())).unwrap_or(u64::MAX);
            if total > max_bytes {
                return Err(ObjectsError::TooLarge { limit: max_bytes });
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(Some(buf.freeze()))
    }

    async fn head(&self, key: &ObjectKey) -> ObjectsResult<Option<ObjectMeta>> {
        match self.store.head(&path(key)).await {
            Ok(m) => Ok(Some(ObjectMeta {
                size: m.size,
                sha256: None,
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(backend_err(e)),
        }
    }

    async fn delete(&self, key: &ObjectKey) -> ObjectsResult<()> {
        match self.store.delete(&path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(backend_err(e)),
        }
    }

    async fn presign_put(
        &self,
        key: &ObjectKey,
        expires_in: Duration,
        now: UnixMillis,
    ) -> ObjectsResult<PresignedUrl> {
        self.presign(Method::Put, key, expires_in, now).await
    }

    async fn presign_get(
        &self,
        key: &ObjectKey,
        expires_in: Duration,
        now: UnixMillis,
    ) -> ObjectsResult<PresignedUrl> {
        self.presign(Method::Get, key, expires_in, now).await
    }
}

/// An [`ObjectKey`] is already a valid `object_store` path (non-empty segments, no `.`
/// or `..`, no characters it would escape), so it converts as it is.
fn path(key: &ObjectKey) -> StorePath {
    StorePath::from_iter(key.segments())
}

fn backend_err(e: object_store::Error) -> ObjectsError {
    ObjectsError::Backend(e.to_string())
}

/// Gives `object_store` our HTTP client: rustls with the ring provider and the Mozilla
/// roots, like every other outbound client here. (`object_store`'s own would be built by
/// reqwest's `rustls` feature, which brings aws-lc-rs into the graph as a second rustls
/// provider.)
#[derive(Debug)]
struct Connector {
    allow_http: bool,
    timeout: Duration,
}

impl HttpConnector for Connector {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        let generic = |e: Box<dyn std::error::Error + Send + Sync>| object_store::Error::Generic {
            store: "S3",
            source: e,
        };
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| generic(Box::new(e)))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .https_only(!self.allow_http)
            .connect_timeout(self.timeout.min(Duration::from_secs(10)))
            .timeout(self.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| generic(Box::new(e)))?;
        Ok(HttpClient::new(client))
    }
}
