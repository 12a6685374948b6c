//! The Tether store: everything the server must remember durably — accounts, second
//! factors, refresh-token families, discovery sessions, pairings, devices, settings, the
//! audit trail, and the telemetry pipeline's events, rollups and alerts.
//!
//! The server holds an `Arc<dyn Store>`. Two backends implement it with the same
//! behaviour (the same test suite runs against both): [`SqliteStore`] (the embedded
//! default: a file under the data dir, and its telemetry events in a second file beside it) and [`MysqlStore`] (MySQL/MariaDB for
//! deployments with several server processes). Each has its own embedded migration tree,
//! run on open. Operations that must be atomic across processes (consuming a pair token,
//! rotating a refresh token, using a TOTP step, claiming a once-only key) are single
//! conditional statements or transactions, never read-then-write in application code.
//!
//! Times are [`UnixMillis`] passed in by the caller (the server's injected clock); the store
//! never reads the system clock. Anything with an expiry is valid up to and including its
//! `expires_at`: it is expired once `expires_at < now`.
//!
//! Both backends are one generic [`SqlStore`] over a sealed [`Dialect`]; the SQL is shared
//! and only the statements the dialects spell differently are branched.
//!
//! Errors: a duplicate unique key (id, email, token hash, certificate serial, …) is
//! [`StoreError::Conflict`]; a record that refers to a user who does not exist (a refresh
//! token, passkey, device owner or pairing consumer) is [`StoreError::NotFound`].

mod error;
mod model;
mod mysql;
mod sql;
mod sqlite;

use std::collections::HashMap;

use async_trait::async_trait;

pub use error::StoreError;
pub use model::*;
pub use mysql::{MysqlDialect, MysqlStore, TestDb};
pub use sql::{Dialect, SqlStore};
pub use sqlite::{FileTuning, SqliteDialect, SqliteStore, telemetry_path};
pub use tether_proto::UnixMillis;
pub use tether_proto::messages::command::CommandState;
pub use tether_proto::messages::notify::Severity;

