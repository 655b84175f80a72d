//! The device import (CSV, from the console or `baton devices import`): reading any text never
//! panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = baton_proto::import::read(text);
});
