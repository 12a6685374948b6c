//! Flows 0 and 1 over HTTPS: discovery confirm, pair request, pair confirm (by the owner)
//! and activation (the agent collecting its certificate). The discovery hello itself
//! arrives over the agent WebSocket (see `gateway`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tether_proto::envelope::Stamp;
use tether_proto::messages::discovery::{
    DeviceActivate, DiscoveryConfirm, PairActivate, PairRequest, PairResponse,
    discovery_proof_input, pair_activate_input, pairing_code,
};
use tether_proto::validate::b64url_decode;
use tether_proto::{ErrorCode, MessageId, UnixMillis};
use tether_store::{Device, DeviceStatus, DiscoveryStatus, PairingRecord, PairingRefusal, User};
use tether_trust::TokenType;
use utoipa::ToSchema;

use crate::audit::{self, Outcome};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::serve::Peer;
use crate::state::AppState;

/// JWT audience of discovery challenge tokens.
pub const DISCOVERY_AUDIENCE: &str = "tether-discovery";

/// Setting key: whether newly paired devices wait for an admin.
pub const REQUIRE_APPROVAL_SETTING: &str = "pairing.require_approval";

fn ms_after(now: UnixMillis, secs: u64) -> UnixMillis {
    UnixMillis(now.0.saturating_add(secs.saturating_mul(1000)))
}

pub(crate) fn verify_ed25519(
    pub_b64: &str,
    msg: &[u8],
    sig_b64: &str,
) -> Result<VerifyingKey, ApiError> {
    let bad = |m: &str| ApiError::with_message(ErrorCode::SignatureInvalid, m.to_owned());
    let pk: [u8; 32] = b64url_decode(pub_b64)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| bad("the public key is not 32 bytes of base64url"))?;
    let key = VerifyingKey::from_bytes(&pk)
        .map_err(|_| bad("the public key is not a valid Ed25519 point"))?;
    let sig: [u8; 64] = b64url_decode(sig_b64)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| bad("the signature is not 64 bytes of base64url"))?;
    key.verify_strict(msg, &Signature::from_bytes(&sig))
        .map_err(|_| bad("the signature does not verify"))?;
    Ok(key)
}

/// A discovery session, as the confirm step reports it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DiscoveryView {
    /// Session id.
    pub discovery_id: String,
    /// `confirmed`.
    pub status: &'static str,
    /// When the session ends (10 minutes after the hello).
    pub expires_at: u64,
}

/// Load and check a discovery session from its challenge token.
async fn discovery_from_token(
    state: &AppState,
    token: &str,
) -> ApiResult<tether_store::DiscoveryRecord> {
    let claims = state
        .validator
        .validate(token, DISCOVERY_AUDIENCE, TokenType::Pair, state.now())
        .map_err(|e| ApiError::with_message(e.code(), format!("challenge_token: {e}")))?;
    let rec =
        state.store.discovery(&claims.sub).await?.ok_or_else(|| {
            ApiError::with_message(ErrorCode::NotFound, "no such discovery session")
        })?;
    if rec.expires_at.0 < state.now().0 {
        return Err(ApiError::with_message(
            ErrorCode::PairTokenExpired,
            "the discovery session has expired; start again",
        ));
    }
    Ok(rec)
}

/// Flow 0, step 3: the agent proves it holds `AgentPub` by signing the challenge token.
#[utoipa::path(post, path = "/api/discovery/confirm", request_body = inline(serde_json::Value),
    responses((status = 200, body = DiscoveryView), (status = 401, description = "2001 bad signature, 3003 bad token"), (status = 410, description = "5006 session expired")))]
pub async fn discovery_confirm(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<DiscoveryConfirm>,
) -> ApiResult<Json<DiscoveryView>> {
    let rec = discovery_from_token(&state, &req.challenge_token).await?;
    verify_ed25519(
        &rec.agent_pub,
        &discovery_proof_input(&req.challenge_token),
        &req.nonce_signature,
    )?;
    if rec.status == DiscoveryStatus::Pending
        && !state.store.confirm_discovery(&rec.id, state.now()).await?
    {
        return Err(ApiError::with_message(
            ErrorCode::PairTokenExpired,
            "the discovery session has expired; start again",
        ));
    }
    audit::record(
        &state,
        "anonymous",
        "discovery.confirm",
        Some(&rec.id),
        Outcome::Success,
        json!({"hwid_hash": rec.hwid_hash}),
    )
    .await?;
    Ok(Json(DiscoveryView {
        discovery_id: rec.id,
        status: "confirmed",
        expires_at: rec.expires_at.0,
    }))
}

