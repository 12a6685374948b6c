//! Users and TOTP.

use tether_store::{Role, StoreError, TotpRecord};

use crate::fixtures::{NOW, new_user, user};
use crate::harness::Shared;

pub(crate) async fn users_create_and_look_up(s: Shared) {
    let created = s
        .create_user(&new_user("usr_alice", "Alice@Lab.Example", Role::Admin))
        .await
        .unwrap();
    assert_eq!(created.email, "alice@lab.example", "stored lowercased");
    assert_eq!(created.totp, None);
    assert_eq!(created.totp_last_step, 0);
    assert_eq!(created.created_at, NOW);

    let by_id = s.user_by_id("usr_alice").await.unwrap().unwrap();
    assert_eq!(by_id, created);
    let by_email = s.user_by_email("ALICE@lab.example").await.unwrap().unwrap();
    assert_eq!(by_email, created);

    assert_eq!(s.user_by_id("usr_nobody").await.unwrap(), None);
    assert_eq!(s.user_by_email("nobody@lab.example").await.unwrap(), None);

    let mut plain = new_user("usr_bob", "bob@lab.example", Role::Student);
    plain.mobile_pub = None;
    let bob = s.create_user(&plain).await.unwrap();
    assert_eq!(s.user_by_id("usr_bob").await.unwrap().unwrap(), bob);
    assert_eq!(bob.mobile_pub, None);
}

pub(crate) async fn users_email_unique_case_insensitively(s: Shared) {
    s.create_user(&new_user("usr_1", "Carol@Lab.Example", Role::Student))
        .await
        .unwrap();
    let again = s
        .create_user(&new_user("usr_2", "carol@LAB.example", Role::Student))
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    let same_id = s
        .create_user(&new_user("usr_1", "other@lab.example", Role::Student))
        .await;
    assert!(
        matches!(same_id, Err(StoreError::Conflict(_))),
        "{same_id:?}"
    );
    // Nothing of the refused users was stored.
    assert_eq!(s.user_by_id("usr_2").await.unwrap(), None);
    assert_eq!(s.user_by_email("other@lab.example").await.unwrap(), None);
}

pub(crate) async fn users_roles(s: Shared) {
    assert_eq!(s.count_users_with_role(Role::Admin).await.unwrap(), 0);
    user(&*s, "usr_a").await;
    user(&*s, "usr_b").await;
    s.create_user(&new_user("usr_c", "c@lab.example", Role::Auditor))
        .await
        .unwrap();
    assert_eq!(s.count_users_with_role(Role::Student).await.unwrap(), 2);
    assert_eq!(s.count_users_with_role(Role::Auditor).await.unwrap(), 1);

    s.set_user_role("usr_a", Role::Admin).await.unwrap();
    // Setting the role it already has is not "not found".
    s.set_user_role("usr_a", Role::Admin).await.unwrap();
    assert_eq!(
        s.user_by_id("usr_a").await.unwrap().unwrap().role,
        Role::Admin
    );
    assert_eq!(s.count_users_with_role(Role::Admin).await.unwrap(), 1);
    assert_eq!(s.count_users_with_role(Role::Student).await.unwrap(), 1);

    let missing = s.set_user_role("usr_nobody", Role::Admin).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );
}

pub(crate) async fn totp_step_used_once_and_never_below(s: Shared) {
    user(&*s, "usr_t").await;
    let totp = TotpRecord {
        sealed_secret: vec![1, 2, 3, 0, 255],
        enabled: true,
    };
    s.set_totp("usr_t", Some(&totp)).await.unwrap();
    let u = s.user_by_id("usr_t").await.unwrap().unwrap();
    assert_eq!(u.totp, Some(totp));
    assert_eq!(u.totp_last_step, 0);

    assert!(s.use_totp_step("usr_t", 60_000_000).await.unwrap());
    assert!(
        !s.use_totp_step("usr_t", 60_000_000).await.unwrap(),
        "same step twice"
    );
    assert!(
        !s.use_totp_step("usr_t", 59_999_999).await.unwrap(),
        "an earlier step"
    );
    assert!(
        s.use_totp_step("usr_t", 60_000_001).await.unwrap(),
        "the next step"
    );
    assert_eq!(
        s.user_by_id("usr_t").await.unwrap().unwrap().totp_last_step,
        60_000_001
    );
    // A step beyond i64 saturates instead of failing.
    assert!(s.use_totp_step("usr_t", u64::MAX).await.unwrap());
    assert!(!s.use_totp_step("usr_t", u64::MAX).await.unwrap());

    let missing = s.use_totp_step("usr_nobody", 1).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );
}

pub(crate) async fn totp_secret_changes(s: Shared) {
    user(&*s, "usr_t").await;
    let pending = TotpRecord {
        sealed_secret: b"sealed-1".to_vec(),
        enabled: false,
    };
    s.set_totp("usr_t", Some(&pending)).await.unwrap();
    assert!(s.use_totp_step("usr_t", 1000).await.unwrap());

    // Re-storing the same sealed secret (confirming enrolment) keeps the used step.
    let confirmed = TotpRecord {
        enabled: true,
        ..pending.clone()
    };
    s.set_totp("usr_t", Some(&confirmed)).await.unwrap();
    let u = s.user_by_id("usr_t").await.unwrap().unwrap();
    assert_eq!(u.totp, Some(confirmed));
    assert_eq!(u.totp_last_step, 1000);
    assert!(!s.use_totp_step("usr_t", 1000).await.unwrap());

    // A new secret starts over.
    let fresh = TotpRecord {
        sealed_secret: b"sealed-2".to_vec(),
        enabled: true,
    };
    s.set_totp("usr_t", Some(&fresh)).await.unwrap();
    let u = s.user_by_id("usr_t").await.unwrap().unwrap();
    assert_eq!(u.totp, Some(fresh));
    assert_eq!(u.totp_last_step, 0);

    s.set_totp("usr_t", None).await.unwrap();
    assert_eq!(s.user_by_id("usr_t").await.unwrap().unwrap().totp, None);

    let missing = s.set_totp("usr_nobody", None).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );
}
