//! B3, the command floor: the least a server could do to carry a command the way Tether
//! does, from an HTTP request through a Redis stream to an agent's WebSocket and back.
//!
//! - [`serve`] is the relay, run as its own process like the server it stands in for. It
//!   listens on one TLS 1.3 port (a throw-away CA, as the B1/B2 servers do). `POST
//!   /command` takes a signed command, `XADD`s it to a Redis stream and holds the request
//!   open. A consumer task reads the stream with `XREADGROUP … BLOCK`, pushes each
//!   command down the agent's WebSocket (`GET /agent/ws`) and `XACK`s it. The agent's
//!   answer comes back up the socket and is the held request's response body.
//! - [`run`] is both ends, like the NATS baseline's: one agent connection that verifies
//!   each command with the sender's key and answers with the command's id signed by its
//!   own, and `concurrency` senders, each with one command in flight, each verifying its
//!   answer. A round trip is timed from just before the request to the verified answer.
//!
//! What it leaves out is what Tether does on top: accounts and tokens, policy, the
//! command's states in a database, the audit chain, the live view, TTLs and retries.
//! Each stream key is the run's own (`tether-b3:<pid>-<random>`) and is deleted when the
//! relay stops.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::ws::{Message as AxumWs, WebSocket, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ed25519_dalek::SigningKey;
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rand_core::OsRng;
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use redis::streams::StreamReadReply;
use tether_client::Api;
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_util::sync::CancellationToken;

use crate::LoadError;
use crate::floor::{self, FloorReport, ID_LEN, MAX_PAYLOAD};
use crate::target::Target;

/// The consumer group and consumer the relay reads as.
const GROUP: &str = "relay";
/// How long a blocking read waits before it looks at `stop` again.
const BLOCK_MS: u64 = 1000;
/// Entries taken per read.
const READ_COUNT: usize = 64;
/// The stream's cap (`MAXLEN ~`): a run never gets near it.
const STREAM_MAX_LEN: usize = 100_000;
/// How long a held request waits for its answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// Commands read from the stream and not yet pushed to the agent.
const DELIVERY_QUEUE: usize = 1024;
/// The payload field of each stream entry.
const FIELD: &str = "c";

fn redis_err(what: &str) -> impl FnOnce(redis::RedisError) -> LoadError + '_ {
    move |e| LoadError::Unmet(format!("relay: {what}: {e}"))
}

/// What the relay serves with.
#[derive(Debug, Clone)]
pub struct RelayServeOptions {
    /// `redis://host:port`.
    pub redis_url: String,
    /// Where to write `{public_url, ca_pem, addr}` once listening.
    pub ready_file: PathBuf,
}

struct Relay {
    conn: MultiplexedConnection,
    key: String,
    /// Held requests by command id.
    waiting: Mutex<HashMap<[u8; ID_LEN], oneshot::Sender<Bytes>>>,
    /// The consumer's queue; taken by the agent connection while it is open.
    deliveries: Mutex<Option<mpsc::Receiver<Bytes>>>,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn refuse(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "code": code, "message": message })),
    )
        .into_response()
}

/// Serves until `stop` is cancelled, then deletes the run's stream.
pub async fn serve(opts: &RelayServeOptions, stop: CancellationToken) -> Result<(), LoadError> {
    let client = redis::Client::open(opts.redis_url.as_str()).map_err(redis_err("the URL"))?;
    // Blocking reads: no response timeout on the connections themselves.
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(None);
    let conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(redis_err("connecting"))?;
    let reader = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(redis_err("connecting"))?;
    let key = format!(
        "tether-b3:{}-{:016x}",
        std::process::id(),
        u64::from_le_bytes(crate::wire::random::<8>())
    );
    let (tx, rx) = mpsc::channel(DELIVERY_QUEUE);
    let relay = Arc::new(Relay {
        conn,
        key: key.clone(),
        waiting: Mutex::new(HashMap::new()),
        deliveries: Mutex::new(Some(rx)),
    });
    let mut create = redis::cmd("XGROUP");
    create
        .arg("CREATE")
        .arg(&key)
        .arg(GROUP)
        .arg("$")
        .arg("MKSTREAM");
    let () = create
        .query_async(&mut relay.conn.clone())
        .await
        .map_err(redis_err("creating the consumer group"))?;
    let consumer = tokio::spawn(consume(reader, key.clone(), tx, stop.clone()));

    let (chain, private_key, ca_pem) = crate::baseline::server_identity()?;
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .and_then(|b| b.with_no_client_auth().with_single_cert(chain, private_key))
    .map_err(|e| LoadError::Format(format!("relay TLS: {e}")))?;
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let (listener, addr) = crate::baseline::listen(&opts.ready_file, &ca_pem).await?;
    eprintln!("relay (B3) listening on {addr}, stream {key}");

    let app = Router::new()
        .route("/command", post(command))
        .route("/agent/ws", get(agent_ws))
        .with_state(Arc::clone(&relay));
    while let Some(tcp) = crate::baseline::next_connection(&listener, &stop).await {
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let svc = TowerToHyperService::new(app);
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                .await;
        });
    }
    let _ = consumer.await;
    let () = redis::cmd("DEL")
        .arg(&key)
        .query_async::<i64>(&mut relay.conn.clone())
        .await
        .map(drop)
        .map_err(redis_err("deleting the stream"))?;
    Ok(())
}