fn csr_der_with_key(csr_pem: &str, agent_pub: &[u8]) -> ApiResult<Vec<u8>> {
    use x509_parser::prelude::FromDer;
    let bad = |m: &str| ApiError::with_message(ErrorCode::CsrInvalid, m.to_owned());
    let (_, pem) = x509_parser::pem::parse_x509_pem(csr_pem.as_bytes())
        .map_err(|_| bad("csr_pem is not PEM"))?;
    if pem.label != "CERTIFICATE REQUEST" {
        return Err(bad("csr_pem is not a CERTIFICATE REQUEST"));
    }
    let (_, csr) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&pem.contents)
            .map_err(|_| bad("csr_pem is not a PKCS#10 request"))?;
    let key = &csr
        .certification_request_info
        .subject_pki
        .subject_public_key
        .data;
    if key.as_ref() != agent_pub {
        return Err(bad(
            "the CSR's key must be the agent's Ed25519 key (agent_pub)",
        ));
    }
    Ok(pem.contents)
}

/// Flow 1, step 1: a discovered agent asks to pair; it gets a single-use pair token
/// (5 minutes) to show as a QR code.
#[utoipa::path(post, path = "/api/pair/request", request_body = inline(serde_json::Value),
    responses((status = 201, description = "PairResponse"), (status = 409, description = "discovery not confirmed"), (status = 429, description = "rate limited")))]
pub async fn pair_request(
    State(state): State<AppState>,
    Extension(peer): Extension<Peer>,
    ApiJson(req): ApiJson<PairRequest>,
) -> ApiResult<(StatusCode, Json<PairResponse>)> {
    crate::ratelimit::check(
        &state,
        "pair",
        peer.addr.ip(),
        state.config.pairing.discovery_per_minute,
    )
    .await?;
    let disc = discovery_from_token(&state, &req.challenge_token).await?;
    if disc.status != DiscoveryStatus::Confirmed {
        return Err(ApiError::with_message(
            ErrorCode::UnexpectedMessage,
            "confirm discovery first (POST /api/discovery/confirm)",
        ));
    }
    if disc.agent_pub != req.agent_pub {
        return Err(ApiError::with_message(
            ErrorCode::Forbidden,
            "agent_pub differs from the key that completed discovery",
        ));
    }
    let hwid_hash = tether_proto::ids::sha256_hex(req.hwid.as_bytes());
    if hwid_hash != disc.hwid_hash {
        return Err(ApiError::with_message(
            ErrorCode::Forbidden,
            "hwid does not match the discovered hardware id",
        ));
    }
    let pub_bytes = b64url_decode(&req.agent_pub).unwrap_or_default();
    csr_der_with_key(&req.csr_pem, &pub_bytes)?;

    let now = state.now();
    let device = Device {
        id: crate::random::id("dev"),
        name: req.device_name.trim().to_owned(),
        hwid_hash,
        agent_pub: req.agent_pub.clone(),
        os: serde_json::to_value(req.os)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        owner_id: None,
        status: DeviceStatus::PendingPairing,
        cert_serial: None,
        cert_pem: None,
        created_at: now,
        paired_at: None,
    };
    state.store.insert_device(&device).await?;
    let token = crate::random::token();
    let expires_at = ms_after(now, state.config.pairing.pair_token_ttl_s);
    state
        .store
        .insert_pairing(&PairingRecord {
            token_hash: tether_proto::ids::sha256_hex(token.as_bytes()),
            device_id: device.id.clone(),
            agent_pub: req.agent_pub.clone(),
            device_name: device.name.clone(),
            csr_pem: req.csr_pem.clone(),
            created_at: now,
            expires_at,
            used_at: None,
            used_by: None,
        })
        .await?;
    audit::record(
        &state,
        &device.id,
        "pair.request",
        Some(&device.id),
        Outcome::Success,
        json!({"discovery_id": disc.id, "device_name": device.name}),
    )
    .await?;
    let pair_url = format!("{}/pair#token={token}", state.public_url);
    Ok((
        StatusCode::CREATED,
        Json(PairResponse {
            device_id: device.id,
            pair_token: token,
            pair_url,
            expires_at,
        }),
    ))
}

/// `POST /api/pair/confirm`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmRequest {
    /// The token from the QR code (or the whole pair URL).
    pub pair_token: String,
}

