//! Reading packets from bytes. Input is untrusted: every length is checked against what is
//! there, every string is UTF-8 without NUL, every flag and reason is checked, and a packet's
//! declared size is refused against the limit before its body is waited for.

use super::{
    Ack, ConnAck, Connect, Disconnect, Packet, Properties, Publish, SubAck, Subscribe, Subscription, Unsubscribe,
    Version, Will,
    properties::{Kind, Property, Value},
    topic,
};

/// Why bytes are not a packet. The connection that sent them is closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The packet declares more bytes than the limit (or than MQTT allows).
    TooLarge { size: usize, max: usize },
    /// The CONNECT asks for a protocol level this server does not speak.
    UnsupportedVersion(u8),
    /// A well-formed packet where the protocol does not allow it (a second CONNECT).
    Protocol(String),
    /// Anything else: the text says what.
    Malformed(String),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooLarge { size, max } => write!(f, "packet of {size} bytes is over the limit of {max}"),
            Self::UnsupportedVersion(level) => write!(f, "protocol level {level} is not supported (3.1.1 and 5 are)"),
            Self::Malformed(m) => write!(f, "malformed packet: {m}"),
            Self::Protocol(m) => write!(f, "protocol error: {m}"),
        }
    }
}

impl std::error::Error for DecodeError {}

type Result<T> = std::result::Result<T, DecodeError>;

fn malformed<T>(what: impl Into<String>) -> Result<T> {
    Err(DecodeError::Malformed(what.into()))
}

/// Reads one packet from the start of `buf`. `Ok(None)`: more bytes are needed. `version` is
/// `None` until the CONNECT was read (which must come first); `max` bounds a packet's size.
/// On success, returns the packet and how many bytes it took.
pub fn decode(buf: &[u8], version: Option<Version>, max: usize) -> Result<Option<(Packet, usize)>> {
    let Some(&first) = buf.first() else { return Ok(None) };
    if version.is_none() && first >> 4 != 1 {
        // Refused at the first byte: whatever this is, it is not an MQTT client.
        return malformed("the first packet must be CONNECT");
    }
    let mut remaining: usize = 0;
    let mut header = 1;
    loop {
        let Some(&byte) = buf.get(header) else {
            return Ok(None);
        };
        remaining |= usize::from(byte & 0x7F) << (7 * (header - 1));
        header += 1;
        if byte & 0x80 == 0 {
            break;
        }
        if header == 5 {
            return malformed("remaining length longer than 4 bytes");
        }
    }
    let size = header + remaining;
    if size > max {
        return Err(DecodeError::TooLarge { size, max });
    }
    if buf.len() < size {
        return Ok(None);
    }
    let body = &buf[header..size];
    let kind = first >> 4;
    let flags = first & 0x0F;
    let packet = match version {
        // Checked to be a CONNECT above.
        None => Packet::Connect(connect(&mut Reader::new(body), flags)?),
        Some(v) => packet(kind, flags, &mut Reader::new(body), v)?,
    };
    Ok(Some((packet, size)))
}

