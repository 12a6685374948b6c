//! Flows 0 and 1: an unknown PC introduces itself, shows a QR code to its owner, and
//! collects its device certificate once the owner confirmed.
//!
//! A pairing in progress is kept in `pairing.json`, so an agent restarted while waiting
//! picks the same request up again instead of showing a new code.

mod activation;

use std::io::Read;
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use tether_client::{Api, ClientError};
use tether_proto::messages::discovery::{
    DiscoveryChallenge, DiscoveryConfirm, DiscoveryHello, PairActivate, PairRequest, PairResponse,
    discovery_proof_input, pair_activate_input,
};
use tether_proto::validate::{Validate, b64url_encode};
use tether_proto::{ErrorCode, UnixMillis};

use crate::config::DeviceName;
use crate::error::AgentError;
use crate::qr::Modules;
use crate::state::{GatewayKey, PairedDevice, PairingTicket, files};
use crate::status::rfc3339_ms;
use crate::wire::UnverifiedFrame;
use crate::{Context, out, platform, random, socket};

/// How often the agent asks whether the owner has confirmed.
pub const POLL_EVERY: Duration = Duration::from_secs(2);
/// How long the gateway may take to answer the hello.
const CHALLENGE_TIMEOUT: Duration = Duration::from_secs(15);

/// The discovery challenge as received, kept until the gateway keys arrive to verify it.
#[derive(Debug)]
struct ReceivedChallenge {
    frame: Vec<u8>,
    received_at: UnixMillis,
    body: DiscoveryChallenge,
}

/// What `POST /api/pair/activate` answers (200 or 202).
#[derive(Debug, Deserialize)]
struct ActivationAnswer {
    status: String,
    #[serde(default)]
    activation: Option<String>,
    #[serde(default)]
    gateway_keys: Vec<GatewayKey>,
    #[serde(default)]
    pairing_code: Option<String>,
}

/// Pairs this PC. `None` when the agent was asked to stop before pairing completed.
pub async fn pair(
    ctx: &mut Context,
    name: &DeviceName,
) -> Result<Option<PairedDevice>, AgentError> {
    let api = Api::new(ctx.server.as_str(), &ctx.ca.pem)?;
    if let Some(ticket) = ctx.state.pairing_ticket()? {
        say!(
            "Resuming the pairing request made earlier ({}).",
            ticket.device_id
        );
        match poll(ctx, &api, &ticket, None, Announce::WhenWaiting).await {
            Err(AgentError::PairingExpired) => {
                say!("That request has expired; starting a new one.");
            }
            Err(AgentError::Client(ClientError::Api { body, .. }))
                if body.code == ErrorCode::NotFound =>
            {
                say!("The server no longer knows that request; starting a new one.");
            }
            other => return other,
        }
        ctx.state.remove_pairing_ticket()?;
    }

    let shutdown = ctx.shutdown.clone();
    let (ticket, challenge) = tokio::select! {
        r = request(ctx, &api, name) => r?,
        () = shutdown.cancelled() => return Ok(None),
    };
    show(ctx, &ticket)?;
    let result = poll(ctx, &api, &ticket, Some(challenge), Announce::Done).await;
    if matches!(result, Err(AgentError::PairingExpired)) {
        ctx.state.remove_pairing_ticket()?;
    }
    result
}

/// Whether the QR code still has to be shown: a resumed request shows it only once the
/// server says it is still waiting for the owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Announce {
    WhenWaiting,
    Done,
}

/// Flows 0 and 1 up to the pair token: hello and challenge, the discovery proof, the pair
/// request. The ticket is saved before it is returned.
async fn request(
    ctx: &mut Context,
    api: &Api,
    name: &DeviceName,
) -> Result<(PairingTicket, ReceivedChallenge), AgentError> {
    let hwid = ctx
        .state
        .hwid(platform::machine_id(), &mut rand_core::OsRng)?;
    let challenge = discover(ctx, &hwid).await?;
    let proof = DiscoveryConfirm {
        challenge_token: challenge.body.challenge_token.clone(),
        nonce_signature: ctx
            .identity
            .sign_b64(&discovery_proof_input(&challenge.body.challenge_token)),
    };
    api.post::<_, serde_json::Value>("/api/discovery/confirm", &proof)
        .await?;
    let request = PairRequest {
        challenge_token: challenge.body.challenge_token.clone(),
        device_name: name.as_str().to_owned(),
        hwid,
        agent_pub: ctx.identity.agent_pub(),
        csr_pem: ctx.identity.csr_pem(name.as_str())?,
        os: platform::os_family(),
    };
    let (_, answer) = api
        .post::<_, PairResponse>("/api/pair/request", &request)
        .await?;
    answer.validate()?;
    let ticket = PairingTicket {
        pair_url: answer.pair_url,
        pair_token: answer.pair_token,
        device_id: answer.device_id,
        expires_at: answer.expires_at.0,
    };
    ctx.state.save_pairing_ticket(&ticket)?;
    Ok((ticket, challenge))
}

