//! Every message type that travels inside a signed envelope, with its wire name, size
//! limit and direction. HTTP request bodies that are not envelopes (discovery confirm,
//! pair request/response/confirm) live in [`discovery`] too but are not registered here.

pub mod command;
pub mod discovery;
pub mod notify;
pub mod session;
pub mod update;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::canonical::canonicalize;
use crate::error::ProtoError;
use crate::helper::{HelperRequest, HelperResponse};
use crate::owner_sig::OwnerKeysUpdate;
use crate::validate::Validate;

use command::{CommandAck, CommandDelivery, CommandResult, CommandStatus};
use discovery::{DeviceActivate, DiscoveryChallenge, DiscoveryHello};
use notify::{AlertPush, ErrorFrame, PolicyUpdate, Revocation};
use session::{Auth, Connected, Heartbeat, Telemetry};
use update::{UpdateAvailable, UpdatePrecheck, UpdateResult};

const KIB: usize = 1024;

/// Who sends a message type to whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// PC agent → server gateway.
    AgentToGateway,
    /// Server gateway → PC agent.
    GatewayToAgent,
    /// Either way between agent and gateway.
    Both,
    /// Agent → helper, over local IPC.
    AgentToHelper,
    /// Helper → agent, over local IPC.
    HelperToAgent,
}

/// A message body type that can ride in an envelope.
pub trait Message: Serialize + DeserializeOwned + Validate {
    /// The envelope header's `type` for this body.
    const TYPE: MessageType;
}

macro_rules! message_types {
    ($( $variant:ident => ($name:literal, $ty:ty, $max:expr, $dir:ident), )*) => {
        /// The `type` in an envelope header.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum MessageType {
            $( #[doc = concat!("`", $name, "`")] $variant, )*
        }

        impl MessageType {
            /// Every type.
            pub const ALL: &'static [MessageType] = &[ $( MessageType::$variant, )* ];

            /// The wire name.
            pub const fn name(self) -> &'static str {
                match self { $( MessageType::$variant => $name, )* }
            }

            /// Looks a type up by wire name.
            pub fn from_name(s: &str) -> Option<MessageType> {
                match s { $( $name => Some(MessageType::$variant), )* _ => None }
            }

            /// The largest whole frame (envelope included) of this type, in bytes.
            pub const fn max_frame_bytes(self) -> usize {
                match self { $( MessageType::$variant => $max, )* }
            }

            /// Who sends it.
            pub const fn direction(self) -> Direction {
                match self { $( MessageType::$variant => Direction::$dir, )* }
            }
        }

        $( impl Message for $ty { const TYPE: MessageType = MessageType::$variant; } )*

        /// Any message body, decoded by its header type.
        #[derive(Debug, Clone, PartialEq)]
        #[allow(clippy::large_enum_variant)] // decoded once per frame; boxing buys nothing here
        pub enum Payload {
            $( #[doc = concat!("`", $name, "`")] $variant($ty), )*
        }

        impl Payload {
            /// The payload's type.
            pub fn message_type(&self) -> MessageType {
                match self { $( Payload::$variant(_) => MessageType::$variant, )* }
            }

            /// Decodes and validates a body of the given type.
            pub fn decode(t: MessageType, body: &Value) -> Result<Payload, ProtoError> {
                match t {
                    $( MessageType::$variant => decode_body::<$ty>(body).map(Payload::$variant), )*
                }
            }

            /// The body as JSON.
            pub fn to_value(&self) -> Result<Value, ProtoError> {
                let r = match self { $( Payload::$variant(m) => serde_json::to_value(m), )* };
                r.map_err(|e| ProtoError::Malformed(e.to_string()))
            }
        }
    };
}

message_types! {
    DiscoveryHello => ("discovery_hello", DiscoveryHello, 4 * KIB, AgentToGateway),
    DiscoveryChallenge => ("discovery_challenge", DiscoveryChallenge, 8 * KIB, GatewayToAgent),
    DeviceActivate => ("device_activate", DeviceActivate, 32 * KIB, GatewayToAgent),
    Auth => ("auth", Auth, 4 * KIB, AgentToGateway),
    Connected => ("connected", Connected, 4 * KIB, GatewayToAgent),
    Heartbeat => ("heartbeat", Heartbeat, 2 * KIB, AgentToGateway),
    Telemetry => ("telemetry", Telemetry, 16 * KIB, AgentToGateway),
    CommandDelivery => ("command_delivery", CommandDelivery, 32 * KIB, GatewayToAgent),
    CommandAck => ("command_ack", CommandAck, 2 * KIB, AgentToGateway),
    CommandStatus => ("command_status", CommandStatus, 2 * KIB, AgentToGateway),
    CommandResult => ("command_result", CommandResult, 64 * KIB, AgentToGateway),
    AlertPush => ("alert_push", AlertPush, 4 * KIB, GatewayToAgent),
    PolicyUpdate => ("policy_update", PolicyUpdate, 256 * KIB, GatewayToAgent),
    UpdateAvailable => ("update_available", UpdateAvailable, 16 * KIB, GatewayToAgent),
    UpdatePrecheck => ("update_precheck", UpdatePrecheck, 8 * KIB, AgentToGateway),
    UpdateResult => ("update_result", UpdateResult, 4 * KIB, AgentToGateway),
    Revocation => ("revocation", Revocation, 4 * KIB, GatewayToAgent),
    OwnerKeysUpdate => ("owner_keys_update", OwnerKeysUpdate, 16 * KIB, GatewayToAgent),
    Error => ("error", ErrorFrame, 2 * KIB, Both),
    HelperRequest => ("helper_request", HelperRequest, 32 * KIB, AgentToHelper),
    HelperResponse => ("helper_response", HelperResponse, 64 * KIB, HelperToAgent),
}

/// The largest frame of any type: a receiver refuses anything longer before parsing it.
pub const MAX_FRAME_BYTES: usize = 256 * KIB;

/// Decodes a body value into a typed message and validates it.
///
/// The body must also be the one spelling of that message: a JSON object whose canonical
/// form equals the canonical form of the decoded message re-serialized. That refuses
/// what serde would otherwise accept as a second spelling — a struct written as an array,
/// `null` for an absent optional field — so two implementations never sign different
/// bytes for the same message.
pub fn decode_body<T: Message>(body: &Value) -> Result<T, ProtoError> {
    if !body.is_object() {
        return Err(ProtoError::invalid("body", "must be a JSON object"));
    }
    let m = T::deserialize(body).map_err(|e| ProtoError::InvalidField {
        field: "body",
        reason: e.to_string(),
    })?;
    m.validate()?;
    let again = serde_json::to_value(&m).map_err(|e| ProtoError::Malformed(e.to_string()))?;
    if canonicalize(&again)? != canonicalize(body)? {
        return Err(ProtoError::invalid(
            "body",
            "not the canonical spelling of this message (an array for an object, or null for an absent field)",
        ));
    }
    Ok(m)
}
