//! Users and TOTP.

use tether_store::{Role, RoleChange, StoreError, TotpRecord};

use crate::fixtures::{NOW, active_device, new_user, user};
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

pub(crate) async fn users_listed_with_device_counts(s: Shared) {
    assert!(s.list_users().await.unwrap().is_empty());
    assert!(s.device_counts_by_owner().await.unwrap().is_empty());
    let mut later = new_user("usr_b", "b@lab.example", Role::Auditor);
    later.created_at = crate::fixtures::at(5);
    let b = s.create_user(&later).await.unwrap();
    let a = user(&*s, "usr_a").await;
    user(&*s, "usr_c").await;
    let ids: Vec<_> = s
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.id)
        .collect();
    assert_eq!(ids, ["usr_a", "usr_c", "usr_b"], "oldest first, then by id");
    assert_eq!(s.list_users().await.unwrap()[2], b);
    assert_eq!(s.list_users().await.unwrap()[0], a);

    active_device(&*s, "dev_1", "usr_a", NOW).await;
    active_device(&*s, "dev_2", "usr_a", NOW).await;
    active_device(&*s, "dev_3", "usr_b", NOW).await;
    let mut revoked = s.device("dev_3").await.unwrap().unwrap();
    revoked.status = tether_store::DeviceStatus::Revoked;
    s.update_device(&revoked).await.unwrap();
    active_device(&*s, "dev_4", "usr_b", NOW).await;
    s.insert_device(&crate::fixtures::device("dev_5", None, NOW))
        .await
        .unwrap();
    assert_eq!(
        s.device_counts_by_owner().await.unwrap(),
        vec![("usr_a".to_owned(), 2), ("usr_b".to_owned(), 1)],
        "revoked and unowned devices are not counted"
    );
}

pub(crate) async fn role_change_keeps_an_admin(s: Shared) {
    user(&*s, "usr_s").await;
    s.create_user(&new_user("usr_a1", "a1@lab.example", Role::Admin))
        .await
        .unwrap();
    let role = |id: &'static str| {
        let s = s.clone();
        async move { s.user_by_id(id).await.unwrap().unwrap().role }
    };

    assert_eq!(
        s.change_user_role("usr_a1", Role::Student).await.unwrap(),
        RoleChange::LastAdmin
    );
    assert_eq!(role("usr_a1").await, Role::Admin, "nothing changed");
    assert_eq!(
        s.change_user_role("usr_a1", Role::Admin).await.unwrap(),
        RoleChange::Changed {
            previous: Role::Admin
        },
        "the last admin staying admin is fine"
    );
    assert_eq!(
        s.change_user_role("usr_s", Role::Auditor).await.unwrap(),
        RoleChange::Changed {
            previous: Role::Student
        }
    );
    assert_eq!(role("usr_s").await, Role::Auditor);
    assert_eq!(
        s.change_user_role("usr_s", Role::Admin).await.unwrap(),
        RoleChange::Changed {
            previous: Role::Auditor
        }
    );
    assert_eq!(
        s.change_user_role("usr_a1", Role::Auditor).await.unwrap(),
        RoleChange::Changed {
            previous: Role::Admin
        },
        "another admin remains"
    );
    assert_eq!(role("usr_a1").await, Role::Auditor);
    assert_eq!(
        s.change_user_role("usr_s", Role::Student).await.unwrap(),
        RoleChange::LastAdmin
    );
    assert_eq!(
        s.change_user_role("usr_nobody", Role::Admin).await.unwrap(),
        RoleChange::NotFound
    );
    assert_eq!(s.count_users_with_role(Role::Admin).await.unwrap(), 1);
}

pub(crate) async fn role_change_concurrent_demotions_keep_an_admin(s: Shared) {
    for n in 0..4 {
        s.create_user(&new_user(
            &format!("usr_{n}"),
            &format!("{n}@lab.example"),
            Role::Admin,
        ))
        .await
        .unwrap();
    }
    // Every admin demotes themselves at once: all but one may go.
    let results = crate::suite::race(&s, 4, |s, i| async move {
        s.change_user_role(&format!("usr_{i}"), Role::Student).await
    })
    .await;
    let changed = results
        .iter()
        .filter(|r| matches!(r, Ok(RoleChange::Changed { .. })))
        .count();
    for r in &results {
        assert!(
            matches!(r, Ok(RoleChange::Changed { .. } | RoleChange::LastAdmin)),
            "{r:?}"
        );
    }
    assert_eq!(changed, 3, "{results:?}");
    assert_eq!(s.count_users_with_role(Role::Admin).await.unwrap(), 1);
}
