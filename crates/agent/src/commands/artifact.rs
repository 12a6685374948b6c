//! Uploading a large result: the helper leaves the file (a screenshot, a log bundle) in
//! its artifacts directory and names it in its result; the agent encrypts it, asks the
//! api for an upload URL (`POST /api/artifact/request`, authenticated by the device
//! certificate), uploads, and puts the artifact's id, SHA-256 and size in the
//! `command_result`, with the key in the result object for the owner.
//!
//! Encryption: AES-256-GCM under a fresh random key per artifact; the uploaded bytes are
//! the 12-byte nonce then the ciphertext, the associated data the artifact id. The object
//! store (a bucket, a directory) never holds the plaintext.

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tether_client::Api;
use tether_proto::ErrorCode;
use tether_proto::messages::command::ArtifactRef;
use tether_proto::validate::b64url_encode;
use zeroize::Zeroizing;

use crate::random;

/// The largest file the agent uploads (the server's cap).
const MAX_ARTIFACT_BYTES: u64 = 64 << 20;

/// Where to upload, as the api grants it.
#[derive(Debug, Deserialize)]
struct Grant {
    artifact_id: String,
    upload_url: String,
    method: String,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
}

/// Uploads artifacts through the api with the device's certificate.
#[derive(Debug, Clone)]
pub struct Uploader {
    /// The api, with the device's client certificate.
    pub api: Api,
}

/// Why an upload failed: the code and message for the command result.
pub type UploadError = (ErrorCode, String);

impl Uploader {
    /// If the helper's result names a file, uploads it and returns the artifact reference
    /// and the result object to report (the file's path replaced by the key and the
    /// plaintext hash). Without a file, returns the result as it is.
    pub async fn upload_if_any(
        &self,
        command_id: &str,
        result: Value,
    ) -> Result<(Option<ArtifactRef>, Value), UploadError> {
        let Some(path) = result.get("artifact_path").and_then(Value::as_str) else {
            return Ok((None, result));
        };
        let path = std::path::PathBuf::from(path);
        let content_type = result
            .get("content_type")
            .and_then(Value::as_str)
            .unwrap_or("application/octet-stream")
            .to_owned();
        let meta = std::fs::metadata(&path).map_err(|e| {
            (
                ErrorCode::KernelFailure,
                format!("the helper's artifact {}: {e}", path.display()),
            )
        })?;
        if meta.len() > MAX_ARTIFACT_BYTES.saturating_sub(28) {
            return Err((
                ErrorCode::ArtifactTooLarge,
                format!("the artifact is {} bytes", meta.len()),
            ));
        }
        let plain = Zeroizing::new(std::fs::read(&path).map_err(|e| {
            (
                ErrorCode::KernelFailure,
                format!("reading {}: {e}", path.display()),
            )
        })?);
        let plaintext_sha256 = tether_proto::ids::sha256_hex(&plain);
        let size = u64::try_from(plain.len())
            .unwrap_or(u64::MAX)
            .saturating_add(12 + 16);

        let (status, body) = self
            .api
            .post_raw(
                "/api/artifact/request",
                serde_json::to_vec(&json!({
                    "command_id": command_id,
                    "content_type": content_type,
                    "size_bytes": size,
                }))
                .unwrap_or_default(),
            )
            .await
            .map_err(|e| (ErrorCode::Unavailable, format!("artifact request: {e}")))?;
        if status != 201 {
            return Err((
                code_of(&body).unwrap_or(ErrorCode::Unavailable),
                format!(
                    "artifact request refused ({status}): {}",
                    String::from_utf8_lossy(&body)
                ),
            ));
        }
        let grant: Grant = serde_json::from_slice(&body)
            .map_err(|e| (ErrorCode::MalformedFrame, format!("artifact grant: {e}")))?;

        let key = Zeroizing::new(random::bytes::<32>());
        let cipher = Aes256Gcm::new_from_slice(key.as_slice())
            .map_err(|_| (ErrorCode::Internal, "artifact key".to_owned()))?;
        let nonce = random::bytes::<12>();
        let ct = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: grant.artifact_id.as_bytes(),
                },
            )
            .map_err(|_| (ErrorCode::Internal, "encrypting the artifact".to_owned()))?;
        let mut upload = nonce.to_vec();
        upload.extend_from_slice(&ct);
        let sha256 = tether_proto::ids::sha256_hex(&upload);
        let size_bytes = u64::try_from(upload.len()).unwrap_or(u64::MAX);
        let headers: Vec<(String, String)> = grant.headers.into_iter().collect();
        let (status, answer) = self
            .api
            .transfer(&grant.method, &grant.upload_url, &headers, Some(upload))
            .await
            .map_err(|e| (ErrorCode::Unavailable, format!("artifact upload: {e}")))?;
        if !(200..300).contains(&status) {
            return Err((
                code_of(&answer).unwrap_or(ErrorCode::Unavailable),
                format!("artifact upload refused ({status})"),
            ));
        }
        if let Err(e) = std::fs::remove_file(&path) {
            tracing::warn!(path = %path.display(), error = %e, "uploaded artifact not removed");
        }
        let mut out = match result {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        out.remove("artifact_path");
        out.insert("artifact_key".into(), json!(b64url_encode(key.as_slice())));
        out.insert("plaintext_sha256".into(), json!(plaintext_sha256));
        Ok((
            Some(ArtifactRef {
                artifact_id: grant.artifact_id,
                sha256,
                size_bytes,
                content_type,
            }),
            Value::Object(out),
        ))
    }
}

/// The stable error code in an API error body, if any.
fn code_of(body: &[u8]) -> Option<ErrorCode> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let n = u16::try_from(v.get("code")?.as_u64()?).ok()?;
    ErrorCode::from_number(n)
}
