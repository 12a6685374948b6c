//! The object store's behaviour, one suite for both backends: every test body below runs
//! once against the local directory and once against a real S3 server (see `common`).

// Tests may unwrap, index and add freely: a panic here is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::Harness;
use tether_objects::{Method, ObjectKey, ObjectMeta, ObjectsError, UnixMillis};

/// Defines each listed test twice: `local::name` and `s3::name`.
macro_rules! behaviour_tests {
    ($($name:ident),* $(,)?) => {
        mod local {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(crate::common::Harness::new(crate::common::Backend::Local).await).await;
                }
            )*
        }
        mod s3 {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(crate::common::Harness::new(crate::common::Backend::S3).await).await;
                }
            )*
        }
    };
}

behaviour_tests!(
    round_trip_and_replace,
    missing_objects,
    get_refuses_more_than_max_bytes,
    delete_is_idempotent,
    binary_and_larger_objects,
    nested_keys_are_independent,
    presigned_urls_carry_method_and_expiry,
    url_lifetimes_are_checked,
);

fn key(k: &str) -> ObjectKey {
    ObjectKey::new(k).unwrap()
}

const NOW: UnixMillis = UnixMillis(1_700_000_000_000);

async fn round_trip_and_replace(h: Harness) {
    let o = &h.objects;
    let k = key("artifacts/cmd_1/screen.png");
    let meta = o.put(&k, Bytes::from_static(b"first")).await.unwrap();
    assert_eq!(
        meta,
        ObjectMeta {
            size: 5,
            sha256: Some("a7937b64b8caa58f03721bb6bacf5c78cb235febe0e70b1b84cd99541461a08e".into())
        }
    );
    assert_eq!(o.get(&k, 1024).await.unwrap().unwrap(), &b"first"[..]);
    assert_eq!(o.head(&k).await.unwrap().unwrap().size, 5);

    o.put(&k, Bytes::from_static(b"second!")).await.unwrap();
    assert_eq!(o.get(&k, 1024).await.unwrap().unwrap(), &b"second!"[..]);
    assert_eq!(o.head(&k).await.unwrap().unwrap().size, 7);
}

async fn missing_objects(h: Harness) {
    let o = &h.objects;
    let k = key("never/stored");
    assert_eq!(o.get(&k, 1024).await.unwrap(), None);
    assert_eq!(o.head(&k).await.unwrap(), None);
}

async fn get_refuses_more_than_max_bytes(h: Harness) {
    let o = &h.objects;
    let k = key("ten");
    o.put(&k, Bytes::from_static(b"0123456789")).await.unwrap();
    assert_eq!(o.get(&k, 10).await.unwrap().unwrap().len(), 10);
    let e = o.get(&k, 9).await.unwrap_err();
    assert!(matches!(e, ObjectsError::TooLarge { limit: 9 }), "{e}");
    assert_eq!(e.code(), tether_proto::ErrorCode::ArtifactTooLarge);
}

async fn delete_is_idempotent(h: Harness) {
    let o = &h.objects;
    let k = key("to/delete");
    o.put(&k, Bytes::from_static(b"x")).await.unwrap();
    o.delete(&k).await.unwrap();
    assert_eq!(o.head(&k).await.unwrap(), None);
    assert_eq!(o.get(&k, 10).await.unwrap(), None);
    o.delete(&k).await.unwrap();
    o.delete(&key("never/there")).await.unwrap();
}

async fn binary_and_larger_objects(h: Harness) {
    let o = &h.objects;
    let all_bytes: Vec<u8> = (0..=255u8).collect();
    let big: Vec<u8> = (0..3 * 1024 * 1024 + 7u32)
        .map(|i| (i * 31 % 251) as u8)
        .collect();
    for (k, data) in [("bin/all", all_bytes), ("bin/big", big)] {
        let k = key(k);
        let data = Bytes::from(data);
        let meta = o.put(&k, data.clone()).await.unwrap();
        assert_eq!(meta.size, data.len() as u64);
        assert_eq!(o.get(&k, data.len() as u64).await.unwrap().unwrap(), data);
    }
}

async fn nested_keys_are_independent(h: Harness) {
    let o = &h.objects;
    for (k, v) in [("d/a", "1"), ("d/b", "2"), ("d/sub/a", "3"), ("e", "4")] {
        o.put(&key(k), Bytes::from(v)).await.unwrap();
    }
    o.delete(&key("d/a")).await.unwrap();
    assert_eq!(o.get(&key("d/a"), 10).await.unwrap(), None);
    for (k, v) in [("d/b", "2"), ("d/sub/a", "3"), ("e", "4")] {
        assert_eq!(o.get(&key(k), 10).await.unwrap().unwrap(), v.as_bytes());
    }
}

async fn presigned_urls_carry_method_and_expiry(h: Harness) {
    let o = &h.objects;
    let k = key("artifacts/cmd_2");
    let put = o
        .presign_put(&k, Duration::from_secs(300), NOW)
        .await
        .unwrap();
    let get = o
        .presign_get(&k, Duration::from_secs(60), NOW)
        .await
        .unwrap();
    assert_eq!(put.method, Method::Put);
    assert_eq!(get.method, Method::Get);
    assert_eq!(put.expires_at, UnixMillis(NOW.0 + 300_000));
    assert_eq!(get.expires_at, UnixMillis(NOW.0 + 60_000));
    for u in [&put, &get] {
        assert!(u.url.contains("/artifacts/cmd_2?"), "{}", u.url);
        assert!(u.headers.is_empty());
        // The signature is not in the debug form.
        assert!(!format!("{u:?}").contains(u.url.split('?').nth(1).unwrap()));
    }
    assert_ne!(put.url, get.url);
}

async fn url_lifetimes_are_checked(h: Harness) {
    let o = &h.objects;
    let k = key("k");
    for bad in [
        Duration::ZERO,
        Duration::from_millis(999),
        Duration::from_secs(7 * 86_400 + 1),
    ] {
        assert!(matches!(
            o.presign_put(&k, bad, NOW).await,
            Err(ObjectsError::InvalidArgument(_))
        ));
        assert!(matches!(
            o.presign_get(&k, bad, NOW).await,
            Err(ObjectsError::InvalidArgument(_))
        ));
    }
    o.presign_get(&k, Duration::from_secs(7 * 86_400), NOW)
        .await
        .unwrap();
}
