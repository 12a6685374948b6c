#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::acl::{Grant, Rights, icacls_args};
use crate::sid::service_sid;

#[test]
fn virtual_account_sids_match_the_os() {
    // Known values: what `sc showsid` prints on Windows.
    assert_eq!(
        service_sid("TrustedInstaller"),
        "S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464"
    );
    // The name is case-insensitive.
    assert_eq!(
        service_sid("trustedinstaller"),
        service_sid("TRUSTEDINSTALLER")
    );
    assert!(service_sid("tether-agent").starts_with("S-1-5-80-"));
    assert_eq!(service_sid("tether-agent").split('-').count(), 3 + 1 + 5);
}

#[test]
fn the_spec_runs_service_run_under_the_right_account() {
    let run = vec![
        "--state-dir".to_owned(),
        r"C:\ProgramData\Tether\agent".to_owned(),
    ];
    let agent = ServiceSpec::new(
        "tether-agent",
        "Tether agent",
        "d",
        PathBuf::from(r"C:\Program Files\Tether\tether-agent.exe"),
        &run,
        Account::Virtual,
    );
    assert_eq!(agent.args[..2], ["service", "run"]);
    assert_eq!(agent.args[2..], run[..]);
    assert_eq!(
        agent.account_name().as_deref(),
        Some(r"NT SERVICE\tether-agent")
    );
    let helper = ServiceSpec::new(
        "tether-helper",
        "Tether helper",
        "d",
        PathBuf::from("h.exe"),
        &[],
        Account::LocalSystem,
    );
    assert_eq!(helper.account_name(), None);
}

#[test]
fn recovery_restarts_after_5_30_60_seconds_and_resets_daily() {
    let r = Recovery::default();
    assert_eq!(
        r.restart_after,
        [5, 30, 60].map(Duration::from_secs).to_vec()
    );
    assert_eq!(r.reset_after, Duration::from_secs(86_400));
}

#[test]
fn icacls_replaces_inheritance_with_explicit_grants() {
    let sid = service_sid("tether-agent");
    let a = icacls_args(
        Path::new(r"C:\ProgramData\Tether\agent"),
        &[Grant {
            sid: sid.clone(),
            rights: Rights::Modify,
        }],
    );
    let a: Vec<String> = a.iter().map(|s| s.to_string_lossy().into_owned()).collect();
    assert_eq!(
        a,
        [
            r"C:\ProgramData\Tether\agent".to_owned(),
            "/inheritance:r".to_owned(),
            "/grant:r".to_owned(),
            "*S-1-5-18:(OI)(CI)F".to_owned(),
            "*S-1-5-32-544:(OI)(CI)F".to_owned(),
            format!("*{sid}:(OI)(CI)M"),
        ]
    );
}

#[test]
fn state_dirs_live_under_program_data() {
    assert_eq!(
        program_data_dir(Some(r"D:\PD".into()), "agent"),
        Path::new(r"D:\PD").join("Tether").join("agent")
    );
    assert_eq!(
        program_data_dir(None, "helper"),
        Path::new(r"C:\ProgramData").join("Tether").join("helper")
    );
}
