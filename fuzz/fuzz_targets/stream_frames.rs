//! What either end reads of a remote-support stream: a binary frame (the agent reads the
//! server's, the server the agent's) and a `stream_open`. Nothing panics; a frame that decodes
//! encodes back to the same bytes; an open that parses survives its own serialization, and the
//! window it grants reads within bounds.
#![no_main]

use baton_proto::{
    agent::{decode_stream_frame, encode_stream_frame},
    streams::{Flow, MAX_CHUNK, MAX_WINDOW, StreamKind, StreamOpen, WINDOW, valid_size},
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((stream, bytes)) = decode_stream_frame(data) {
        assert_eq!(encode_stream_frame(stream, bytes), data);
        let mut flow = Flow::new(WINDOW, WINDOW);
        let fits = bytes.len() <= WINDOW as usize;
        assert_eq!(flow.receive(bytes.len()).is_ok(), fits);
        assert_eq!(flow.unread() as usize, if fits { bytes.len() } else { 0 });
    }
    if let Ok(open) = serde_json::from_slice::<StreamOpen>(data) {
        let text = serde_json::to_string(&open).expect("serializes");
        assert_eq!(serde_json::from_str::<StreamOpen>(&text).ok().as_ref(), Some(&open));
        if let StreamKind::Terminal { cols, rows, .. } = open.kind {
            let _ = valid_size(cols, rows);
        }
        let window = Flow::new(WINDOW, open.window).window();
        assert!((MAX_CHUNK as u32..=MAX_WINDOW).contains(&window));
    }
});
