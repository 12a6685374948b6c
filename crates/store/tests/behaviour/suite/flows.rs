//! Discovery (flow 0) and pairing (flow 1).

use tether_store::{DiscoveryStatus, PairingRefusal, StoreError};

use super::race;
use crate::fixtures::{NOW, at, discovery, pairing, user};
use crate::harness::Shared;

pub(crate) async fn discovery_confirmed_once(s: Shared) {
    let d = discovery("dis_1", at(600_000));
    s.insert_discovery(&d).await.unwrap();
    assert_eq!(s.discovery("dis_1").await.unwrap(), Some(d.clone()));
    assert_eq!(s.discovery("dis_unknown").await.unwrap(), None);
    let dup = s.insert_discovery(&d).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");

    assert!(s.confirm_discovery("dis_1", at(600_000)).await.unwrap());
    assert_eq!(
        s.discovery("dis_1").await.unwrap().unwrap().status,
        DiscoveryStatus::Confirmed
    );
    assert!(
        !s.confirm_discovery("dis_1", NOW).await.unwrap(),
        "only once"
    );

    s.insert_discovery(&discovery("dis_2", at(600_000)))
        .await
        .unwrap();
    assert!(
        !s.confirm_discovery("dis_2", at(600_001)).await.unwrap(),
        "expired"
    );
    assert_eq!(
        s.discovery("dis_2").await.unwrap().unwrap().status,
        DiscoveryStatus::Pending
    );
    assert!(!s.confirm_discovery("dis_unknown", NOW).await.unwrap());
}

pub(crate) async fn pairing_consumed_once(s: Shared) {
    user(&*s, "usr_a").await;
    user(&*s, "usr_b").await;
    let p = pairing("tok_1", at(300_000));
    s.insert_pairing(&p).await.unwrap();
    assert_eq!(
        s.pairing_by_token_hash("tok_1").await.unwrap(),
        Some(p.clone())
    );
    let dup = s.insert_pairing(&p).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");

    let consumed = s
        .consume_pairing("tok_1", "usr_a", at(1_000))
        .await
        .unwrap()
        .unwrap();
    let mut expected = p;
    expected.used_at = Some(at(1_000));
    expected.used_by = Some("usr_a".into());
    assert_eq!(consumed, expected);
    assert_eq!(
        s.pairing_by_token_hash("tok_1").await.unwrap(),
        Some(expected.clone())
    );

    assert_eq!(
        s.consume_pairing("tok_1", "usr_b", at(2_000))
            .await
            .unwrap(),
        Err(PairingRefusal::Used)
    );
    assert_eq!(
        s.consume_pairing("tok_1", "usr_a", at(2_000))
            .await
            .unwrap(),
        Err(PairingRefusal::Used),
        "not even by the same user"
    );
    // Used wins over expired once both are true.
    assert_eq!(
        s.consume_pairing("tok_1", "usr_b", at(999_999))
            .await
            .unwrap(),
        Err(PairingRefusal::Used)
    );
    assert_eq!(
        s.pairing_by_token_hash("tok_1").await.unwrap(),
        Some(expected)
    );
}

pub(crate) async fn pairing_expired_and_unknown(s: Shared) {
    user(&*s, "usr_a").await;
    s.insert_pairing(&pairing("tok_1", at(300_000)))
        .await
        .unwrap();
    assert_eq!(
        s.consume_pairing("tok_1", "usr_a", at(300_001))
            .await
            .unwrap(),
        Err(PairingRefusal::Expired)
    );
    assert_eq!(
        s.pairing_by_token_hash("tok_1")
            .await
            .unwrap()
            .unwrap()
            .used_at,
        None
    );
    assert_eq!(
        s.consume_pairing("tok_unknown", "usr_a", NOW)
            .await
            .unwrap(),
        Err(PairingRefusal::NotFound)
    );
    assert_eq!(s.pairing_by_token_hash("tok_unknown").await.unwrap(), None);

    // Usable up to and including its expiry instant.
    s.insert_pairing(&pairing("tok_2", at(300_000)))
        .await
        .unwrap();
    assert!(
        s.consume_pairing("tok_2", "usr_a", at(300_000))
            .await
            .unwrap()
            .is_ok()
    );
    // An unknown user cannot consume.
    s.insert_pairing(&pairing("tok_3", at(300_000)))
        .await
        .unwrap();
    let orphan = s.consume_pairing("tok_3", "usr_nobody", NOW).await;
    assert!(matches!(orphan, Err(StoreError::NotFound(_))), "{orphan:?}");
}

pub(crate) async fn pairing_concurrent_consume_one_wins(s: Shared) {
    for i in 0..8 {
        user(&*s, &format!("usr_{i}")).await;
    }
    s.insert_pairing(&pairing("tok_race", at(300_000)))
        .await
        .unwrap();
    let outcomes = race(&s, 8, |s, i| async move {
        s.consume_pairing("tok_race", &format!("usr_{i}"), at(1_000))
            .await
            .unwrap()
    })
    .await;
    let winners: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .filter(|o| o.is_err())
            .all(|o| *o == Err(PairingRefusal::Used))
    );
    let stored = s.pairing_by_token_hash("tok_race").await.unwrap().unwrap();
    assert_eq!(&stored, winners[0]);
}
