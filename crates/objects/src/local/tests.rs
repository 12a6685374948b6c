//! The local backend: files, atomic writes, and its own signed URLs.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use tempfile::TempDir;
use tether_proto::{Clock, ManualClock};

use super::*;

const BASE: &str = "https://tether.lab.example";
const KEY: [u8; 32] = [0x42; 32];
const START: UnixMillis = UnixMillis(1_700_000_000_000);

async fn open() -> (TempDir, LocalObjects) {
    let dir = tempfile::tempdir().unwrap();
    let objects = LocalObjects::open(&dir.path().join("objects"), BASE, &KEY)
        .await
        .unwrap();
    (dir, objects)
}

fn key(k: &str) -> ObjectKey {
    ObjectKey::new(k).unwrap()
}

/// Splits one of our URLs into the key (the path after `/api/objects/`) and its query.
fn split(url: &str) -> (&str, SignedQuery) {
    let rest = url
        .strip_prefix("https://tether.lab.example/api/objects/")
        .unwrap();
    let (key, query) = rest.split_once('?').unwrap();
    (key, SignedQuery::parse(query).unwrap())
}

/// Every file under `dir`, recursively, relative to it.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn round_trip() {
    let (_dir, o) = open().await;
    let k = key("artifacts/c_1/screen.png");
    assert_eq!(o.backend(), "local");
    assert_eq!(o.head(&k).await.unwrap(), None);
    assert_eq!(o.get(&k, 100).await.unwrap(), None);

    let meta = o.put(&k, Bytes::from_static(b"hello")).await.unwrap();
    assert_eq!(meta.size, 5);
    assert_eq!(
        meta.sha256.as_deref(),
        Some("2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")
    );
    assert_eq!(o.get(&k, 5).await.unwrap().unwrap(), &b"hello"[..]);
    assert_eq!(
        o.head(&k).await.unwrap(),
        Some(ObjectMeta {
            size: 5,
            sha256: None
        })
    );

    // Replacing.
    o.put(&k, Bytes::from_static(b"bye")).await.unwrap();
    assert_eq!(o.get(&k, 100).await.unwrap().unwrap(), &b"bye"[..]);

    // Too large to read: refused, not truncated.
    assert!(matches!(
        o.get(&k, 2).await,
        Err(ObjectsError::TooLarge { limit: 2 })
    ));

    // The file is where the key says, and no temporary file is left.
    assert_eq!(files(o.root()), ["artifacts/c_1/screen.png"]);

    o.delete(&k).await.unwrap();
    assert_eq!(o.head(&k).await.unwrap(), None);
    // Deleting again, or something never stored, is fine.
    o.delete(&k).await.unwrap();
    o.delete(&key("never/was")).await.unwrap();
}

#[tokio::test]
async fn empty_object() {
    let (_dir, o) = open().await;
    let k = key("empty");
    o.put(&k, Bytes::new()).await.unwrap();
    assert_eq!(o.get(&k, 0).await.unwrap().unwrap(), Bytes::new());
    assert_eq!(o.head(&k).await.unwrap().unwrap().size, 0);
}

#[tokio::test]
async fn a_key_cannot_be_a_directory_of_another() {
    let (_dir, o) = open().await;
    o.put(&key("a/b"), Bytes::from_static(b"x")).await.unwrap();
    // `a` is a directory here: there is no object `a`.
    assert_eq!(o.head(&key("a")).await.unwrap(), None);
    assert_eq!(o.get(&key("a"), 10).await.unwrap(), None);
    o.delete(&key("a")).await.unwrap();
    assert!(matches!(
        o.put(&key("a"), Bytes::from_static(b"y")).await,
        Err(ObjectsError::Conflict(_))
    ));
    o.put(&key("f"), Bytes::from_static(b"x")).await.unwrap();
    assert!(matches!(
        o.put(&key("f/g"), Bytes::from_static(b"y")).await,
        Err(ObjectsError::Conflict(_))
    ));
    // A path through a file is no object either.
    assert_eq!(o.head(&key("f/g")).await.unwrap(), None);
    // Nothing half-written anywhere.
    assert_eq!(files(o.root()), ["a/b", "f"]);
}

