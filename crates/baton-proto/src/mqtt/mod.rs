//! MQTT 3.1.1 and 5.0 packets as Baton's MQTT front door speaks them: the packet types, a
//! decoder that never panics and refuses anything malformed or over a size limit before it is
//! buffered, an encoder, and topic names, filters and matching. No I/O: the server's sessions
//! read bytes into a buffer and ask [`decode`] for packets; the simulator and the benchmarks use
//! [`encode`] as clients. Baton is a device endpoint, not a broker, so this is all of MQTT it
//! needs; it is small enough to own, to fuzz (`fuzz/`), and to keep per-connection memory low.
//!
//! [`dialect`] is the device-facing topic contract (Baton's topics and ThingsBoard's), and
//! [`payload`] what those topics carry; both are shared here so the fuzz target covers them.
//!
//! Reason codes are MQTT 5's throughout; [`connack_code_v311`] maps them for 3.1.1 clients.

mod decode;
pub mod dialect;
mod encode;
pub mod payload;
pub mod properties;
pub mod topic;

pub use decode::{DecodeError, decode};
pub use encode::encode;
pub use properties::{Properties, Property};

/// The protocol level a client connected with. 3.1 (`MQIsdp`, level 3) is served as 3.1.1:
/// their packets are the same for everything Baton does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V311,
    V5,
}

/// MQTT 5 reason codes Baton sends or reads.
pub mod reason {
    pub const SUCCESS: u8 = 0x00;
    pub const GRANTED_QOS_1: u8 = 0x01;
    pub const NO_MATCHING_SUBSCRIBERS: u8 = 0x10;
    pub const NO_SUBSCRIPTION_EXISTED: u8 = 0x11;
    pub const DISCONNECT_WITH_WILL: u8 = 0x04;
    pub const UNSPECIFIED: u8 = 0x80;
    pub const MALFORMED_PACKET: u8 = 0x81;
    pub const PROTOCOL_ERROR: u8 = 0x82;
    pub const IMPLEMENTATION_SPECIFIC: u8 = 0x83;
    pub const UNSUPPORTED_PROTOCOL_VERSION: u8 = 0x84;
    pub const CLIENT_ID_NOT_VALID: u8 = 0x85;
    pub const BAD_USERNAME_OR_PASSWORD: u8 = 0x86;
    pub const NOT_AUTHORIZED: u8 = 0x87;
    pub const SERVER_UNAVAILABLE: u8 = 0x88;
    pub const SERVER_BUSY: u8 = 0x89;
    pub const BANNED: u8 = 0x8A;
    pub const SERVER_SHUTTING_DOWN: u8 = 0x8B;
    pub const KEEP_ALIVE_TIMEOUT: u8 = 0x8D;
    pub const SESSION_TAKEN_OVER: u8 = 0x8E;
    pub const TOPIC_FILTER_INVALID: u8 = 0x8F;
    pub const TOPIC_NAME_INVALID: u8 = 0x90;
    pub const PACKET_ID_IN_USE: u8 = 0x91;
    pub const PACKET_ID_NOT_FOUND: u8 = 0x92;
    pub const RECEIVE_MAXIMUM_EXCEEDED: u8 = 0x93;
    pub const TOPIC_ALIAS_INVALID: u8 = 0x94;
    pub const PACKET_TOO_LARGE: u8 = 0x95;
    pub const MESSAGE_RATE_TOO_HIGH: u8 = 0x96;
    pub const QUOTA_EXCEEDED: u8 = 0x97;
    pub const ADMINISTRATIVE_ACTION: u8 = 0x98;
    pub const PAYLOAD_FORMAT_INVALID: u8 = 0x99;
    pub const RETAIN_NOT_SUPPORTED: u8 = 0x9A;
    pub const QOS_NOT_SUPPORTED: u8 = 0x9B;
    pub const SHARED_SUBSCRIPTIONS_NOT_SUPPORTED: u8 = 0x9E;
    pub const CONNECTION_RATE_EXCEEDED: u8 = 0x9F;
    pub const SUBSCRIPTION_IDS_NOT_SUPPORTED: u8 = 0xA1;
    pub const WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED: u8 = 0xA2;
}

