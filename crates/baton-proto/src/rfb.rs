//! RFB, the protocol of VNC (RFC 6143), as far as a screen session's relay reads it: the
//! versions and security types of the handshake, and [`ViewOnly`], the filter that keeps a
//! view-only viewer's keyboard, pointer and clipboard away from the device.
//!
//! The filter reads the viewer's stream after the handshake message by message, incrementally
//! (bytes arrive in any pieces; a long clipboard passes through without being held) and passes
//! on only the messages that change nothing on the device. It must frame every message exactly
//! as the VNC server will, or a viewer could hide a key press inside what the filter took for
//! something else; so a message it does not know ends the stream instead of being guessed at.

use std::fmt;

/// The version this side speaks to viewers, and prefers with servers.
pub const VERSION_3_8: &[u8; 12] = b"RFB 003.008\n";

/// A protocol version both ends can speak; they differ only in the security handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    V3_3,
    V3_7,
    V3_8,
}

impl Version {
    /// Reads a ProtocolVersion greeting (`RFB xxx.yyy\n`) as the version to answer with: 3.8
    /// for 3.8 and later (Apple's 3.889 too), 3.7, or 3.3 for 3.3 to 3.6 as the RFC says.
    pub fn read(greeting: &[u8; 12]) -> Result<Version, String> {
        let text = std::str::from_utf8(greeting).unwrap_or_default();
        let numbers = text.strip_prefix("RFB ").and_then(|t| t.strip_suffix('\n')).and_then(|t| t.split_once('.'));
        let parsed = numbers.and_then(|(major, minor)| {
            let digits =
                |s: &str| (s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse::<u16>().ok());
            Some((digits(major)??, digits(minor)??))
        });
        match parsed {
            Some((major, _)) if major > 3 => Ok(Version::V3_8),
            Some((3, minor)) if minor >= 8 => Ok(Version::V3_8),
            Some((3, 7)) => Ok(Version::V3_7),
            Some((3, minor)) if minor >= 3 => Ok(Version::V3_3),
            _ => Err(format!("it greeted with {:?}, which is not an RFB version this agent speaks (3.3 to 3.8)", text)),
        }
    }

    /// The greeting that answers with this version.
    pub fn greeting(self) -> &'static [u8; 12] {
        match self {
            Version::V3_3 => b"RFB 003.003\n",
            Version::V3_7 => b"RFB 003.007\n",
            Version::V3_8 => VERSION_3_8,
        }
    }
}

/// Security type: no authentication.
pub const SECURITY_NONE: u8 = 1;
/// Security type: VNC authentication (a DES-encrypted challenge).
pub const SECURITY_VNC: u8 = 2;

/// A security type's name, for saying which ones a server asked for.
pub fn security_name(kind: u8) -> String {
    let name = match kind {
        0 => "invalid",
        SECURITY_NONE => "None",
        SECURITY_VNC => "VNC authentication",
        5 => "RA2",
        6 => "RA2ne",
        16 => "Tight",
        18 => "TLS",
        19 => "VeNCrypt",
        20 => "SASL",
        22 => "XVP",
        30 | 35 => "Apple",
        113 | 129 => "UltraVNC MS-Logon",
        _ => return format!("type {kind}"),
    };
    format!("{name} ({kind})")
}

/// Drops what a viewer sends to control the device (keys, pointer, clipboard, and the
/// messages that reboot it or resize its screen) and passes the rest: the requests for
/// pixels and the messages that tune them.
#[derive(Debug, Clone, Default)]
pub struct ViewOnly {
    /// The current message's first bytes, kept until its length is known (at most 20).
    head: Vec<u8>,
    /// Bytes of the current message's body still to come, and whether they pass.
    body: u64,
    passing: bool,
}

/// Why a viewer's stream cannot be read on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreadable {
    /// A message type this filter does not know (so it cannot know its length).
    Message(u8),
    /// A QEMU client message (255) of a sub-type, or an audio operation, it does not know.
    Qemu(u8),
    /// A fence whose payload is longer than the 64 bytes RFB allows.
    Fence(u8),
}

impl fmt::Display for Unreadable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unreadable::Message(kind) => write!(
                f,
                "the viewer sent an RFB message of type {kind}, which a view-only screen session does not pass on"
            ),
            Unreadable::Qemu(sub) => {
                write!(f, "the viewer sent a QEMU RFB message ({sub}) that a view-only screen session does not pass on")
            }
            Unreadable::Fence(len) => write!(f, "the viewer sent a fence of {len} bytes; RFB allows 64"),
        }
    }
}

impl std::error::Error for Unreadable {}

