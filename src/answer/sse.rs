//! Reading Server-Sent Events, as the WHATWG HTML standard defines the format:
//! lines end in `\n`, `\r\n` or `\r`; `data:` lines of one event are joined with
//! `\n`; a blank line ends an event; lines starting with `:` are comments. Bytes
//! arrive in arbitrary pieces, so a line (or a character) may be split anywhere.

use std::collections::VecDeque;

/// Turns the bytes of an event stream into the `data` of each complete event.
#[derive(Debug, Default)]
pub struct EventParser {
    /// Bytes of the line not yet ended.
    partial: Vec<u8>,
    /// The current event's `data` lines, each followed by `\n`.
    data: String,
    /// Whether the current event has had a `data` line (it may be empty).
    has_data: bool,
    complete: VecDeque<String>,
}

impl EventParser {
    /// Takes the next piece of the stream.
    pub fn feed(&mut self, bytes: &[u8]) {
        let mut buffer = std::mem::take(&mut self.partial);
        buffer.extend_from_slice(bytes);
        let mut start = 0;
        let mut i = 0;
        while i < buffer.len() {
            match buffer[i] {
                b'\n' => {
                    self.line(&buffer[start..i]);
                    i += 1;
                }
                b'\r' => {
                    // A `\r` at the end may be the first half of `\r\n`: wait for more.
                    let Some(&next) = buffer.get(i + 1) else {
                        break;
                    };
                    self.line(&buffer[start..i]);
                    i += if next == b'\n' { 2 } else { 1 };
                }
                _ => {
                    i += 1;
                    continue;
                }
            }
            start = i;
        }
        buffer.drain(..start);
        self.partial = buffer;
    }

    /// The `data` of the next complete event, oldest first.
    pub fn next_event(&mut self) -> Option<String> {
        self.complete.pop_front()
    }

    fn line(&mut self, line: &[u8]) {
        // Lines are whole here, so a character split between pieces is whole again.
        let line = String::from_utf8_lossy(line);
        if line.is_empty() {
            if std::mem::take(&mut self.has_data) {
                let mut data = std::mem::take(&mut self.data);
                data.pop();
                self.complete.push_back(data);
            }
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (&*line, ""),
        };
        // `event`, `id` and `retry` mean nothing to a chat completion stream.
        if field == "data" {
            self.data.push_str(value);
            self.data.push('\n');
            self.has_data = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events_of(pieces: &[&[u8]]) -> Vec<String> {
        let mut parser = EventParser::default();
        let mut events = Vec::new();
        for piece in pieces {
            parser.feed(piece);
            while let Some(event) = parser.next_event() {
                events.push(event);
            }
        }
        events
    }

    #[test]
    fn data_lines_of_one_event_are_joined_and_comments_and_other_fields_ignored() {
        let stream =
            b": keep-alive\n\nevent: message\nid: 7\ndata: {\"a\":\ndata:1}\n\ndata: [DONE]\n\n";
        assert_eq!(events_of(&[stream]), ["{\"a\":\n1}", "[DONE]"]);
    }

    #[test]
    fn every_line_ending_works_even_when_split_between_pieces() {
        assert_eq!(
            events_of(&[b"data: one\r", b"\n\r", b"\ndata: two\r\rdata: three\n\n"]),
            ["one", "two", "three"]
        );
    }

    #[test]
    fn a_character_split_between_pieces_arrives_whole() {
        let text = "data: caf\u{e9} \u{1f600}\n\n".as_bytes();
        let pieces: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(events_of(&pieces), ["caf\u{e9} \u{1f600}"]);
    }

    #[test]
    fn an_event_without_its_blank_line_is_not_complete() {
        assert!(events_of(&[b"data: half"]).is_empty());
        assert!(events_of(&[b"data: half\n"]).is_empty());
        assert_eq!(events_of(&[b"data\n\n"]), [""]);
        assert!(events_of(&[b"\n\n: only a comment\n\n"]).is_empty());
    }
}