impl tether_proto::validate::Validate for ConfirmRequest {
    fn validate(&self) -> Result<(), tether_proto::ProtoError> {
        if self.pair_token.len() < 16 || self.pair_token.len() > 4096 {
            return Err(tether_proto::ProtoError::InvalidField {
                field: "pair_token",
                reason: "must be 16-4096 characters".into(),
            });
        }
        Ok(())
    }
}

/// The outcome of pairing.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PairedView {
    /// The device.
    pub device_id: String,
    /// Its name.
    pub device_name: String,
    /// `active`, or `awaiting_approval` when an admin must approve first.
    pub status: String,
    /// The number the PC shows too; compare them.
    pub pairing_code: String,
}

fn owner_key_material(user: &User) -> String {
    user.mobile_pub.clone().unwrap_or_else(|| user.id.clone())
}

/// Takes a token or a pair URL containing `token=...`.
fn token_from(input: &str) -> &str {
    input.rsplit_once("token=").map_or(input, |(_, t)| t).trim()
}

/// Flow 1, step 2: the logged-in owner confirms; the device certificate is issued.
#[utoipa::path(post, path = "/api/pair/confirm", request_body = ConfirmRequest,
    responses((status = 200, body = PairedView), (status = 404, description = "unknown token"), (status = 409, description = "5007 already used"), (status = 410, description = "5006 expired")),
    security(("bearer" = [])))]
pub async fn pair_confirm(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<ConfirmRequest>,
) -> ApiResult<Json<PairedView>> {
    let token = token_from(&req.pair_token);
    let hash = tether_proto::ids::sha256_hex(token.as_bytes());
    let now = state.now();
    let pairing = match state
        .store
        .consume_pairing(&hash, &caller.user.id, now)
        .await?
    {
        Ok(p) => p,
        Err(why) => {
            audit::record(
                &state,
                &caller.user.id,
                "pair.confirm",
                None,
                Outcome::Failure,
                json!({"reason": format!("{why:?}")}),
            )
            .await?;
            return Err(match why {
                PairingRefusal::NotFound => {
                    ApiError::with_message(ErrorCode::NotFound, "unknown pair token")
                }
                PairingRefusal::Expired => ApiError::new(ErrorCode::PairTokenExpired),
                PairingRefusal::Used => ApiError::new(ErrorCode::PairTokenUsed),
            });
        }
    };
    let mut device = state
        .store
        .device(&pairing.device_id)
        .await?
        .ok_or_else(|| ApiError::internal("pairing names a missing device"))?;
    let pub_bytes = b64url_decode(&pairing.agent_pub).unwrap_or_default();
    let csr_der = csr_der_with_key(&pairing.csr_pem, &pub_bytes)?;
    let cert = state.ca.issue_device_certificate(&csr_der, &device.id)?;
    let require_approval = match state.store.setting(REQUIRE_APPROVAL_SETTING).await? {
        Some(v) => v == "true",
        None => state.config.pairing.require_approval,
    };
    device.owner_id = Some(caller.user.id.clone());
    device.status = if require_approval {
        DeviceStatus::AwaitingApproval
    } else {
        DeviceStatus::Active
    };
    device.cert_serial = Some(cert.serial.to_string());
    device.cert_pem = Some(cert.pem());
    device.paired_at = Some(now);
    state.store.update_device(&device).await?;
    audit::record(
        &state,
        &caller.user.id,
        "pair.confirm",
        Some(&device.id),
        Outcome::Success,
        json!({"status": device.status.as_str()}),
    )
    .await?;
    audit::record(
        &state,
        "system",
        "cert.issued",
        Some(&device.id),
        Outcome::Success,
        json!({"serial": cert.serial.to_string(), "not_after": cert.not_after.0}),
    )
    .await?;
    Ok(Json(PairedView {
        device_id: device.id,
        device_name: device.name,
        status: device.status.as_str().to_owned(),
        pairing_code: pairing_code(token, &pairing.agent_pub, &owner_key_material(&caller.user)),
    }))
}

/// The gateway's envelope keys, so an agent can verify what the gateway signs.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GatewayKey {
    /// Key id (as in envelope headers).
    pub kid: String,
    /// Ed25519 public key, unpadded base64url.
    pub public_key: String,
}

/// What `POST /api/pair/activate` answers.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ActivationView {
    /// `waiting` (owner has not confirmed), `awaiting_approval`, or `active`.
    pub status: String,
    /// When `active`: a signed `device_activate` envelope (the frame, as a string).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activation: Option<String>,
    /// The gateway's envelope keys.
    pub gateway_keys: Vec<GatewayKey>,
    /// The pairing code to show on the PC, once confirmed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pairing_code: Option<String>,
}

