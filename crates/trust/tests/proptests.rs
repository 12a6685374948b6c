//! Property tests over untrusted input: the JWT validator, the seal opener, the CSR reader
//! and CRL parsing never panic, whatever the bytes; sealing round-trips.

// Test code: a panic is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::sync::{Arc, LazyLock};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;
use tether_proto::{ManualClock, UnixMillis};
use tether_trust::seal::{self, Kek};
use tether_trust::{
    CaNames, CertificateAuthority, Crl, Issuer, IssuerConfig, KeyRing, KeyRingConfig,
    MemoryKeystore, SharedKeyRing, TokenType, TrustError, Validator, ValidatorConfig,
};

const T0: UnixMillis = UnixMillis(1_764_000_000_000);

struct Jwt {
    kid: String,
    validator: Validator,
    token: String,
}

static JWT: LazyLock<Jwt> = LazyLock::new(|| {
    let ring = SharedKeyRing::new(KeyRing::generate(KeyRingConfig::default(), T0).unwrap());
    let issuer = Issuer::new(ring.clone(), IssuerConfig::new("iss")).unwrap();
    let token = issuer
        .issue(&issuer.claims(TokenType::Access, "u", "aud", T0).unwrap())
        .unwrap();
    let kid = ring.read().current_kid().to_string();
    Jwt {
        kid,
        validator: Validator::new(ring, ValidatorConfig::new("iss")).unwrap(),
        token,
    }
});

static CA: LazyLock<CertificateAuthority> = LazyLock::new(|| {
    CertificateAuthority::create(
        Arc::new(MemoryKeystore::new().unwrap()),
        Arc::new(ManualClock::new(T0)),
        &CaNames::for_organization("Prop"),
    )
    .unwrap()
});

static KEK: LazyLock<Kek> = LazyLock::new(|| Kek::generate().unwrap());

fn validate(token: &str) -> Result<(), TrustError> {
    JWT.validator
        .validate(token, "aud", TokenType::Access, T0)
        .map(|_| ())
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// JSON-ish headers that get past the first checks, so the deeper code runs too.
fn header_strategy() -> impl Strategy<Value = Vec<u8>> {
    let kid = JWT.kid.clone();
    prop_oneof![
        any::<Vec<u8>>(),
        Just(format!(r#"{{"alg":"EdDSA","typ":"JWT","kid":"{kid}"}}"#).into_bytes()),
        "[a-zA-Z\"{}:, ]{0,60}".prop_map(String::into_bytes),
        (any::<String>(), any::<String>()).prop_map(move |(a, k)| {
            serde_json::to_vec(&serde_json::json!({"alg": a, "typ": "JWT", "kid": k})).unwrap()
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn jwt_validator_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..10_000)) {
        let s = String::from_utf8_lossy(&bytes);
        prop_assert!(validate(&s).is_err());
    }

    #[test]
    fn jwt_validator_never_panics_on_arbitrary_strings(s in any::<String>()) {
        prop_assert!(validate(&s).is_err());
    }

    #[test]
    fn jwt_validator_never_panics_on_structured_garbage(
        header in header_strategy(),
        claims in any::<Vec<u8>>(),
        sig in proptest::collection::vec(any::<u8>(), 0..100),
    ) {
        let token = format!("{}.{}.{}", b64(&header), b64(&claims), b64(&sig));
        prop_assert!(validate(&token).is_err());
    }

    #[test]
    fn jwt_validator_rejects_every_mutation_of_a_real_token(i in any::<prop::sample::Index>(), c in any::<char>()) {
        let mut chars: Vec<char> = JWT.token.chars().collect();
        let at = i.index(chars.len());
        prop_assume!(chars[at] != c);
        chars[at] = c;
        let token: String = chars.into_iter().collect();
        prop_assert!(validate(&token).is_err());
    }

    #[test]
    fn seal_open_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2_000)) {
        prop_assert!(matches!(seal::open(&KEK, "tether/prop/v1", &bytes), Err(TrustError::SealBroken(_))));
    }

    #[test]
    fn seal_open_never_panics_on_mutated_seals(
        plaintext in proptest::collection::vec(any::<u8>(), 0..200),
        i in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let mut sealed = seal::seal(&KEK, "tether/prop/v1", &plaintext).unwrap();
        let at = i.index(sealed.len());
        sealed[at] ^= flip;
        prop_assert!(matches!(seal::open(&KEK, "tether/prop/v1", &sealed), Err(TrustError::SealBroken(_))));
    }

    #[test]
    fn seal_then_open_round_trips(
        plaintext in proptest::collection::vec(any::<u8>(), 0..4_096),
        label in "[ -~]{1,255}",
    ) {
        let sealed = seal::seal(&KEK, &label, &plaintext).unwrap();
        prop_assert_eq!(sealed.len(), plaintext.len() + seal::OVERHEAD);
        let opened = seal::open(&KEK, &label, &sealed).unwrap();
        prop_assert_eq!(opened.as_slice(), plaintext.as_slice());
    }

    #[test]
    fn csr_reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2_000)) {
        prop_assert!(matches!(
            CA.issue_device_certificate(&bytes, "dev-1"),
            Err(TrustError::CsrInvalid(_))
        ));
    }

    #[test]
    fn crl_parsing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2_000)) {
        let crl = Crl::from_der(bytes);
        prop_assert!(CA.verify_device_chain(b"not a certificate", T0, &[crl]).is_err());
    }
}
