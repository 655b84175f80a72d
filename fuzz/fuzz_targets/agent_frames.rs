//! Any text frame on the agent WebSocket, either way: parsing never panics, and what parses
//! survives a round trip through its own serialization.
#![no_main]

use baton_proto::agent::{AgentMessage, ServerMessage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = serde_json::from_slice::<AgentMessage>(data) {
        let text = serde_json::to_string(&message).expect("serializes");
        assert_eq!(serde_json::from_str::<AgentMessage>(&text).ok(), Some(message));
    }
    if let Ok(message) = serde_json::from_slice::<ServerMessage>(data) {
        let text = serde_json::to_string(&message).expect("serializes");
        assert!(serde_json::from_str::<ServerMessage>(&text).is_ok());
    }
    let _ = baton_proto::agent::decode_stream_frame(data);
});
