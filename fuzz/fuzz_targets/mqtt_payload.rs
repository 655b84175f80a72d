//! Any payload on any device topic: telemetry, attribute, command-result and RPC parsing
//! never panic, and telemetry never yields more samples than the payload could hold.
#![no_main]

use baton_proto::mqtt::payload;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = payload::json(data) {
        if let Ok((samples, _)) = payload::telemetry(&value, 1_700_000_000_000) {
            assert!(samples.len() <= data.len());
        }
        let _ = payload::rpc_answer(value);
    }
    let _ = payload::object(data);
    let _ = payload::command_result(data);
});
