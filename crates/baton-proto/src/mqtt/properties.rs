//! MQTT 5 properties: the typed list a packet carries, read and written by identifier. Every
//! property has one wire type; a wrong identifier, a repeat of a property that may appear once,
//! or a value out of range makes the packet malformed.

/// One property. Identifiers are the spec's (MQTT 5, section 2.2.2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Property {
    PayloadFormatIndicator(u8),
    MessageExpiryInterval(u32),
    ContentType(String),
    ResponseTopic(String),
    CorrelationData(Vec<u8>),
    SubscriptionIdentifier(u32),
    SessionExpiryInterval(u32),
    AssignedClientIdentifier(String),
    ServerKeepAlive(u16),
    AuthenticationMethod(String),
    AuthenticationData(Vec<u8>),
    RequestProblemInformation(u8),
    WillDelayInterval(u32),
    RequestResponseInformation(u8),
    ResponseInformation(String),
    ServerReference(String),
    ReasonString(String),
    ReceiveMaximum(u16),
    TopicAliasMaximum(u16),
    TopicAlias(u16),
    MaximumQos(u8),
    RetainAvailable(u8),
    UserProperty(String, String),
    MaximumPacketSize(u32),
    WildcardSubscriptionAvailable(u8),
    SubscriptionIdentifierAvailable(u8),
    SharedSubscriptionAvailable(u8),
}

/// The wire type of each identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Byte,
    U16,
    U32,
    VarInt,
    Str,
    Bin,
    Pair,
}

impl Property {
    pub fn id(&self) -> u8 {
        match self {
            Self::PayloadFormatIndicator(_) => 0x01,
            Self::MessageExpiryInterval(_) => 0x02,
            Self::ContentType(_) => 0x03,
            Self::ResponseTopic(_) => 0x08,
            Self::CorrelationData(_) => 0x09,
            Self::SubscriptionIdentifier(_) => 0x0B,
            Self::SessionExpiryInterval(_) => 0x11,
            Self::AssignedClientIdentifier(_) => 0x12,
            Self::ServerKeepAlive(_) => 0x13,
            Self::AuthenticationMethod(_) => 0x15,
            Self::AuthenticationData(_) => 0x16,
            Self::RequestProblemInformation(_) => 0x17,
            Self::WillDelayInterval(_) => 0x18,
            Self::RequestResponseInformation(_) => 0x19,
            Self::ResponseInformation(_) => 0x1A,
            Self::ServerReference(_) => 0x1C,
            Self::ReasonString(_) => 0x1F,
            Self::ReceiveMaximum(_) => 0x21,
            Self::TopicAliasMaximum(_) => 0x22,
            Self::TopicAlias(_) => 0x23,
            Self::MaximumQos(_) => 0x24,
            Self::RetainAvailable(_) => 0x25,
            Self::UserProperty(..) => 0x26,
            Self::MaximumPacketSize(_) => 0x27,
            Self::WildcardSubscriptionAvailable(_) => 0x28,
            Self::SubscriptionIdentifierAvailable(_) => 0x29,
            Self::SharedSubscriptionAvailable(_) => 0x2A,
        }
    }

    pub(crate) fn kind_of(id: u8) -> Option<Kind> {
        Some(match id {
            0x01 | 0x17 | 0x19 | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => Kind::Byte,
            0x13 | 0x21 | 0x22 | 0x23 => Kind::U16,
            0x02 | 0x11 | 0x18 | 0x27 => Kind::U32,
            0x0B => Kind::VarInt,
            0x03 | 0x08 | 0x12 | 0x15 | 0x1A | 0x1C | 0x1F => Kind::Str,
            0x09 | 0x16 => Kind::Bin,
            0x26 => Kind::Pair,
            _ => return None,
        })
    }

