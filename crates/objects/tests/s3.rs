//! The S3 backend against a real S3 server (`s3s-fs`, see `common`): presigned URLs used
//! with a plain HTTP client, no SDK, and refused by the server when altered or expired.

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
use common::{http_client, start_s3fs};
use object_store::ObjectStoreExt;
use object_store::signer::Signer;
use tether_objects::{ObjectKey, Objects, S3Objects};
use tether_proto::{Clock, SystemClock};

fn key(k: &str) -> ObjectKey {
    ObjectKey::new(k).unwrap()
}

#[tokio::test]
async fn presigned_put_then_presigned_get_over_plain_http() {
    let server = start_s3fs().await;
    let s3 = S3Objects::connect(&server.config()).unwrap();
    assert_eq!(s3.backend(), "s3");
    let http = http_client();
    let k = key("artifacts/cmd_1/bundle.zip");
    let now = SystemClock.now();
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();

    let put = s3
        .presign_put(&k, Duration::from_secs(300), now)
        .await
        .unwrap();
    assert!(
        put.url.starts_with(&format!(
            "{}/{}/artifacts/cmd_1/bundle.zip?",
            server.endpoint(),
            server.bucket()
        )),
        "{}",
        put.url
    );
    assert!(put.url.contains("X-Amz-Signature="), "{}", put.url);
    let r = http.put(&put.url).body(body.clone()).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    // Stored: through the backend, and as a file in s3s-fs's bucket directory.
    assert_eq!(s3.head(&k).await.unwrap().unwrap().size, body.len() as u64);
    assert_eq!(
        std::fs::read(
            server
                .root()
                .join(server.bucket())
                .join("artifacts/cmd_1/bundle.zip")
        )
        .unwrap(),
        body
    );

    let get = s3
        .presign_get(&k, Duration::from_secs(60), now)
        .await
        .unwrap();
    let r = http.get(&get.url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), Bytes::from(body));

    // A GET URL for an object that does not exist: the server's 404.
    let missing = s3
        .presign_get(&key("nope"), Duration::from_secs(60), now)
        .await
        .unwrap();
    assert_eq!(http.get(&missing.url).send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn altered_presigned_urls_are_refused_by_the_server() {
    let server = start_s3fs().await;
    let s3 = S3Objects::connect(&server.config()).unwrap();
    let http = http_client();
    let now = SystemClock.now();
    let k = key("artifacts/cmd_2");
    s3.put(&k, Bytes::from_static(b"secret bytes"))
        .await
        .unwrap();
    let get = s3
        .presign_get(&k, Duration::from_secs(300), now)
        .await
        .unwrap();
    let put = s3
        .presign_put(&k, Duration::from_secs(300), now)
        .await
        .unwrap();
    // The genuine URL works.
    assert_eq!(http.get(&get.url).send().await.unwrap().status(), 200);

    // One hex digit of the signature changed.
    let (head, sig) = get.url.rsplit_once("X-Amz-Signature=").unwrap();
    let flipped_digit = if sig.starts_with('0') { "1" } else { "0" };
    let flipped = format!("{head}X-Amz-Signature={flipped_digit}{}", &sig[1..]);
    // The same signature on another object.
    let other_key = get.url.replace("/artifacts/cmd_2?", "/artifacts/cmd_3?");
    // A longer lifetime than was signed.
    let longer = get.url.replace("X-Amz-Expires=300", "X-Amz-Expires=600");
    assert_ne!(longer, get.url);
    for (what, url) in [
        ("signature", &flipped),
        ("key", &other_key),
        ("expiry", &longer),
    ] {
        let r = http.get(url).send().await.unwrap();
        assert_eq!(
            r.status(),
            403,
            "altered {what}: {}",
            r.text().await.unwrap()
        );
    }
    // A PUT URL used for GET, and a GET URL used for PUT.
    assert_eq!(http.get(&put.url).send().await.unwrap().status(), 403);
    let r = http.put(&get.url).body("overwrite").send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        s3.get(&k, 100).await.unwrap().unwrap(),
        &b"secret bytes"[..]
    );
}

/// s3s-fs checks expiry (`now - X-Amz-Date > X-Amz-Expires` is AccessDenied, "Request has
/// expired"). Our API refuses lifetimes under 1 s, and `object_store` signs with the system
/// clock, so an already-expired URL is made with `object_store` directly and a lifetime of
/// zero: no sleeping.
#[tokio::test]
async fn expired_presigned_urls_are_refused_by_the_server() {
    let server = start_s3fs().await;
    let s3 = S3Objects::connect(&server.config()).unwrap();
    s3.put(&key("old"), Bytes::from_static(b"x")).await.unwrap();
    let http = http_client();
    let raw = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(server.endpoint())
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_bucket_name(server.bucket())
        .with_access_key_id(server.access_key())
        .with_secret_access_key(server.secret_key())
        .build()
        .unwrap();
    let path = object_store::path::Path::from("old");
    // The same object store client signs a URL that works…
    let live = raw
        .signed_url(http::Method::GET, &path, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(http.get(live.as_str()).send().await.unwrap().status(), 200);
    // …and one that is already past its lifetime, which the server refuses.
    for method in [http::Method::GET, http::Method::PUT] {
        let expired = raw
            .signed_url(method.clone(), &path, Duration::ZERO)
            .await
            .unwrap();
        assert!(expired.as_str().contains("X-Amz-Expires=0"));
        let r = http
            .request(method, expired.as_str())
            .body("new")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        let body = r.text().await.unwrap();
        assert!(
            body.contains("AccessDenied") && body.contains("expired"),
            "{body}"
        );
    }
    // The raw client works too (so the refusal above is the expiry, not the client).
    assert_eq!(
        raw.get(&path).await.unwrap().bytes().await.unwrap(),
        &b"x"[..]
    );
}

#[tokio::test]
async fn wrong_credentials_are_a_backend_error() {
    let server = start_s3fs().await;
    let mut cfg = server.config();
    cfg.secret_access_key = tether_objects::Secret::new("wrong");
    let s3 = S3Objects::connect(&cfg).unwrap();
    let e = s3
        .put(&key("k"), Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert!(matches!(e, tether_objects::ObjectsError::Backend(_)), "{e}");
    assert_eq!(e.code(), tether_proto::ErrorCode::Unavailable);
}

#[tokio::test]
async fn an_unreachable_server_is_a_backend_error() {
    let server = start_s3fs().await;
    let cfg = server.config();
    drop(server);
    let s3 = S3Objects::connect(&cfg).unwrap();
    let e = s3.head(&key("k")).await.unwrap_err();
    assert!(matches!(e, tether_objects::ObjectsError::Backend(_)), "{e}");
}