/// Client-to-server message types.
mod client {
    pub const SET_PIXEL_FORMAT: u8 = 0;
    pub const SET_ENCODINGS: u8 = 2;
    pub const UPDATE_REQUEST: u8 = 3;
    pub const KEY: u8 = 4;
    pub const POINTER: u8 = 5;
    pub const CUT_TEXT: u8 = 6;
    pub const CONTINUOUS_UPDATES: u8 = 150;
    pub const FENCE: u8 = 248;
    pub const XVP: u8 = 250;
    pub const SET_DESKTOP_SIZE: u8 = 251;
    pub const QEMU: u8 = 255;
}

/// What the head read so far says of its message.
enum Frame {
    /// The head is this long before the length is known.
    Need(usize),
    /// The head is whole: this many body bytes follow, and whether the message passes.
    Whole { body: u64, passes: bool },
}

impl ViewOnly {
    pub fn new() -> Self {
        ViewOnly::default()
    }

    /// Reads the next bytes of the viewer's stream, appending to `out` what may reach the
    /// device. After an error the stream must end: nothing more can be framed.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), Unreadable> {
        loop {
            if self.body > 0 {
                if input.is_empty() {
                    return Ok(());
                }
                let n = usize::try_from(self.body).unwrap_or(usize::MAX).min(input.len());
                if self.passing {
                    out.extend_from_slice(&input[..n]);
                }
                self.body -= n as u64;
                input = &input[n..];
                continue;
            }
            match frame(&self.head)? {
                Frame::Need(len) => {
                    if input.is_empty() {
                        return Ok(());
                    }
                    let take = (len - self.head.len()).min(input.len());
                    self.head.extend_from_slice(&input[..take]);
                    input = &input[take..];
                }
                Frame::Whole { body, passes } => {
                    if passes {
                        out.extend_from_slice(&self.head);
                    }
                    self.head.clear();
                    (self.body, self.passing) = (body, passes);
                }
            }
        }
    }
}

