//! Passkeys, ceremonies and once-only keys.

use tether_store::{Ceremony, PasskeyRecord, StoreError};

use super::race;
use crate::fixtures::{NOW, at, user};
use crate::harness::Shared;

fn passkey(id: &str, user_id: &str, created: i64) -> PasskeyRecord {
    PasskeyRecord {
        credential_id: id.to_owned(),
        user_id: user_id.to_owned(),
        data: format!(r#"{{"cred":"{id}","counter":0}}"#),
        created_at: at(created),
    }
}

fn ceremony(id: &str, expires_at: tether_store::UnixMillis) -> Ceremony {
    Ceremony {
        id: id.to_owned(),
        kind: "passkey_login".to_owned(),
        user_id: Some("usr_p".to_owned()),
        data: r#"{"challenge":"Y2hhbGxlbmdl"}"#.to_owned(),
        expires_at,
    }
}

pub(crate) async fn passkeys(s: Shared) {
    user(&*s, "usr_p").await;
    user(&*s, "usr_q").await;
    assert!(s.passkeys_for_user("usr_p").await.unwrap().is_empty());

    // A credential id can be long (up to 1023 bytes, 1364 base64url characters).
    let long_id = "A".repeat(1364);
    let first = passkey(&long_id, "usr_p", 2);
    let second = passkey("cred_b", "usr_p", 1);
    s.insert_passkey(&first).await.unwrap();
    s.insert_passkey(&second).await.unwrap();
    s.insert_passkey(&passkey("cred_q", "usr_q", 1))
        .await
        .unwrap();
    assert_eq!(
        s.passkeys_for_user("usr_p").await.unwrap(),
        vec![second.clone(), first.clone()],
        "oldest first"
    );

    let dup = s.insert_passkey(&passkey("cred_b", "usr_q", 3)).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    let orphan = s.insert_passkey(&passkey("cred_z", "usr_nobody", 3)).await;
    assert!(matches!(orphan, Err(StoreError::NotFound(_))), "{orphan:?}");

    s.update_passkey("cred_b", r#"{"counter":7}"#)
        .await
        .unwrap();
    let updated = s.passkeys_for_user("usr_p").await.unwrap();
    assert_eq!(updated[0].data, r#"{"counter":7}"#);
    assert_eq!(updated[1], first);
    let missing = s.update_passkey("cred_unknown", "{}").await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );
}

pub(crate) async fn ceremony_taken_once(s: Shared) {
    let c = ceremony("cer_1", at(60_000));
    s.put_ceremony(&c).await.unwrap();
    let dup = s.put_ceremony(&c).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");

    assert_eq!(s.take_ceremony("cer_1", NOW).await.unwrap(), Some(c));
    assert_eq!(s.take_ceremony("cer_1", NOW).await.unwrap(), None);
    assert_eq!(s.take_ceremony("cer_unknown", NOW).await.unwrap(), None);

    let anonymous = Ceremony {
        user_id: None,
        kind: "totp_enroll".to_owned(),
        ..ceremony("cer_2", at(60_000))
    };
    s.put_ceremony(&anonymous).await.unwrap();
    // Usable up to and including its expiry instant.
    assert_eq!(
        s.take_ceremony("cer_2", at(60_000)).await.unwrap(),
        Some(anonymous)
    );
}

pub(crate) async fn ceremony_expired_not_returned(s: Shared) {
    s.put_ceremony(&ceremony("cer_old", at(1_000)))
        .await
        .unwrap();
    assert_eq!(s.take_ceremony("cer_old", at(1_001)).await.unwrap(), None);
    // Gone for good, even for a caller whose clock is behind.
    assert_eq!(s.take_ceremony("cer_old", NOW).await.unwrap(), None);
}

pub(crate) async fn ceremony_concurrent_take_one_wins(s: Shared) {
    let c = ceremony("cer_race", at(60_000));
    s.put_ceremony(&c).await.unwrap();
    let taken = race(&s, 8, |s, _| async move {
        s.take_ceremony("cer_race", NOW).await.unwrap()
    })
    .await;
    let winners: Vec<_> = taken.into_iter().flatten().collect();
    assert_eq!(winners, vec![c]);
}

pub(crate) async fn claim_once_and_again_after_expiry(s: Shared) {
    assert!(s.claim_once("nonce", "n1", at(10_000), NOW).await.unwrap());
    assert!(
        !s.claim_once("nonce", "n1", at(10_000), at(5_000))
            .await
            .unwrap()
    );
    // Still held at its expiry instant.
    assert!(
        !s.claim_once("nonce", "n1", at(20_000), at(10_000))
            .await
            .unwrap()
    );
    // The same key in another scope is another key.
    assert!(s.claim_once("jti", "n1", at(10_000), NOW).await.unwrap());

    // After expiry it can be claimed again, once.
    assert!(
        s.claim_once("nonce", "n1", at(30_000), at(10_001))
            .await
            .unwrap()
    );
    assert!(
        !s.claim_once("nonce", "n1", at(30_000), at(10_002))
            .await
            .unwrap()
    );
    assert!(
        !s.claim_once("nonce", "n1", at(40_000), at(29_999))
            .await
            .unwrap()
    );
}

pub(crate) async fn claim_once_concurrent_one_wins(s: Shared) {
    // Once on a fresh key, once on a key whose earlier claim has expired.
    s.claim_once("nonce", "old", at(1), NOW).await.unwrap();
    for key in ["fresh", "old"] {
        let won = race(&s, 8, move |s, _| async move {
            s.claim_once("nonce", key, at(60_000), at(100))
                .await
                .unwrap()
        })
        .await;
        assert_eq!(won.iter().filter(|w| **w).count(), 1, "{key}: {won:?}");
    }
}