/// The CONNACK return code a 3.1.1 client understands for an MQTT 5 reason code.
pub fn connack_code_v311(reason: u8) -> u8 {
    match reason {
        reason::SUCCESS => 0,
        reason::UNSUPPORTED_PROTOCOL_VERSION => 1,
        reason::CLIENT_ID_NOT_VALID => 2,
        reason::BAD_USERNAME_OR_PASSWORD => 4,
        reason::NOT_AUTHORIZED | reason::BANNED => 5,
        _ => 3,
    }
}

/// One packet, either direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Connect(Connect),
    ConnAck(ConnAck),
    Publish(Publish),
    PubAck(Ack),
    PubRec(Ack),
    PubRel(Ack),
    PubComp(Ack),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(SubAck),
    PingReq,
    PingResp,
    Disconnect(Disconnect),
    Auth(Disconnect),
}

impl Packet {
    /// The packet's name, for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Connect(_) => "CONNECT",
            Self::ConnAck(_) => "CONNACK",
            Self::Publish(_) => "PUBLISH",
            Self::PubAck(_) => "PUBACK",
            Self::PubRec(_) => "PUBREC",
            Self::PubRel(_) => "PUBREL",
            Self::PubComp(_) => "PUBCOMP",
            Self::Subscribe(_) => "SUBSCRIBE",
            Self::SubAck(_) => "SUBACK",
            Self::Unsubscribe(_) => "UNSUBSCRIBE",
            Self::UnsubAck(_) => "UNSUBACK",
            Self::PingReq => "PINGREQ",
            Self::PingResp => "PINGRESP",
            Self::Disconnect(_) => "DISCONNECT",
            Self::Auth(_) => "AUTH",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    pub version: Version,
    pub client_id: String,
    pub clean_start: bool,
    pub keep_alive: u16,
    pub username: Option<String>,
    pub password: Option<Vec<u8>>,
    pub will: Option<Will>,
    pub properties: Properties,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
    pub properties: Properties,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnAck {
    pub session_present: bool,
    /// An MQTT 5 reason code; mapped for 3.1.1 when encoded.
    pub reason: u8,
    pub properties: Properties,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub dup: bool,
    pub qos: u8,
    pub retain: bool,
    pub topic: String,
    /// Present exactly when `qos > 0`.
    pub packet_id: Option<u16>,
    pub properties: Properties,
    pub payload: Vec<u8>,
}

impl Publish {
    /// A message without DUP, RETAIN or properties.
    pub fn new(topic: impl Into<String>, qos: u8, packet_id: Option<u16>, payload: impl Into<Vec<u8>>) -> Self {
        Self {
            dup: false,
            qos,
            retain: false,
            topic: topic.into(),
            packet_id,
            properties: Properties::default(),
            payload: payload.into(),
        }
    }
}

/// PUBACK, PUBREC, PUBREL and PUBCOMP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub packet_id: u16,
    pub reason: u8,
    pub properties: Properties,
}

impl Ack {
    pub fn new(packet_id: u16, reason: u8) -> Self {
        Self { packet_id, reason, properties: Properties::default() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub filter: String,
    /// The requested maximum QoS (bits 0–1 of the options byte).
    pub qos: u8,
    /// MQTT 5's other option bits, kept as sent.
    pub options: u8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    pub packet_id: u16,
    pub subscriptions: Vec<Subscription>,
    pub properties: Properties,
}

/// SUBACK and UNSUBACK: one reason code per filter (UNSUBACK has none in 3.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    pub packet_id: u16,
    pub codes: Vec<u8>,
    pub properties: Properties,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    pub packet_id: u16,
    pub filters: Vec<String>,
    pub properties: Properties,
}

/// DISCONNECT and AUTH (3.1.1's DISCONNECT carries neither field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnect {
    pub reason: u8,
    pub properties: Properties,
}

impl Disconnect {
    pub fn new(reason: u8) -> Self {
        Self { reason, properties: Properties::default() }
    }

    /// With a human-readable reason string (MQTT 5 only; 3.1.1 clients see a plain close).
    pub fn with_reason(reason: u8, text: impl Into<String>) -> Self {
        let mut properties = Properties::default();
        properties.push(Property::ReasonString(text.into()));
        Self { reason, properties }
    }
}

#[cfg(test)]
mod tests;
