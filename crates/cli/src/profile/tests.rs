#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::ffi::OsString;

use std::fs;

use super::*;

fn session(refresh: &str) -> Session {
    Session {
        server: "https://h.example".into(),
        email: "a@example.com".into(),
        user_id: "usr_1".into(),
        session_id: "sess_1".into(),
        access_token: "access-secret".into(),
        access_expires_at: UnixMillis(1_000),
        refresh_token: refresh.into(),
    }
}

#[test]
fn files_round_trip_and_missing_files_read_as_none() {
    let dir = tempfile::tempdir().unwrap();
    let p = Profile::new(dir.path().join("nested").join("tether"));
    assert_eq!(p.config().unwrap(), None);
    assert_eq!(p.session().unwrap(), None);
    assert_eq!(p.ca_pem().unwrap(), None);

    let c = ProfileConfig {
        server: "https://h.example".into(),
        ca_fingerprint: "AB:CD".into(),
        email: Some("a@example.com".into()),
    };
    p.save_config(&c).unwrap();
    p.save_ca_pem("-----BEGIN CERTIFICATE-----\n").unwrap();
    p.save_session(&session("r1")).unwrap();
    assert_eq!(p.config().unwrap(), Some(c));
    assert_eq!(p.session().unwrap(), Some(session("r1")));
    assert_eq!(
        p.ca_pem().unwrap().as_deref(),
        Some("-----BEGIN CERTIFICATE-----\n")
    );

    // Replacing is whole-file, and no temporary file is left behind.
    p.save_session(&session("r2")).unwrap();
    assert_eq!(p.session().unwrap().unwrap().refresh_token, "r2");
    let names: Vec<String> = fs::read_dir(p.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");

    p.clear_session().unwrap();
    assert_eq!(p.session().unwrap(), None);
    p.clear_session().unwrap(); // clearing twice is fine
}

#[cfg(unix)]
#[test]
fn secrets_are_owner_only_even_when_a_stale_temp_file_was_world_readable() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let p = Profile::new(dir.path().join("tether"));
    p.save_session(&session("r1")).unwrap();
    let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(p.dir()), 0o700);
    assert_eq!(mode(&p.path("session.json")), 0o600);

    let stale = p.path(&format!(".session.json.{}.tmp", std::process::id()));
    fs::write(&stale, "old").unwrap();
    fs::set_permissions(&stale, fs::Permissions::from_mode(0o644)).unwrap();
    p.save_session(&session("r2")).unwrap();
    assert_eq!(mode(&p.path("session.json")), 0o600);
    assert!(!stale.exists());

    let _lock = p.lock_session().unwrap();
    assert_eq!(mode(&p.path("session.lock")), 0o600);
}

#[test]
fn a_damaged_file_is_a_clear_local_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = Profile::new(dir.path());
    fs::write(p.path("session.json"), "{not json").unwrap();
    let e = p.session().unwrap_err();
    assert_eq!(e.exit_status(), 2);
    assert!(e.to_string().contains("session.json is damaged"), "{e}");
}

#[test]
fn session_debug_output_hides_the_tokens() {
    let shown = format!("{:?}", session("refresh-secret"));
    assert!(!shown.contains("refresh-secret"));
    assert!(!shown.contains("access-secret"));
    assert!(shown.contains("sess_1"));
}

#[test]
fn the_default_directory_follows_the_platform_convention() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| OsString::from(v))
        }
    };
    if cfg!(windows) {
        assert_eq!(
            default_dir(env(&[("APPDATA", r"C:\Users\a\AppData\Roaming")])),
            Some(PathBuf::from(r"C:\Users\a\AppData\Roaming").join("tether"))
        );
        assert_eq!(default_dir(env(&[])), None);
    } else {
        assert_eq!(
            default_dir(env(&[("XDG_CONFIG_HOME", "/x/conf"), ("HOME", "/home/a")])),
            Some(PathBuf::from("/x/conf/tether"))
        );
        assert_eq!(
            default_dir(env(&[("HOME", "/home/a")])),
            Some(PathBuf::from("/home/a/.config/tether"))
        );
        // A relative or empty XDG_CONFIG_HOME is ignored, as the XDG spec says.
        assert_eq!(
            default_dir(env(&[("XDG_CONFIG_HOME", "conf"), ("HOME", "/home/a")])),
            Some(PathBuf::from("/home/a/.config/tether"))
        );
        assert_eq!(
            default_dir(env(&[("XDG_CONFIG_HOME", ""), ("HOME", "/home/a")])),
            Some(PathBuf::from("/home/a/.config/tether"))
        );
        assert_eq!(default_dir(env(&[])), None);
    }
}
