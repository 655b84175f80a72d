//! The view-only filter on a viewer's RFB stream (`baton_proto::rfb::ViewOnly`), fed anything in
//! any pieces. Nothing panics; how the bytes are cut changes neither what passes nor where the
//! stream turns unreadable; and what passes is only whole messages that change nothing on the
//! device: filtering it again passes all of it.
#![no_main]

use baton_proto::rfb::ViewOnly;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, stream)) = data.split_first() else { return };
    let mut whole = Vec::new();
    let whole_result = ViewOnly::new().feed(stream, &mut whole);

    // The same bytes in pieces of 1 to 16 bytes, sized by `cut`'s bits in turn.
    let (mut filter, mut pieces, mut result, mut rest, mut turn) = (ViewOnly::new(), Vec::new(), Ok(()), stream, 0u32);
    while !rest.is_empty() && result.is_ok() {
        let size = usize::from((cut.rotate_left(turn) & 0x0f) + 1).min(rest.len());
        result = filter.feed(&rest[..size], &mut pieces);
        rest = &rest[size..];
        turn += 1;
    }
    assert_eq!(result, whole_result);
    assert_eq!(pieces, whole);

    let mut again = Vec::new();
    ViewOnly::new().feed(&whole, &mut again).expect("what passed reads again");
    assert_eq!(again, whole, "what passed holds nothing to drop");
});
