//! Artifacts: large command results (screenshots, log bundles) in the object store.
//!
//! - `POST /api/artifact/request` — the **agent**, authenticated by its device
//!   certificate (mutual TLS on the API port), asks to upload the result of one of its
//!   commands that is under way; it gets an artifact id and a presigned, expiring upload
//!   URL (S3's own presigning, or the server's signed URL for the local directory).
//! - `PUT` / `GET /api/objects/{key}` — the local backend's signed URLs (the signature,
//!   method and expiry are checked; the upload is capped at the size granted). Not mounted
//!   usefully with S3 (404).
//! - `GET /api/artifacts/{id}` — a user who may see the device gets the artifact's
//!   metadata and a presigned download URL, plus the key the agent encrypted it with (from
//!   the command's result, which only such users can read).

use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tether_objects::{Method, ObjectKey, SignedQuery};
use tether_proto::messages::command::CommandState;
use tether_proto::{ErrorCode, ProtoError, UnixMillis};
use tether_store::{Artifact, Device, DeviceStatus};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::routes::devices::visible_device;
use crate::serve::Peer;
use crate::state::AppState;

/// The largest artifact an agent may upload (64 MiB, the log bundle cap).
pub const MAX_ARTIFACT_BYTES: u64 = 64 << 20;
/// How long an upload URL is valid.
const UPLOAD_URL_TTL: Duration = Duration::from_secs(15 * 60);
/// How long a download URL is valid.
const DOWNLOAD_URL_TTL: Duration = Duration::from_secs(10 * 60);

/// `POST /api/artifact/request` body.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ArtifactRequest {
    /// The command whose result this is (one of this device's, under way).
    pub command_id: String,
    /// MIME type of the plaintext (`image/png`, `application/gzip`, …).
    pub content_type: String,
    /// Size of the bytes that will be uploaded (encrypted), at most 64 MiB.
    pub size_bytes: u64,
}

impl tether_proto::validate::Validate for ArtifactRequest {
    fn validate(&self) -> Result<(), ProtoError> {
        let bad = |field: &'static str, reason: &str| ProtoError::InvalidField {
            field,
            reason: reason.to_owned(),
        };
        if self.command_id.is_empty() || self.command_id.len() > 128 {
            return Err(bad("command_id", "must be 1..=128 characters"));
        }
        if self.content_type.is_empty()
            || self.content_type.len() > 128
            || !self
                .content_type
                .bytes()
                .all(|b| b.is_ascii_graphic() || b == b' ')
        {
            return Err(bad("content_type", "must be 1..=128 printable characters"));
        }
        if self.size_bytes == 0 || self.size_bytes > MAX_ARTIFACT_BYTES {
            return Err(bad("size_bytes", "must be 1..=67108864"));
        }
        Ok(())
    }
}

/// The answer: where to upload.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ArtifactGrant {
    /// The artifact id to name in the command result.
    pub artifact_id: String,
    /// The presigned upload URL.
    pub upload_url: String,
    /// The HTTP method to use (`PUT`).
    pub method: String,
    /// Headers the upload must carry.
    pub headers: std::collections::BTreeMap<String, String>,
    /// When the URL expires (Unix ms).
    #[schema(value_type = u64)]
    pub expires_at: UnixMillis,
    /// The most bytes the upload may carry.
    pub max_bytes: u64,
}

/// The device behind the connection's client certificate (active), or 401/403.
async fn calling_device(state: &AppState, peer: &Peer) -> ApiResult<Device> {
    let serial = peer
        .client_cert
        .as_ref()
        .and_then(|c| crate::gateway::cert_serial_hex(c.as_ref()))
        .ok_or_else(|| {
            ApiError::with_message(
                ErrorCode::Unauthenticated,
                "this route needs the device's client certificate",
            )
        })?;
    let device = state
        .store
        .device_by_cert_serial(&serial)
        .await?
        .ok_or_else(|| {
            ApiError::with_message(
                ErrorCode::DeviceNotPaired,
                "no device holds this certificate",
            )
        })?;
    match device.status {
        DeviceStatus::Active => Ok(device),
        DeviceStatus::Revoked => Err(ApiError::with_message(
            ErrorCode::DeviceRevoked,
            "this device has been revoked",
        )),
        _ => Err(ApiError::with_message(
            ErrorCode::DeviceNotPaired,
            "the device is not active",
        )),
    }
}

