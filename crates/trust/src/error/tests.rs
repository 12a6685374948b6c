use std::io;

use tether_proto::ErrorCode;

use super::{CsrRejection, TokenRejection, TrustError};

#[test]
fn codes_match_the_table() {
    let cases = [
        (TrustError::SealBroken("x"), ErrorCode::SealBroken, 2012),
        (
            TrustError::CertificateInvalid("x".into()),
            ErrorCode::CertificateInvalid,
            2008,
        ),
        (
            TrustError::CertificateRevoked,
            ErrorCode::CertificateRevoked,
            2009,
        ),
        (
            TrustError::CsrInvalid(CsrRejection::BadSignature),
            ErrorCode::CsrInvalid,
            2010,
        ),
        (
            TrustError::TokenExpired { exp: 1, now_ms: 2 },
            ErrorCode::TokenExpired,
            3002,
        ),
        (
            TrustError::TokenInvalid(TokenRejection::BadSignature),
            ErrorCode::TokenInvalid,
            3003,
        ),
        (
            TrustError::UnknownKid("k".into()),
            ErrorCode::UnknownKid,
            2002,
        ),
        (
            TrustError::KeyRetired("k".into()),
            ErrorCode::KeyRetired,
            2007,
        ),
        (TrustError::Crypto("x".into()), ErrorCode::Internal, 9001),
        (
            TrustError::storage("read", "x", io::Error::other("disk")),
            ErrorCode::Unavailable,
            9002,
        ),
        (
            TrustError::input("san", "empty"),
            ErrorCode::InvalidField,
            1005,
        ),
    ];
    for (err, code, number) in cases {
        assert_eq!(err.code(), code, "{err}");
        assert_eq!(err.code().number(), number, "{err}");
    }
}

#[test]
fn attacker_text_is_escaped_in_messages() {
    let e = TrustError::TokenInvalid(TokenRejection::AlgNotAllowed("none\n\u{1b}[31m".into()));
    let msg = e.to_string();
    assert!(!msg.contains('\n'));
    assert!(!msg.contains('\u{1b}'));
}
