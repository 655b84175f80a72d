//! The bodies devices send outside the WebSocket: enrollment and command reports. Parsing never
//! panics, whatever arrives.
#![no_main]

use baton_proto::{agent::CommandUpdate, api::enrollment::EnrollRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<EnrollRequest>(data);
    let _ = serde_json::from_slice::<CommandUpdate>(data);
});