fn packet(kind: u8, flags: u8, r: &mut Reader<'_>, v: Version) -> Result<Packet> {
    let fixed = |expected: u8| {
        if flags == expected { Ok(()) } else { malformed(format!("reserved flags {flags:#x} on packet type {kind}")) }
    };
    let packet = match kind {
        1 => return Err(DecodeError::Protocol("CONNECT may be sent only once".into())),
        2 => {
            fixed(0)?;
            let ack_flags = r.u8()?;
            if ack_flags > 1 {
                return malformed("reserved CONNACK flags");
            }
            let reason = r.u8()?;
            let properties = if v == Version::V5 { r.properties()? } else { Properties::default() };
            Packet::ConnAck(ConnAck { session_present: ack_flags == 1, reason, properties })
        }
        3 => Packet::Publish(publish(flags, r, v)?),
        4 => {
            fixed(0)?;
            Packet::PubAck(ack(r, v)?)
        }
        5 => {
            fixed(0)?;
            Packet::PubRec(ack(r, v)?)
        }
        6 => {
            fixed(2)?;
            Packet::PubRel(ack(r, v)?)
        }
        7 => {
            fixed(0)?;
            Packet::PubComp(ack(r, v)?)
        }
        8 => {
            fixed(2)?;
            Packet::Subscribe(subscribe(r, v)?)
        }
        9 | 11 => {
            fixed(0)?;
            let packet_id = r.u16()?;
            let properties = if v == Version::V5 { r.properties()? } else { Properties::default() };
            let codes = r.rest().to_vec();
            let ack = SubAck { packet_id, codes, properties };
            if kind == 9 { Packet::SubAck(ack) } else { Packet::UnsubAck(ack) }
        }
        10 => {
            fixed(2)?;
            let packet_id = r.u16()?;
            let properties = if v == Version::V5 { r.properties()? } else { Properties::default() };
            let mut filters = Vec::new();
            while !r.is_empty() {
                filters.push(r.string()?);
            }
            if filters.is_empty() {
                return malformed("UNSUBSCRIBE without a topic filter");
            }
            Packet::Unsubscribe(Unsubscribe { packet_id, filters, properties })
        }
        12 => {
            fixed(0)?;
            Packet::PingReq
        }
        13 => {
            fixed(0)?;
            Packet::PingResp
        }
        14 => {
            fixed(0)?;
            Packet::Disconnect(disconnect(r, v)?)
        }
        15 if v == Version::V5 => {
            fixed(0)?;
            Packet::Auth(disconnect(r, v)?)
        }
        other => return malformed(format!("unknown packet type {other}")),
    };
    if !r.is_empty() {
        return malformed(format!("{} bytes left over after {}", r.remaining(), packet.name()));
    }
    Ok(packet)
}

fn connect(r: &mut Reader<'_>, flags: u8) -> Result<Connect> {
    if flags != 0 {
        return malformed("reserved flags on CONNECT");
    }
    let name = r.string()?;
    let level = r.u8()?;
    let version = match (name.as_str(), level) {
        ("MQTT", 4) | ("MQIsdp", 3) => Version::V311,
        ("MQTT", 5) => Version::V5,
        ("MQTT" | "MQIsdp", other) => return Err(DecodeError::UnsupportedVersion(other)),
        _ => return malformed("protocol name is not MQTT"),
    };
    let connect_flags = r.u8()?;
    if connect_flags & 0x01 != 0 {
        return malformed("reserved CONNECT flag set");
    }
    let clean_start = connect_flags & 0x02 != 0;
    let has_will = connect_flags & 0x04 != 0;
    let will_qos = (connect_flags >> 3) & 0x03;
    let will_retain = connect_flags & 0x20 != 0;
    let has_password = connect_flags & 0x40 != 0;
    let has_username = connect_flags & 0x80 != 0;
    if will_qos == 3 || (!has_will && (will_qos != 0 || will_retain)) {
        return malformed("will flags are inconsistent");
    }
    if version == Version::V311 && has_password && !has_username {
        return malformed("a password without a user name");
    }
    let keep_alive = r.u16()?;
    let properties = if version == Version::V5 { r.properties()? } else { Properties::default() };
    let client_id = r.string()?;
    let will = if has_will {
        let properties = if version == Version::V5 { r.properties()? } else { Properties::default() };
        let topic = r.string()?;
        if !topic::valid_name(&topic) {
            return malformed("the will topic is not a valid topic name");
        }
        let payload = r.binary()?;
        Some(Will { topic, payload, qos: will_qos, retain: will_retain, properties })
    } else {
        None
    };
    let username = if has_username { Some(r.string()?) } else { None };
    let password = if has_password { Some(r.binary()?) } else { None };
    if !r.is_empty() {
        return malformed("bytes left over after CONNECT");
    }
    Ok(Connect { version, client_id, clean_start, keep_alive, username, password, will, properties })
}

fn publish(flags: u8, r: &mut Reader<'_>, v: Version) -> Result<Publish> {
    let qos = (flags >> 1) & 0x03;
    if qos == 3 {
        return malformed("PUBLISH with QoS 3");
    }
    let topic = r.string()?;
    let packet_id = if qos > 0 {
        let id = r.u16()?;
        if id == 0 {
            return malformed("packet identifier 0");
        }
        Some(id)
    } else {
        None
    };
    let properties = if v == Version::V5 { r.properties()? } else { Properties::default() };
    // An empty topic is allowed only with a topic alias (MQTT 5); the session resolves it.
    if !(topic::valid_name(&topic) || topic.is_empty() && properties.topic_alias().is_some()) {
        return malformed("the topic is not a valid topic name");
    }
    let payload = r.rest().to_vec();
    Ok(Publish { dup: flags & 0x08 != 0, qos, retain: flags & 0x01 != 0, topic, packet_id, properties, payload })
}