/// `POST /command`: the signed command in, the agent's signed answer out.
async fn command(State(relay): State<Arc<Relay>>, body: Bytes) -> Response {
    if body.len() < ID_LEN.saturating_add(64) || body.len() > MAX_PAYLOAD {
        return refuse(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "a command is an id, a body and a signature, at most 64 KiB",
        );
    }
    let mut id = [0u8; ID_LEN];
    id.copy_from_slice(body.get(..ID_LEN).unwrap_or_default());
    let (tx, rx) = oneshot::channel();
    if locked(&relay.waiting).insert(id, tx).is_some() {
        return refuse(
            StatusCode::CONFLICT,
            "duplicate",
            "that command id is in flight",
        );
    }
    let mut add = redis::cmd("XADD");
    add.arg(&relay.key)
        .arg("MAXLEN")
        .arg("~")
        .arg(STREAM_MAX_LEN)
        .arg("*")
        .arg(FIELD)
        .arg(body.as_ref());
    if let Err(e) = add.query_async::<String>(&mut relay.conn.clone()).await {
        locked(&relay.waiting).remove(&id);
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "bus_unavailable",
            &format!("XADD: {e}"),
        );
    }
    match tokio::time::timeout(ANSWER_TIMEOUT, rx).await {
        Ok(Ok(answer)) => (StatusCode::OK, answer).into_response(),
        _ => {
            locked(&relay.waiting).remove(&id);
            refuse(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                "the agent did not answer",
            )
        }
    }
}

/// Reads the stream as the group's one consumer, hands each command to the agent's
/// connection, and acknowledges what it handed on.
async fn consume(
    mut conn: MultiplexedConnection,
    key: String,
    deliveries: mpsc::Sender<Bytes>,
    stop: CancellationToken,
) -> Result<(), LoadError> {
    let mut read = redis::cmd("XREADGROUP");
    read.arg("GROUP")
        .arg(GROUP)
        .arg(GROUP)
        .arg("COUNT")
        .arg(READ_COUNT)
        .arg("BLOCK")
        .arg(BLOCK_MS)
        .arg("STREAMS")
        .arg(&key)
        .arg(">");
    loop {
        let reply: Option<StreamReadReply> = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            r = read.query_async(&mut conn) => r.map_err(redis_err("XREADGROUP"))?,
        };
        let Some(reply) = reply else { continue };
        let mut ack = redis::cmd("XACK");
        ack.arg(&key).arg(GROUP);
        for mut entry in reply.keys.into_iter().flat_map(|k| k.ids) {
            if let Some(redis::Value::BulkString(bytes)) = entry.map.remove(FIELD)
                && deliveries.send(Bytes::from(bytes)).await.is_err()
            {
                return Ok(());
            }
            ack.arg(entry.id);
        }
        let _: i64 = ack
            .query_async(&mut conn)
            .await
            .map_err(redis_err("XACK"))?;
    }
}

/// `GET /agent/ws`: the one agent connection.
async fn agent_ws(State(relay): State<Arc<Relay>>, ws: WebSocketUpgrade) -> Response {
    let Some(rx) = locked(&relay.deliveries).take() else {
        return refuse(
            StatusCode::CONFLICT,
            "agent_connected",
            "an agent is connected already",
        );
    };
    ws.max_message_size(MAX_PAYLOAD)
        .on_upgrade(move |socket| agent_session(socket, relay, rx))
}