#[tokio::test]
async fn put_stream_stores_chunks_and_hashes_them() {
    let (_dir, o) = open().await;
    let k = key("logs/bundle.zip");
    let body = stream::iter(
        [&b"hel"[..], b"", b"lo"].map(|c| Ok::<_, std::io::Error>(Bytes::from_static(c))),
    );
    let meta = o.put_stream(&k, body, 5).await.unwrap();
    assert_eq!(meta.size, 5);
    assert_eq!(meta.sha256, Some(crate::sha256_hex(b"hello")));
    let (_file, size) = o.open_read(&k).await.unwrap().unwrap();
    assert_eq!(size, 5);
    assert_eq!(o.get(&k, 5).await.unwrap().unwrap(), &b"hello"[..]);
}

#[tokio::test]
async fn put_stream_over_the_limit_stores_nothing() {
    let (_dir, o) = open().await;
    let k = key("big");
    o.put(&k, Bytes::from_static(b"old")).await.unwrap();
    let body = stream::iter(
        [&b"1234"[..], b"5678"].map(|c| Ok::<_, std::io::Error>(Bytes::from_static(c))),
    );
    let e = o.put_stream(&k, body, 7).await.unwrap_err();
    assert!(matches!(e, ObjectsError::TooLarge { limit: 7 }), "{e}");
    assert_eq!(e.code(), tether_proto::ErrorCode::ArtifactTooLarge);
    // The old object is untouched and no temporary file is left.
    assert_eq!(o.get(&k, 10).await.unwrap().unwrap(), &b"old"[..]);
    assert_eq!(files(o.root()), ["big"]);
}

#[tokio::test]
async fn put_stream_with_a_failing_body_stores_nothing() {
    let (_dir, o) = open().await;
    let body = stream::iter([
        Ok(Bytes::from_static(b"part")),
        Err(std::io::Error::other("connection reset")),
    ]);
    let e = o.put_stream(&key("broken"), body, 100).await.unwrap_err();
    assert!(
        matches!(&e, ObjectsError::Upload(m) if m.contains("connection reset")),
        "{e}"
    );
    assert_eq!(o.head(&key("broken")).await.unwrap(), None);
    assert!(files(o.root()).is_empty());
}

#[tokio::test]
async fn a_dropped_upload_removes_its_temporary_file() {
    let (_dir, o) = open().await;
    let k = key("dropped/upload");
    // One chunk, then a body that never ends (a client that went silent). Asking for the
    // second chunk means the first was written to the temporary file.
    let waiting = Arc::new(AtomicBool::new(false));
    let flag = waiting.clone();
    let mut sent = false;
    let body = stream::poll_fn(move |_| {
        if sent {
            flag.store(true, Ordering::SeqCst);
            Poll::Pending
        } else {
            sent = true;
            Poll::Ready(Some(Ok::<_, std::io::Error>(Bytes::from_static(b"part"))))
        }
    });
    let upload = o.put_stream(&k, body, 100);
    let temp_appeared = async {
        while !waiting.load(Ordering::SeqCst) {
            tokio::task::yield_now().await;
        }
        assert_eq!(files(o.root()).len(), 1, "the temporary file is there");
    };
    tokio::select! {
        biased;
        r = upload => panic!("the upload cannot finish: {r:?}"),
        () = temp_appeared => {}
    }
    // The upload future is dropped here, mid-body (as when the server drops a handler).
    assert!(files(o.root()).is_empty(), "{:?}", files(o.root()));
    assert_eq!(o.head(&k).await.unwrap(), None);
}

