//! Client plumbing shared by `tether-agent` and `tether`: how to trust a Tether server
//! (its root CA from a file, or pinned by fingerprint on first use), typed JSON calls
//! that turn error bodies into [`ClientError::Api`], and WSS connections with or without
//! a client certificate, and Server-Sent Events streams ([`sse`]). TLS is rustls with the
//! ring provider, TLS 1.3 only.

pub mod sse;

use std::sync::Arc;

use futures_util::StreamExt;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use tether_proto::{ErrorBody, ErrorCode};

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error body.
    #[error("{} {}: {}", .body.code.number(), .body.code.name(), .body.message)]
    Api {
        /// HTTP status.
        status: u16,
        /// The error body.
        body: ErrorBody,
    },
    /// The server could not be reached, or TLS failed.
    #[error("cannot reach the server: {0}")]
    Transport(String),
    /// The answer was not what the API documents.
    #[error("unexpected answer from the server: {0}")]
    Decode(String),
    /// Local trust material is missing or malformed.
    #[error("{0}")]
    Trust(String),
}

impl ClientError {
    /// The error code, when the server sent one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Api { body, .. } => Some(body.code),
            _ => None,
        }
    }
}

/// A transport error with its causes: reqwest's own message leaves them out, and the
/// cause is what tells "connection refused" from "certificate not trusted".
fn transport(e: reqwest::Error) -> ClientError {
    let mut msg = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        msg.push_str(": ");
        msg.push_str(&c.to_string());
        cause = c.source();
    }
    ClientError::Transport(msg)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client for URLs outside the server (object stores): TLS 1.2/1.3 against the Mozilla
/// root set.
fn outside_client() -> Result<reqwest::Client, ClientError> {
    let roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Trust(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(cfg)
        .timeout(std::time::Duration::from_secs(120))
        .build()
        .map_err(transport)
}

/// The first certificate in a PEM string, as DER.
pub fn first_cert_der(pem: &str) -> Result<Vec<u8>, ClientError> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|_| ClientError::Trust("not a PEM certificate".into()))?;
    if p.label != "CERTIFICATE" {
        return Err(ClientError::Trust(format!(
            "expected a CERTIFICATE, found {}",
            p.label
        )));
    }
    Ok(p.contents)
}

/// SHA-256 of a certificate's DER, as uppercase hex pairs joined by `:` (how browsers
/// and `openssl x509 -fingerprint -sha256` show it).
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A client certificate and its key for mTLS.
#[derive(Debug)]
pub struct ClientIdentity {
    /// Leaf first, then intermediates.
    pub chain: Vec<CertificateDer<'static>>,
    /// The private key (PKCS#8).
    pub key: PrivateKeyDer<'static>,
}

