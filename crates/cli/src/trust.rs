//! Which server to talk to and which CA to trust for it.
//!
//! The CA comes from `--ca-file`, or the one pinned in the profile, or, on first contact,
//! the server's own `/ca.pem` fetched without verification and trusted only after the
//! user confirmed its fingerprint (or it equals `--ca-fingerprint`). Whatever the source,
//! a given `--ca-fingerprint` must match or nothing is sent.

use std::path::Path;

use tether_client::{fetch_ca_for_pinning, fingerprint, first_cert_der};

use crate::error::CliError;
use crate::profile::{Profile, ProfileConfig};
use crate::prompt;

/// A server and the CA it is verified against.
#[derive(Debug, Clone)]
pub struct Trusted {
    /// Base URL, `https://host[:port]` without a trailing slash.
    pub server: String,
    /// The root CA (PEM).
    pub ca_pem: String,
    /// Its SHA-256 fingerprint (colon hex).
    pub fingerprint: String,
}

/// What the command line says about trust.
#[derive(Debug, Clone, Copy, Default)]
pub struct TrustFlags<'a> {
    /// `--server`.
    pub server: Option<&'a str>,
    /// `--ca-file`.
    pub ca_file: Option<&'a Path>,
    /// `--ca-fingerprint`.
    pub ca_fingerprint: Option<&'a str>,
    /// `--yes`: never prompt.
    pub yes: bool,
    /// Standard input carries the password (`--password-stdin`), so it cannot answer.
    pub stdin_taken: bool,
}

/// The canonical form of a server URL: `https://host[:port][/prefix]`, no trailing slash.
/// A bare `host:port` means HTTPS; plain HTTP is refused.
pub fn normalize_server(input: &str) -> Result<String, CliError> {
    let s = input.trim();
    let rest = match s.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => rest,
        Some((scheme, _)) => {
            return Err(CliError::usage(format!(
                "--server must be an https:// URL (Tether speaks only TLS), not {scheme}://"
            )));
        }
        None => s,
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.starts_with('/') || rest.chars().any(char::is_whitespace) {
        return Err(CliError::usage(format!("{input:?} is not a server URL")));
    }
    Ok(format!("https://{rest}"))
}

