//! The end of pairing: checking what the gateway signed and saving it.

use tether_proto::UnixMillis;
use tether_proto::messages::discovery::{DeviceActivate, DiscoveryChallenge};
use x509_parser::prelude::FromDer;

use super::ActivationAnswer;
use crate::Context;
use crate::error::AgentError;
use crate::state::{DeviceRecord, GatewayKey, PairedDevice, PairingTicket};
use crate::wire::{FrozenClock, gateway_key_set, verify};

/// Verifies the discovery challenge, read before the gateway keys were known, as of the
/// moment it arrived.
pub(super) fn check_challenge(
    frame: &[u8],
    received_at: UnixMillis,
    parsed: &DiscoveryChallenge,
    keys: &[GatewayKey],
) -> Result<(), AgentError> {
    let set = gateway_key_set(keys)?;
    let verified = verify(frame, &set, &FrozenClock(received_at)).map_err(|e| {
        AgentError::Protocol(format!(
            "the discovery challenge was not signed by the gateway keys the server lists: {e}"
        ))
    })?;
    if &verified.into_body::<DiscoveryChallenge>()? != parsed {
        return Err(AgentError::Protocol(
            "the verified discovery challenge differs from the one read".into(),
        ));
    }
    Ok(())
}

/// Verifies the signed `device_activate`, checks the certificate is for our key and
/// chains to the CA we trust, saves everything and tells the user.
pub(super) fn complete(
    ctx: &Context,
    ticket: &PairingTicket,
    answer: ActivationAnswer,
) -> Result<PairedDevice, AgentError> {
    let frame = answer
        .activation
        .ok_or_else(|| AgentError::Protocol("status active without an activation".into()))?;
    let keys = gateway_key_set(&answer.gateway_keys)?;
    let activate: DeviceActivate = verify(frame.as_bytes(), &keys, &*ctx.clock)?.into_body()?;
    if activate.device_id != ticket.device_id {
        return Err(AgentError::Protocol(format!(
            "the activation is for {}, but this PC asked to pair as {}",
            activate.device_id, ticket.device_id
        )));
    }
    check_certificate_key(&activate.device_cert_pem, &ctx.identity.public_bytes())?;
    check_chain_root(&activate.ca_chain_pem, &ctx.ca.pem)?;
    let pairing_code = answer.pairing_code.unwrap_or_else(|| "unknown".to_owned());
    let device = PairedDevice {
        record: DeviceRecord {
            device_id: activate.device_id,
            server_url: ctx.server.as_str().to_owned(),
            paired_at: ctx.clock.now().0,
            pairing_code: pairing_code.clone(),
            gateway_keys: answer.gateway_keys,
            owner_keys: activate.owner_keys,
            owner_keys_version: 0,
        },
        cert_pem: activate.device_cert_pem,
        ca_chain_pem: activate.ca_chain_pem,
    };
    ctx.state.save_device(&device)?;
    say!(
        "Paired as {}. Pairing code: {pairing_code} — check that your phone/CLI shows the same number.",
        device.record.device_id
    );
    Ok(device)
}

/// The certificate's public key must be the agent key: a certificate for any other key
/// would be useless to us, and a sign that something is wrong on the server.
pub(super) fn check_certificate_key(
    cert_pem: &str,
    agent_pub: &[u8; 32],
) -> Result<(), AgentError> {
    let der = tether_client::first_cert_der(cert_pem)?;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&der)
        .map_err(|e| AgentError::Protocol(format!("the device certificate does not parse: {e}")))?;
    if cert.public_key().subject_public_key.data.as_ref() != agent_pub.as_slice() {
        return Err(AgentError::Protocol(
            "the device certificate is not for this agent's key".into(),
        ));
    }
    Ok(())
}

/// The chain must end at the root CA this agent already trusts.
fn check_chain_root(chain: &[String], trusted_pem: &str) -> Result<(), AgentError> {
    let root = chain
        .last()
        .ok_or_else(|| AgentError::Protocol("the activation has an empty CA chain".into()))?;
    if chain.len() < 2 {
        return Err(AgentError::Protocol(
            "the activation's CA chain lacks the intermediate".into(),
        ));
    }
    if tether_client::first_cert_der(root)? != tether_client::first_cert_der(trusted_pem)? {
        return Err(AgentError::Protocol(
            "the activation's CA chain ends at a root other than the one this agent trusts".into(),
        ));
    }
    Ok(())
}