/// Result alias for store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// The durable store.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Which backend this is (`sqlite` or `mysql`), for logs and `/healthz`.
    fn backend(&self) -> &'static str;

    /// Checks the connection (for readiness probes).
    async fn ping(&self) -> StoreResult<()>;

    // ---- users ------------------------------------------------------------------

    /// Creates a user. A second user with the same (case-insensitive) email is
    /// [`StoreError::Conflict`].
    async fn create_user(&self, user: &NewUser) -> StoreResult<User>;
    /// A user by id.
    async fn user_by_id(&self, id: &str) -> StoreResult<Option<User>>;
    /// A user by email (compared lowercased).
    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>>;
    /// How many users have the role.
    async fn count_users_with_role(&self, role: Role) -> StoreResult<u64>;
    /// Changes a user's role. Unknown user → [`StoreError::NotFound`].
    async fn set_user_role(&self, user_id: &str, role: Role) -> StoreResult<()>;
    /// Changes a user's role unless the user is the only admin and `role` is not admin
    /// ([`RoleChange::LastAdmin`], nothing changed). Atomic across processes: however two
    /// changes interleave, at least one admin remains. Unknown user →
    /// [`RoleChange::NotFound`].
    async fn change_user_role(&self, user_id: &str, role: Role) -> StoreResult<RoleChange>;
    /// Every user, oldest first.
    async fn list_users(&self) -> StoreResult<Vec<User>>;
    /// How many devices each user owns that are not revoked, by user id (users without
    /// any are left out).
    async fn device_counts_by_owner(&self) -> StoreResult<Vec<(String, u64)>>;
    /// Sets or clears the user's TOTP secret (sealed by the caller) and whether it is
    /// enabled. Setting a secret resets the last used step to 0 — unless it is the same
    /// sealed bytes as stored already (e.g. re-storing `user.totp` with `enabled: true` to
    /// confirm enrolment), which keeps the step. So after confirming with a new secret, call
    /// [`use_totp_step`](Self::use_totp_step) with the confirming step. Clearing keeps the
    /// step. Unknown user → [`StoreError::NotFound`].
    async fn set_totp(&self, user_id: &str, totp: Option<&TotpRecord>) -> StoreResult<()>;
    /// Marks TOTP time step `step` used for the user if it is above the last used step,
    /// atomically. Returns false if `step` (or a later one) was already used: a code
    /// works once. Unknown user → [`StoreError::NotFound`].
    async fn use_totp_step(&self, user_id: &str, step: u64) -> StoreResult<bool>;

    // ---- refresh tokens -------------------------------------------------------------

    /// Stores a new refresh token (by hash) starting or continuing a family.
    async fn insert_refresh(&self, token: &RefreshRecord) -> StoreResult<()>;
    /// Rotates a refresh token atomically: if `old_hash` is live (not used, not revoked,
    /// not expired at `now`) it is marked used and `new` is stored in the same family →
    /// [`Rotation::Rotated`]. If `old_hash` was already used or revoked, the whole family is
    /// revoked → [`Rotation::Reused`]. Expired → [`Rotation::Expired`]; unknown →
    /// [`Rotation::NotFound`]. Used-or-revoked is checked before expiry, so a replayed
    /// token revokes its family even after it expired.
    ///
    /// The new token always joins the old token's family and user: `new.family_id` and
    /// `new.user_id` are ignored. A clash on `new.token_hash` is [`StoreError::Conflict`]
    /// and leaves the old token live.
    async fn rotate_refresh(
        &self,
        old_hash: &str,
        new: &RefreshRecord,
        now: UnixMillis,
    ) -> StoreResult<Rotation>;
    /// Revokes every token of a family (logout). Returns how many were live (neither used
    /// nor revoked; expiry is not considered).
    async fn revoke_refresh_family(&self, family_id: &str) -> StoreResult<u64>;
    /// Revokes every refresh token of a user (revoke all sessions). Returns how many were
    /// live, counted as for [`revoke_refresh_family`](Self::revoke_refresh_family).
    async fn revoke_user_refresh(&self, user_id: &str) -> StoreResult<u64>;
    /// The family a token hash belongs to, with its user, if the token exists (used,
    /// revoked and expired tokens included).
    async fn refresh_by_hash(&self, hash: &str) -> StoreResult<Option<RefreshRecord>>;

    // ---- passkeys (WebAuthn) ------------------------------------------------------------

    /// Stores a new passkey credential (serialized by the caller).
    async fn insert_passkey(&self, pk: &PasskeyRecord) -> StoreResult<()>;
    /// All passkeys of a user, oldest first.
    async fn passkeys_for_user(&self, user_id: &str) -> StoreResult<Vec<PasskeyRecord>>;
    /// Replaces a passkey's serialized state (its counter moves on each use). Unknown
    /// credential → [`StoreError::NotFound`].
    async fn update_passkey(&self, credential_id: &str, data: &str) -> StoreResult<()>;

    /// Stores a short-lived ceremony state (WebAuthn challenge, TOTP enrolment in
    /// progress) under an id. A ceremony is never overwritten: a duplicate id is
    /// [`StoreError::Conflict`].
    async fn put_ceremony(&self, c: &Ceremony) -> StoreResult<()>;
    /// Takes (reads and deletes, atomically) a ceremony if it has not expired at `now`.
    /// An expired one is deleted too, and `None` returned.
    async fn take_ceremony(&self, id: &str, now: UnixMillis) -> StoreResult<Option<Ceremony>>;

    // ---- once-only keys -----------------------------------------------------------------

    /// Claims `key` within `scope` (e.g. a discovery nonce, a token's jti) until
    /// `expires_at`. Returns false if it is already claimed and not expired at `now`.
    /// Atomic across processes.
    async fn claim_once(
        &self,
        scope: &str,
        key: &str,
        expires_at: UnixMillis,
        now: UnixMillis,
    ) -> StoreResult<bool>;

    // ---- discovery (flow 0) -----------------------------------------------------------

    /// Records a discovery session.
    async fn insert_discovery(&self, d: &DiscoveryRecord) -> StoreResult<()>;
    /// A discovery session by id.
    async fn discovery(&self, id: &str) -> StoreResult<Option<DiscoveryRecord>>;
    /// Marks a discovery session confirmed (its nonce proof checked) if it is pending and
    /// not expired at `now`. Returns false otherwise.
    async fn confirm_discovery(&self, id: &str, now: UnixMillis) -> StoreResult<bool>;

    // ---- pairing (flow 1) -------------------------------------------------------------

    /// Records a pairing request (token stored by hash).
    async fn insert_pairing(&self, p: &PairingRecord) -> StoreResult<()>;
    /// A pairing by token hash.
    async fn pairing_by_token_hash(&self, hash: &str) -> StoreResult<Option<PairingRecord>>;
    /// Consumes a pairing for `user_id` atomically: it must exist, be unused and not
    /// expired at `now`. Returns the record as consumed, or why not.
    async fn consume_pairing(
        &self,
        hash: &str,
        user_id: &str,
        now: UnixMillis,
    ) -> StoreResult<Result<PairingRecord, PairingRefusal>>;

    // ---- devices ----------------------------------------------------------------------

    /// Creates a device. Duplicate id → [`StoreError::Conflict`].
    async fn insert_device(&self, d: &Device) -> StoreResult<()>;
    /// A device by id.
    async fn device(&self, id: &str) -> StoreResult<Option<Device>>;
    /// The devices among `ids` that exist, in no particular order (an unknown id is left
    /// out; a repeated one is answered once). Reads many in a few statements: the agent
    /// sessions' status checks, asked together at each heartbeat.
    async fn devices_by_id(&self, ids: &[&str]) -> StoreResult<Vec<Device>>;
    /// The devices a user owns, oldest first.
    async fn devices_for_owner(&self, user_id: &str) -> StoreResult<Vec<Device>>;
    /// Every device, oldest first (admin views).
    async fn all_devices(&self) -> StoreResult<Vec<Device>>;
    /// Replaces a device's mutable fields: name, owner, status, certificate serial and PEM,
    /// `paired_at`. The id, hardware hash, agent key, OS and `created_at` never change.
    /// Unknown device → [`StoreError::NotFound`]; a serial another device holds →
    /// [`StoreError::Conflict`].
    async fn update_device(&self, d: &Device) -> StoreResult<()>;
    /// The device holding a certificate serial, if any.
    async fn device_by_cert_serial(&self, serial: &str) -> StoreResult<Option<Device>>;

    // ---- settings ---------------------------------------------------------------------

    /// A setting's value.
    async fn setting(&self, key: &str) -> StoreResult<Option<String>>;
    /// Sets a setting.
    async fn set_setting(&self, key: &str, value: &str) -> StoreResult<()>;

    // ---- audit ------------------------------------------------------------------------

    /// Appends an audit event; returns its sequence number (strictly increasing, never
    /// reused). On MySQL with several writers a lower number may commit a moment after a
    /// higher one, so a tailing reader should re-read a short window behind its cursor.
    async fn append_audit(&self, e: &NewAuditEvent) -> StoreResult<u64>;
    /// Audit events with `seq > after`, oldest first, at most `limit`.
    async fn audit_after(&self, after: u64, limit: u32) -> StoreResult<Vec<AuditEvent>>;
    /// The audit events that match `filter`, in `order`, at most `limit`. Page newest
    /// first with [`AuditFilter::before_seq`] set to the last `seq` of a page, oldest first
    /// with [`AuditFilter::after_seq`].
    async fn audit_query(
        &self,
        filter: &AuditFilter,
        order: AuditOrder,
        limit: u32,
    ) -> StoreResult<Vec<AuditEvent>>;
    /// How many audit events match `filter`.
    async fn audit_count(&self, filter: &AuditFilter) -> StoreResult<u64>;

    // ---- telemetry ----------------------------------------------------------------------

    /// Stores a telemetry event unless one with the same `message_id` is stored already
    /// (redelivery): returns whether it was inserted. Unknown device →
    /// [`StoreError::NotFound`]; a non-finite number → [`StoreError::Corrupt`].
    async fn insert_telemetry_event(&self, e: &NewTelemetryEvent) -> StoreResult<bool>;
    /// Stores a batch of telemetry events as [`Store::insert_telemetry_event`] would one
    /// by one, and moves each device's last-seen time to its latest `received_at` when
    /// that is at least 30 s past the stored one, or none is stored (so the stored time
    /// is at most 30 s behind, and a device's row is not rewritten at every sample), all
    /// or nothing for the events: returns, for each event in order,
    /// whether it was inserted. An unknown device fails the whole batch before anything
    /// is written ([`StoreError::NotFound`]). The last-seen times are moved on their own,
    /// not in the events' transaction, and best effort: a call that fails may have moved
    /// them, to times the devices were indeed heard from, and a call whose events are
    /// stored succeeds even if moving them failed (that is logged; the devices' next
    /// events move them).
    async fn insert_telemetry_events(&self, events: &[NewTelemetryEvent])
    -> StoreResult<Vec<bool>>;
    /// A device's events collected at or after `since`, newest first, at most `limit`.
    async fn telemetry_events(
        &self,
        device_id: &str,
        since: UnixMillis,
        limit: u32,
    ) -> StoreResult<Vec<TelemetryEvent>>;
    /// The numbers of each device's newest `per_device` events, oldest first (what
    /// [`Store::telemetry_events`] with `since` 0 gives, reversed and without bodies), for
    /// many devices in one read; a device without events is not in the map.
    async fn latest_points(
        &self,
        device_ids: &[&str],
        per_device: u32,
    ) -> StoreResult<HashMap<String, Vec<TelemetryPoint>>>;
    /// The numbers of a device's events collected in `[from, to)`, oldest first, without
    /// bodies (what rollups read).
    async fn telemetry_between(
        &self,
        device_id: &str,
        from: UnixMillis,
        to: UnixMillis,
    ) -> StoreResult<Vec<TelemetryPoint>>;
    /// Deletes every device's events collected before `before` (retention); returns how
    /// many. Rollups are kept.
    async fn prune_telemetry_before(&self, before: UnixMillis) -> StoreResult<u64>;

    // ---- rollups ----------------------------------------------------------------------

    /// Inserts or replaces each rollup of (`device_id`, `period`, `bucket_start`,
    /// `metric`), all in one transaction: all are written or none. Unknown device →
    /// [`StoreError::NotFound`]; a non-finite number → [`StoreError::Corrupt`].
    async fn upsert_rollups(&self, rollups: &[Rollup]) -> StoreResult<()>;
    /// A device's rollups of one period with `bucket_start >= since`, oldest bucket first
    /// (metrics by name within a bucket), at most `limit` rows.
    async fn rollups(
        &self,
        device_id: &str,
        period: RollupPeriod,
        since: UnixMillis,
        limit: u32,
    ) -> StoreResult<Vec<Rollup>>;

    // ---- alerts -----------------------------------------------------------------------

    /// Stores a new alert (its `acked_at`/`acked_by` are ignored: a new alert is open).
    /// Returns false, storing nothing, if the device already has an open (unacknowledged)
    /// alert of the same kind; atomic across processes, so concurrent raisers store one.
    /// Unknown device or owner → [`StoreError::NotFound`]; a duplicate id →
    /// [`StoreError::Conflict`].
    async fn insert_alert(&self, a: &Alert) -> StoreResult<bool>;
    /// The alerts raised for a user's devices (by the owner recorded on the alert),
    /// newest first, at most `limit`; acknowledged ones only if `include_acked`.
    async fn alerts_for_owner(
        &self,
        owner_id: &str,
        include_acked: bool,
        limit: u32,
    ) -> StoreResult<Vec<Alert>>;
    /// Every alert (admin views), newest first, at most `limit`; acknowledged ones only if
    /// `include_acked`.
    async fn all_alerts(&self, include_acked: bool, limit: u32) -> StoreResult<Vec<Alert>>;
    /// An alert by id.
    async fn alert(&self, id: &str) -> StoreResult<Option<Alert>>;
    /// Acknowledges an open alert as `user_id` at `now`. Returns false if the alert does
    /// not exist or was acknowledged already (the first acknowledgement stands).
    async fn ack_alert(&self, id: &str, user_id: &str, now: UnixMillis) -> StoreResult<bool>;
    /// The device's open (unacknowledged) alert of a kind, if any (there is at most one).
    async fn open_alert(&self, device_id: &str, kind: &str) -> StoreResult<Option<Alert>>;
    /// The device's newest alert of a kind, open or acknowledged.
    async fn latest_alert(&self, device_id: &str, kind: &str) -> StoreResult<Option<Alert>>;

    // ---- commands -------------------------------------------------------------------------

    /// Stores a new command in `c.state` (`queued`, or `awaiting_approval`) with its first
    /// transition (whose detail is `detail`, a JSON object) and its audit event
    /// ([`command_audit`]), atomically. Returns false, storing nothing, if a command with
    /// this id exists already (the caller compares `request_hash`). Unknown device or
    /// user → [`StoreError::NotFound`].
    async fn insert_command(&self, c: &NewCommand, detail: &serde_json::Value)
    -> StoreResult<bool>;
    /// A command by id.
    async fn command(&self, id: &str) -> StoreResult<Option<Command>>;
    /// A device's commands, newest first, at most `limit`.
    async fn device_commands(&self, device_id: &str, limit: u32) -> StoreResult<Vec<Command>>;
    /// Commands in `sent` whose ack deadline (`next_attempt_at`) is at or before `now`,
    /// most overdue first.
    async fn commands_due_for_retry(
        &self,
        now: UnixMillis,
        limit: u32,
    ) -> StoreResult<Vec<Command>>;
    /// Commands in `awaiting_approval`, `queued`, `sent` or `ack_received` whose
    /// `expires_at` is at or before `now`.
    async fn commands_expired(&self, now: UnixMillis, limit: u32) -> StoreResult<Vec<Command>>;
    /// Commands still `queued` that were accepted at or before `before`, oldest first
    /// (waiting longer than a delivery should take).
    async fn commands_queued_before(
        &self,
        before: UnixMillis,
        limit: u32,
    ) -> StoreResult<Vec<Command>>;
    /// A device's commands that are not in a terminal state, oldest first.
    async fn commands_in_flight(&self, device_id: &str, limit: u32) -> StoreResult<Vec<Command>>;
    /// How many of a device's commands wait for delivery (`queued` or `sent`).
    async fn count_undelivered(&self, device_id: &str) -> StoreResult<u64>;
    /// Moves a command from one of `from` to `to` at `at`, applying `update` and recording
    /// the transition and its audit event ([`command_audit`], with `update.detail`),
    /// atomically; only one of several concurrent callers wins. Returns the
    /// state it left and the command after, or `None` if it does not exist, is in none
    /// of `from`, or is not `update.device_id`'s when that is set (nothing changed).
    async fn transition_command(
        &self,
        id: &str,
        from: &[CommandState],
        to: CommandState,
        at: UnixMillis,
        update: &CommandUpdate,
    ) -> StoreResult<Option<(CommandState, Command)>>;
    /// A command's transitions, oldest first.
    async fn command_transitions(&self, id: &str) -> StoreResult<Vec<CommandTransition>>;
    /// Records that the originator viewed a finished command's result. False if it is not
    /// finished or was marked already.
    async fn mark_command_viewed(&self, id: &str, at: UnixMillis) -> StoreResult<bool>;

    // ---- policy ---------------------------------------------------------------------

    /// Saves a policy bundle under `p.version`. Returns false, storing nothing, if that
    /// version exists already (another admin saved first).
    async fn insert_policy(&self, p: &PolicyRecord) -> StoreResult<bool>;
    /// The policy in force: the highest saved version (`None`: the built-in policy).
    async fn current_policy(&self) -> StoreResult<Option<PolicyRecord>>;
    /// Records one user's approval of a command. Returns false if this user approved it
    /// already (atomic: a second approval is refused however requests interleave).
    /// Unknown command or user → [`StoreError::NotFound`].
    async fn add_command_approval(&self, a: &CommandApproval) -> StoreResult<bool>;
    /// A command's approvals, oldest first.
    async fn command_approvals(&self, command_id: &str) -> StoreResult<Vec<CommandApproval>>;
    /// Commands in `awaiting_approval`, oldest first, at most `limit`.
    async fn commands_awaiting_approval(&self, limit: u32) -> StoreResult<Vec<Command>>;
    /// Stores a user's signed owner-keys statement. Returns false, storing nothing, if
    /// the user has one with that version already. Unknown user →
    /// [`StoreError::NotFound`].
    async fn insert_owner_keys(&self, r: &OwnerKeysRecord) -> StoreResult<bool>;
    /// A user's owner-keys statements, in version order.
    async fn owner_keys_statements(&self, user_id: &str) -> StoreResult<Vec<OwnerKeysRecord>>;
    /// How many commands match `q` (any state): what rate rules count.
    async fn count_commands(&self, q: &CommandCount) -> StoreResult<u64>;
    /// Records that a session (refresh-token family) of `user_id` proved a second factor
    /// at `at`; a later time replaces an earlier one, never the reverse. Unknown user →
    /// [`StoreError::NotFound`].
    async fn record_second_factor(
        &self,
        session_id: &str,
        user_id: &str,
        at: UnixMillis,
    ) -> StoreResult<()>;
    /// When the user's session last proved a second factor, if it ever did.
    async fn last_second_factor(
        &self,
        session_id: &str,
        user_id: &str,
    ) -> StoreResult<Option<UnixMillis>>;

    // ---- artifacts --------------------------------------------------------------------

    /// Stores an artifact upload grant. Duplicate id or object key →
    /// [`StoreError::Conflict`]; unknown device or command → [`StoreError::NotFound`].
    async fn insert_artifact(&self, a: &Artifact) -> StoreResult<()>;
    /// An artifact by id.
    async fn artifact(&self, id: &str) -> StoreResult<Option<Artifact>>;
    /// Records a completed upload; false if it was recorded already.
    async fn mark_artifact_uploaded(
        &self,
        id: &str,
        size_bytes: u64,
        sha256: &str,
        at: UnixMillis,
    ) -> StoreResult<bool>;

    // ---- last seen --------------------------------------------------------------------

    /// Records that the server heard from the device at `at`. Never moves the time
    /// backwards (a late, older report is ignored). Unknown device →
    /// [`StoreError::NotFound`].
    async fn set_last_seen(&self, device_id: &str, at: UnixMillis) -> StoreResult<()>;
    /// When the server last heard from the device (`None` if never, or no such device).
    async fn device_last_seen(&self, device_id: &str) -> StoreResult<Option<UnixMillis>>;
    /// Active devices not heard from since before `before`: last seen before it, or never
    /// seen and paired before it. Oldest first.
    async fn devices_last_seen_before(&self, before: UnixMillis) -> StoreResult<Vec<SeenDevice>>;
    /// Devices heard from at or after `since` (last seen then or later), whatever their
    /// status, by id.
    async fn devices_seen_since(&self, since: UnixMillis) -> StoreResult<Vec<SeenDevice>>;
}