/// A fingerprint as 64 uppercase hex digits (separators `:`, spaces and `-` ignored), or
/// `None` if it is not a SHA-256 fingerprint.
pub fn normalize_fingerprint(fp: &str) -> Option<String> {
    let hex: String = fp
        .chars()
        .filter(|c| !matches!(c, ':' | ' ' | '-'))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

/// What to do with a CA seen for the first time.
#[derive(Debug)]
pub enum FirstUse {
    /// Trust it (it equals `--ca-fingerprint`).
    Accept,
    /// Show the fingerprint and ask.
    Ask,
    /// Do not trust it.
    Refuse(CliError),
}

/// Decides about a first-seen CA with fingerprint `actual`. `expected` is the normalized
/// `--ca-fingerprint`.
pub fn first_use(actual: &str, expected: Option<&str>, flags: &TrustFlags<'_>) -> FirstUse {
    match expected {
        Some(e) if normalize_fingerprint(actual).as_deref() == Some(e) => FirstUse::Accept,
        Some(_) => FirstUse::Refuse(mismatch(actual)),
        None if flags.yes => FirstUse::Refuse(CliError::usage(
            "refusing to trust a new server CA without asking: with --yes, pass the expected --ca-fingerprint (or --ca-file)",
        )),
        None if flags.stdin_taken => FirstUse::Refuse(CliError::usage(
            "cannot ask whether to trust the server's CA: standard input carries the password; pass --ca-fingerprint or --ca-file",
        )),
        None => FirstUse::Ask,
    }
}

fn mismatch(actual: &str) -> CliError {
    CliError::usage(format!(
        "the server's CA fingerprint is {actual}, which does NOT match --ca-fingerprint; refusing to connect (someone may be intercepting the connection, or the fingerprint is for another server)"
    ))
}

fn check_expected(actual: &str, expected: Option<&str>) -> Result<(), CliError> {
    match expected {
        Some(e) if normalize_fingerprint(actual).as_deref() != Some(e) => Err(mismatch(actual)),
        _ => Ok(()),
    }
}

/// Resolves the server and its CA, pinning a new CA in the profile when the user (or the
/// flags) accepted it. Switching the profile to another server forgets the old session.
pub async fn resolve(profile: &Profile, flags: &TrustFlags<'_>) -> Result<Trusted, CliError> {
    let config = profile.config()?;
    let server = match (flags.server, &config) {
        (Some(s), _) => normalize_server(s)?,
        (None, Some(c)) => c.server.clone(),
        (None, None) => {
            return Err(CliError::usage(
                "no server yet: pass --server https://HOST:PORT (or set TETHER_SERVER); it is remembered afterwards",
            ));
        }
    };
    let expected = flags
        .ca_fingerprint
        .map(|fp| {
            normalize_fingerprint(fp).ok_or_else(|| {
                CliError::usage(format!(
                    "--ca-fingerprint {fp:?} is not a SHA-256 fingerprint (64 hex digits, colons allowed)"
                ))
            })
        })
        .transpose()?;
    let same_server = config.as_ref().is_some_and(|c| c.server == server);
    let stored = if same_server { profile.ca_pem()? } else { None };

    let (ca_pem, fp) = if let Some(path) = flags.ca_file {
        let pem = std::fs::read_to_string(path).map_err(CliError::io(format!(
            "reading --ca-file {}",
            path.display()
        )))?;
        let fp = fingerprint(&first_cert_der(&pem)?);
        check_expected(&fp, expected.as_deref())?;
        (pem, fp)
    } else if let Some(pem) = stored.clone() {
        let fp = fingerprint(&first_cert_der(&pem)?);
        check_expected(&fp, expected.as_deref())?;
        (pem, fp)
    } else {
        let (pem, fp) = fetch_ca_for_pinning(&server).await?;
        eprintln!("The server's CA fingerprint is {fp}");
        match first_use(&fp, expected.as_deref(), flags) {
            FirstUse::Accept => {}
            FirstUse::Refuse(e) => return Err(e),
            FirstUse::Ask => {
                eprintln!(
                    "Compare it with the fingerprint your server's admin gives you \
                     (`openssl x509 -noout -fingerprint -sha256` of the server's CA certificate)."
                );
                if !prompt::confirm("Trust it? [y/N] ")? {
                    return Err(CliError::usage(
                        "the server's CA was not trusted; nothing was saved",
                    ));
                }
            }
        }
        (pem, fp)
    };

    if stored.as_deref() != Some(ca_pem.as_str()) {
        if let Some(old) = config.as_ref().filter(|_| !same_server) {
            profile.clear_session()?;
            eprintln!(
                "note: this profile now uses {server} instead of {}; the saved session for the old server was forgotten",
                old.server
            );
        }
        profile.save_ca_pem(&ca_pem)?;
        profile.save_config(&ProfileConfig {
            server: server.clone(),
            ca_fingerprint: fp.clone(),
            email: config.filter(|_| same_server).and_then(|c| c.email),
        })?;
    }
    Ok(Trusted {
        server,
        ca_pem,
        fingerprint: fp,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    const FP: &str = "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89";

    #[test]
    fn server_urls_are_https_without_trailing_slash() {
        assert_eq!(
            normalize_server("https://h.example:8443/").unwrap(),
            "https://h.example:8443"
        );
        assert_eq!(
            normalize_server("localhost:8443").unwrap(),
            "https://localhost:8443"
        );
        assert_eq!(normalize_server("HTTPS://h").unwrap(), "https://h");
        assert!(normalize_server("http://h").is_err());
        assert!(normalize_server("ftp://h").is_err());
        assert!(normalize_server("https://").is_err());
        assert!(normalize_server("").is_err());
    }

    #[test]
    fn fingerprints_compare_in_any_spelling() {
        let plain = normalize_fingerprint(FP).unwrap();
        assert_eq!(plain.len(), 64);
        assert_eq!(
            normalize_fingerprint(&FP.to_lowercase().replace(':', "")),
            Some(plain.clone())
        );
        assert_eq!(normalize_fingerprint(&FP.replace(':', " ")), Some(plain));
        assert_eq!(normalize_fingerprint("AB:CD"), None);
        assert_eq!(normalize_fingerprint(&FP.replace('A', "G")), None);
    }

    #[test]
    fn a_first_seen_ca_is_trusted_without_asking_only_on_a_matching_fingerprint() {
        let expected = normalize_fingerprint(FP);
        let flags = TrustFlags {
            yes: true,
            ..TrustFlags::default()
        };
        assert!(matches!(
            first_use(FP, expected.as_deref(), &flags),
            FirstUse::Accept
        ));
        let other = FP.replace("AB:CD", "AB:CE");
        match first_use(&other, expected.as_deref(), &flags) {
            FirstUse::Refuse(e) => {
                assert_eq!(e.exit_status(), 2);
                assert!(e.to_string().contains("does NOT match"), "{e}");
            }
            d => panic!("mismatch must refuse, got {d:?}"),
        }
        // --yes without a fingerprint never trusts blindly.
        assert!(matches!(first_use(FP, None, &flags), FirstUse::Refuse(_)));
        // Standard input busy with the password: cannot ask.
        let busy = TrustFlags {
            stdin_taken: true,
            ..TrustFlags::default()
        };
        assert!(matches!(first_use(FP, None, &busy), FirstUse::Refuse(_)));
        assert!(matches!(
            first_use(FP, None, &TrustFlags::default()),
            FirstUse::Ask
        ));
    }
}
