//! Unit tests of the MQTT codec: packets decoded and encoded both ways, and malformed input refused.
use super::*;

fn roundtrip(packet: Packet, version: Version) {
    let mut bytes = Vec::new();
    encode(&packet, version, &mut bytes);
    let decoded = if matches!(packet, Packet::Connect(_)) {
        decode(&bytes, None, 1 << 20)
    } else {
        decode(&bytes, Some(version), 1 << 20)
    };
    let (back, used) = decoded.expect("decodes").expect("complete");
    assert_eq!(used, bytes.len());
    assert_eq!(back, packet, "{version:?}");
    // Every strict prefix is "need more bytes", never an error or a panic.
    for cut in 0..bytes.len() {
        let v = if matches!(packet, Packet::Connect(_)) { None } else { Some(version) };
        assert_eq!(decode(&bytes[..cut], v, 1 << 20), Ok(None), "prefix {cut} of {}", back.name());
    }
}

fn props() -> Properties {
    let mut p = Properties::default();
    p.push(Property::ReasonString("why".into()));
    p.push(Property::UserProperty("k".into(), "v".into()));
    p.push(Property::UserProperty("k".into(), "w".into()));
    p
}

#[test]
fn every_packet_survives_a_roundtrip_in_both_versions() {
    for version in [Version::V311, Version::V5] {
        let v5 = version == Version::V5;
        let p = if v5 { props() } else { Properties::default() };
        roundtrip(
            Packet::Connect(Connect {
                version,
                client_id: "dev-1".into(),
                clean_start: true,
                keep_alive: 30,
                username: Some("user".into()),
                password: Some(b"secret".to_vec()),
                will: Some(Will {
                    topic: "baton/v1/x/status".into(),
                    payload: b"offline".to_vec(),
                    qos: 1,
                    retain: false,
                    properties: p.clone(),
                }),
                properties: p.clone(),
            }),
            version,
        );
        roundtrip(Packet::ConnAck(ConnAck { session_present: true, reason: 0, properties: p.clone() }), version);
        for qos in 0..=2 {
            roundtrip(
                Packet::Publish(Publish {
                    dup: qos > 0,
                    qos,
                    retain: false,
                    topic: "a/b".into(),
                    packet_id: (qos > 0).then_some(7),
                    properties: p.clone(),
                    payload: b"{\"t\":1}".to_vec(),
                }),
                version,
            );
        }
        let reason = if v5 { reason::NOT_AUTHORIZED } else { 0 };
        roundtrip(Packet::PubAck(Ack { packet_id: 9, reason, properties: p.clone() }), version);
        roundtrip(Packet::PubRec(Ack::new(9, 0)), version);
        roundtrip(Packet::PubRel(Ack::new(9, 0)), version);
        roundtrip(Packet::PubComp(Ack::new(9, 0)), version);
        roundtrip(
            Packet::Subscribe(Subscribe {
                packet_id: 3,
                subscriptions: vec![
                    Subscription { filter: "a/+".into(), qos: 1, options: 0 },
                    Subscription { filter: "b/#".into(), qos: 0, options: 0 },
                ],
                properties: p.clone(),
            }),
            version,
        );
        roundtrip(Packet::SubAck(SubAck { packet_id: 3, codes: vec![1, 0x80], properties: p.clone() }), version);
        roundtrip(
            Packet::Unsubscribe(Unsubscribe { packet_id: 4, filters: vec!["a/+".into()], properties: p.clone() }),
            version,
        );
        let codes = if v5 { vec![0x11] } else { vec![] };
        roundtrip(Packet::UnsubAck(SubAck { packet_id: 4, codes, properties: p.clone() }), version);
        roundtrip(Packet::PingReq, version);
        roundtrip(Packet::PingResp, version);
        let disconnect = if v5 { Disconnect::with_reason(reason::SESSION_TAKEN_OVER, "x") } else { Disconnect::new(0) };
        roundtrip(Packet::Disconnect(disconnect), version);
    }
}

