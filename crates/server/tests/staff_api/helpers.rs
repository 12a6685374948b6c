//! Helpers for the staff API tests: refusals, pages, raw downloads, a CSV reader, events
//! appended as the server would, and a server on a MariaDB database of its own.

use std::future::Future;

use serde_json::Value;
use tether_client::{Api, ClientError};
use tether_proto::{Clock, ErrorCode};
use tether_server::config::StoreConfig;
use tether_store::{MysqlStore, NewAuditEvent, TestDb};

use crate::support::TestServer;

/// A refusal's status, code and message.
pub(crate) fn refused(e: ClientError) -> (u16, ErrorCode, String) {
    match e {
        ClientError::Api { status, body } => (status, body.code, body.message),
        other => panic!("expected an API error, got {other}"),
    }
}

pub(crate) async fn get_refused(api: &Api, path: &str) -> (u16, ErrorCode, String) {
    refused(api.get::<Value>(path).await.expect_err(path))
}

pub(crate) async fn get_ok(api: &Api, path: &str) -> Value {
    let (s, v): (u16, Value) = api.get(path).await.unwrap();
    assert_eq!(s, 200, "{path}: {v}");
    v
}

/// The events of a page as (action, target) pairs.
pub(crate) fn actions(page: &Value) -> Vec<String> {
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect()
}

/// Every event of `path` (which has a `?`), following `next_before`, `limit` a page.
pub(crate) async fn all_pages(api: &Api, path: &str, limit: u32) -> Vec<Value> {
    let mut out = Vec::new();
    let mut before: Option<u64> = None;
    loop {
        let cursor = before.map(|b| format!("&before={b}")).unwrap_or_default();
        let page = get_ok(api, &format!("{path}&limit={limit}{cursor}")).await;
        let events = page["events"].as_array().unwrap();
        assert!(events.len() <= limit as usize);
        out.extend(events.iter().cloned());
        match page["next_before"].as_u64() {
            Some(b) => {
                assert_eq!(events.len(), limit as usize, "only full pages go on");
                before = Some(b);
            }
            None => return out,
        }
    }
}

/// A raw download: status, headers and body.
pub(crate) async fn download(
    srv: &TestServer,
    api: &Api,
    path: &str,
) -> (u16, reqwest::header::HeaderMap, String) {
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(tether_client::tls_config(&srv.ca_pem, None).unwrap())
        .build()
        .unwrap();
    let resp = http
        .get(format!("{}{path}", srv.url))
        .bearer_auth(api.bearer().unwrap())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.unwrap())
}

pub(crate) fn header<'a>(h: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    h.get(name).map(|v| v.to_str().unwrap()).unwrap_or_default()
}

/// An RFC 4180 reader (quoted cells with `""`, CRLF records).
pub(crate) fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut cell = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    cell.push('"');
                }
                '"' => quoted = false,
                c => cell.push(c),
            }
            continue;
        }
        match c {
            '"' if cell.is_empty() => quoted = true,
            ',' => row.push(std::mem::take(&mut cell)),
            '\r' => {
                assert_eq!(chars.next(), Some('\n'), "records end in CRLF");
                row.push(std::mem::take(&mut cell));
                rows.push(std::mem::take(&mut row));
            }
            c => cell.push(c),
        }
    }
    assert!(
        row.is_empty() && cell.is_empty(),
        "the last record ends in CRLF"
    );
    rows
}

/// Appends an event as the server would, at the clock's time.
pub(crate) async fn append(
    srv: &TestServer,
    actor: &str,
    action: &str,
    target: Option<&str>,
    detail: Value,
) {
    srv.state()
        .store
        .append_audit(&NewAuditEvent {
            actor: actor.into(),
            action: action.into(),
            target: target.map(str::to_owned),
            outcome: "success".into(),
            device_id: tether_store::concerned_device(target, &detail),
            detail,
            trace_id: None,
            at: srv.clock.now(),
        })
        .await
        .unwrap();
}

/// Runs `scenario` on a server whose store is a MariaDB database of its own
/// (`$TETHER_TEST_MYSQL_URL`, default the local server), dropped afterwards even when the
/// scenario panics.
pub(crate) async fn on_mysql<F, Fut>(scenario: F)
where
    F: FnOnce(TestServer) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (store, db) = MysqlStore::create_test_database(&TestDb::admin_url())
        .await
        .unwrap_or_else(|e| panic!("these tests need MariaDB at {}: {e}", TestDb::admin_url()));
    store.close().await;
    let url = db.url();
    let outcome = tokio::spawn(async move {
        let srv = TestServer::start_with(move |c| c.store = StoreConfig::Mysql { url }).await;
        assert_eq!(srv.state().store.backend(), "mysql");
        scenario(srv).await;
    })
    .await;
    db.drop_database().await.unwrap();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}
