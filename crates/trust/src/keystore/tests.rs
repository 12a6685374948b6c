use std::fs;

use super::{FileKeystore, KEK_FILE, Keystore, MemoryKeystore};
use crate::error::TrustError;

/// The behaviour every backend must have.
fn behaves_like_a_keystore(ks: &dyn Keystore) {
    assert_eq!(ks.read("absent").unwrap(), None);
    ks.write("blob", b"one").unwrap();
    assert_eq!(ks.read("blob").unwrap().as_deref(), Some(&b"one"[..]));
    ks.write("blob", b"two").unwrap();
    assert_eq!(ks.read("blob").unwrap().as_deref(), Some(&b"two"[..]));

    ks.store_sealed("secret.sealed", "tether/test/v1", b"hunter2")
        .unwrap();
    let raw = ks.read("secret.sealed").unwrap().unwrap();
    assert!(!raw.windows(7).any(|w| w == b"hunter2"));
    let opened = ks
        .load_sealed("secret.sealed", "tether/test/v1")
        .unwrap()
        .unwrap();
    assert_eq!(opened.as_slice(), b"hunter2");
    assert!(matches!(
        ks.load_sealed("secret.sealed", "tether/other/v1"),
        Err(TrustError::SealBroken(_))
    ));
    assert_eq!(ks.load_sealed("absent", "tether/test/v1").unwrap(), None);

    for bad in [
        "",
        "../up",
        "a/b",
        "a\\b",
        ".hidden",
        "Upper",
        KEK_FILE,
        &"x".repeat(101),
    ] {
        assert!(
            matches!(ks.write(bad, b"x"), Err(TrustError::InvalidInput { .. })),
            "write {bad:?}"
        );
        assert!(
            matches!(ks.read(bad), Err(TrustError::InvalidInput { .. })),
            "read {bad:?}"
        );
    }
}

#[test]
fn memory_keystore_behaves() {
    behaves_like_a_keystore(&MemoryKeystore::new().unwrap());
}

#[test]
fn file_keystore_behaves() {
    let dir = tempfile::tempdir().unwrap();
    behaves_like_a_keystore(&FileKeystore::open_or_create(dir.path().join("ks")).unwrap());
}

#[test]
fn file_keystore_creates_a_32_byte_private_kek_and_reopens_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ks");
    let ks = FileKeystore::open_or_create(&path).unwrap();
    let kek_path = path.join(KEK_FILE);
    assert_eq!(fs::metadata(&kek_path).unwrap().len(), 32);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&kek_path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }
    let sealed = ks.seal("tether/test/v1", b"data").unwrap();
    drop(ks);
    let again = FileKeystore::open_or_create(&path).unwrap();
    assert_eq!(
        again.open("tether/test/v1", &sealed).unwrap().as_slice(),
        b"data"
    );
    let strict = FileKeystore::open(&path).unwrap();
    assert_eq!(
        strict.open("tether/test/v1", &sealed).unwrap().as_slice(),
        b"data"
    );
}

#[test]
fn file_keystore_refuses_a_kek_of_the_wrong_length() {
    let dir = tempfile::tempdir().unwrap();
    for len in [0usize, 16, 31, 33, 64] {
        fs::write(dir.path().join(KEK_FILE), vec![1u8; len]).unwrap();
        let err = FileKeystore::open_or_create(dir.path()).unwrap_err();
        assert!(matches!(err, TrustError::KekInvalid(_)), "{len}: {err}");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("{len} bytes")) && msg.contains("exactly 32"),
            "{msg}"
        );
        // The bad file is left alone, not replaced.
        assert_eq!(
            fs::metadata(dir.path().join(KEK_FILE)).unwrap().len(),
            len as u64
        );
    }
}

#[test]
fn file_keystore_open_requires_an_existing_kek() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        FileKeystore::open(dir.path()),
        Err(TrustError::KekInvalid(_))
    ));
}

#[test]
fn file_keystore_writes_leave_no_temporaries_and_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let ks = FileKeystore::open_or_create(dir.path()).unwrap();
    for i in 0..5u8 {
        ks.write("blob", &[i; 100]).unwrap();
    }
    let mut names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["blob", KEK_FILE]);
    assert_eq!(fs::read(dir.path().join("blob")).unwrap(), [4u8; 100]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir.path().join("blob"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn another_keystores_blobs_do_not_open() {
    let a = MemoryKeystore::new().unwrap();
    let b = MemoryKeystore::new().unwrap();
    let sealed = a.seal("tether/test/v1", b"x").unwrap();
    assert!(matches!(
        b.open("tether/test/v1", &sealed),
        Err(TrustError::SealBroken(_))
    ));
}
