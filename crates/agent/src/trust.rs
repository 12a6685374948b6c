//! Coming to trust the server's root CA. Once the state directory holds it, nothing else
//! is consulted: the first choice is final, and a different CA later is refused instead
//! of silently replacing the pinned one.

use tether_client::{fetch_ca_for_pinning, fingerprint, first_cert_der};

use crate::config::{ServerUrl, TrustSource};
use crate::error::AgentError;
use crate::state::StateDir;

/// The trusted root CA of a server.
#[derive(Debug, Clone)]
pub struct TrustedCa {
    /// PEM.
    pub pem: String,
    /// SHA-256 fingerprint, as [`tether_client::fingerprint`] writes it.
    pub fingerprint: String,
}

impl TrustedCa {
    fn from_pem(pem: String) -> Result<Self, AgentError> {
        let der = first_cert_der(&pem)?;
        Ok(Self {
            fingerprint: fingerprint(&der),
            pem,
        })
    }
}

/// Returns the CA to trust for `server`, establishing it from `source` on first use and
/// saving it in the state directory.
pub async fn establish(
    state: &StateDir,
    server: &ServerUrl,
    source: &TrustSource,
) -> Result<TrustedCa, AgentError> {
    if let Some(pem) = state.ca_pem()? {
        let saved = TrustedCa::from_pem(pem).map_err(|e| AgentError::CorruptState {
            path: state.path(crate::state::files::CA),
            reason: e.to_string(),
        })?;
        check_matches_saved(&saved, source)?;
        return Ok(saved);
    }
    let ca = match source {
        TrustSource::StateOnly => {
            return Err(AgentError::Trust(format!(
                "this agent does not trust {server} yet. Give it the server's root CA one of \
                 three ways:\n  --ca-file PEM            the CA certificate file (from the server's \
                 data dir or its admin)\n  --ca-fingerprint SHA256  download it and check it \
                 against the fingerprint the admin gave you\n  --trust-on-first-use     \
                 download it and trust it as is (only on a network you trust)"
            )));
        }
        TrustSource::CaFile(path) => {
            let pem = std::fs::read_to_string(path).map_err(AgentError::io(path))?;
            let ca = TrustedCa::from_pem(pem)
                .map_err(|e| AgentError::Trust(format!("--ca-file {}: {e}", path.display())))?;
            say!(
                "Trusting the server CA from {} (SHA-256 {}).",
                path.display(),
                ca.fingerprint
            );
            ca
        }
        TrustSource::Fingerprint(want) => {
            let (pem, got) = fetch_ca_for_pinning(server.as_str()).await?;
            if &got != want {
                return Err(AgentError::Trust(format!(
                    "the server's CA does not have the fingerprint you gave — refusing it.\n  \
                     expected: {want}\n  received: {got}\nSomeone may be intercepting the \
                     connection, or the fingerprint is for another server."
                )));
            }
            say!("The server's CA matches the fingerprint you gave ({got}).");
            TrustedCa::from_pem(pem)?
        }
        TrustSource::DangerousTrustOnFirstUse => {
            let (pem, got) = fetch_ca_for_pinning(server.as_str()).await?;
            say!(
                "WARNING: trusting the server's CA on first use, without checking it.\n\
                 WARNING: its SHA-256 fingerprint is\n\
                 WARNING:   {got}\n\
                 WARNING: compare it with the one the server's admin shows; if they differ, \
                 stop this agent and delete its state dir."
            );
            TrustedCa::from_pem(pem)?
        }
    };
    state.save_ca_pem(&ca.pem)?;
    Ok(ca)
}

fn check_matches_saved(saved: &TrustedCa, source: &TrustSource) -> Result<(), AgentError> {
    let other = match source {
        TrustSource::CaFile(path) => {
            let pem = std::fs::read_to_string(path).map_err(AgentError::io(path))?;
            Some(TrustedCa::from_pem(pem)?.fingerprint)
        }
        TrustSource::Fingerprint(fp) => Some(fp.clone()),
        TrustSource::StateOnly | TrustSource::DangerousTrustOnFirstUse => None,
    };
    match other {
        Some(fp) if fp != saved.fingerprint => Err(AgentError::Trust(format!(
            "the state dir already trusts another CA ({}), not {fp}. Use a new state dir to \
             pair with another server.",
            saved.fingerprint
        ))),
        _ => Ok(()),
    }
}