pub fn gateway_keys(state: &AppState) -> Vec<GatewayKey> {
    vec![GatewayKey {
        kid: state.gateway_signer.kid().to_string(),
        public_key: tether_proto::validate::b64url_encode(
            state.gateway_signer.verifying_key().as_bytes(),
        ),
    }]
}

/// Flow 1, step 3: the agent polls, proving it holds the key the token is bound to, and
/// receives its certificate once the owner confirmed.
#[utoipa::path(post, path = "/api/pair/activate", request_body = inline(serde_json::Value),
    responses((status = 200, body = ActivationView), (status = 202, body = ActivationView), (status = 403, description = "token bound to another agent key"), (status = 410, description = "5006 expired")))]
pub async fn pair_activate(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<PairActivate>,
) -> ApiResult<(StatusCode, Json<ActivationView>)> {
    let hash = tether_proto::ids::sha256_hex(req.pair_token.as_bytes());
    let pairing = state
        .store
        .pairing_by_token_hash(&hash)
        .await?
        .ok_or_else(|| ApiError::with_message(ErrorCode::NotFound, "unknown pair token"))?;
    if pairing.agent_pub != req.agent_pub {
        audit::record(
            &state,
            "anonymous",
            "pair.activate",
            Some(&pairing.device_id),
            Outcome::Denied,
            json!({"reason": "different agent key"}),
        )
        .await?;
        return Err(ApiError::with_message(
            ErrorCode::Forbidden,
            "this pair token is bound to another agent key",
        ));
    }
    verify_ed25519(
        &req.agent_pub,
        &pair_activate_input(&req.pair_token),
        &req.signature,
    )?;
    let now = state.now();
    let waiting = |status: &str| ActivationView {
        status: status.to_owned(),
        activation: None,
        gateway_keys: gateway_keys(&state),
        pairing_code: None,
    };
    if pairing.used_at.is_none() {
        if pairing.expires_at.0 < now.0 {
            return Err(ApiError::new(ErrorCode::PairTokenExpired));
        }
        return Ok((StatusCode::ACCEPTED, Json(waiting("waiting"))));
    }
    let device = state
        .store
        .device(&pairing.device_id)
        .await?
        .ok_or_else(|| ApiError::internal("pairing names a missing device"))?;
    let owner = match &device.owner_id {
        Some(id) => state.store.user_by_id(id).await?,
        None => None,
    }
    .ok_or_else(|| ApiError::internal("paired device without an owner"))?;
    let code = pairing_code(
        &req.pair_token,
        &pairing.agent_pub,
        &owner_key_material(&owner),
    );
    match device.status {
        DeviceStatus::Active => {}
        DeviceStatus::AwaitingApproval => {
            let mut v = waiting("awaiting_approval");
            v.pairing_code = Some(code);
            return Ok((StatusCode::ACCEPTED, Json(v)));
        }
        DeviceStatus::Revoked => return Err(ApiError::new(ErrorCode::DeviceRevoked)),
        DeviceStatus::PendingPairing => {
            return Ok((StatusCode::ACCEPTED, Json(waiting("waiting"))));
        }
    }
    // The owner's keys as registered now (the registration key and every statement
    // since): pairing in front of the PC is the other way keys get pinned.
    let owner_keys = crate::owner_keys::registered(&state, &owner).await?;
    let body = DeviceActivate {
        device_id: device.id.clone(),
        device_cert_pem: device.cert_pem.clone().unwrap_or_default(),
        ca_chain_pem: vec![
            state.ca.certificates().intermediate_pem(),
            state.ca.certificates().root_pem(),
        ],
        owner_keys,
    };
    let stamp = Stamp {
        iat: now,
        ttl: 600,
        seq: 0,
        message_id: MessageId::from_random_bytes(crate::random::bytes::<16>()),
        trace_id: tether_proto::TraceId::parse(&crate::trace::current_trace_id()).unwrap_or_else(
            |_| tether_proto::TraceId::from_random_bytes(crate::random::bytes::<16>()),
        ),
    };
    let frame = state.gateway_signer.seal(stamp, &body)?;
    let frame = String::from_utf8(frame).map_err(ApiError::internal)?;
    Ok((
        StatusCode::OK,
        Json(ActivationView {
            status: "active".into(),
            activation: Some(frame),
            gateway_keys: gateway_keys(&state),
            pairing_code: Some(code),
        }),
    ))
}
