//! One valid example body for every message type.
//!
//! `docs/protocol.md` shows these same bodies, the tests sign and verify each of them, and
//! the fuzz target seeds its corpus with them. A test keeps the document and this module
//! in step, so the examples a client author copies from the document are known to decode.

use serde_json::{Value, json};

use crate::messages::MessageType;

const SHA_A: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const SHA_B: &str = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752";
const UUID_A: &str = "0b7e4c7e-52b4-4c1e-9a51-6f0c1f3f2a10";
const UUID_B: &str = "5f1d2c3b-8a9e-4f70-b1c2-d3e4f5a6b7c8";
const NONCE: &str = "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq80";
const PUBKEY: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
const T0: u64 = 1_764_115_200_000;

/// A valid example body of the given type.
pub fn body(t: MessageType) -> Value {
    match t {
        MessageType::DiscoveryHello => json!({
            "hwid_hash": SHA_A,
            "nonce": NONCE,
            "agent_version": "0.1.0",
            "agent_manifest_hash": SHA_B,
            "agent_pub": PUBKEY,
            "os": "windows"
        }),
        MessageType::DiscoveryChallenge => json!({
            "challenge_token": "ch_4f9a1c2e7b3d4e5f8a9b0c1d",
            "pair_init_url": "https://tether.lab.example/api/discovery/confirm",
            "expires_at": T0 + 300_000
        }),
        MessageType::DeviceActivate => json!({
            "device_id": "dev_01HZX3K9",
            "device_cert_pem": "-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n",
            "ca_chain_pem": [
                "-----BEGIN CERTIFICATE-----\nMIIC...\n-----END CERTIFICATE-----\n",
                "-----BEGIN CERTIFICATE-----\nMIID...\n-----END CERTIFICATE-----\n"
            ],
            "owner_keys": [{"kid": "owner-cli-1", "kind": "ed25519", "public_key": PUBKEY}]
        }),
        MessageType::Auth => json!({
            "device_id": "dev_01HZX3K9",
            "nonce": NONCE,
            "agent_version": "0.1.0",
            "last_seq_received": 41
        }),
        MessageType::Connected => json!({
            "session_id": "sess_7c1f",
            "heartbeat_interval_s": 30,
            "telemetry_interval_s": 10,
            "server_time": T0,
            "policy_version": 3
        }),
        MessageType::Heartbeat => json!({"status": "alive", "uptime_s": 86_400, "queue_depth": 0}),
        MessageType::Telemetry => json!({
            "collected_at": T0,
            "cpu_pct": 12.5,
            "mem_used_bytes": 6_442_450_944_u64,
            "mem_total_bytes": 17_179_869_184_u64,
            "disks": [{"mount": "C:\\", "used_bytes": 120_000_000_000_u64, "total_bytes": 512_000_000_000_u64}],
            "net": {"rx_bps": 1_250.0, "tx_bps": 310.5, "rx_total_bytes": 9_876_543, "tx_total_bytes": 1_234_567}
        }),
        MessageType::CommandDelivery => json!({
            "command_id": UUID_A,
            "device_id": "dev_01HZX3K9",
            "method": "lock_screen",
            "params": {},
            "priority": "normal",
            "sensitivity": "normal",
            "origin_user_id": "usr_alice",
            "policy_version": 3,
            "expires_at": T0 + 300_000,
            "attempt": 1,
            "not_after": T0 + 300_000,
            "user_sig": {
                "kind": "ed25519",
                "kid": "34750f98bd59fcfc",
                "sig": "scYFGLLKuFGKp3rHPApQUsxUpgx6NJ1TPVq6PP5-aAzPpdg-hX537rMUHZbQZkogTcd6qSMUYcAp9yLUqZgYBA"
            }
        }),
        MessageType::CommandAck => json!({"command_id": UUID_A, "status": "received"}),
        MessageType::CommandStatus => {
            json!({"command_id": UUID_A, "state": "executing", "kernel_exec_id": "kx_19"})
        }
        MessageType::CommandResult => json!({
            "command_id": UUID_A,
            "status": "ok",
            "notes": "screen locked",
            "result": {"locked": true},
            "kernel_exec_id": "kx_19",
            "duration_ms": 84
        }),
        MessageType::AlertPush => json!({
            "alert_id": "al_3",
            "device_id": "dev_01HZX3K9",
            "severity": "warning",
            "kind": "disk_nearly_full",
            "message": "C:\\ is 95% full",
            "risk_score": 0.4,
            "created_at": T0
        }),
        MessageType::PolicyUpdate => {
            let bundle = json!({"rules": [{"method": "memory_dump", "effect": "step_up"}]});
            let hash =
                crate::messages::notify::PolicyUpdate::hash_bundle(&bundle).unwrap_or_default();
            json!({"policy_version": 4, "policy_hash": hash, "bundle": bundle})
        }
        MessageType::UpdateAvailable => json!({
            "release_id": "rel_0.2.0",
            "version": "0.2.0",
            "manifest_url": "https://tether.lab.example/objects/rel_0.2.0/manifest.json",
            "manifest_sha256": SHA_A,
            "package_url": "https://tether.lab.example/objects/rel_0.2.0/agent.zip",
            "package_sha256": SHA_B,
            "package_size": 8_388_608,
            "auto_install": true,
            "allow_reboot": false,
            "stage": "canary"
        }),
        MessageType::UpdatePrecheck => {
            json!({"release_id": "rel_0.2.0", "status": "ok", "reasons": []})
        }
        MessageType::UpdateResult => json!({
            "release_id": "rel_0.2.0",
            "status": "installed",
            "version": "0.2.0",
            "service_start_ms": 420,
            "rollback_available": true
        }),
        MessageType::Revocation => json!({
            "device_id": "dev_01HZX3K9",
            "serials": ["6b1f0c2d9e8a7b6c5d4e3f2a1b0c9d8e"],
            "reason": "device reported lost",
            "action": "re_pair_needed",
            "revoked_at": T0
        }),
        MessageType::OwnerKeysUpdate => json!({
            "statement": {
                "type": "tether.owner_keys.v1",
                "user_id": "usr_alice",
                "version": T0,
                "add": [{
                    "kid": "9vHMNT-UsqUBcxHbKpIP4A",
                    "kind": "webauthn-es256",
                    "public_key": "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAES2hXcm4_gYH7qpqgnkUyFbIWGDNL-qJxPh3MbKKg9JfRbvOza0yNKE_HGRAAqU90ve_RK3Fl4HPBHfOokrjHZg"
                }],
                "remove": [],
                "not_after": T0 + 600_000
            },
            "user_sig": {
                "kind": "ed25519",
                "kid": "34750f98bd59fcfc",
                "sig": "wawndJHrrx5oaTOijH_IUGMLksqj08nm6uDSWc3NqD9Gz-ba1zb7nmCHFrU4-rAQgbpaGAY7AVHIrd6UX4PtAg"
            }
        }),
        MessageType::Error => json!({
            "code": 2001,
            "message": "The signature is invalid.",
            "ref_message_id": UUID_B
        }),
        MessageType::HelperRequest => json!({
            "request_id": UUID_B,
            "opcode": "EXEC_REBOOT",
            "params": {"delay_s": 30, "reason": "requested from phone", "force": false},
            "agent_sequence": 7,
            "policy_hash": SHA_A,
            "command_message_id": UUID_A
        }),
        MessageType::HelperResponse => json!({
            "request_id": UUID_B,
            "status": "ok",
            "kernel_exec_id": "kx_20",
            "result": {"scheduled_in_s": 30}
        }),
    }
}
