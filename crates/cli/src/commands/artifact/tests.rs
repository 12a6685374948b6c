#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use base64::Engine;
use futures_util::stream;

use super::*;
use crate::error::EXIT_INTEGRITY;

const KEY: [u8; 32] = [7; 32];

fn meta(content_type: &str) -> ArtifactView {
    ArtifactView {
        artifact_id: "art_01".into(),
        command_id: "0b7e4c7e-52b4-4c1e-9a51-6f0c1f3f2a10".into(),
        device_id: "dev_01".into(),
        content_type: content_type.into(),
        size_bytes: 3,
        sha256: tether_proto::ids::sha256_hex(b"abc"),
        download_url: "https://tether.example/api/objects/x?sig=secret".into(),
        expires_at: 1_000,
        key: None,
        plaintext_sha256: None,
    }
}

/// `nonce || AES-256-GCM(plaintext)` with the artifact id as associated data, as the
/// contract describes the agent's encryption.
fn seal(key: &[u8; 32], aad: &str, nonce: [u8; 12], plaintext: &[u8]) -> Vec<u8> {
    let ct = Aes256Gcm::new_from_slice(key)
        .unwrap()
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: plaintext,
                aad: aad.as_bytes(),
            },
        )
        .unwrap();
    [nonce.as_slice(), &ct].concat()
}

fn b64(key: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key)
}

#[test]
fn file_names_come_from_the_id_and_the_content_type() {
    assert_eq!(default_file_name(&meta("image/png")), "art_01.png");
    assert_eq!(
        default_file_name(&meta("application/zip; charset=binary")),
        "art_01.zip"
    );
    assert_eq!(default_file_name(&meta("Text/Plain")), "art_01.txt");
    assert_eq!(
        default_file_name(&meta("application/x-weird")),
        "art_01.bin"
    );
    assert_eq!(default_file_name(&meta("")), "art_01.bin");
}

#[test]
fn the_hash_must_match() {
    let h = tether_proto::ids::sha256_hex(b"abc");
    verify_sha256(&h, &h).unwrap();
    verify_sha256(&h.to_uppercase(), &h).unwrap();
    let e = verify_sha256(&h, &tether_proto::ids::sha256_hex(b"abd")).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::ChecksumMismatch));
    assert_eq!(e.exit_status(), EXIT_INTEGRITY);
    assert!(
        crate::output::error_text(&e).starts_with("error 7002 CHECKSUM_MISMATCH: "),
        "{e}"
    );
}

#[test]
fn encrypted_artifacts_open_with_their_key_and_id_only() {
    let sealed = seal(&KEY, "art_01", [1; 12], b"\x89PNG...");
    let key = b64(&KEY);
    assert_eq!(
        decrypt(&key, "art_01", &sealed).unwrap().as_slice(),
        b"\x89PNG..."
    );
    // Padded base64url is fine too.
    assert_eq!(
        decrypt(&format!("{key}="), "art_01", &sealed)
            .unwrap()
            .as_slice(),
        b"\x89PNG..."
    );

    // Another artifact's id (AAD), another key, a flipped bit, truncation: refused.
    let broken = |r: Result<Zeroizing<Vec<u8>>, CliError>| {
        let e = r.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::SealBroken), "{e:?}");
        assert_eq!(e.exit_status(), EXIT_INTEGRITY);
    };
    broken(decrypt(&key, "art_02", &sealed));
    broken(decrypt(&b64(&[8; 32]), "art_01", &sealed));
    let mut flipped = sealed.clone();
    *flipped.last_mut().unwrap() ^= 1;
    broken(decrypt(&key, "art_01", &flipped));
    broken(decrypt(&key, "art_01", &sealed[..NONCE_LEN + TAG_LEN - 1]));
    broken(decrypt(&key, "art_01", &[]));

    // A key that is not 32 bytes of base64url is the server's fault.
    for bad in [b64(&[1; 16]), "not base64!".to_owned(), String::new()] {
        assert!(matches!(
            decrypt(&bad, "art_01", &sealed),
            Err(CliError::Unreachable(_))
        ));
    }
}

fn chunks(parts: &[&[u8]]) -> impl Stream<Item = Result<Vec<u8>, String>> + Unpin {
    stream::iter(parts.iter().map(|p| Ok(p.to_vec())).collect::<Vec<_>>())
}