/// A TLS 1.3 client configuration trusting only `root_pem`, optionally presenting a
/// client certificate.
pub fn tls_config(
    root_pem: &str,
    identity: Option<ClientIdentity>,
) -> Result<rustls::ClientConfig, ClientError> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(first_cert_der(root_pem)?))
        .map_err(|e| ClientError::Trust(format!("CA certificate: {e}")))?;
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| ClientError::Trust(e.to_string()))?
        .with_root_certificates(roots);
    match identity {
        Some(id) => builder
            .with_client_auth_cert(id.chain, id.key)
            .map_err(|e| ClientError::Trust(format!("client certificate: {e}"))),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// Accepts any server certificate. Used only by [`fetch_ca_for_pinning`], whose result
/// the user must confirm by fingerprint before anything is trusted.
#[derive(Debug)]
struct DangerousAcceptAnyServer(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for DangerousAcceptAnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Trust on first use: downloads `/ca.pem` WITHOUT verifying the server, and returns the
/// PEM and its fingerprint. The caller must show the fingerprint and have the user
/// confirm it (or compare it with `--ca-fingerprint`) before saving the PEM; after that,
/// every connection verifies against it.
pub async fn fetch_ca_for_pinning(base_url: &str) -> Result<(String, String), ClientError> {
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| ClientError::Trust(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(DangerousAcceptAnyServer(provider())))
        .with_no_client_auth();
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(cfg)
        .build()
        .map_err(transport)?;
    let resp = http
        .get(format!("{}/ca.pem", base_url.trim_end_matches('/')))
        .send()
        .await
        .map_err(transport)?;
    let pem = resp.text().await.map_err(transport)?;
    let der = first_cert_der(&pem)?;
    Ok((pem, fingerprint(&der)))
}

/// How long an event stream may stay silent before the client gives up on it: three of
/// the server's 15 s keep-alive intervals.
pub const STREAM_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(45);

/// A typed JSON API client bound to one server.
#[derive(Debug, Clone)]
pub struct Api {
    base: String,
    http: reqwest::Client,
    /// Kept for streams, whose client has no total timeout (see [`Api::get_stream`]).
    tls: rustls::ClientConfig,
    bearer: Option<String>,
}

impl Api {
    /// A client for `base_url` trusting only `root_pem`.
    pub fn new(base_url: &str, root_pem: &str) -> Result<Self, ClientError> {
        let cfg = tls_config(root_pem, None)?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(cfg.clone())
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(transport)?;
        Ok(Self {
            base: base_url.trim_end_matches('/').to_owned(),
            http,
            tls: cfg,
            bearer: None,
        })
    }

    /// A client for `base_url` trusting only `root_pem` and presenting a client
    /// certificate (an agent calling the api with its device certificate).
    pub fn with_identity(
        base_url: &str,
        root_pem: &str,
        identity: ClientIdentity,
    ) -> Result<Self, ClientError> {
        let cfg = tls_config(root_pem, Some(identity))?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(cfg.clone())
            .timeout(std::time::Duration::from_secs(120))
            .build()
            .map_err(transport)?;
        Ok(Self {
            base: base_url.trim_end_matches('/').to_owned(),
            http,
            tls: cfg,
            bearer: None,
        })
    }

    /// Sends `body` to an absolute URL (a presigned upload URL) with `method` and the
    /// given headers; returns the status and the raw answer. A URL on this server goes
    /// through this client (its CA, its client certificate); another `https://` URL (an
    /// S3 endpoint) is verified against the Mozilla root set; `http://` is sent in clear
    /// (test object stores on loopback only — the server refuses to hand out such URLs
    /// otherwise).
    pub async fn transfer(
        &self,
        method: &str,
        url: &str,
        headers: &[(String, String)],
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Vec<u8>), ClientError> {
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|e| ClientError::Transport(format!("method {method}: {e}")))?;
        let http = if url.starts_with(&format!("{}/", self.base)) {
            self.http.clone()
        } else {
            outside_client()?
        };
        let mut req = http.request(method, url);
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(transport)?;
        Ok((status, bytes.to_vec()))
    }

    /// The same client, sending `Authorization: Bearer <token>`.
    pub fn with_bearer(mut self, token: &str) -> Self {
        self.bearer = Some(token.to_owned());
        self
    }

    /// The server's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The bearer token this client sends, if any.
    pub fn bearer(&self) -> Option<&str> {
        self.bearer.as_deref()
    }

    /// `GET path`, returning the status and raw body whatever they are.
    pub async fn get_raw(&self, path: &str) -> Result<(u16, Vec<u8>), ClientError> {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(t) = &self.bearer {
            req = req.bearer_auth(t);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        Ok((status, bytes.to_vec()))
    }

    /// `POST path` with raw bytes as an `application/json` body (for tools and tests that
    /// must send bytes that are not valid JSON); returns the status and raw body.
    pub async fn post_raw(&self, path: &str, body: Vec<u8>) -> Result<(u16, Vec<u8>), ClientError> {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body);
        if let Some(t) = &self.bearer {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(transport)?;
        Ok((status, bytes.to_vec()))
    }

    /// `POST path` with a JSON body; returns the status and decoded body.
    pub async fn post<B: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<(u16, R), ClientError> {
        let mut req = self.http.post(format!("{}{path}", self.base)).json(body);
        if let Some(t) = &self.bearer {
            req = req.bearer_auth(t);
        }
        Self::finish(req).await
    }

    /// `PUT path` with a JSON body.
    pub async fn put<B: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<(u16, R), ClientError> {
        let mut req = self.http.put(format!("{}{path}", self.base)).json(body);
        if let Some(t) = &self.bearer {
            req = req.bearer_auth(t);
        }
        Self::finish(req).await
    }

    /// `GET path`.
    pub async fn get<R: DeserializeOwned>(&self, path: &str) -> Result<(u16, R), ClientError> {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(t) = &self.bearer {
            req = req.bearer_auth(t);
        }
        Self::finish(req).await
    }

    /// `GET path` as a Server-Sent Events stream (`Accept: text/event-stream`). Returns
    /// once the server has answered with its headers; an error status is decoded like
    /// any other call's. The stream has no total timeout, only [`STREAM_READ_TIMEOUT`]
    /// between reads.
    pub async fn get_stream(&self, path: &str) -> Result<sse::EventStream, ClientError> {
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(self.tls.clone())
            .connect_timeout(std::time::Duration::from_secs(30))
            .read_timeout(STREAM_READ_TIMEOUT)
            .build()
            .map_err(transport)?;
        let mut req = http
            .get(format!("{}{path}", self.base))
            .header("accept", "text/event-stream");
        if let Some(t) = &self.bearer {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let bytes = resp.bytes().await.map_err(transport)?;
            return Err(error_from(status, &bytes));
        }
        let is_sse = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !is_sse {
            return Err(ClientError::Decode(format!(
                "HTTP {status} but not an event stream"
            )));
        }
        let body = resp.bytes_stream().map(|chunk| {
            chunk.map(|b| b.to_vec()).map_err(|e| match transport(e) {
                ClientError::Transport(m) => m,
                other => other.to_string(),
            })
        });
        Ok(sse::EventStream::new(body))
    }

    async fn finish<R: DeserializeOwned>(
        req: reqwest::RequestBuilder,
    ) -> Result<(u16, R), ClientError> {
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(transport)?;
        if (200..300).contains(&status) && status != 204 {
            return serde_json::from_slice(&bytes)
                .map(|r| (status, r))
                .map_err(|e| ClientError::Decode(e.to_string()));
        }
        if status == 204 {
            return serde_json::from_slice(b"null")
                .map(|r| (status, r))
                .map_err(|e| ClientError::Decode(e.to_string()));
        }
        Err(error_from(status, &bytes))
    }
}

/// The error an HTTP error answer means: our error body, or its first bytes.
fn error_from(status: u16, bytes: &[u8]) -> ClientError {
    match serde_json::from_slice::<ErrorBody>(bytes) {
        Ok(body) => ClientError::Api { status, body },
        Err(_) => ClientError::Decode(format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(bytes)
                .chars()
                .take(200)
                .collect::<String>()
        )),
    }
}

/// The `wss://` URL of the agent endpoint for a server base URL.
pub fn agent_ws_url(base_url: &str) -> String {
    let b = base_url.trim_end_matches('/');
    let rest = b.strip_prefix("https://").unwrap_or(b);
    format!("wss://{rest}/agent/ws")
}

/// A WebSocket stream over TLS.
pub type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the agent WebSocket, verifying the server against `root_pem` and presenting
/// `identity` when given. Frames are limited to the protocol's maximum.
pub async fn connect_agent_ws(
    base_url: &str,
    root_pem: &str,
    identity: Option<ClientIdentity>,
) -> Result<WsStream, ClientError> {
    let cfg = tls_config(root_pem, identity)?;
    let mut ws_cfg = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default();
    ws_cfg.max_message_size = Some(tether_proto::MAX_FRAME_BYTES);
    ws_cfg.max_frame_size = Some(tether_proto::MAX_FRAME_BYTES);
    // `disable_nagle`: an agent writes small frames back to back (`command_ack`, then
    // `command_status`, then `command_result`); with Nagle's algorithm each waits for
    // the server's delayed ACK of the one before, up to 40 ms.
    let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(
        agent_ws_url(base_url),
        Some(ws_cfg),
        true,
        Some(tokio_tungstenite::Connector::Rustls(Arc::new(cfg))),
    )
    .await
    .map_err(|e| ClientError::Transport(e.to_string()))?;
    Ok(ws)
}
