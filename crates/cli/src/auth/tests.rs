//! The refresh decisions and the refresh-and-retry flow, against a fake session store
//! and a fake refresh endpoint (test doubles: nothing here talks to a server).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;

use tether_proto::{ErrorBody, ManualClock};

use super::*;
use crate::views::UserView;

const SERVER: &str = "https://h.example";
const T0: UnixMillis = UnixMillis(1_764_115_200_000);

fn api_error(status: u16, code: ErrorCode) -> ClientError {
    ClientError::Api {
        status,
        body: ErrorBody::new(code),
    }
}

fn session(n: u32, expires_at: UnixMillis) -> Session {
    Session {
        server: SERVER.into(),
        email: "a@example.com".into(),
        user_id: "usr_1".into(),
        session_id: "sess_1".into(),
        access_token: format!("access-{n}"),
        access_expires_at: expires_at,
        refresh_token: format!("refresh-{n}"),
    }
}

fn tokens(n: u32) -> TokenResponse {
    TokenResponse {
        access_token: format!("access-{n}"),
        expires_in: 900,
        refresh_token: format!("refresh-{n}"),
        session_id: "sess_1".into(),
        user: UserView {
            id: "usr_1".into(),
            email: "a@example.com".into(),
            role: "student".into(),
            totp_enabled: false,
            mobile_pub: None,
        },
    }
}

/// A fake session store in memory. `on_lock` simulates another process that rotated the
/// session while this one waited for the lock.
#[derive(Default)]
struct FakeStore {
    session: RefCell<Option<Session>>,
    on_lock: RefCell<Option<Session>>,
    locks: Cell<u32>,
}

impl SessionStore for FakeStore {
    type Lock = ();
    fn load(&self) -> Result<Option<Session>, CliError> {
        Ok(self.session.borrow().clone())
    }
    fn save(&self, s: &Session) -> Result<(), CliError> {
        *self.session.borrow_mut() = Some(s.clone());
        Ok(())
    }
    fn clear(&self) -> Result<(), CliError> {
        *self.session.borrow_mut() = None;
        Ok(())
    }
    async fn lock(&self) -> Result<(), CliError> {
        self.locks.set(self.locks.get().saturating_add(1));
        if let Some(s) = self.on_lock.borrow_mut().take() {
            *self.session.borrow_mut() = Some(s);
        }
        Ok(())
    }
}

/// A fake refresh endpoint: answers from a script and records the tokens it was given.
#[derive(Default)]
struct FakeRefresher {
    answers: RefCell<VecDeque<Result<TokenResponse, ClientError>>>,
    seen: RefCell<Vec<String>>,
}

impl FakeRefresher {
    fn answering(answers: Vec<Result<TokenResponse, ClientError>>) -> Self {
        Self {
            answers: RefCell::new(answers.into()),
            seen: RefCell::default(),
        }
    }
}

impl Refresher for FakeRefresher {
    async fn refresh(&self, refresh_token: &str) -> Result<TokenResponse, ClientError> {
        self.seen.borrow_mut().push(refresh_token.to_owned());
        self.answers
            .borrow_mut()
            .pop_front()
            .expect("the fake refresher was called more often than scripted")
    }
}

fn store_with(s: Session) -> FakeStore {
    let store = FakeStore::default();
    *store.session.borrow_mut() = Some(s);
    store
}

/// A fake API call that accepts only `valid` and answers 3002 otherwise, recording the
/// tokens it was called with.
fn fake_call<'a>(
    valid: &'a str,
    seen: &'a RefCell<Vec<String>>,
) -> impl FnMut(String) -> std::future::Ready<Result<&'static str, ClientError>> + 'a {
    move |token: String| {
        let ok = token == valid;
        seen.borrow_mut().push(token);
        std::future::ready(if ok {
            Ok("answer")
        } else {
            Err(api_error(401, ErrorCode::TokenExpired))
        })
    }
}

fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn only_expired_or_invalid_access_tokens_are_worth_a_refresh() {
    assert!(should_refresh_after(
        &api_error(401, ErrorCode::TokenExpired),
        false
    ));
    assert!(should_refresh_after(
        &api_error(401, ErrorCode::TokenInvalid),
        false
    ));
    // Once per command: a second expiry after refreshing is reported, not looped on.
    assert!(!should_refresh_after(
        &api_error(401, ErrorCode::TokenExpired),
        true
    ));
    // 3003 counts only as a 401 answer to the bearer token.
    assert!(!should_refresh_after(
        &api_error(404, ErrorCode::TokenInvalid),
        false
    ));
    for code in [
        ErrorCode::Forbidden,
        ErrorCode::Unauthenticated,
        ErrorCode::RefreshTokenReused,
        ErrorCode::SecondFactorRequired,
        ErrorCode::NotFound,
    ] {
        assert!(
            !should_refresh_after(&api_error(401, code), false),
            "{code:?}"
        );
    }
    assert!(!should_refresh_after(
        &ClientError::Transport("down".into()),
        false
    ));
}

#[test]
fn a_token_is_refreshed_ahead_of_expiry_by_the_margin() {
    let s = session(1, T0.saturating_add(Duration::from_secs(900)));
    assert!(!should_refresh_before(&s, T0));
    let just_before = T0.saturating_add(Duration::from_secs(900) - REFRESH_MARGIN);
    assert!(!should_refresh_before(
        &s,
        just_before.saturating_sub(Duration::from_millis(1))
    ));
    assert!(should_refresh_before(&s, just_before));
    assert!(should_refresh_before(
        &s,
        T0.saturating_add(Duration::from_secs(901))
    ));
}

#[test]
fn a_valid_token_is_used_without_refreshing() {
    let clock = ManualClock::new(T0);
    let store = store_with(session(1, T0.saturating_add(Duration::from_secs(900))));
    let refresher = FakeRefresher::default();
    let auth = Authed {
        store: &store,
        refresher: &refresher,
        clock: &clock,
        server: SERVER,
    };
    let calls = RefCell::new(vec![]);
    assert_eq!(
        block_on(auth.call(fake_call("access-1", &calls))).unwrap(),
        "answer"
    );
    assert_eq!(*calls.borrow(), ["access-1"]);
    assert!(refresher.seen.borrow().is_empty());
    assert_eq!(store.locks.get(), 0);
}

#[test]
fn an_expired_answer_refreshes_once_rotates_the_stored_tokens_and_retries() {
    // The local clock thinks the token is fine, the server says it expired (skew).
    let clock = ManualClock::new(T0);
    let store = store_with(session(1, T0.saturating_add(Duration::from_secs(900))));
    let refresher = FakeRefresher::answering(vec![Ok(tokens(2))]);
    let auth = Authed {
        store: &store,
        refresher: &refresher,
        clock: &clock,
        server: SERVER,
    };
    let calls = RefCell::new(vec![]);
    assert_eq!(
        block_on(auth.call(fake_call("access-2", &calls))).unwrap(),
        "answer"
    );
    assert_eq!(*calls.borrow(), ["access-1", "access-2"]);
    assert_eq!(*refresher.seen.borrow(), ["refresh-1"]);
    let stored = store.load().unwrap().unwrap();
    assert_eq!(
        stored.refresh_token, "refresh-2",
        "the rotated token is kept"
    );
    assert_eq!(
        stored.access_expires_at,
        T0.saturating_add(Duration::from_secs(900))
    );
}

#[test]
fn a_locally_expired_token_is_refreshed_before_the_call() {
    let clock = ManualClock::new(T0);
    let store = store_with(session(1, T0.saturating_add(Duration::from_secs(900))));
    clock.advance(Duration::from_secs(1_000));
    let refresher = FakeRefresher::answering(vec![Ok(tokens(2))]);
    let auth = Authed {
        store: &store,
        refresher: &refresher,
        clock: &clock,
        server: SERVER,
    };
    let calls = RefCell::new(vec![]);
    assert_eq!(
        block_on(auth.call(fake_call("access-2", &calls))).unwrap(),
        "answer"
    );
    assert_eq!(
        *calls.borrow(),
        ["access-2"],
        "the stale token is never sent"
    );
}

