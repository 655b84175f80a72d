//! Server-Sent Events: a parser fed with body chunks as they arrive, and the typed items the
//! client's stream methods yield. Events end at a blank line; `event:`, `data:` and `id:` lines
//! are read, comments (keep-alives, lines starting with `:`) and unknown fields are skipped.

/// One raw event of a `text/event-stream`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` name; `message` when the server sent none.
    pub event: String,
    /// The `data:` lines, joined by newlines.
    pub data: String,
    pub id: Option<String>,
}

/// What a live stream yields.
#[derive(Debug, Clone, PartialEq)]
pub enum Live<T> {
    /// The next item.
    Item(T),
    /// The server skipped this many items because this reader fell behind.
    Lagged(u64),
}

/// Turns body chunks into events; a line or a UTF-8 character may be split across chunks.
#[derive(Debug, Default)]
pub struct Parser {
    pending: Vec<u8>,
    event: Option<String>,
    data: Option<String>,
    id: Option<String>,
}

impl Parser {
    /// Takes the next chunk and returns the events it completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        self.pending.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let raw: Vec<u8> = self.pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&raw);
            if let Some(event) = self.line(line.trim_end_matches(['\n', '\r'])) {
                out.push(event);
            }
        }
        out
    }

    fn line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            let event = self.event.take();
            let id = self.id.take();
            // An event without data is not dispatched (a keep-alive is a comment and a blank line).
            let data = self.data.take()?;
            return Some(SseEvent { event: event.unwrap_or_else(|| "message".into()), data, id });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = line.split_once(':').map_or((line, ""), |(f, v)| (f, v.strip_prefix(' ').unwrap_or(v)));
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            "id" => self.id = Some(value.to_owned()),
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str, data: &str) -> SseEvent {
        SseEvent { event: name.into(), data: data.into(), id: None }
    }

    #[test]
    fn events_end_at_a_blank_line_and_keep_alives_are_skipped() {
        let mut p = Parser::default();
        let got = p.feed(b":\n\nevent: event\ndata: {\"a\":1}\n\n: ping\n\nevent: lagged\ndata: 3\n\n");
        assert_eq!(got, [event("event", "{\"a\":1}"), event("lagged", "3")]);
    }

    #[test]
    fn a_line_split_across_chunks_and_crlf_endings_are_joined() {
        let mut p = Parser::default();
        assert!(p.feed(b"event: tele").is_empty());
        assert!(p.feed(b"metry\r\ndata:{\"x\"").is_empty());
        assert_eq!(p.feed(b":2}\r\n\r\n"), [event("telemetry", "{\"x\":2}")]);
    }

    #[test]
    fn several_data_lines_join_with_newlines_and_the_name_defaults_to_message() {
        let mut p = Parser::default();
        let got = p.feed(b"id: 7\ndata: one\ndata: two\nretry: 10\n\n");
        assert_eq!(got, [SseEvent { event: "message".into(), data: "one\ntwo".into(), id: Some("7".into()) }]);
    }

    #[test]
    fn a_utf8_character_split_across_chunks_survives() {
        let mut p = Parser::default();
        let bytes = "data: é\n\n".as_bytes();
        assert!(p.feed(&bytes[..7]).is_empty());
        assert_eq!(p.feed(&bytes[7..]), [event("message", "é")]);
    }
}