    /// Builds a property from its identifier and a decoded value of the right kind.
    pub(crate) fn from_parts(id: u8, value: Value) -> Option<Self> {
        use Value::*;
        Some(match (id, value) {
            (0x01, Byte(v)) if v <= 1 => Self::PayloadFormatIndicator(v),
            (0x02, U32(v)) => Self::MessageExpiryInterval(v),
            (0x03, Str(v)) => Self::ContentType(v),
            (0x08, Str(v)) => Self::ResponseTopic(v),
            (0x09, Bin(v)) => Self::CorrelationData(v),
            (0x0B, U32(v)) if v > 0 => Self::SubscriptionIdentifier(v),
            (0x11, U32(v)) => Self::SessionExpiryInterval(v),
            (0x12, Str(v)) => Self::AssignedClientIdentifier(v),
            (0x13, U16(v)) => Self::ServerKeepAlive(v),
            (0x15, Str(v)) => Self::AuthenticationMethod(v),
            (0x16, Bin(v)) => Self::AuthenticationData(v),
            (0x17, Byte(v)) if v <= 1 => Self::RequestProblemInformation(v),
            (0x18, U32(v)) => Self::WillDelayInterval(v),
            (0x19, Byte(v)) if v <= 1 => Self::RequestResponseInformation(v),
            (0x1A, Str(v)) => Self::ResponseInformation(v),
            (0x1C, Str(v)) => Self::ServerReference(v),
            (0x1F, Str(v)) => Self::ReasonString(v),
            (0x21, U16(v)) if v > 0 => Self::ReceiveMaximum(v),
            (0x22, U16(v)) => Self::TopicAliasMaximum(v),
            (0x23, U16(v)) if v > 0 => Self::TopicAlias(v),
            (0x24, Byte(v)) if v <= 1 => Self::MaximumQos(v),
            (0x25, Byte(v)) if v <= 1 => Self::RetainAvailable(v),
            (0x26, Pair(k, v)) => Self::UserProperty(k, v),
            (0x27, U32(v)) if v > 0 => Self::MaximumPacketSize(v),
            (0x28, Byte(v)) if v <= 1 => Self::WildcardSubscriptionAvailable(v),
            (0x29, Byte(v)) if v <= 1 => Self::SubscriptionIdentifierAvailable(v),
            (0x2A, Byte(v)) if v <= 1 => Self::SharedSubscriptionAvailable(v),
            _ => return None,
        })
    }
}

/// A decoded property value before it is given its meaning.
pub(crate) enum Value {
    Byte(u8),
    U16(u16),
    U32(u32),
    Str(String),
    Bin(Vec<u8>),
    Pair(String, String),
}

/// A packet's properties, in the order they came.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties(Vec<Property>);

impl Properties {
    pub fn push(&mut self, property: Property) {
        self.0.push(property);
    }

    pub fn iter(&self) -> impl Iterator<Item = &Property> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether a property with this identifier is present already (only user properties and
    /// subscription identifiers may repeat).
    pub(crate) fn has(&self, id: u8) -> bool {
        self.0.iter().any(|p| p.id() == id)
    }

    pub fn receive_maximum(&self) -> Option<u16> {
        self.0.iter().find_map(|p| match p {
            Property::ReceiveMaximum(v) => Some(*v),
            _ => None,
        })
    }

    pub fn maximum_packet_size(&self) -> Option<u32> {
        self.0.iter().find_map(|p| match p {
            Property::MaximumPacketSize(v) => Some(*v),
            _ => None,
        })
    }

    pub fn session_expiry_interval(&self) -> Option<u32> {
        self.0.iter().find_map(|p| match p {
            Property::SessionExpiryInterval(v) => Some(*v),
            _ => None,
        })
    }

    pub fn topic_alias(&self) -> Option<u16> {
        self.0.iter().find_map(|p| match p {
            Property::TopicAlias(v) => Some(*v),
            _ => None,
        })
    }

    pub fn reason_string(&self) -> Option<&str> {
        self.0.iter().find_map(|p| match p {
            Property::ReasonString(v) => Some(v.as_str()),
            _ => None,
        })
    }

    pub fn authentication_method(&self) -> Option<&str> {
        self.0.iter().find_map(|p| match p {
            Property::AuthenticationMethod(v) => Some(v.as_str()),
            _ => None,
        })
    }
}