#[test]
fn string_to_sign_and_signature_match_the_documented_vector() {
    // Computed independently: Python's hmac over the documented string.
    let signer = UrlSigner::new(BASE, &KEY).unwrap();
    let k = key("artifacts/c_1");
    assert_eq!(
        UrlSigner::string_to_sign(Method::Put, &k, UnixMillis(1_700_000_300_000)),
        "tether-objects-v1|PUT|artifacts/c_1|1700000300000"
    );
    let url = signer
        .sign(
            Method::Put,
            &k,
            Duration::from_secs(300),
            UnixMillis(1_700_000_000_000),
        )
        .unwrap();
    assert_eq!(
        url.url,
        "https://tether.lab.example/api/objects/artifacts/c_1?method=PUT&expires=1700000300000\
         &sig=9Rlw-rYL0dIMzCq9QwQpyNLsEu4dbZ79kf_GrJb1Kmk"
    );
    assert_eq!(url.method, Method::Put);
    assert_eq!(url.expires_at, UnixMillis(1_700_000_300_000));
    assert!(url.headers.is_empty());
}

#[tokio::test]
async fn presigned_urls_verify_for_their_method_and_key() {
    let (_dir, o) = open().await;
    let k = key("artifacts/c_2");
    for (url, method) in [
        (
            o.presign_put(&k, Duration::from_secs(60), START)
                .await
                .unwrap(),
            Method::Put,
        ),
        (
            o.presign_get(&k, Duration::from_secs(60), START)
                .await
                .unwrap(),
            Method::Get,
        ),
    ] {
        assert_eq!(url.method, method);
        let (path_key, q) = split(&url.url);
        assert_eq!(q.method, method.as_str());
        assert_eq!(o.verify_url(method, path_key, &q, START).unwrap(), k);

        // Used with the other method: refused.
        let other = match method {
            Method::Put => Method::Get,
            Method::Get => Method::Put,
        };
        assert!(matches!(
            o.verify_url(other, path_key, &q, START),
            Err(ObjectsError::SignatureInvalid)
        ));
        // …even when the query's method is changed to match.
        let relabelled = SignedQuery {
            method: other.as_str().into(),
            ..q.clone()
        };
        assert!(matches!(
            o.verify_url(other, path_key, &relabelled, START),
            Err(ObjectsError::SignatureInvalid)
        ));
        // For another key: refused.
        assert!(matches!(
            o.verify_url(method, "artifacts/c_3", &q, START),
            Err(ObjectsError::SignatureInvalid)
        ));
    }
}

#[tokio::test]
async fn tampered_urls_are_refused() {
    let (_dir, o) = open().await;
    let k = key("artifacts/c_4");
    let url = o
        .presign_put(&k, Duration::from_secs(60), START)
        .await
        .unwrap();
    let (path_key, q) = split(&url.url);

    // One character of the signature changed.
    let mut sig = q.sig.clone().into_bytes();
    sig[0] = if sig[0] == b'A' { b'B' } else { b'A' };
    let flipped = SignedQuery {
        sig: String::from_utf8(sig).unwrap(),
        ..q.clone()
    };
    // A later expiry with the old signature.
    let extended = SignedQuery {
        expires: q.expires + 3_600_000,
        ..q.clone()
    };
    // Not base64, empty, truncated, padded.
    let garbage: Vec<SignedQuery> = ["!!!", "", &q.sig[..10], &format!("{}=", q.sig)]
        .into_iter()
        .map(|s| SignedQuery {
            sig: s.to_owned(),
            ..q.clone()
        })
        .collect();
    for bad in [flipped, extended].iter().chain(&garbage) {
        let e = o.verify_url(Method::Put, path_key, bad, START).unwrap_err();
        assert!(matches!(e, ObjectsError::SignatureInvalid), "{bad:?}: {e}");
        assert_eq!(e.code(), tether_proto::ErrorCode::SignatureInvalid);
    }

    // Signed with another key.
    let other = LocalObjects::open(o.root(), BASE, &[7; 32]).await.unwrap();
    let foreign = other
        .presign_put(&k, Duration::from_secs(60), START)
        .await
        .unwrap();
    let (_, fq) = split(&foreign.url);
    assert!(matches!(
        o.verify_url(Method::Put, path_key, &fq, START),
        Err(ObjectsError::SignatureInvalid)
    ));
}

