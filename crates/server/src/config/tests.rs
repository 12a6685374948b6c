#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests: a broken expectation should panic with its message"
)]

use super::*;

fn with_alerts(edit: impl FnOnce(&mut AlertsConfig)) -> Result<(), ConfigError> {
    let mut c = Config::default();
    edit(&mut c.alerts);
    c.validate()
}

const SECRET: &str = "sixteen bytes at least";

#[test]
fn the_defaults_are_valid() {
    Config::default().validate().unwrap();
    let a = AlertsConfig::default();
    assert_eq!(
        (a.cpu_high_pct, a.cpu_high_minutes, a.disk_high_pct),
        (90, 5, 95)
    );
    assert_eq!((a.offline_after_s, a.offline_check_s), (300, 5));
    let t = TelemetryConfig::default();
    assert_eq!(
        (
            t.retention_days,
            t.rollup_every_s,
            t.backlog_limit,
            t.bulk_nice
        ),
        (30, 300, 50_000, 0)
    );
    let g = GatewayConfig::default();
    assert_eq!(
        (
            g.heartbeat_interval_s,
            g.telemetry_interval_s,
            g.presence_ttl_s
        ),
        (30, 10, 60)
    );
}

#[test]
fn the_bulk_nice_value_is_a_nice_value() {
    let nice = |bulk_nice: u8| {
        Config {
            telemetry: TelemetryConfig {
                bulk_nice,
                ..TelemetryConfig::default()
            },
            ..Config::default()
        }
        .validate()
    };
    nice(0).unwrap();
    nice(19).unwrap();
    let err = nice(20).unwrap_err();
    assert!(err.to_string().contains("telemetry.bulk_nice"), "{err}");
}

#[test]
fn the_telemetry_backlog_limit_stays_under_the_streams_cap() {
    let limit = |backlog_limit: u64| {
        Config {
            telemetry: TelemetryConfig {
                backlog_limit,
                ..TelemetryConfig::default()
            },
            ..Config::default()
        }
        .validate()
    };
    limit(1).unwrap();
    limit(90_000).unwrap();
    assert!(limit(0).is_err());
    assert!(limit(90_001).is_err());
}

#[test]
fn presence_outlives_two_heartbeats() {
    let gateway = |hb: u32, tel: u32, ttl: u64| {
        Config {
            gateway: GatewayConfig {
                heartbeat_interval_s: hb,
                telemetry_interval_s: tel,
                presence_ttl_s: ttl,
            },
            ..Config::default()
        }
        .validate()
    };
    gateway(5, 1, 10).unwrap();
    assert!(gateway(4, 1, 10).is_err(), "connected allows 5..=3600");
    gateway(30, 10, 60).unwrap();
    assert!(
        gateway(30, 10, 59).is_err(),
        "one lost heartbeat would drop it"
    );
    assert!(gateway(0, 10, 60).is_err());
    assert!(gateway(30, 0, 60).is_err());
    assert!(gateway(30, 10, 86_401).is_err());
}

#[test]
fn webhook_urls() {
    let hook = |url: &str, plain: bool| {
        with_alerts(|a| {
            a.webhook_url = Some(url.into());
            a.webhook_secret = Some(Secret::new(SECRET));
            a.dangerous_plain_http_webhook = plain;
        })
    };
    hook("https://hooks.example/tether", false).unwrap();
    hook("http://127.0.0.1:9000/hook", false).unwrap();
    hook("http://[::1]:9000/hook", false).unwrap();
    hook("http://localhost/hook", false).unwrap();
    assert!(hook("http://hooks.example/tether", false).is_err());
    hook("http://hooks.example/tether", true).unwrap();
    assert!(hook("ftp://hooks.example/", true).is_err());
    assert!(hook("not a url", false).is_err());
}

#[test]
fn a_webhook_needs_a_secret_and_a_secret_a_webhook() {
    assert!(with_alerts(|a| a.webhook_url = Some("https://h.example/".into())).is_err());
    assert!(with_alerts(|a| a.webhook_secret = Some(Secret::new(SECRET))).is_err());
    assert!(
        with_alerts(|a| {
            a.webhook_url = Some("https://h.example/".into());
            a.webhook_secret = Some(Secret::new("short"));
        })
        .is_err()
    );
}

#[test]
fn thresholds_are_bounded() {
    assert!(with_alerts(|a| a.cpu_high_pct = 0).is_err());
    assert!(with_alerts(|a| a.disk_high_pct = 101).is_err());
    assert!(with_alerts(|a| a.cpu_high_minutes = 0).is_err());
    assert!(with_alerts(|a| a.offline_after_s = 0).is_err());
    assert!(with_alerts(|a| a.offline_check_s = 0).is_err());
    let mut c = Config::default();
    c.telemetry.retention_days = 0;
    assert!(c.validate().is_err());
}

#[test]
fn secrets_never_show() {
    let secret = Secret::new("hunter2 hunter2 hunter2");
    assert_eq!(format!("{secret:?}"), "<redacted>");
    let mut c = Config::default();
    c.alerts.webhook_url = Some("https://h.example/".into());
    c.alerts.webhook_secret = Some(secret.clone());
    let printed = serde_json::to_string(&c).unwrap();
    assert!(!printed.contains("hunter2"), "{printed}");
    assert!(!format!("{c:?}").contains("hunter2"));
    // Read from a file, it is the secret itself.
    let read: AlertsConfig =
        serde_json::from_str(r#"{"webhook_secret": "hunter2 hunter2 hunter2"}"#).unwrap();
    assert_eq!(read.webhook_secret.unwrap().expose(), secret.expose());
}