#[test]
fn a_3_1_1_connack_carries_the_mapped_return_code() {
    let mut bytes = Vec::new();
    let refusal = ConnAck { session_present: false, reason: reason::BAD_USERNAME_OR_PASSWORD, properties: props() };
    encode(&Packet::ConnAck(refusal), Version::V311, &mut bytes);
    assert_eq!(bytes, [0x20, 2, 0, 4]);
}

#[test]
fn oversize_packets_are_refused_from_their_header() {
    // A PUBLISH declaring 2 MiB: refused after 5 bytes, before the body arrives.
    let header = [0x30, 0x80, 0x80, 0x80, 0x01];
    assert_eq!(decode(&header, Some(Version::V5), 1024), Err(DecodeError::TooLarge { size: 2_097_157, max: 1024 }));
    assert!(decode(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01], Some(Version::V5), 1 << 30).is_err());
}

#[test]
fn bad_packets_are_errors_not_panics() {
    let cases: &[(&[u8], Option<Version>)] = &[
        (&[0x30, 0x00], None),                                            // not CONNECT first
        (&[0x10, 0x02, 0x00, 0x04], None),                                // truncated protocol name
        (&[0x10, 0x0A, 0, 4, b'M', b'Q', b'T', b'T', 9, 2, 0, 10], None), // level 9
        (&[0x36, 0x03, 0x00, 0x01, b'a'], Some(Version::V311)),           // QoS 3
        (&[0x82, 0x03, 0x00, 0x01, 0x00], Some(Version::V311)),           // subscribe, truncated filter
        (&[0x80, 0x00], Some(Version::V311)),                             // subscribe with wrong flags
        (&[0x30, 0x03, 0x00, 0x01, b'#'], Some(Version::V311)),           // wildcard in a topic name
        (&[0x30, 0x04, 0x00, 0x02, 0xC3, 0x28], Some(Version::V5)),       // invalid UTF-8
        (&[0x40, 0x02, 0x00, 0x00], Some(Version::V311)),                 // packet id 0
        (&[0xE0, 0x03, 0x00, 0x01, 0x7F], Some(Version::V5)),             // unknown property
        (&[0xF0, 0x00], Some(Version::V311)),                             // AUTH in 3.1.1
        (&[0xC0, 0x01, 0x00], Some(Version::V5)),                         // PINGREQ with a body
    ];
    for (bytes, version) in cases {
        assert!(decode(bytes, *version, 1 << 20).is_err(), "{bytes:?} should be refused");
    }
}

#[test]
fn random_bytes_never_panic() {
    // A small deterministic generator: the fuzz target goes much further (see fuzz/).
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..20_000 {
        let len = (next() % 64) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        for version in [None, Some(Version::V311), Some(Version::V5)] {
            let _ = decode(&bytes, version, 4096);
        }
    }
}

#[test]
fn topic_filters_match_as_mqtt_says() {
    use topic::*;
    for (filter, topic, expected) in [
        ("a/b", "a/b", true),
        ("a/+", "a/b", true),
        ("a/+", "a/b/c", false),
        ("a/#", "a", true),
        ("a/#", "a/b/c", true),
        ("#", "a/b", true),
        ("#", "$SYS/x", false),
        ("+/x", "$SYS/x", false),
        ("a/+/c", "a//c", true),
        ("a", "a/b", false),
    ] {
        assert_eq!(matches(filter, topic), expected, "{filter} vs {topic}");
    }
    for bad in ["", "a/#/b", "a+", "a/b#", "#/"] {
        assert!(!valid_filter(bad), "{bad}");
    }
    for good in ["#", "+", "a/+/b", "/+", "a/#"] {
        assert!(valid_filter(good), "{good}");
    }
    assert!(!valid_name("a/+"));
    assert!(valid_name("v1/devices/me/telemetry"));
}