#[tokio::test]
async fn urls_expire_on_the_injected_clock() {
    let (_dir, o) = open().await;
    let clock = ManualClock::new(START);
    let k = key("artifacts/c_5");
    let url = o
        .presign_get(&k, Duration::from_secs(300), clock.now())
        .await
        .unwrap();
    assert_eq!(
        url.expires_at,
        START.saturating_add(Duration::from_secs(300))
    );
    let (path_key, q) = split(&url.url);

    clock.advance(Duration::from_secs(300));
    // Valid up to and including its expiry…
    assert_eq!(clock.now(), url.expires_at);
    o.verify_url(Method::Get, path_key, &q, clock.now())
        .unwrap();
    // …and expired one millisecond later.
    clock.advance(Duration::from_millis(1));
    let e = o
        .verify_url(Method::Get, path_key, &q, clock.now())
        .unwrap_err();
    assert!(
        matches!(e, ObjectsError::UrlExpired { expires_at } if expires_at == url.expires_at),
        "{e}"
    );
    assert_eq!(e.code(), tether_proto::ErrorCode::UrlExpired);
    // An expired URL that was also altered is just invalid.
    let altered = SignedQuery {
        expires: q.expires - 1,
        ..q
    };
    assert!(matches!(
        o.verify_url(Method::Get, path_key, &altered, clock.now()),
        Err(ObjectsError::SignatureInvalid)
    ));
}

#[tokio::test]
async fn bad_keys_and_lifetimes_are_refused() {
    let (_dir, o) = open().await;
    let url = o
        .presign_put(&key("ok"), Duration::from_secs(60), START)
        .await
        .unwrap();
    let (_, q) = split(&url.url);
    for bad in ["", "../ok", "ok/", "a//b", ".tmp-1", "a b", "%2e%2e/x"] {
        let e = o.verify_url(Method::Put, bad, &q, START).unwrap_err();
        assert!(matches!(e, ObjectsError::InvalidKey(_)), "{bad:?}: {e}");
        assert_eq!(e.code(), tether_proto::ErrorCode::InvalidField);
    }
    for lifetime in [Duration::ZERO, Duration::from_secs(8 * 24 * 3600)] {
        assert!(matches!(
            o.presign_put(&key("ok"), lifetime, START).await,
            Err(ObjectsError::InvalidArgument(_))
        ));
    }
}

#[test]
fn query_parsing() {
    let q = SignedQuery::parse("sig=abc_-&expires=17&method=GET").unwrap();
    assert_eq!(
        q,
        SignedQuery {
            method: "GET".into(),
            expires: 17,
            sig: "abc_-".into()
        }
    );
    for bad in [
        "",
        "method=GET&expires=17",
        "method=GET&expires=17&sig=a&sig=b",
        "method=GET&expires=17&sig=a&x=1",
        "method=GET&expires=-1&sig=a",
        "method=GET&expires=+1&sig=a",
        "method=GET&expires=&sig=a",
        "method=GET&expires=99999999999999999999999&sig=a",
        "method=GET&expires=17&sig",
    ] {
        assert!(
            matches!(SignedQuery::parse(bad), Err(ObjectsError::SignatureInvalid)),
            "{bad:?}"
        );
    }
}

#[test]
fn signer_configuration_is_checked() {
    assert!(matches!(
        UrlSigner::new(BASE, &[1; 31]),
        Err(ObjectsError::Config(_))
    ));
    for bad in [
        "",
        "tether.lab.example",
        "ftp://x",
        "https://",
        "https:///path",
        "https://x?y=1",
        "https://x#f",
    ] {
        assert!(
            matches!(UrlSigner::new(bad, &KEY), Err(ObjectsError::Config(_))),
            "{bad:?}"
        );
    }
    // A trailing slash and a path prefix are fine.
    let s = UrlSigner::new("http://127.0.0.1:8443/tether/", &KEY).unwrap();
    let url = s
        .sign(Method::Get, &key("k"), Duration::from_secs(1), START)
        .unwrap();
    assert!(
        url.url
            .starts_with("http://127.0.0.1:8443/tether/api/objects/k?method=GET&expires="),
        "{}",
        url.url
    );
    assert!(!format!("{s:?}").contains("66"), "the key is not shown");
}
