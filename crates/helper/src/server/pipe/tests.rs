use super::*;

fn config(name: &str, account: &str) -> HelperConfig {
    HelperConfig {
        pipe: PipeConfig {
            name: name.to_owned(),
            agent_account: account.to_owned(),
            require_agent_account: false,
        },
        state_dir: PathBuf::from("state"),
        agent_key: [0; 32],
        agent_exe: None,
    }
}

#[test]
fn only_local_pipe_names_are_accepted() {
    assert!(check_config(&config(DEFAULT_PIPE, DEFAULT_AGENT_ACCOUNT)).is_ok());
    assert!(check_config(&config(r"\\.\PIPE\x", DEFAULT_AGENT_ACCOUNT)).is_ok());
    for bad in [
        r"\\.\pipe\",
        r"\\server\pipe\x",
        r"C:\x",
        "tether-helper",
        "",
    ] {
        assert!(
            check_config(&config(bad, DEFAULT_AGENT_ACCOUNT)).is_err(),
            "{bad}"
        );
    }
    assert!(check_config(&config(DEFAULT_PIPE, " ")).is_err());
}

#[test]
fn the_dacl_admits_system_administrators_and_the_agent_without_create_instance() {
    let sid = "S-1-5-21-1-2-3-1000";
    let sddl = sddl(sid);
    assert_eq!(
        sddl,
        "D:P(A;;GA;;;SY)(A;;GA;;;BA)(A;;0x12019b;;;S-1-5-21-1-2-3-1000)"
    );
    // FILE_APPEND_DATA / FILE_CREATE_PIPE_INSTANCE (0x4) is not granted to the agent.
    assert_eq!(AGENT_RIGHTS & 0x4, 0);
    // Windows parses it (a typo would fail here, not at the first start of a service).
    SecurityDescriptor::from_sddl(&sddl).unwrap();
    assert!(SecurityDescriptor::from_sddl("D:P(A;;GA;;;not-a-sid)").is_err());
}

#[test]
fn sid_strings_are_normalized_and_well_known_accounts_resolve() {
    assert_eq!(win::account_sid("S-1-5-18").unwrap(), "S-1-5-18");
    assert_eq!(win::account_sid("s-1-5-32-544").unwrap(), "S-1-5-32-544");
    assert!(win::account_sid("S-1-x").is_err());
    let me = current_user_sid().unwrap();
    assert!(me.starts_with("S-1-"), "{me}");
}