fn object_key(device_id: &str, artifact_id: &str) -> ApiResult<ObjectKey> {
    Ok(ObjectKey::new(&format!(
        "artifacts/{device_id}/{artifact_id}"
    ))?)
}

/// An agent asks where to upload a large result.
#[utoipa::path(post, path = "/api/artifact/request", request_body = ArtifactRequest, responses((status = 201, body = ArtifactGrant), (status = 401), (status = 404), (status = 409)))]
pub async fn request(
    State(state): State<AppState>,
    Extension(peer): Extension<Peer>,
    ApiJson(req): ApiJson<ArtifactRequest>,
) -> ApiResult<(StatusCode, Json<ArtifactGrant>)> {
    let device = calling_device(&state, &peer).await?;
    let command = state
        .store
        .command(&req.command_id)
        .await?
        .filter(|c| c.command.device_id == device.id)
        .ok_or_else(|| {
            ApiError::with_message(ErrorCode::NotFound, "no such command for this device")
        })?;
    if !matches!(
        command.state,
        CommandState::Sent | CommandState::AckReceived | CommandState::Executing
    ) {
        return Err(ApiError::with_message(
            ErrorCode::UnexpectedMessage,
            "the command is not under way",
        ));
    }
    let now = state.now();
    let artifact_id = crate::random::id("art");
    let key = object_key(&device.id, &artifact_id)?;
    let url = state
        .objects
        .objects()
        .presign_put(&key, UPLOAD_URL_TTL, now)
        .await?;
    state
        .store
        .insert_artifact(&Artifact {
            id: artifact_id.clone(),
            device_id: device.id.clone(),
            command_id: command.command.id.clone(),
            object_key: key.as_str().to_owned(),
            content_type: req.content_type.clone(),
            max_bytes: req.size_bytes,
            created_at: now,
            expires_at: url.expires_at,
            uploaded_at: None,
            size_bytes: None,
            sha256: None,
        })
        .await?;
    tracing::info!(trace_id = %command.command.trace_id, artifact = %artifact_id, size = req.size_bytes, "artifact upload granted");
    Ok((
        StatusCode::CREATED,
        Json(ArtifactGrant {
            artifact_id,
            upload_url: url.url,
            method: url.method.as_str().to_owned(),
            headers: url.headers,
            expires_at: url.expires_at,
            max_bytes: req.size_bytes,
        }),
    ))
}

/// The artifact a local object key names (`artifacts/<device>/<artifact id>`).
async fn artifact_of(state: &AppState, key: &ObjectKey) -> ApiResult<Artifact> {
    let id = key
        .as_str()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    state
        .store
        .artifact(&id)
        .await?
        .filter(|a| a.object_key == key.as_str())
        .ok_or_else(|| ApiError::with_message(ErrorCode::NotFound, "no such object"))
}

fn signed_query(raw: Option<String>) -> ApiResult<SignedQuery> {
    Ok(SignedQuery::parse(raw.as_deref().unwrap_or_default())?)
}

/// `PUT /api/objects/{key}`: an upload through a signed URL (local backend).
pub async fn put_object(
    State(state): State<AppState>,
    Path(key): Path<String>,
    RawQuery(query): RawQuery,
    body: Body,
) -> ApiResult<StatusCode> {
    let local = state
        .objects
        .local()
        .ok_or_else(|| ApiError::with_message(ErrorCode::NotFound, "no such route"))?;
    let q = signed_query(query)?;
    let key = local.verify_url(Method::Put, &key, &q, state.now())?;
    let artifact = artifact_of(&state, &key).await?;
    if artifact.uploaded_at.is_some() {
        return Err(ApiError::with_message(
            ErrorCode::Conflict,
            "this artifact was uploaded already",
        ));
    }
    let meta = local
        .put_stream(&key, body.into_data_stream(), artifact.max_bytes)
        .await?;
    let sha = meta.sha256.unwrap_or_default();
    state
        .store
        .mark_artifact_uploaded(&artifact.id, meta.size, &sha, state.now())
        .await?;
    let trace_id = match state.store.command(&artifact.command_id).await {
        Ok(Some(c)) => c.command.trace_id,
        _ => String::new(),
    };
    tracing::info!(%trace_id, command = %artifact.command_id, artifact = %artifact.id, size = meta.size, "artifact uploaded");
    Ok(StatusCode::CREATED)
}

