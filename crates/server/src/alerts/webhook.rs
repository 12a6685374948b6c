//! The alert webhook: every raised or acknowledged alert is POSTed as JSON to
//! `alerts.webhook_url`, signed, and retried with backoff in the background.
//!
//! The request body is
//! `{"delivery_id": "whk_…", "event": "alert.raised" | "alert.acked", "sent_at": <ms>,
//! "alert": <AlertView>}` with headers
//!
//! - `X-Tether-Signature: sha256=<lowercase hex HMAC-SHA256 of the raw body, keyed with
//!   alerts.webhook_secret>`;
//! - `X-Tether-Timestamp: <ms>`, the same instant as the body's `sent_at`.
//!
//! A receiver checks the signature over the exact bytes it got, then that `sent_at` (which
//! the signature covers; the header is a convenience) is recent, and drops a
//! `delivery_id` it has seen (a retry after a lost answer repeats the delivery, with a new
//! `sent_at` and signature).
//!
//! Delivery: any 2xx answer is success; anything else, or no answer within 10 s, is
//! retried after 4, 8, 16 and 32 s (5 attempts over about a minute), then given up with
//! an error in the log. Redirects are not followed. [`Webhook::notify`] never blocks: it
//! queues (up to 256 waiting deliveries; beyond that it drops with a warning), and the
//! [`WebhookWorker`] task delivers up to 32 at a time.

use std::sync::Arc;
use std::time::Duration;

use ring::hmac;
use serde_json::json;
use tether_proto::Clock;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::AlertView;
use crate::config::AlertsConfig;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "X-Tether-Signature";
/// The timestamp header.
pub const TIMESTAMP_HEADER: &str = "X-Tether-Timestamp";
/// Waits between attempts: 5 attempts over about a minute.
pub const RETRY_DELAYS: [Duration; 4] = [
    Duration::from_secs(4),
    Duration::from_secs(8),
    Duration::from_secs(16),
    Duration::from_secs(32),
];
/// How long one attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Deliveries waiting for the worker.
const QUEUE: usize = 256;
/// Deliveries in progress at once.
const MAX_IN_FLIGHT: usize = 32;

/// Why the webhook client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The URL does not parse.
    #[error("alerts.webhook_url: {0}")]
    Url(String),
    /// TLS settings.
    #[error("webhook TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// The HTTP client.
    #[error("webhook client: {0}")]
    Client(#[from] reqwest::Error),
}

/// What happened to the alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookEvent {
    /// It was raised.
    Raised,
    /// It was acknowledged.
    Acked,
}

impl WebhookEvent {
    /// The body's `event`.
    pub const fn as_str(self) -> &'static str {
        match self {
            WebhookEvent::Raised => "alert.raised",
            WebhookEvent::Acked => "alert.acked",
        }
    }
}

#[derive(Debug)]
struct Delivery {
    id: String,
    event: WebhookEvent,
    alert: AlertView,
}

/// The handle alerts are queued on; does nothing when no webhook is configured. Cheap to
/// clone.
#[derive(Debug, Clone)]
pub struct Webhook {
    tx: Option<mpsc::Sender<Delivery>>,
}

impl Webhook {
    /// A webhook that posts nothing.
    pub fn disabled() -> Self {
        Self { tx: None }
    }

