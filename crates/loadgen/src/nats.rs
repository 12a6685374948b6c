//! The NATS baseline: request-reply through a nats-server (the transport Tactical RMM
//! sends its commands over), with an Ed25519 sign and verify at each end, so that its
//! round trip can be set beside Tether's command round trip (docs/benchmarks.md).
//!
//! A responder subscribes to one subject; each requester signs a command-sized payload,
//! publishes it with its own inbox as the reply subject and waits for the answer; the
//! responder verifies the request and answers with a signed reply, which the requester
//! verifies. The client speaks the NATS text protocol itself (`CONNECT`, `SUB`, `PUB`,
//! `MSG`, `PING`/`PONG`): a few lines, and no client library between the figure and
//! the wire.

use std::time::Instant;

use ed25519_dalek::{SigningKey, VerifyingKey};
use rand_core::OsRng;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::LoadError;
use crate::floor::{self, FloorReport, MAX_PAYLOAD};

/// The subject commands go to.
const SUBJECT: &str = "tether.bench.command";

/// What to run.
#[derive(Debug, Clone)]
pub struct NatsOptions {
    /// `host:port` of the nats-server.
    pub addr: String,
    /// Requests in all.
    pub requests: usize,
    /// Requesters, each with one request in flight.
    pub concurrency: usize,
}

/// One connection to the nats-server: the reading half parses `MSG`s and answers the
/// server's `PING`s itself.
struct Conn {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

/// One `MSG`: its reply subject and payload.
struct Msg {
    reply: Option<String>,
    payload: Vec<u8>,
}

fn proto(what: impl std::fmt::Display) -> LoadError {
    LoadError::Protocol(format!("nats: {what}"))
}

impl Conn {
    async fn connect(addr: &str) -> Result<Self, LoadError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(LoadError::io(format!(
                "connecting to nats-server at {addr}"
            )))?;
        stream
            .set_nodelay(true)
            .map_err(LoadError::io("setting TCP_NODELAY"))?;
        let (read, writer) = stream.into_split();
        let mut conn = Conn {
            reader: BufReader::new(read),
            writer,
        };
        let info = conn.line().await?;
        if !info.starts_with("INFO ") {
            return Err(proto(format!("expected INFO, got {info:?}")));
        }
        conn.send(
            b"CONNECT {\"verbose\":false,\"pedantic\":false,\"lang\":\"rust\",\
              \"name\":\"tether-loadgen\",\"version\":\"0\",\"protocol\":1}\r\nPING\r\n",
        )
        .await?;
        match conn.line().await?.as_str() {
            "PONG" => Ok(conn),
            other => Err(proto(format!("expected PONG after CONNECT, got {other:?}"))),
        }
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), LoadError> {
        self.writer
            .write_all(bytes)
            .await
            .map_err(LoadError::io("writing to nats-server"))
    }

    async fn subscribe(&mut self, subject: &str, sid: u32) -> Result<(), LoadError> {
        self.send(format!("SUB {subject} {sid}\r\n").as_bytes())
            .await
    }

    async fn publish(
        &mut self,
        subject: &str,
        reply: Option<&str>,
        payload: &[u8],
    ) -> Result<(), LoadError> {
        let head = match reply {
            Some(r) => format!("PUB {subject} {r} {}\r\n", payload.len()),
            None => format!("PUB {subject} {}\r\n", payload.len()),
        };
        let mut frame =
            Vec::with_capacity(head.len().saturating_add(payload.len()).saturating_add(2));
        frame.extend_from_slice(head.as_bytes());
        frame.extend_from_slice(payload);
        frame.extend_from_slice(b"\r\n");
        self.send(&frame).await
    }

    /// One protocol line, without its CRLF.
    async fn line(&mut self) -> Result<String, LoadError> {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .await
            .map_err(LoadError::io("reading from nats-server"))?;
        if n == 0 {
            return Err(proto("the server closed the connection"));
        }
        if line.len() > 4096 {
            return Err(proto("a protocol line over 4 KiB"));
        }
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    }