/// `GET /api/objects/{key}`: a download through a signed URL (local backend).
pub async fn get_object(
    State(state): State<AppState>,
    Path(key): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let local = state
        .objects
        .local()
        .ok_or_else(|| ApiError::with_message(ErrorCode::NotFound, "no such route"))?;
    let q = signed_query(query)?;
    let key = local.verify_url(Method::Get, &key, &q, state.now())?;
    let (file, size) = local
        .open_read(&key)
        .await?
        .ok_or_else(|| ApiError::with_message(ErrorCode::NotFound, "no such object"))?;
    let stream = tokio_util::io::ReaderStream::new(file);
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, size.to_string()),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// An artifact as a user sees it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ArtifactView {
    /// The artifact id.
    pub artifact_id: String,
    /// The command whose result it is.
    pub command_id: String,
    /// The device.
    pub device_id: String,
    /// MIME type of the plaintext.
    pub content_type: String,
    /// Size of the stored (encrypted) bytes.
    pub size_bytes: u64,
    /// SHA-256 (hex) of the stored (encrypted) bytes.
    pub sha256: String,
    /// A presigned download URL.
    pub download_url: String,
    /// When the URL expires (Unix ms).
    #[schema(value_type = u64)]
    pub expires_at: UnixMillis,
    /// The AES-256-GCM key (base64url) the agent encrypted it with: the stored bytes are
    /// a 12-byte nonce then the ciphertext, the associated data the artifact id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// SHA-256 (hex) of the plaintext, as the agent reported it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plaintext_sha256: Option<String>,
}

/// An artifact of a device the caller may see, with a download URL.
#[utoipa::path(get, path = "/api/artifacts/{id}", params(("id" = String, Path)), responses((status = 200, body = ArtifactView), (status = 404)), security(("bearer" = [])))]
pub async fn get_artifact(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ArtifactView>> {
    let not_found = || ApiError::with_message(ErrorCode::NotFound, "no such artifact");
    let artifact = state.store.artifact(&id).await?.ok_or_else(not_found)?;
    visible_device(&state, &caller, &artifact.device_id)
        .await
        .map_err(|_| not_found())?;
    let (Some(size), Some(sha)) = (artifact.size_bytes, artifact.sha256.clone()) else {
        return Err(ApiError::with_message(
            ErrorCode::NotFound,
            "the artifact has not been uploaded",
        ));
    };
    let key = ObjectKey::new(&artifact.object_key)?;
    let url = state
        .objects
        .objects()
        .presign_get(&key, DOWNLOAD_URL_TTL, state.now())
        .await?;
    let result: Option<Value> = state
        .store
        .command(&artifact.command_id)
        .await?
        .and_then(|c| c.result)
        .and_then(|r| r.get("result").cloned());
    let field = |name: &str| {
        result
            .as_ref()
            .and_then(|r| r.get(name))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    Ok(Json(ArtifactView {
        artifact_id: artifact.id.clone(),
        command_id: artifact.command_id.clone(),
        device_id: artifact.device_id.clone(),
        content_type: artifact.content_type.clone(),
        size_bytes: size,
        sha256: sha,
        download_url: url.url,
        expires_at: url.expires_at,
        key: field("artifact_key"),
        plaintext_sha256: field("plaintext_sha256"),
    }))
}

/// Checks an uploaded artifact against what a result claims, recording the upload when
/// the server did not see it (S3: the bytes went straight to the bucket) by reading the
/// object back and hashing it.
pub async fn verify_upload(
    state: &AppState,
    artifact: &Artifact,
    sha256: &str,
    size_bytes: u64,
) -> Result<(), ApiError> {
    let (size, sha) = match (artifact.size_bytes, artifact.sha256.clone()) {
        (Some(n), Some(h)) => (n, h),
        _ => {
            let key = ObjectKey::new(&artifact.object_key)?;
            let bytes = state
                .objects
                .objects()
                .get(&key, artifact.max_bytes)
                .await?
                .ok_or_else(|| {
                    ApiError::with_message(
                        ErrorCode::ChecksumMismatch,
                        "the artifact was not uploaded",
                    )
                })?;
            let size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
            let sha = tether_proto::ids::sha256_hex(&bytes);
            state
                .store
                .mark_artifact_uploaded(&artifact.id, size, &sha, state.now())
                .await?;
            (size, sha)
        }
    };
    if size == size_bytes && sha == sha256 {
        Ok(())
    } else {
        Err(ApiError::with_message(
            ErrorCode::ChecksumMismatch,
            "the uploaded bytes do not match the result's sha256 and size",
        ))
    }
}