fn ack(r: &mut Reader<'_>, v: Version) -> Result<Ack> {
    let packet_id = r.u16()?;
    if packet_id == 0 {
        return malformed("packet identifier 0");
    }
    let (reason, properties) = match v {
        Version::V5 if !r.is_empty() => {
            let reason = r.u8()?;
            let properties = if r.is_empty() { Properties::default() } else { r.properties()? };
            (reason, properties)
        }
        _ => (0, Properties::default()),
    };
    Ok(Ack { packet_id, reason, properties })
}

fn subscribe(r: &mut Reader<'_>, v: Version) -> Result<Subscribe> {
    let packet_id = r.u16()?;
    if packet_id == 0 {
        return malformed("packet identifier 0");
    }
    let properties = if v == Version::V5 { r.properties()? } else { Properties::default() };
    let mut subscriptions = Vec::new();
    while !r.is_empty() {
        let filter = r.string()?;
        let options = r.u8()?;
        let reserved = if v == Version::V5 { 0xC0 } else { 0xFC };
        if options & reserved != 0 || options & 0x03 == 3 || (options >> 4) & 0x03 == 3 {
            return malformed("invalid subscription options");
        }
        subscriptions.push(Subscription { filter, qos: options & 0x03, options: options & !0x03 });
    }
    if subscriptions.is_empty() {
        return malformed("SUBSCRIBE without a topic filter");
    }
    Ok(Subscribe { packet_id, subscriptions, properties })
}

fn disconnect(r: &mut Reader<'_>, v: Version) -> Result<Disconnect> {
    if v == Version::V311 || r.is_empty() {
        return Ok(Disconnect::new(0));
    }
    let reason = r.u8()?;
    let properties = if r.is_empty() { Properties::default() } else { r.properties()? };
    Ok(Disconnect { reason, properties })
}

/// A cursor over a packet's body.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.remaining() < n {
            return malformed("the packet ends early");
        }
        let bytes = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }

    fn rest(&mut self) -> &'a [u8] {
        let bytes = &self.buf[self.pos..];
        self.pos = self.buf.len();
        bytes
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn varint(&mut self) -> Result<u32> {
        let mut value: u32 = 0;
        for i in 0..4 {
            let byte = self.u8()?;
            value |= u32::from(byte & 0x7F) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        malformed("variable byte integer longer than 4 bytes")
    }

    fn binary(&mut self) -> Result<Vec<u8>> {
        let n = usize::from(self.u16()?);
        Ok(self.take(n)?.to_vec())
    }

    fn string(&mut self) -> Result<String> {
        let n = usize::from(self.u16()?);
        let bytes = self.take(n)?;
        let text = std::str::from_utf8(bytes).or_else(|_| malformed("a string is not UTF-8"))?;
        if text.contains('\0') {
            return malformed("a string contains NUL");
        }
        Ok(text.to_owned())
    }

    fn properties(&mut self) -> Result<Properties> {
        let n = usize::try_from(self.varint()?).unwrap_or(usize::MAX);
        let mut inner = Reader::new(self.take(n)?);
        let mut properties = Properties::default();
        while !inner.is_empty() {
            let id = inner.u8()?;
            let Some(kind) = Property::kind_of(id) else {
                return malformed(format!("unknown property {id:#x}"));
            };
            let value = match kind {
                Kind::Byte => Value::Byte(inner.u8()?),
                Kind::U16 => Value::U16(inner.u16()?),
                Kind::U32 => Value::U32(inner.u32()?),
                Kind::VarInt => Value::U32(inner.varint()?),
                Kind::Str => Value::Str(inner.string()?),
                Kind::Bin => Value::Bin(inner.binary()?),
                Kind::Pair => Value::Pair(inner.string()?, inner.string()?),
            };
            let repeatable = matches!(id, 0x26 | 0x0B);
            if !repeatable && properties.has(id) {
                return malformed(format!("property {id:#x} appears twice"));
            }
            let property = Property::from_parts(id, value)
                .ok_or_else(|| DecodeError::Malformed(format!("property {id:#x} out of range")))?;
            properties.push(property);
        }
        Ok(properties)
    }
}