    /// The next `MSG`, answering `PING`s and skipping `+OK`/`INFO` on the way.
    async fn next_msg(&mut self) -> Result<Msg, LoadError> {
        loop {
            let line = self.line().await?;
            let mut parts = line.split_ascii_whitespace();
            match parts.next() {
                Some("MSG") => {
                    let rest: Vec<&str> = parts.collect();
                    let (reply, len) = match rest.as_slice() {
                        [_subject, _sid, len] => (None, *len),
                        [_subject, _sid, reply, len] => (Some((*reply).to_owned()), *len),
                        _ => return Err(proto(format!("malformed MSG line {line:?}"))),
                    };
                    let len: usize = len
                        .parse()
                        .map_err(|_| proto(format!("bad MSG length in {line:?}")))?;
                    if len > MAX_PAYLOAD {
                        return Err(proto(format!("a {len}-byte message")));
                    }
                    let mut payload = vec![0; len.saturating_add(2)];
                    self.reader
                        .read_exact(&mut payload)
                        .await
                        .map_err(LoadError::io("reading a message from nats-server"))?;
                    if !payload.ends_with(b"\r\n") {
                        return Err(proto("a message not followed by CRLF"));
                    }
                    payload.truncate(len);
                    return Ok(Msg { reply, payload });
                }
                Some("PING") => self.send(b"PONG\r\n").await?,
                Some("PONG" | "+OK" | "INFO") => {}
                Some("-ERR") => return Err(proto(format!("server error: {line}"))),
                _ => return Err(proto(format!("unexpected line {line:?}"))),
            }
        }
    }
}

/// Answers requests until the connection fails: verify with the sender's key, answer
/// with a reply signed by the responder's.
async fn respond(
    mut conn: Conn,
    requester: VerifyingKey,
    responder: SigningKey,
) -> Result<(), LoadError> {
    loop {
        let msg = conn.next_msg().await?;
        let answer = floor::answer(&requester, &responder, &msg.payload)?;
        let reply = msg
            .reply
            .ok_or_else(|| proto("a request without a reply subject"))?;
        conn.publish(&reply, None, &answer).await?;
    }
}

/// Sends `n` requests one after the other; returns their round trips in ms.
async fn request(
    addr: &str,
    worker: usize,
    n: usize,
    requester: SigningKey,
    responder: VerifyingKey,
) -> Result<Vec<f64>, LoadError> {
    let mut conn = Conn::connect(addr).await?;
    let inbox = format!("_INBOX.tether-loadgen.{}.{worker}", std::process::id());
    conn.subscribe(&inbox, 1).await?;
    let mut rtts = Vec::with_capacity(n);
    for i in 0..n {
        let id = floor::request_id(worker, i);
        let started = Instant::now();
        conn.publish(SUBJECT, Some(&inbox), &floor::request(&requester, &id))
            .await?;
        let answer = conn.next_msg().await?;
        floor::check_answer(&responder, &id, &answer.payload)?;
        rtts.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(rtts)
}

/// Runs the baseline: one responder, `concurrency` requesters, `requests` in all.
pub async fn run(opts: &NatsOptions) -> Result<FloorReport, LoadError> {
    if opts.concurrency == 0 || opts.requests < opts.concurrency {
        return Err(LoadError::Unmet(
            "nats: need at least one requester and one request per requester".into(),
        ));
    }
    let requester = SigningKey::generate(&mut OsRng);
    let responder = SigningKey::generate(&mut OsRng);
    let mut sub = Conn::connect(&opts.addr).await?;
    sub.subscribe(SUBJECT, 1).await?;
    // The subscription is in place once the server has answered a PING after it.
    sub.send(b"PING\r\n").await?;
    match sub.line().await?.as_str() {
        "PONG" => {}
        other => return Err(proto(format!("expected PONG after SUB, got {other:?}"))),
    }
    let responding = tokio::spawn(respond(sub, requester.verifying_key(), responder.clone()));

    let started = Instant::now();
    let per = opts.requests.checked_div(opts.concurrency).unwrap_or(0);
    let workers: Vec<_> = (0..opts.concurrency)
        .map(|w| {
            let addr = opts.addr.clone();
            let (req, resp) = (requester.clone(), responder.verifying_key());
            tokio::spawn(async move { request(&addr, w, per, req, resp).await })
        })
        .collect();
    let mut samples = Vec::with_capacity(opts.requests);
    for w in workers {
        let rtts = w
            .await
            .map_err(|e| LoadError::Unmet(format!("nats: a requester failed: {e}")))??;
        samples.extend(rtts);
    }
    let elapsed = started.elapsed();
    responding.abort();
    Ok(FloorReport::from_samples(
        samples,
        opts.concurrency,
        elapsed,
    ))
}
