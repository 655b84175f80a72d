//! Any bytes, as the first packet of a connection or a later one, in either protocol version:
//! the decoder never panics, never claims more bytes than it was given, and whatever a client
//! may send decodes again to the same packet after the server's encoder wrote it. Topic filters
//! and names it accepts are checked against the dialect's namespace rules without panicking.
#![no_main]

use baton_proto::mqtt::{Packet, Version, decode, dialect, encode, topic};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for version in [None, Some(Version::V311), Some(Version::V5)] {
        let Ok(Some((packet, used))) = decode(data, version, 64 * 1024) else { continue };
        assert!(used <= data.len());
        // Packets only a server sends lose detail when a 3.1.1 encoder maps their codes.
        let exact = !matches!(packet, Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_));
        let v = match &packet {
            Packet::Connect(c) => c.version,
            _ => version.unwrap_or(Version::V5),
        };
        let mut bytes = Vec::new();
        encode(&packet, v, &mut bytes);
        let again = decode(&bytes, version, usize::MAX).expect("re-encoded packet decodes").expect("complete");
        if exact {
            assert_eq!(again.0, packet);
        }
        match &packet {
            Packet::Subscribe(s) => {
                for sub in &s.subscriptions {
                    if topic::valid_filter(&sub.filter) {
                        let _ = dialect::filter_owner(&sub.filter);
                        let _ = topic::matches(&sub.filter, "baton/v1/me/commands/x");
                    }
                }
            }
            Packet::Publish(p) => {
                let _ = dialect::inbound(&p.topic);
            }
            _ => {}
        }
    }
});