#[tokio::test]
async fn downloads_are_hashed_as_they_stream_and_held_to_their_size() {
    let mut sink = Vec::new();
    let mut p = Progress::new(6, false);
    let h = copy_hashed(chunks(&[b"ab", b"c", b"def"]), 6, &mut sink, &mut p)
        .await
        .unwrap();
    assert_eq!(sink, b"abcdef");
    assert_eq!(h, tether_proto::ids::sha256_hex(b"abcdef"));

    // More than stated: cut off at the chunk that passes the size.
    let mut sink = Vec::new();
    let e = copy_hashed(chunks(&[b"abc", b"def"]), 4, &mut sink, &mut p)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::ChecksumMismatch));
    assert_eq!(sink, b"abc", "nothing past the size is written");

    // Fewer than stated.
    let e = copy_hashed(chunks(&[b"ab"]), 3, &mut Vec::new(), &mut p)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::ChecksumMismatch));

    // A broken connection.
    let body = stream::iter(vec![Ok(b"ab".to_vec()), Err("reset".to_owned())]);
    let e = copy_hashed(body, 3, &mut Vec::new(), &mut p)
        .await
        .unwrap_err();
    assert!(
        matches!(e, CliError::Unreachable(ref m) if m.contains("reset")),
        "{e:?}"
    );

    // Empty is fine when the size is 0.
    let h = copy_hashed(chunks(&[]), 0, &mut Vec::new(), &mut p)
        .await
        .unwrap();
    assert_eq!(h, tether_proto::ids::sha256_hex(b""));
}

#[test]
fn an_existing_file_is_replaced_only_with_force() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shot.png");
    let dest = Destination::File(path.clone());
    deliver_bytes(b"one", &dest, false).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"one");

    assert!(matches!(
        refuse_existing(&path, false),
        Err(CliError::Usage(_))
    ));
    refuse_existing(&path, true).unwrap();
    let e = deliver_bytes(b"two", &dest, false).unwrap_err();
    assert!(e.to_string().contains("--force"), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), b"one", "left alone");

    deliver_bytes(b"two", &dest, true).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"two");

    // No temporary files are left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("shot.png")]);
}

#[test]
fn a_verified_download_is_moved_into_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs.zip");
    let dest = Destination::File(path.clone());
    let mut tmp = temp_beside(&dest).unwrap();
    tmp.write_all(b"zip bytes").unwrap();
    assert_eq!(tmp.path().parent(), Some(dir.path()));
    deliver_file(tmp, &dest, false).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"zip bytes");
}

#[test]
fn download_urls_must_be_https_or_local_http() {
    let server = "https://tether.example:8443";
    assert_eq!(
        origin_of("https://tether.example:8443/api/objects/a?sig=x", server).unwrap(),
        Origin::Server
    );
    assert_eq!(
        origin_of("https://tether.example/api/objects/a", server).unwrap(),
        Origin::Public,
        "another port is another origin"
    );
    assert_eq!(
        origin_of(
            "https://bucket.s3.amazonaws.com/a?X-Amz-Signature=x",
            server
        )
        .unwrap(),
        Origin::Public
    );
    assert_eq!(
        origin_of("http://127.0.0.1:9000/bucket/a", server).unwrap(),
        Origin::Loopback
    );
    assert_eq!(
        origin_of("http://[::1]:9000/bucket/a", server).unwrap(),
        Origin::Loopback
    );
    for bad in [
        "http://s3.example/bucket/a",
        "ftp://tether.example/a",
        "file:///etc/passwd",
        "not a url",
    ] {
        assert!(
            matches!(origin_of(bad, server), Err(CliError::Unreachable(_))),
            "{bad}"
        );
    }
}

#[test]
fn refused_downloads_say_why() {
    let m = meta("image/png");
    assert_eq!(
        download_refused(403, &m, 2_000).code(),
        Some(ErrorCode::UrlExpired)
    );
    assert_eq!(
        download_refused(403, &m, 500).code(),
        Some(ErrorCode::Forbidden)
    );
    assert_eq!(
        download_refused(404, &m, 500).code(),
        Some(ErrorCode::NotFound)
    );
    assert!(matches!(
        download_refused(500, &m, 500),
        CliError::Unreachable(_)
    ));
}

#[test]
fn the_debug_form_hides_the_url_and_the_key() {
    let mut m = meta("image/png");
    m.key = Some(b64(&KEY));
    let d = format!("{m:?}");
    assert!(!d.contains("secret") && !d.contains(&b64(&KEY)), "{d}");
    assert!(d.contains("encrypted: true"), "{d}");
}

#[test]
fn the_content_hash_the_pc_reported_must_match_too() {
    let h = tether_proto::ids::sha256_hex(b"content");
    verify_content(&h, &h).unwrap();
    let e = verify_content(&h, &tether_proto::ids::sha256_hex(b"other")).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::ChecksumMismatch));
    assert!(e.to_string().contains("the PC reported"), "{e}");
}
