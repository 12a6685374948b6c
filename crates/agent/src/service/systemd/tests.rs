#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use super::*;

#[test]
fn words_are_quoted_for_systemd() {
    assert_eq!(
        quote("/usr/bin/tether-agent").unwrap(),
        "/usr/bin/tether-agent"
    );
    assert_eq!(
        quote("https://h.example:8443").unwrap(),
        "https://h.example:8443"
    );
    assert_eq!(quote("/var/lib/my agent").unwrap(), "\"/var/lib/my agent\"");
    assert_eq!(quote("50%").unwrap(), "50%%");
    assert_eq!(quote("$HOME").unwrap(), "$$HOME");
    assert_eq!(quote("a\"b\\c").unwrap(), "\"a\\\"b\\\\c\"");
    assert_eq!(quote("").unwrap(), "\"\"");
    assert!(quote("two\nlines").is_err());
}

#[test]
fn the_unit_runs_the_agent_with_its_options() {
    let plan = ServicePlan {
        exe: PathBuf::from("/usr/local/bin/tether-agent"),
        args: vec![
            "run".into(),
            "--state-dir".into(),
            "/var/lib/tether agent".into(),
            "--server".into(),
            "https://t.example:8443".into(),
        ],
        state_dir: PathBuf::from("/var/lib/tether agent"),
    };
    let text = unit(&plan).unwrap();
    assert!(text.contains(
        "\nExecStart=/usr/local/bin/tether-agent run --state-dir \"/var/lib/tether agent\" \
         --server https://t.example:8443\n"
    ));
    assert!(text.contains("\nReadWritePaths=\"/var/lib/tether agent\"\n"));
    assert!(text.contains("\nWantedBy=multi-user.target\n"));
    assert!(text.contains("\nRestartPreventExitStatus=2\n"));
}
