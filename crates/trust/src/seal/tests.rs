use super::{Kek, OVERHEAD, open, seal};
use crate::error::TrustError;

const LABEL: &str = "tether/test/v1";

fn is_broken<T: std::fmt::Debug>(r: Result<T, TrustError>) -> bool {
    matches!(r, Err(TrustError::SealBroken(_)))
}

#[test]
fn round_trip() {
    let kek = Kek::generate().unwrap();
    for msg in [&b""[..], b"x", b"the root key, in PKCS#8", &[0u8; 4096]] {
        let sealed = seal(&kek, LABEL, msg).unwrap();
        assert_eq!(sealed.len(), msg.len() + OVERHEAD);
        assert_eq!(open(&kek, LABEL, &sealed).unwrap().as_slice(), msg);
    }
}

#[test]
fn plaintext_does_not_appear_and_each_seal_differs() {
    let kek = Kek::generate().unwrap();
    let msg = b"a recognisable secret of some length";
    let a = seal(&kek, LABEL, msg).unwrap();
    let b = seal(&kek, LABEL, msg).unwrap();
    assert_ne!(a, b, "fresh nonces and data keys every time");
    assert!(!a.windows(msg.len()).any(|w| w == msg));
}

#[test]
fn wrong_kek_is_seal_broken() {
    let sealed = seal(&Kek::generate().unwrap(), LABEL, b"secret").unwrap();
    let err = open(&Kek::generate().unwrap(), LABEL, &sealed).unwrap_err();
    assert!(matches!(err, TrustError::SealBroken(_)));
    assert_eq!(err.code().number(), 2012);
}

#[test]
fn wrong_label_is_seal_broken() {
    let kek = Kek::generate().unwrap();
    let sealed = seal(&kek, "tether/ca/root-key/v1", b"root").unwrap();
    assert!(is_broken(open(
        &kek,
        "tether/ca/intermediate-key/v1",
        &sealed
    )));
    assert!(is_broken(open(&kek, "tether/ca/root-key/v2", &sealed)));
}

#[test]
fn every_flipped_bit_is_seal_broken() {
    let kek = Kek::generate().unwrap();
    let sealed = seal(&kek, LABEL, b"0123456789").unwrap();
    for i in 0..sealed.len() {
        for bit in 0..8 {
            let mut t = sealed.clone();
            t[i] ^= 1 << bit;
            assert!(is_broken(open(&kek, LABEL, &t)), "byte {i} bit {bit}");
        }
    }
}

#[test]
fn every_truncation_and_extension_is_seal_broken() {
    let kek = Kek::generate().unwrap();
    let sealed = seal(&kek, LABEL, b"0123456789").unwrap();
    for n in 0..sealed.len() {
        assert!(is_broken(open(&kek, LABEL, &sealed[..n])), "length {n}");
    }
    let mut longer = sealed.clone();
    longer.push(0);
    assert!(is_broken(open(&kek, LABEL, &longer)));
}

#[test]
fn wrapped_keys_cannot_be_swapped_between_blobs() {
    let kek = Kek::generate().unwrap();
    let a = seal(&kek, LABEL, b"aaaaaaaa").unwrap();
    let b = seal(&kek, LABEL, b"bbbbbbbb").unwrap();
    // Header, wrap nonce and wrapped DEK of `a`, data part of `b`.
    let split = 5 + 1 + 12 + 48;
    let mut mixed = a[..split].to_vec();
    mixed.extend_from_slice(&b[split..]);
    assert!(is_broken(open(&kek, LABEL, &mixed)));
}

#[test]
fn unknown_version_is_seal_broken() {
    let kek = Kek::generate().unwrap();
    let mut sealed = seal(&kek, LABEL, b"x").unwrap();
    sealed[5] = 2;
    assert!(matches!(
        open(&kek, LABEL, &sealed),
        Err(TrustError::SealBroken("unknown seal format version"))
    ));
}

#[test]
fn labels_are_checked() {
    let kek = Kek::generate().unwrap();
    for bad in ["", "tab\there", &"x".repeat(256), "é"] {
        assert!(
            matches!(seal(&kek, bad, b"x"), Err(TrustError::InvalidInput { .. })),
            "{bad:?}"
        );
    }
    assert!(seal(&kek, &"x".repeat(255), b"x").is_ok());
}

#[test]
fn kek_length_is_checked_and_debug_is_redacted() {
    assert!(matches!(
        Kek::from_slice(&[0; 31]),
        Err(TrustError::KekInvalid(_))
    ));
    assert!(matches!(
        Kek::from_slice(&[0; 33]),
        Err(TrustError::KekInvalid(_))
    ));
    let kek = Kek::from_slice(&[7; 32]).unwrap();
    assert_eq!(format!("{kek:?}"), "Kek(<redacted>)");
}
