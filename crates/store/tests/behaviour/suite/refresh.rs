//! Refresh-token families.

use tether_store::{Rotation, StoreError};

use super::race;
use crate::fixtures::{NOW, at, refresh, user};
use crate::harness::Shared;

pub(crate) async fn refresh_rotation(s: Shared) {
    user(&*s, "usr_r").await;
    let a = refresh("hash_a", "fam_1", "usr_r", at(60_000));
    s.insert_refresh(&a).await.unwrap();
    assert_eq!(s.refresh_by_hash("hash_a").await.unwrap(), Some(a.clone()));

    let b = refresh("hash_b", "fam_1", "usr_r", at(120_000));
    assert_eq!(
        s.rotate_refresh("hash_a", &b, at(1_000)).await.unwrap(),
        Rotation::Rotated(a.clone())
    );
    assert_eq!(s.refresh_by_hash("hash_b").await.unwrap(), Some(b.clone()));
    // The used token is still known (for reuse detection).
    assert_eq!(s.refresh_by_hash("hash_a").await.unwrap(), Some(a));

    // The new token joins the old one's family and user whatever the caller says.
    let mut c = refresh("hash_c", "fam_other", "usr_other", at(180_000));
    assert_eq!(
        s.rotate_refresh("hash_b", &c, at(2_000)).await.unwrap(),
        Rotation::Rotated(b)
    );
    c.family_id = "fam_1".into();
    c.user_id = "usr_r".into();
    assert_eq!(s.refresh_by_hash("hash_c").await.unwrap(), Some(c));

    // A duplicate token hash is a conflict.
    let dup = s
        .insert_refresh(&refresh("hash_c", "fam_2", "usr_r", at(1)))
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    // Rotating onto an existing hash fails and leaves the old token live.
    let clash = s
        .rotate_refresh(
            "hash_c",
            &refresh("hash_a", "fam_1", "usr_r", at(1)),
            at(3_000),
        )
        .await;
    assert!(matches!(clash, Err(StoreError::Conflict(_))), "{clash:?}");
    let d = refresh("hash_d", "fam_1", "usr_r", at(240_000));
    assert!(matches!(
        s.rotate_refresh("hash_c", &d, at(3_000)).await.unwrap(),
        Rotation::Rotated(_)
    ));
}

pub(crate) async fn refresh_reuse_revokes_family(s: Shared) {
    user(&*s, "usr_r").await;
    s.insert_refresh(&refresh("hash_a", "fam_1", "usr_r", at(60_000)))
        .await
        .unwrap();
    let other = refresh("hash_x", "fam_2", "usr_r", at(60_000));
    s.insert_refresh(&other).await.unwrap();

    let b = refresh("hash_b", "fam_1", "usr_r", at(60_000));
    assert!(matches!(
        s.rotate_refresh("hash_a", &b, NOW).await.unwrap(),
        Rotation::Rotated(_)
    ));
    // hash_a replayed: the family is revoked and the would-be new token not stored.
    let replay = refresh("hash_evil", "fam_1", "usr_r", at(60_000));
    assert_eq!(
        s.rotate_refresh("hash_a", &replay, at(10)).await.unwrap(),
        Rotation::Reused {
            family_id: "fam_1".into(),
            user_id: "usr_r".into()
        }
    );
    assert_eq!(s.refresh_by_hash("hash_evil").await.unwrap(), None);

    // The legitimate holder of hash_b is now locked out too.
    let c = refresh("hash_c", "fam_1", "usr_r", at(60_000));
    assert_eq!(
        s.rotate_refresh("hash_b", &c, at(20)).await.unwrap(),
        Rotation::Reused {
            family_id: "fam_1".into(),
            user_id: "usr_r".into()
        }
    );
    assert_eq!(s.refresh_by_hash("hash_c").await.unwrap(), None);

    // Another family of the same user is untouched.
    let y = refresh("hash_y", "fam_2", "usr_r", at(60_000));
    assert_eq!(
        s.rotate_refresh("hash_x", &y, at(30)).await.unwrap(),
        Rotation::Rotated(other)
    );
}

