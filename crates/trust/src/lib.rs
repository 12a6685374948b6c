//! Tether trust core.
//!
//! Everything in Tether that proves who someone is, or keeps a secret at rest, goes through
//! this crate:
//!
//! - [`seal`]: envelope encryption (AES-256-GCM data keys wrapped by a key-encryption key)
//!   with a purpose label bound into every blob;
//! - [`keystore`]: the [`Keystore`] trait holding that key-encryption key and storing named
//!   blobs, with a directory-backed [`FileKeystore`];
//! - [`ca`]: the [`CertificateAuthority`]: an offline-sealed ECDSA P-384 root, an online
//!   P-256 intermediate, device certificates from PKCS#10 requests, server TLS
//!   certificates, revocation and CRLs, and chain verification with rustls-webpki;
//! - [`jwt`]: a small EdDSA-only JWT implementation with a rotating [`KeyRing`], a JWKS
//!   document, an [`Issuer`] and a [`Validator`].
//!
//! Time is always an input (a [`tether_proto::Clock`] or a [`tether_proto::UnixMillis`]),
//! never read from the system deep inside, so expiry and rotation are tested without
//! sleeping. Every error is a [`TrustError`] with a stable [`tether_proto::ErrorCode`].

pub mod ca;
pub mod error;
pub mod jwt;
pub mod keystore;
mod random;
pub mod seal;

pub use ca::{
    CaCertificates, CaConfig, CaNames, CertSerial, CertificateAuthority, Crl, IssuedCertificate,
    IssuedServerCertificate, RevocationReason, VerifiedDevice,
};
pub use error::{CsrRejection, TokenRejection, TrustError};
pub use jwt::{
    Claims, Issuer, IssuerConfig, Jwk, Jwks, KeyRing, KeyRingConfig, SharedKeyRing, TokenType,
    Validator, ValidatorConfig,
};
pub use keystore::{FileKeystore, Keystore, MemoryKeystore};
pub use seal::Kek;
