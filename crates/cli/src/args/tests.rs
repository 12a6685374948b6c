#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use clap::Parser;
use serde_json::json;

use super::*;

fn cli(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("tether").chain(args.iter().copied()))
}

fn cmd(args: &[&str]) -> CmdArgs {
    match cli(args).unwrap().command {
        Command::Cmd(c) => c,
        other => panic!("not cmd: {other:?}"),
    }
}

#[test]
fn param_values_are_json_when_they_parse_and_strings_otherwise() {
    assert_eq!(
        parse_param("delay_s=60").unwrap(),
        ("delay_s".into(), json!(60))
    );
    assert_eq!(
        parse_param("force=true").unwrap(),
        ("force".into(), json!(true))
    );
    assert_eq!(
        parse_param("pid=null").unwrap(),
        ("pid".into(), json!(null))
    );
    assert_eq!(
        parse_param(r#"sources=["system","tether"]"#).unwrap(),
        ("sources".into(), json!(["system", "tether"]))
    );
    assert_eq!(
        parse_param("reason=patch day").unwrap(),
        ("reason".into(), json!("patch day"))
    );
    // Quoting keeps a number-looking value a string; a leading zero is not JSON.
    assert_eq!(parse_param(r#"reason="42""#).unwrap().1, json!("42"));
    assert_eq!(parse_param("reason=007").unwrap().1, json!("007"));
    assert_eq!(parse_param("reason=").unwrap().1, json!(""));
    // Only the first `=` splits.
    assert_eq!(parse_param("reason=a=b").unwrap().1, json!("a=b"));
    assert_eq!(parse_param("x=1.5").unwrap().1, json!(1.5));
}

#[test]
fn param_names_are_checked() {
    for bad in ["novalue", "=1", "Delay=1", "a b=1", "a.b=1", "x-y=1"] {
        assert!(parse_param(bad).is_err(), "{bad:?} was accepted");
    }
    let long = format!("{}=1", "a".repeat(65));
    assert!(parse_param(&long).is_err());
}

#[test]
fn methods_parse_by_their_spelling_in_any_case_and_with_dashes() {
    assert_eq!(parse_method("lock_screen").unwrap(), Method::LockScreen);
    assert_eq!(parse_method("Lock-Screen").unwrap(), Method::LockScreen);
    assert_eq!(parse_method("collect_logs").unwrap(), Method::CollectLogs);
    let e = parse_method("format_disk").unwrap_err();
    assert!(
        e.contains("lock_screen") && e.contains("memory_dump"),
        "{e}"
    );
    for m in Method::ALL {
        assert_eq!(parse_method(&method_name(*m)).unwrap(), *m);
    }
}

#[test]
fn cmd_takes_its_flags() {
    let c = cmd(&[
        "cmd",
        "lab-pc-7",
        "reboot",
        "--param",
        "delay_s=60",
        "-p",
        "reason=patch day",
        "--ttl",
        "3600",
        "--priority",
        "high",
        "--wait",
        "--timeout",
        "90",
    ]);
    assert_eq!(c.device, "lab-pc-7");
    assert_eq!(c.method, Method::Reboot);
    assert_eq!(
        c.params,
        vec![
            ("delay_s".to_owned(), json!(60)),
            ("reason".to_owned(), json!("patch day"))
        ]
    );
    assert_eq!(c.ttl, 3600);
    assert_eq!(c.priority, PriorityArg::High);
    assert!(c.wait);
    assert_eq!(c.timeout, Some(90));

    let d = cmd(&["cmd", "dev_1", "lock_screen"]);
    assert_eq!(d.ttl, 300);
    assert_eq!(d.priority, PriorityArg::Normal);
    assert!(!d.wait && d.timeout.is_none() && d.params.is_empty());
    // --json is global: after the subcommand too.
    assert!(
        cli(&["cmd", "dev_1", "lock_screen", "--json"])
            .unwrap()
            .global
            .json
    );
}

#[test]
fn cmd_refuses_bad_flags() {
    // --timeout only means something with --wait.
    assert!(cli(&["cmd", "d", "lock_screen", "--timeout", "2"]).is_err());
    assert!(cli(&["cmd", "d", "lock_screen", "--ttl", "0"]).is_err());
    assert!(cli(&["cmd", "d", "lock_screen", "--ttl", "604801"]).is_err());
    assert!(cli(&["cmd", "d", "lock_screen", "--priority", "urgent"]).is_err());
    assert!(cli(&["cmd", "d", "nuke"]).is_err());
    assert!(cli(&["cmd", "d", "lock_screen", "-p", "oops"]).is_err());
    assert!(cli(&["cmd", "d"]).is_err());
}

#[test]
fn commands_command_and_artifact_get_parse() {
    match cli(&["commands", "lab-pc-7", "-n", "5"]).unwrap().command {
        Command::Commands { device, limit } => {
            assert_eq!(device, "lab-pc-7");
            assert_eq!(limit, 5);
        }
        other => panic!("{other:?}"),
    }
    match cli(&["commands", "x"]).unwrap().command {
        Command::Commands { limit, .. } => assert_eq!(limit, 20),
        other => panic!("{other:?}"),
    }
    assert!(cli(&["commands", "x", "--limit", "501"]).is_err());
    match cli(&["command", "0b7e4c7e", "--device", "pc"])
        .unwrap()
        .command
    {
        Command::ShowCommand { id, device } => {
            assert_eq!(id, "0b7e4c7e");
            assert_eq!(device.as_deref(), Some("pc"));
        }
        other => panic!("{other:?}"),
    }
    match cli(&["artifact", "get", "art_1", "-o", "x.png", "--force"])
        .unwrap()
        .command
    {
        Command::Artifact(ArtifactCommand::Get {
            artifact_id,
            output,
            force,
        }) => {
            assert_eq!(artifact_id, "art_1");
            assert_eq!(output, Some(PathBuf::from("x.png")));
            assert!(force);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_help_renders() {
    // clap checks the definitions (conflicting names, bad defaults) when it builds them.
    use clap::CommandFactory;
    Cli::command().debug_assert();
    let mut c = Cli::command();
    let help = c
        .find_subcommand_mut("cmd")
        .unwrap()
        .render_long_help()
        .to_string();
    assert!(
        help.contains("tether cmd lab-pc-7 lock_screen --wait"),
        "{help}"
    );
    assert!(help.contains("delay_s 0..3600"), "{help}");
}
