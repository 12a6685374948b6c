//! The staff API the web dashboard reads, through an in-process server with a manual
//! clock: the audit trail (filters, paging, a device's own trail), its CSV and JSON
//! exports (RFC 4180 quoting, spreadsheet formulas defused, audited), users and roles
//! (auditors read, admins change, the last admin stays), and the fleet's `last_seen`. The
//! trail and export scenarios run on SQLite and on MariaDB.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

#[path = "staff_api/exports.rs"]
mod exports;
#[path = "staff_api/helpers.rs"]
mod helpers;
#[path = "commands/kit.rs"]
#[allow(dead_code)]
mod kit;
mod support;
#[path = "staff_api/trail.rs"]
mod trail;
#[path = "staff_api/users.rs"]
mod users;