async fn agent_session(mut socket: WebSocket, relay: Arc<Relay>, mut rx: mpsc::Receiver<Bytes>) {
    loop {
        tokio::select! {
            out = rx.recv() => {
                let Some(cmd) = out else { break };
                if socket.send(AxumWs::Binary(cmd)).await.is_err() {
                    break;
                }
            }
            msg = socket.recv() => match msg {
                Some(Ok(AxumWs::Binary(answer))) => {
                    let waiter = answer
                        .get(..ID_LEN)
                        .and_then(|id| <[u8; ID_LEN]>::try_from(id).ok())
                        .and_then(|id| locked(&relay.waiting).remove(&id));
                    if let Some(tx) = waiter {
                        let _ = tx.send(answer);
                    }
                }
                Some(Ok(AxumWs::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    *locked(&relay.deliveries) = Some(rx);
}

/// What to run against a relay.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// The relay, from the ready file [`serve`] wrote.
    pub target: Target,
    /// Requests in all.
    pub requests: usize,
    /// Senders, each with one request in flight.
    pub concurrency: usize,
}

/// The agent: verifies each command and answers it, until the socket closes.
async fn agent(
    mut ws: tether_client::WsStream,
    sender: ed25519_dalek::VerifyingKey,
    key: SigningKey,
) -> Result<(), LoadError> {
    while let Some(msg) = ws.next().await {
        match msg.map_err(|e| LoadError::Socket(e.to_string()))? {
            WsMessage::Binary(cmd) => {
                let answer = floor::answer(&sender, &key, &cmd)?;
                ws.send(WsMessage::Binary(answer.into()))
                    .await
                    .map_err(|e| LoadError::Socket(e.to_string()))?;
            }
            WsMessage::Close(_) => break,
            _ => {}
        }
    }
    Ok(())
}

/// One request: its round trip in ms.
async fn one(
    api: &Api,
    sender: &SigningKey,
    agent: &ed25519_dalek::VerifyingKey,
    id: &[u8; ID_LEN],
) -> Result<f64, LoadError> {
    let started = Instant::now();
    let (status, answer) = api.post_raw("/command", floor::request(sender, id)).await?;
    if status != 200 {
        return Err(LoadError::Unmet(format!(
            "relay: HTTP {status}: {}",
            String::from_utf8_lossy(&answer)
        )));
    }
    floor::check_answer(agent, id, &answer)?;
    Ok(started.elapsed().as_secs_f64() * 1000.0)
}

/// Runs the senders and the agent against a relay.
pub async fn run(opts: &RelayOptions) -> Result<FloorReport, LoadError> {
    if opts.concurrency == 0 || opts.requests < opts.concurrency {
        return Err(LoadError::Unmet(
            "relay: need at least one sender and one request per sender".into(),
        ));
    }
    let sender = SigningKey::generate(&mut OsRng);
    let agent_key = SigningKey::generate(&mut OsRng);
    let ws = tether_client::connect_agent_ws(&opts.target.url, &opts.target.ca_pem, None).await?;
    let agent_vk = agent_key.verifying_key();
    let answering = tokio::spawn(agent(ws, sender.verifying_key(), agent_key));
    let api = Api::new(&opts.target.url, &opts.target.ca_pem)?;

    let per = opts.requests.checked_div(opts.concurrency).unwrap_or(0);
    // Each sender's first request opens its connection; it is not timed.
    let warm: Vec<_> = (0..opts.concurrency)
        .map(|w| {
            let (api, sender) = (api.clone(), sender.clone());
            tokio::spawn(async move {
                one(&api, &sender, &agent_vk, &floor::request_id(w, usize::MAX)).await
            })
        })
        .collect();
    for w in warm {
        w.await
            .map_err(|e| LoadError::Unmet(format!("relay: a sender failed: {e}")))??;
    }
    let started = Instant::now();
    let workers: Vec<_> = (0..opts.concurrency)
        .map(|w| {
            let (api, sender) = (api.clone(), sender.clone());
            tokio::spawn(async move {
                let mut rtts = Vec::with_capacity(per);
                for i in 0..per {
                    rtts.push(one(&api, &sender, &agent_vk, &floor::request_id(w, i)).await?);
                }
                Ok::<_, LoadError>(rtts)
            })
        })
        .collect();
    let mut samples = Vec::with_capacity(opts.requests);
    for w in workers {
        let rtts = w
            .await
            .map_err(|e| LoadError::Unmet(format!("relay: a sender failed: {e}")))??;
        samples.extend(rtts);
    }
    let elapsed = started.elapsed();
    answering.abort();
    Ok(FloorReport::from_samples(
        samples,
        opts.concurrency,
        elapsed,
    ))
}
