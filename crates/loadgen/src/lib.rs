//! `tether-loadgen`: a benchmarking tool, not part of any deployment.
//!
//! Two steps, each run as its own process so that only the server's memory is measured:
//! - [`enroll`] pairs N devices through the server's real API, exactly as agents and an
//!   owner would (discovery over the agent WebSocket, confirm, pair request, owner
//!   confirm, activation), and writes their keys and certificates to an identities file;
//! - [`connect`] opens one mTLS WebSocket per identity, sends a signed `auth`, waits for
//!   a `connected` signed by a gateway key, then keeps the session idle with heartbeats at
//!   the interval the gateway asked for, while sampling the server's resident memory
//!   (`VmRSS` in `/proc/<pid>/status`, Linux only).
//!
//! [`baseline`] serves the bare servers its figures are compared with (B1, B2), which
//! `connect --bare` holds sessions against; [`relay`] is B3, the command floor (HTTP in,
//! a Redis stream, a WebSocket push and back), and [`nats`] times request-reply through
//! a nats-server, the command transport it is compared with; [`floor`] is what those two
//! share.
//!
//! Everything talks to the one server it is pointed at (the benchmark script uses
//! 127.0.0.1), with bounded concurrency, and stops by itself.

pub mod baseline;
pub mod commands;
pub mod connect;
pub mod enroll;
pub mod error;
pub mod floor;
pub mod identities;
pub mod nats;
pub mod relay;
pub mod rss;
pub mod server_stats;
pub mod server_trust;
pub mod target;
pub mod wire;

pub use error::LoadError;
