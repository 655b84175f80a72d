//! asciicast v2, the recording format `asciinema play` and `asciinema cat` read: a JSON header
//! line, then one JSON array per event, `[seconds, "o" | "i" | "r", data]`. Output arrives in
//! chunks that may split a UTF-8 character; the writer holds the incomplete tail until the rest
//! comes, and replaces bytes that are not UTF-8 at all, as asciinema itself does.

use std::io::{self, Write};

/// What an event carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Output,
    Input,
}

/// Writes one recording to `W` (a file, a buffer).
pub struct Writer<W: Write> {
    out: W,
    started: std::time::Instant,
    /// Incomplete UTF-8 at the end of the last chunk, per stream.
    tail: [Vec<u8>; 2],
    written: u64,
}

/// The header line's fields.
pub struct Header<'a> {
    pub cols: u16,
    pub rows: u16,
    /// Seconds since the Unix epoch.
    pub timestamp: i64,
    pub title: &'a str,
}

impl<W: Write> Writer<W> {
    pub fn new(mut out: W, header: &Header<'_>) -> io::Result<Self> {
        let line = serde_json::json!({
            "version": 2, "width": header.cols, "height": header.rows,
            "timestamp": header.timestamp, "title": header.title,
            "env": {"TERM": "xterm-256color"},
        });
        let mut text = line.to_string();
        text.push('\n');
        out.write_all(text.as_bytes())?;
        Ok(Writer {
            out,
            started: std::time::Instant::now(),
            tail: [Vec::new(), Vec::new()],
            written: text.len() as u64,
        })
    }

    /// Records bytes that went one way.
    pub fn data(&mut self, stream: Stream, bytes: &[u8]) -> io::Result<()> {
        let tail = &mut self.tail[stream as usize];
        tail.extend_from_slice(bytes);
        let complete = complete_utf8(tail);
        if complete == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&tail[..complete]).into_owned();
        tail.drain(..complete);
        let code = match stream {
            Stream::Output => "o",
            Stream::Input => "i",
        };
        self.event(code, &text)
    }

    /// Records a change of size.
    pub fn resize(&mut self, cols: u16, rows: u16) -> io::Result<()> {
        self.event("r", &format!("{cols}x{rows}"))
    }

    fn event(&mut self, code: &str, data: &str) -> io::Result<()> {
        let at = self.started.elapsed().as_secs_f64();
        let mut line = serde_json::to_string(&(Seconds(at), code, data)).map_err(io::Error::other)?;
        line.push('\n');
        self.out.write_all(line.as_bytes())?;
        self.written += line.len() as u64;
        Ok(())
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.written
    }

    /// Time since the recording started.
    pub fn elapsed(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// Writes what is held back and hands the output back.
    pub fn finish(mut self) -> io::Result<W> {
        for stream in [Stream::Output, Stream::Input] {
            let tail = std::mem::take(&mut self.tail[stream as usize]);
            if !tail.is_empty() {
                let text = String::from_utf8_lossy(&tail).into_owned();
                self.event(if stream == Stream::Output { "o" } else { "i" }, &text)?;
            }
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Seconds with microsecond precision, as asciinema writes them.
struct Seconds(f64);

impl serde::Serialize for Seconds {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64((self.0 * 1e6).round() / 1e6)
    }
}

/// How many leading bytes of `bytes` end on a character boundary: all of them, unless the end
/// is the start of a character still missing bytes (at most 3 held back).
fn complete_utf8(bytes: &[u8]) -> usize {
    let len = bytes.len();
    for back in 1..=3.min(len) {
        let b = bytes[len - back];
        if b & 0b1100_0000 == 0b1000_0000 {
            continue; // a continuation byte: look further back for the lead
        }
        let needed = match b {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => 1,
        };
        return if needed > back { len - back } else { len };
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recording_has_a_header_and_events_and_rejoins_split_characters() {
        let header = Header { cols: 80, rows: 24, timestamp: 1_800_000_000, title: "t" };
        let mut w = Writer::new(Vec::new(), &header).expect("header");
        let euro = "€".as_bytes();
        w.data(Stream::Output, &[b'a', euro[0]]).expect("write");
        w.data(Stream::Output, &euro[1..]).expect("write");
        w.resize(100, 30).expect("write");
        w.data(Stream::Input, b"\xff").expect("write");
        let text = String::from_utf8(w.finish().expect("finish")).expect("utf-8");
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).expect("json")).collect();
        assert_eq!(lines[0]["version"], 2);
        assert_eq!(lines[0]["width"], 80);
        assert_eq!(lines[1][1], "o");
        assert_eq!(lines[1][2], "a");
        assert_eq!(lines[2][2], "€");
        assert_eq!(lines[3][1], "r");
        assert_eq!(lines[3][2], "100x30");
        assert_eq!(lines[4][2], "\u{fffd}");
    }
}