#[test]
fn a_second_expiry_after_refreshing_is_reported_not_retried() {
    let clock = ManualClock::new(T0);
    let store = store_with(session(1, T0.saturating_add(Duration::from_secs(900))));
    let refresher = FakeRefresher::answering(vec![Ok(tokens(2))]);
    let auth = Authed {
        store: &store,
        refresher: &refresher,
        clock: &clock,
        server: SERVER,
    };
    let calls = RefCell::new(vec![]);
    let err = block_on(auth.call(fake_call("never", &calls))).unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::TokenExpired));
    assert_eq!(calls.borrow().len(), 2);
    assert_eq!(refresher.seen.borrow().len(), 1);
}

#[test]
fn a_revoked_session_ends_locally_with_advice_to_log_in_again() {
    let clock = ManualClock::new(T0);
    let store = store_with(session(1, T0.saturating_add(Duration::from_secs(900))));
    let refresher =
        FakeRefresher::answering(vec![Err(api_error(401, ErrorCode::RefreshTokenReused))]);
    let auth = Authed {
        store: &store,
        refresher: &refresher,
        clock: &clock,
        server: SERVER,
    };
    let calls = RefCell::new(vec![]);
    let err = block_on(auth.call(fake_call("access-2", &calls))).unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::RefreshTokenReused));
    assert_eq!(err.exit_status(), 1);
    assert!(err.hint().unwrap().contains("revoked"), "{:?}", err.hint());
    assert!(err.hint().unwrap().contains("tether login"));
    assert_eq!(store.load().unwrap(), None, "a dead session is forgotten");
}

#[test]
fn a_refresh_that_cannot_reach_the_server_keeps_the_session() {
    let clock = ManualClock::new(T0);
    let store = store_with(session(1, T0.saturating_add(Duration::from_secs(900))));
    let refresher = FakeRefresher::answering(vec![Err(ClientError::Transport("down".into()))]);
    let auth = Authed {
        store: &store,
        refresher: &refresher,
        clock: &clock,
        server: SERVER,
    };
    let calls = RefCell::new(vec![]);
    let err = block_on(auth.call(fake_call("access-2", &calls))).unwrap_err();
    assert_eq!(err.exit_status(), 3);
    assert_eq!(store.load().unwrap().unwrap().refresh_token, "refresh-1");
}

#[test]
fn a_rotation_made_by_another_process_is_adopted_not_repeated() {
    let clock = ManualClock::new(T0);
    let store = store_with(session(1, T0.saturating_add(Duration::from_secs(900))));
    *store.on_lock.borrow_mut() = Some(session(7, T0.saturating_add(Duration::from_secs(900))));
    // Refreshing with refresh-1 again would be a reuse and revoke the session.
    let refresher = FakeRefresher::default();
    let auth = Authed {
        store: &store,
        refresher: &refresher,
        clock: &clock,
        server: SERVER,
    };
    let calls = RefCell::new(vec![]);
    assert_eq!(
        block_on(auth.call(fake_call("access-7", &calls))).unwrap(),
        "answer"
    );
    assert!(refresher.seen.borrow().is_empty());
    assert_eq!(*calls.borrow(), ["access-1", "access-7"]);
    assert_eq!(store.locks.get(), 1);
}

#[test]
fn no_session_or_another_servers_session_means_log_in() {
    let clock = ManualClock::new(T0);
    let refresher = FakeRefresher::default();
    let empty = FakeStore::default();
    let auth = Authed {
        store: &empty,
        refresher: &refresher,
        clock: &clock,
        server: SERVER,
    };
    let calls = RefCell::new(vec![]);
    assert!(matches!(
        block_on(auth.call(fake_call("x", &calls))).unwrap_err(),
        CliError::NotLoggedIn
    ));
    let other = store_with(session(1, T0));
    let auth = Authed {
        store: &other,
        refresher: &refresher,
        clock: &clock,
        server: "https://other.example",
    };
    let err = block_on(auth.call(fake_call("x", &calls))).unwrap_err();
    assert_eq!(err.exit_status(), 2);
    assert!(calls.borrow().is_empty());
}
