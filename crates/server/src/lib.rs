//! The Tether server: one process with the **api** role (accounts, discovery and pairing,
//! devices, the OpenAPI document) and the **gateway** role (agent WebSocket sessions).
//!
//! Backends are chosen by configuration and held as traits: the store (SQLite or
//! MySQL/MariaDB), the bus (embedded or Redis Streams). TLS 1.3 only, on a certificate
//! from the server's own intermediate CA; agents authenticate with client certificates.

pub mod accounts;
pub mod alerts;
pub mod analytics;
pub mod app;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod commands;
pub mod config;
pub mod error;
pub mod events;
pub mod extract;
pub mod gateway;
pub mod live;
pub mod offload;
pub mod owner_keys;
pub mod policy;
pub mod priority;
pub mod prom;
pub mod random;
pub mod ratelimit;
pub mod routes;
pub mod serve;
pub mod state;
pub mod tls;
pub mod trace;
pub mod workers;