pub(crate) async fn refresh_expired_and_unknown(s: Shared) {
    user(&*s, "usr_r").await;
    let a = refresh("hash_a", "fam_1", "usr_r", at(1_000));
    s.insert_refresh(&a).await.unwrap();
    s.insert_refresh(&refresh("hash_b", "fam_2", "usr_r", at(1_000)))
        .await
        .unwrap();
    let next = refresh("hash_n", "fam_1", "usr_r", at(90_000));

    assert_eq!(
        s.rotate_refresh("hash_a", &next, at(1_001)).await.unwrap(),
        Rotation::Expired
    );
    assert_eq!(s.refresh_by_hash("hash_n").await.unwrap(), None);
    // Still expired, not "reused", when presented again.
    assert_eq!(
        s.rotate_refresh("hash_a", &next, at(5_000)).await.unwrap(),
        Rotation::Expired
    );
    // Live up to and including its expiry instant.
    assert!(matches!(
        s.rotate_refresh(
            "hash_b",
            &refresh("hash_m", "fam_2", "usr_r", at(9_000)),
            at(1_000)
        )
        .await
        .unwrap(),
        Rotation::Rotated(_)
    ));

    assert_eq!(
        s.rotate_refresh("hash_unknown", &next, NOW).await.unwrap(),
        Rotation::NotFound
    );
    assert_eq!(s.refresh_by_hash("hash_unknown").await.unwrap(), None);

    let orphan = s
        .insert_refresh(&refresh("hash_o", "fam_3", "usr_nobody", at(1)))
        .await;
    assert!(matches!(orphan, Err(StoreError::NotFound(_))), "{orphan:?}");
}

pub(crate) async fn refresh_concurrent_rotation_one_wins(s: Shared) {
    user(&*s, "usr_r").await;
    s.insert_refresh(&refresh("hash_a", "fam_1", "usr_r", at(60_000)))
        .await
        .unwrap();
    let outcomes = race(&s, 8, |s, i| async move {
        let new = refresh(&format!("hash_new_{i}"), "fam_1", "usr_r", at(120_000));
        s.rotate_refresh("hash_a", &new, at(1)).await.unwrap()
    })
    .await;
    let rotated = outcomes
        .iter()
        .filter(|o| matches!(o, Rotation::Rotated(_)))
        .count();
    let reused = outcomes
        .iter()
        .filter(|o| matches!(o, Rotation::Reused { .. }))
        .count();
    assert_eq!((rotated, reused), (1, 7), "{outcomes:?}");
}

pub(crate) async fn refresh_revoke_family_and_user(s: Shared) {
    user(&*s, "usr_r").await;
    user(&*s, "usr_q").await;
    s.insert_refresh(&refresh("a1", "fam_a", "usr_r", at(60_000)))
        .await
        .unwrap();
    s.rotate_refresh("a1", &refresh("a2", "fam_a", "usr_r", at(60_000)), NOW)
        .await
        .unwrap();
    s.insert_refresh(&refresh("b1", "fam_b", "usr_r", at(60_000)))
        .await
        .unwrap();
    s.insert_refresh(&refresh("c1", "fam_c", "usr_r", at(60_000)))
        .await
        .unwrap();
    s.insert_refresh(&refresh("q1", "fam_q", "usr_q", at(60_000)))
        .await
        .unwrap();

    // fam_a has one live token (a2; a1 is used).
    assert_eq!(s.revoke_refresh_family("fam_a").await.unwrap(), 1);
    assert_eq!(s.revoke_refresh_family("fam_a").await.unwrap(), 0);
    assert_eq!(s.revoke_refresh_family("fam_unknown").await.unwrap(), 0);
    // A revoked token presented again counts as reuse.
    assert!(matches!(
        s.rotate_refresh("a2", &refresh("a3", "fam_a", "usr_r", at(60_000)), NOW)
            .await
            .unwrap(),
        Rotation::Reused { .. }
    ));

    // Revoke all of usr_r's sessions: fam_b and fam_c.
    assert_eq!(s.revoke_user_refresh("usr_r").await.unwrap(), 2);
    assert_eq!(s.revoke_user_refresh("usr_r").await.unwrap(), 0);
    for hash in ["b1", "c1"] {
        assert!(matches!(
            s.rotate_refresh(hash, &refresh("z", "fam_z", "usr_r", at(60_000)), NOW)
                .await
                .unwrap(),
            Rotation::Reused { .. }
        ));
    }
    // usr_q still signed in.
    assert!(matches!(
        s.rotate_refresh("q1", &refresh("q2", "fam_q", "usr_q", at(60_000)), NOW)
            .await
            .unwrap(),
        Rotation::Rotated(_)
    ));
}