/// Flow 0: one signed hello, one challenge, over server-authenticated WSS.
async fn discover(ctx: &mut Context, hwid: &str) -> Result<ReceivedChallenge, AgentError> {
    let hello = DiscoveryHello {
        hwid_hash: tether_proto::ids::sha256_hex(hwid.as_bytes()),
        nonce: b64url_encode(&random::bytes::<32>()),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        agent_manifest_hash: own_executable_hash().await?,
        agent_pub: ctx.identity.agent_pub(),
        os: platform::os_family(),
    };
    let frame = ctx.outbox.seal(&hello)?;
    let mut ws = tether_client::connect_agent_ws(ctx.server.as_str(), &ctx.ca.pem, None).await?;
    socket::send(&mut ws, frame).await?;
    let reply = socket::next_within(&mut ws, CHALLENGE_TIMEOUT).await;
    socket::close(&mut ws).await;
    let frame = match reply? {
        socket::Incoming::Frame(f) => f,
        socket::Incoming::Closed(reason) => {
            return Err(AgentError::Protocol(format!(
                "the gateway closed the connection without a challenge ({})",
                reason.unwrap_or_else(|| "no reason given".into())
            )));
        }
    };
    let received_at = ctx.clock.now();
    let parsed = UnverifiedFrame::parse(&frame)?;
    if let Some(refusal) = parsed.refusal() {
        return Err(refusal);
    }
    let body = parsed.body::<DiscoveryChallenge>()?;
    Ok(ReceivedChallenge {
        frame,
        received_at,
        body,
    })
}

/// Shows the pair URL as a QR code on the terminal and in `pair-qr.png`.
fn show(ctx: &Context, ticket: &PairingTicket) -> Result<(), AgentError> {
    let modules = Modules::encode(&ticket.pair_url)?;
    ctx.state
        .write_atomic(files::PAIR_QR, &modules.to_png()?, false)?;
    say!();
    say!("To pair this PC, scan this code with the Tether app on your phone");
    say!("(or run `tether pair <pair URL>` where you are signed in):");
    say!();
    out::text(&modules.to_terminal());
    say!();
    say!("pair URL: {}", ticket.pair_url);
    say!("expires at: {}", rfc3339_ms(ticket.expires_at));
    say!(
        "QR code image: {}",
        ctx.state.path(files::PAIR_QR).display()
    );
    say!("Waiting for the owner to confirm...");
    Ok(())
}

/// Asks every [`POLL_EVERY`] whether the owner confirmed, until the device is active.
async fn poll(
    ctx: &mut Context,
    api: &Api,
    ticket: &PairingTicket,
    mut challenge: Option<ReceivedChallenge>,
    mut announce: Announce,
) -> Result<Option<PairedDevice>, AgentError> {
    let request = PairActivate {
        pair_token: ticket.pair_token.clone(),
        agent_pub: ctx.identity.agent_pub(),
        signature: ctx
            .identity
            .sign_b64(&pair_activate_input(&ticket.pair_token)),
    };
    let mut told_awaiting = false;
    let mut last_problem: Option<String> = None;
    loop {
        match api
            .post::<_, ActivationAnswer>("/api/pair/activate", &request)
            .await
        {
            Ok((_, answer)) => {
                last_problem = None;
                if let Some(c) = challenge.take() {
                    activation::check_challenge(
                        &c.frame,
                        c.received_at,
                        &c.body,
                        &answer.gateway_keys,
                    )?;
                }
                match answer.status.as_str() {
                    "active" => {
                        let device = activation::complete(ctx, ticket, answer)?;
                        return Ok(Some(device));
                    }
                    "waiting" if announce == Announce::WhenWaiting => {
                        announce = Announce::Done;
                        show(ctx, ticket)?;
                    }
                    "awaiting_approval" if !told_awaiting => {
                        told_awaiting = true;
                        say!(
                            "The owner confirmed (pairing code {}); an administrator must now approve this PC.",
                            answer.pairing_code.as_deref().unwrap_or("unknown")
                        );
                    }
                    _ => {}
                }
            }
            Err(e) => {
                if let Some(fatal) = fatal_activation_error(e, &mut last_problem) {
                    return Err(fatal);
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(POLL_EVERY) => {}
            () = ctx.shutdown.cancelled() => return Ok(None),
        }
    }
}

/// Sorts an activation poll failure: `Some` ends pairing, `None` means try again (the
/// problem is printed once, not every two seconds).
fn fatal_activation_error(e: ClientError, last: &mut Option<String>) -> Option<AgentError> {
    if let ClientError::Api { status, body } = &e {
        match body.code {
            ErrorCode::PairTokenExpired => return Some(AgentError::PairingExpired),
            ErrorCode::RateLimited | ErrorCode::Unavailable | ErrorCode::Internal => {}
            _ if *status >= 500 => {}
            _ => return Some(AgentError::Client(e)),
        }
    }
    let text = e.to_string();
    if last.as_deref() != Some(text.as_str()) {
        say_err!(
            "warning: {text}; still trying every {}s",
            POLL_EVERY.as_secs()
        );
        *last = Some(text);
    }
    None
}

/// SHA-256 (hex) of the running executable: the `agent_manifest_hash` of the hello.
async fn own_executable_hash() -> Result<String, AgentError> {
    let exe = std::env::current_exe().map_err(AgentError::io("the agent's executable"))?;
    tokio::task::spawn_blocking(move || {
        let mut f = std::fs::File::open(&exe).map_err(AgentError::io(&exe))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = f.read(&mut buf).map_err(AgentError::io(&exe))?;
            let Some(chunk) = buf.get(..n) else { break };
            if chunk.is_empty() {
                break;
            }
            hasher.update(chunk);
        }
        Ok(hex_lower(&hasher.finalize()))
    })
    .await
    .map_err(|e| AgentError::Protocol(format!("hashing the executable: {e}")))?
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