    /// The webhook the configuration asks for, with the worker that delivers for it (run
    /// it with [`WebhookWorker::run`]); no worker when no webhook is configured. The
    /// configuration is validated already (see `config.rs`).
    pub fn from_config(
        config: &AlertsConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<(Self, Option<WebhookWorker>), WebhookError> {
        let (Some(url), Some(secret)) = (&config.webhook_url, &config.webhook_secret) else {
            return Ok((Self::disabled(), None));
        };
        let url = reqwest::Url::parse(url).map_err(|e| WebhookError::Url(e.to_string()))?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let target = Target {
            client: http_client()?,
            url,
            key: hmac::Key::new(hmac::HMAC_SHA256, secret.expose().as_bytes()),
            clock,
            delays: RETRY_DELAYS.to_vec(),
        };
        Ok((Self { tx: Some(tx) }, Some(WebhookWorker { rx, target })))
    }

    /// Queues a delivery of the alert; never waits. Dropped, with a warning, if the queue
    /// is full.
    pub fn notify(&self, event: WebhookEvent, alert: &AlertView) {
        let Some(tx) = &self.tx else { return };
        let delivery = Delivery {
            id: crate::random::id("whk"),
            event,
            alert: alert.clone(),
        };
        if let Err(e) = tx.try_send(delivery) {
            tracing::warn!(alert = %alert.id, error = %e, "alert webhook queue full: delivery dropped");
        }
    }
}

/// An HTTPS client for receivers on the public Internet: rustls with the ring provider,
/// TLS 1.2 or 1.3, the Mozilla root set (webpki-roots), no redirects. `http://` URLs are
/// plain HTTP (the configuration allows them to loopback only, unless told otherwise).
fn http_client() -> Result<reqwest::Client, WebhookError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(ATTEMPT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}

/// `sha256=<lowercase hex HMAC-SHA256 of body>`: the `X-Tether-Signature` value.
pub fn signature(key: &hmac::Key, body: &[u8]) -> String {
    format!("sha256={}", hex::encode(hmac::sign(key, body).as_ref()))
}

#[derive(Debug)]
struct Target {
    client: reqwest::Client,
    url: reqwest::Url,
    key: hmac::Key,
    clock: Arc<dyn Clock>,
    delays: Vec<Duration>,
}

/// The background task that delivers queued alerts.
#[derive(Debug)]
pub struct WebhookWorker {
    rx: mpsc::Receiver<Delivery>,
    target: Target,
}

impl WebhookWorker {
    /// Replaces the waits between attempts (tests use milliseconds); the number of
    /// attempts is one more than the number of waits.
    pub fn with_retry_delays(mut self, delays: Vec<Duration>) -> Self {
        self.target.delays = delays;
        self
    }

    /// Delivers until `shutdown`; deliveries still retrying then are abandoned (logged).
    pub async fn run(mut self, shutdown: CancellationToken) {
        let target = Arc::new(self.target);
        let mut in_flight = JoinSet::new();
        loop {
            // Reap finished deliveries, and wait for one when at the limit.
            while in_flight.try_join_next().is_some() {}
            if in_flight.len() >= MAX_IN_FLIGHT {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    _ = in_flight.join_next() => continue,
                }
            }
            let delivery = tokio::select! {
                () = shutdown.cancelled() => break,
                d = self.rx.recv() => d,
            };
            let Some(delivery) = delivery else { break };
            in_flight.spawn(deliver(Arc::clone(&target), delivery));
        }
        if !in_flight.is_empty() {
            tracing::warn!(
                deliveries = in_flight.len(),
                "shutting down: abandoning alert webhook deliveries still in progress"
            );
        }
        in_flight.shutdown().await;
    }
}

/// One delivery with its retries.
async fn deliver(target: Arc<Target>, delivery: Delivery) {
    let attempts = target.delays.len().saturating_add(1);
    for attempt in 1..=attempts {
        match attempt_once(&target, &delivery).await {
            Ok(()) => {
                tracing::debug!(delivery = %delivery.id, alert = %delivery.alert.id, attempt, "alert webhook delivered");
                return;
            }
            Err(why) => {
                tracing::warn!(delivery = %delivery.id, alert = %delivery.alert.id, attempt, %why, "alert webhook attempt failed");
            }
        }
        let wait = attempt
            .checked_sub(1)
            .and_then(|i| target.delays.get(i))
            .copied();
        match wait {
            Some(wait) => tokio::time::sleep(wait).await,
            None => break,
        }
    }
    tracing::error!(delivery = %delivery.id, alert = %delivery.alert.id, attempts, "alert webhook given up");
}

async fn attempt_once(target: &Target, delivery: &Delivery) -> Result<(), String> {
    let sent_at = target.clock.now().0;
    let body = serde_json::to_vec(&json!({
        "delivery_id": delivery.id,
        "event": delivery.event.as_str(),
        "sent_at": sent_at,
        "alert": delivery.alert,
    }))
    .map_err(|e| e.to_string())?;
    let response = target
        .client
        .post(target.url.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, signature(&target.key, &body))
        .header(TIMESTAMP_HEADER, sent_at.to_string())
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("answered {status}"))
    }
}