fn frame(head: &[u8]) -> Result<Frame, Unreadable> {
    use client::*;
    let Some(&kind) = head.first() else { return Ok(Frame::Need(1)) };
    // A message of `len` head bytes (once `head` holds them) and `body` more.
    let sized = |len: usize, body: u64, passes: bool| {
        if head.len() < len { Frame::Need(len) } else { Frame::Whole { body, passes } }
    };
    let u16_at = |at: usize| u64::from(u16::from_be_bytes([head[at], head[at + 1]]));
    Ok(match kind {
        SET_PIXEL_FORMAT => sized(20, 0, true),
        SET_ENCODINGS if head.len() < 4 => Frame::Need(4),
        SET_ENCODINGS => sized(4, 4 * u16_at(2), true),
        UPDATE_REQUEST | CONTINUOUS_UPDATES => sized(10, 0, true),
        KEY => sized(8, 0, false),
        // The marker bit of the extended form (noVNC, once the server offers it) adds a byte
        // of buttons. Dropped either way, so a server reading it otherwise sees nothing.
        POINTER if head.len() < 2 => Frame::Need(2),
        POINTER => sized(if head[1] & 0x80 != 0 { 7 } else { 6 }, 0, false),
        // A negative length is the extended clipboard's: its size, negated.
        CUT_TEXT if head.len() < 8 => Frame::Need(8),
        CUT_TEXT => sized(8, u64::from(i32::from_be_bytes([head[4], head[5], head[6], head[7]]).unsigned_abs()), false),
        FENCE if head.len() < 9 => Frame::Need(9),
        FENCE if head[8] > 64 => return Err(Unreadable::Fence(head[8])),
        FENCE => sized(9, u64::from(head[8]), true),
        XVP => sized(4, 0, false),
        SET_DESKTOP_SIZE if head.len() < 8 => Frame::Need(8),
        SET_DESKTOP_SIZE => sized(8, 16 * u64::from(head[6]), false),
        QEMU if head.len() < 2 => Frame::Need(2),
        // Extended key event.
        QEMU if head[1] == 0 => sized(12, 0, false),
        // Audio: enable and disable, or set the format (six more bytes).
        QEMU if head[1] == 1 && head.len() < 4 => Frame::Need(4),
        QEMU if head[1] == 1 => match u16_at(2) {
            0 | 1 => sized(4, 0, true),
            2 => sized(10, 0, true),
            _ => return Err(Unreadable::Qemu(head[1])),
        },
        QEMU => return Err(Unreadable::Qemu(head[1])),
        other => return Err(Unreadable::Message(other)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the filter passes of `stream` fed whole, and fed one byte at a time.
    fn filtered(stream: &[u8]) -> Result<Vec<u8>, Unreadable> {
        let mut whole = Vec::new();
        ViewOnly::new().feed(stream, &mut whole)?;
        let (mut filter, mut bytewise) = (ViewOnly::new(), Vec::new());
        for byte in stream {
            filter.feed(std::slice::from_ref(byte), &mut bytewise)?;
        }
        assert_eq!(whole, bytewise, "the pieces the bytes come in change nothing");
        Ok(whole)
    }

    const PIXEL_FORMAT: [u8; 20] = [0, 0, 0, 0, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 0, 8, 16, 0, 0, 0];
    const ENCODINGS: [u8; 12] = [2, 0, 0, 2, 0, 0, 0, 7, 0xff, 0xff, 0xff, 0x21];
    const UPDATE: [u8; 10] = [3, 1, 0, 0, 0, 0, 3, 32, 2, 88];
    const FENCE: [u8; 12] = [248, 0, 0, 0, 0x80, 0, 0, 3, 3, b'a', b'b', b'c'];
    const CONTINUOUS: [u8; 10] = [150, 1, 0, 0, 0, 0, 3, 32, 2, 88];
    const AUDIO_FORMAT: [u8; 10] = [255, 1, 0, 2, 3, 2, 0, 0, 172, 68];

    #[test]
    fn what_asks_for_pixels_passes_whole_and_in_order() {
        let stream =
            [&PIXEL_FORMAT[..], &ENCODINGS, &UPDATE, &FENCE, &CONTINUOUS, &AUDIO_FORMAT, &[255, 1, 0, 0]].concat();
        assert_eq!(filtered(&stream), Ok(stream));
    }

    #[test]
    fn keys_pointer_clipboard_reboot_and_resize_are_dropped_and_what_follows_passes() {
        let key = [4, 1, 0, 0, 0, 0, 0, b'x'];
        let pointer = [5, 1, 0, 10, 0, 20];
        let extended_pointer = [5, 0x81, 0, 10, 0, 20, 1];
        let text = [&[6u8, 0, 0, 0, 0, 0, 0, 5][..], b"typed"].concat();
        // Extended clipboard: the length negated (-4), then 4 bytes of flags.
        let extended_text = [6, 0, 0, 0, 0xff, 0xff, 0xff, 0xfc, 1, 0, 0, 1];
        let qemu_key = [255, 0, 0, 1, 0, 0, 0, b'x', 0, 0, 0, 0x2d];
        let reboot = [250, 0, 1, 3];
        let resize = [&[251u8, 0, 4, 0, 3, 0, 1, 0][..], &[0; 16]].concat();
        for control in [&key[..], &pointer, &extended_pointer, &text, &extended_text, &qemu_key, &reboot, &resize] {
            let stream = [control, &UPDATE].concat();
            assert_eq!(filtered(&stream), Ok(UPDATE.to_vec()), "after {control:?}");
        }
    }

    #[test]
    fn a_long_clipboard_is_dropped_without_being_held() {
        let mut filter = ViewOnly::new();
        let mut out = Vec::new();
        filter.feed(&[6, 0, 0, 0, 0, 1, 0, 0], &mut out).expect("header");
        for _ in 0..16 {
            filter.feed(&[b'a'; 4096], &mut out).expect("text");
        }
        filter.feed(&UPDATE, &mut out).expect("update");
        assert_eq!(out, UPDATE);
        assert!(filter.head.capacity() <= 64, "the filter held the text");
    }

    #[test]
    fn an_unknown_message_ends_the_stream_saying_which() {
        let stream = [&UPDATE[..], &[7, 0, 0, 0]].concat();
        let unreadable = filtered(&stream).expect_err("type 7");
        assert_eq!(unreadable, Unreadable::Message(7));
        assert!(unreadable.to_string().contains("type 7"), "{unreadable}");
        assert_eq!(filtered(&[255, 9]), Err(Unreadable::Qemu(9)));
        assert_eq!(filtered(&[255, 1, 0, 7]), Err(Unreadable::Qemu(1)));
        assert_eq!(filtered(&[248, 0, 0, 0, 0, 0, 0, 0, 65]), Err(Unreadable::Fence(65)));
    }

    #[test]
    fn versions_are_answered_with_what_this_side_speaks() {
        let read = |g: &[u8; 12]| Version::read(g);
        assert_eq!(read(b"RFB 003.008\n"), Ok(Version::V3_8));
        assert_eq!(read(b"RFB 003.889\n"), Ok(Version::V3_8));
        assert_eq!(read(b"RFB 004.001\n"), Ok(Version::V3_8));
        assert_eq!(read(b"RFB 003.007\n"), Ok(Version::V3_7));
        assert_eq!(read(b"RFB 003.005\n"), Ok(Version::V3_3));
        assert!(read(b"SSH-2.0-Open").expect_err("not RFB").contains("SSH-2.0-Open"));
        assert!(read(b"RFB 002.000\n").is_err());
        assert_eq!(Version::V3_3.greeting(), b"RFB 003.003\n");
        assert_eq!(security_name(19), "VeNCrypt (19)");
        assert_eq!(security_name(77), "type 77");
    }
}
