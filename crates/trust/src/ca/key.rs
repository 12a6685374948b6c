//! The CA's own private keys, wrapped so they are zeroized when dropped, and the two
//! curves a CA key may use.

use std::fmt;

use rcgen::{
    KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PublicKeyData, SignatureAlgorithm,
    SigningKey,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_SIG_ECDSA_WITH_SHA256,
    OID_SIG_ECDSA_WITH_SHA384, Oid,
};
use x509_parser::x509::SubjectPublicKeyInfo;
use zeroize::{Zeroize, Zeroizing};

use crate::error::TrustError;

/// The curve of a CA key. Each signs with its own hash (P-256 with SHA-256, P-384 with
/// SHA-384): the two pairs every verifier of ours accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Curve {
    P256,
    P384,
}

/// DER of the `id-ecPublicKey` algorithm OID.
const EC_PUBLIC_KEY_OID_DER: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];

impl Curve {
    /// The curve of an ECDSA public key, or `None` for any other key.
    pub(crate) fn of(spki: &SubjectPublicKeyInfo<'_>) -> Option<Self> {
        if spki.algorithm.algorithm != OID_KEY_TYPE_EC_PUBLIC_KEY {
            return None;
        }
        let curve = spki.algorithm.parameters.as_ref()?.as_oid().ok()?;
        if curve == OID_EC_P256 {
            Some(Self::P256)
        } else if curve == OID_NIST_EC_P384 {
            Some(Self::P384)
        } else {
            None
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::P256 => "P-256",
            Self::P384 => "P-384",
        }
    }

    /// What a key on this curve signs with.
    pub(crate) fn signature_algorithm(self) -> &'static SignatureAlgorithm {
        match self {
            Self::P256 => &PKCS_ECDSA_P256_SHA256,
            Self::P384 => &PKCS_ECDSA_P384_SHA384,
        }
    }

    /// The OID of [`Curve::signature_algorithm`] in a certificate.
    pub(crate) fn signature_oid(self) -> Oid<'static> {
        match self {
            Self::P256 => OID_SIG_ECDSA_WITH_SHA256,
            Self::P384 => OID_SIG_ECDSA_WITH_SHA384,
        }
    }

    /// DER of the curve's OID (the `namedCurve` parameter).
    fn oid_der(self) -> &'static [u8] {
        match self {
            Self::P256 => &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
            Self::P384 => &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22],
        }
    }
}

/// An rcgen key pair whose PKCS#8 copy is wiped on drop. (ring keeps its own expanded
/// copy, which it does not wipe; that is a limit of ring.)
pub(crate) struct CaKey(KeyPair);

impl CaKey {
    pub(crate) fn generate(alg: &'static SignatureAlgorithm) -> Result<Self, TrustError> {
        KeyPair::generate_for(alg)
            .map(Self)
            .map_err(|e| TrustError::crypto(format!("key generation failed: {e}")))
    }

    pub(crate) fn from_pkcs8(
        der: &[u8],
        alg: &'static SignatureAlgorithm,
    ) -> Result<Self, TrustError> {
        KeyPair::from_pkcs8_der_and_sign_algo(&PrivatePkcs8KeyDer::from(der), alg)
            .map(Self)
            .map_err(|e| TrustError::corrupt("CA private key", e))
    }

    /// A key an operator gives as PEM: the first unencrypted `PRIVATE KEY` (PKCS#8) or
    /// `EC PRIVATE KEY` (SEC1, what `openssl ecparam -genkey` writes) block. A SEC1 key is
    /// rewrapped as PKCS#8, so it is stored like a generated key. Any other key, or a key
    /// not on `curve`, is [`TrustError::InvalidInput`] for `field`.
    pub(crate) fn from_pem(
        pem: &str,
        curve: Curve,
        field: &'static str,
    ) -> Result<Self, TrustError> {
        let key = Zeroizing::new(PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| {
            TrustError::input(
                field,
                "no unencrypted PEM private key (PRIVATE KEY or EC PRIVATE KEY) found",
            )
        })?);
        let pkcs8 = match &*key {
            PrivateKeyDer::Pkcs8(k) => Zeroizing::new(k.secret_pkcs8_der().to_vec()),
            PrivateKeyDer::Sec1(k) => sec1_to_pkcs8(k.secret_sec1_der(), curve, field)?,
            _ => return Err(TrustError::input(field, "not an EC private key")),
        };
        KeyPair::from_pkcs8_der_and_sign_algo(
            &PrivatePkcs8KeyDer::from(pkcs8.as_slice()),
            curve.signature_algorithm(),
        )
        .map(Self)
        .map_err(|_| {
            TrustError::input(
                field,
                format!("not a usable ECDSA {} private key", curve.name()),
            )
        })
    }

    /// The PKCS#8 DER of the private key, in a buffer wiped on drop.
    pub(crate) fn pkcs8(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.0.serialize_der())
    }

    /// The raw public key (the SubjectPublicKeyInfo's BIT STRING content).
    pub(crate) fn public_raw(&self) -> &[u8] {
        self.0.public_key_raw()
    }
}

/// Wraps a SEC1 `ECPrivateKey` in a PKCS#8 `PrivateKeyInfo` for `curve` (RFC 5915
/// section 3 inside RFC 5208). The key itself is not parsed here; ring checks it, including
/// that the public key it carries belongs to the private scalar.
fn sec1_to_pkcs8(
    sec1: &[u8],
    curve: Curve,
    field: &'static str,
) -> Result<Zeroizing<Vec<u8>>, TrustError> {
    let mut algorithm = Vec::with_capacity(32);
    algorithm.extend_from_slice(EC_PUBLIC_KEY_OID_DER);
    algorithm.extend_from_slice(curve.oid_der());
    // Sized up front so the buffers holding the key never reallocate (a reallocation
    // would leave an unwiped copy behind).
    let capacity = sec1.len().saturating_add(64);
    let mut body = Zeroizing::new(Vec::with_capacity(capacity));
    body.extend_from_slice(&[0x02, 0x01, 0x00]); // version 0
    push_tlv(&mut body, 0x30, &algorithm, field)?;
    push_tlv(&mut body, 0x04, sec1, field)?;
    let mut out = Zeroizing::new(Vec::with_capacity(capacity));
    push_tlv(&mut out, 0x30, &body, field)?;
    Ok(out)
}

/// Appends a DER tag, definite length (at most 65,535) and content.
fn push_tlv(
    out: &mut Vec<u8>,
    tag: u8,
    content: &[u8],
    field: &'static str,
) -> Result<(), TrustError> {
    let len = content.len();
    out.push(tag);
    match (u8::try_from(len), u16::try_from(len)) {
        (Ok(short), _) if short < 0x80 => out.push(short),
        (Ok(one), _) => out.extend_from_slice(&[0x81, one]),
        (_, Ok(two)) => {
            out.push(0x82);
            out.extend_from_slice(&two.to_be_bytes());
        }
        _ => return Err(TrustError::input(field, "private key too long")),
    }
    out.extend_from_slice(content);
    Ok(())
}

impl Drop for CaKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for CaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CaKey(<redacted>)")
    }
}

impl PublicKeyData for CaKey {
    fn der_bytes(&self) -> &[u8] {
        self.0.der_bytes()
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        PublicKeyData::algorithm(&self.0)
    }
}

impl SigningKey for CaKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.0.sign(msg)
    }
}
