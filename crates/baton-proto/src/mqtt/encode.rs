//! Writing packets to bytes, for the version the connection speaks: fields MQTT 3.1.1 does not
//! have (properties, most reason codes) are left out for it.

use super::{Packet, Properties, Property, Version, connack_code_v311};

/// Appends `packet` to `out`.
pub fn encode(packet: &Packet, version: Version, out: &mut Vec<u8>) {
    let v5 = version == Version::V5;
    let mut body = Vec::new();
    let first: u8 = match packet {
        Packet::Connect(c) => {
            let (name, level) = match c.version {
                Version::V311 => ("MQTT", 4),
                Version::V5 => ("MQTT", 5),
            };
            string(&mut body, name);
            body.push(level);
            let mut flags = 0u8;
            if c.clean_start {
                flags |= 0x02;
            }
            if let Some(w) = &c.will {
                flags |= 0x04 | (w.qos << 3) | if w.retain { 0x20 } else { 0 };
            }
            if c.password.is_some() {
                flags |= 0x40;
            }
            if c.username.is_some() {
                flags |= 0x80;
            }
            body.push(flags);
            body.extend_from_slice(&c.keep_alive.to_be_bytes());
            if v5 {
                properties(&mut body, &c.properties);
            }
            string(&mut body, &c.client_id);
            if let Some(w) = &c.will {
                if v5 {
                    properties(&mut body, &w.properties);
                }
                string(&mut body, &w.topic);
                binary(&mut body, &w.payload);
            }
            if let Some(u) = &c.username {
                string(&mut body, u);
            }
            if let Some(p) = &c.password {
                binary(&mut body, p);
            }
            0x10
        }
        Packet::ConnAck(a) => {
            body.push(u8::from(a.session_present));
            if v5 {
                body.push(a.reason);
                properties(&mut body, &a.properties);
            } else {
                body.push(connack_code_v311(a.reason));
            }
            0x20
        }
        Packet::Publish(p) => {
            string(&mut body, &p.topic);
            if let Some(id) = p.packet_id {
                body.extend_from_slice(&id.to_be_bytes());
            }
            if v5 {
                properties(&mut body, &p.properties);
            }
            body.extend_from_slice(&p.payload);
            0x30 | if p.dup { 0x08 } else { 0 } | (p.qos << 1) | u8::from(p.retain)
        }
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
            body.extend_from_slice(&a.packet_id.to_be_bytes());
            if v5 && (a.reason != 0 || !a.properties.is_empty()) {
                body.push(a.reason);
                if !a.properties.is_empty() {
                    properties(&mut body, &a.properties);
                }
            }
            match packet {
                Packet::PubAck(_) => 0x40,
                Packet::PubRec(_) => 0x50,
                Packet::PubRel(_) => 0x62,
                _ => 0x70,
            }
        }
        Packet::Subscribe(s) => {
            body.extend_from_slice(&s.packet_id.to_be_bytes());
            if v5 {
                properties(&mut body, &s.properties);
            }
            for sub in &s.subscriptions {
                string(&mut body, &sub.filter);
                body.push(sub.qos | if v5 { sub.options } else { 0 });
            }
            0x82
        }
        Packet::SubAck(a) => {
            body.extend_from_slice(&a.packet_id.to_be_bytes());
            if v5 {
                properties(&mut body, &a.properties);
                body.extend_from_slice(&a.codes);
            } else {
                body.extend(a.codes.iter().map(|&c| if c >= 0x80 { 0x80 } else { c }));
            }
            0x90
        }
        Packet::Unsubscribe(u) => {
            body.extend_from_slice(&u.packet_id.to_be_bytes());
            if v5 {
                properties(&mut body, &u.properties);
            }
            for filter in &u.filters {
                string(&mut body, filter);
            }
            0xA2
        }
        Packet::UnsubAck(a) => {
            body.extend_from_slice(&a.packet_id.to_be_bytes());
            if v5 {
                properties(&mut body, &a.properties);
                body.extend_from_slice(&a.codes);
            }
            0xB0
        }
        Packet::PingReq => 0xC0,
        Packet::PingResp => 0xD0,
        Packet::Disconnect(d) | Packet::Auth(d) => {
            if v5 && (d.reason != 0 || !d.properties.is_empty()) {
                body.push(d.reason);
                properties(&mut body, &d.properties);
            }
            if matches!(packet, Packet::Auth(_)) { 0xF0 } else { 0xE0 }
        }
    };
    out.push(first);
    varint(out, u32::try_from(body.len()).unwrap_or(u32::MAX));
    out.extend_from_slice(&body);
}

fn varint(out: &mut Vec<u8>, mut n: u32) {
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if n == 0 {
            break;
        }
    }
}

/// Strings longer than MQTT's 65,535 bytes are cut at a character boundary; the server never
/// makes one, and a client's is refused long before.
fn string(out: &mut Vec<u8>, s: &str) {
    let mut end = s.len().min(usize::from(u16::MAX));
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    binary(out, &s.as_bytes()[..end]);
}

fn binary(out: &mut Vec<u8>, b: &[u8]) {
    let b = &b[..b.len().min(usize::from(u16::MAX))];
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(b);
}

fn properties(out: &mut Vec<u8>, props: &Properties) {
    let mut body = Vec::new();
    for p in props.iter() {
        body.push(p.id());
        match p {
            Property::PayloadFormatIndicator(v)
            | Property::RequestProblemInformation(v)
            | Property::RequestResponseInformation(v)
            | Property::MaximumQos(v)
            | Property::RetainAvailable(v)
            | Property::WildcardSubscriptionAvailable(v)
            | Property::SubscriptionIdentifierAvailable(v)
            | Property::SharedSubscriptionAvailable(v) => body.push(*v),
            Property::ServerKeepAlive(v)
            | Property::ReceiveMaximum(v)
            | Property::TopicAliasMaximum(v)
            | Property::TopicAlias(v) => body.extend_from_slice(&v.to_be_bytes()),
            Property::MessageExpiryInterval(v)
            | Property::SessionExpiryInterval(v)
            | Property::WillDelayInterval(v)
            | Property::MaximumPacketSize(v) => body.extend_from_slice(&v.to_be_bytes()),
            Property::SubscriptionIdentifier(v) => varint(&mut body, *v),
            Property::ContentType(s)
            | Property::ResponseTopic(s)
            | Property::AssignedClientIdentifier(s)
            | Property::AuthenticationMethod(s)
            | Property::ResponseInformation(s)
            | Property::ServerReference(s)
            | Property::ReasonString(s) => string(&mut body, s),
            Property::CorrelationData(b) | Property::AuthenticationData(b) => binary(&mut body, b),
            Property::UserProperty(k, v) => {
                string(&mut body, k);
                string(&mut body, v);
            }
        }
    }
    varint(out, u32::try_from(body.len()).unwrap_or(u32::MAX));
    out.extend_from_slice(&body);
}
