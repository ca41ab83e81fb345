//! Message framing on stream transports (RFC 3261 §18.3).
//!
//! TCP delivers bytes, not messages: a read may hold half a message or three. The framer
//! buffers bytes, finds the end of the headers, reads `Content-Length` and cuts exactly one
//! message at a time. It is a plain struct so tests feed it byte by byte without sockets.
//! Between messages a peer may send CRLF keep-alives (RFC 5626 §3.5.1): a double CRLF is
//! reported so that the transport can answer with a single CRLF ("pong").

use bytes::{Buf, Bytes, BytesMut};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FramingError {
    /// The headers or the declared body exceed the limit; the stream cannot be resynchronised.
    #[error("message larger than {limit} bytes")]
    TooLarge { limit: usize },
    /// `Content-Length` is not a number; we cannot know where the message ends.
    #[error("invalid Content-Length {0:?}")]
    BadContentLength(String),
}

/// What the framer produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    Message(Bytes),
    /// A CRLFCRLF keep-alive ping.
    Ping,
}

#[derive(Debug)]
pub struct Framer {
    buf: BytesMut,
    max: usize,
}

impl Framer {
    pub fn new(max_message_size: usize) -> Self {
        Framer {
            buf: BytesMut::with_capacity(4096),
            max: max_message_size,
        }
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes buffered but not yet framed (for the 400 we try to send before closing).
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FramingError> {
        // Leading CRLFs are keep-alives, never part of a message.
        let mut crlfs = 0;
        while self.buf.starts_with(b"\r\n") {
            self.buf.advance(2);
            crlfs += 1;
            if crlfs == 2 {
                return Ok(Some(Frame::Ping));
            }
        }
        if crlfs == 1 && self.buf.is_empty() {
            // A lone CRLF is a pong or half a ping: nothing to do.
            return Ok(None);
        }
        let Some(end) = find(&self.buf, b"\r\n\r\n") else {
            if self.buf.len() > self.max {
                return Err(FramingError::TooLarge { limit: self.max });
            }
            return Ok(None);
        };
        let head_len = end + 4;
        let body_len = content_length(&self.buf[..end])?;
        let total = head_len
            .checked_add(body_len)
            .ok_or(FramingError::TooLarge { limit: self.max })?;
        if total > self.max {
            return Err(FramingError::TooLarge { limit: self.max });
        }
        if self.buf.len() < total {
            return Ok(None);
        }
        Ok(Some(Frame::Message(self.buf.split_to(total).freeze())))
    }
}

/// Content-Length (or its compact form `l`) from a header block; absent means 0.
fn content_length(head: &[u8]) -> Result<usize, FramingError> {
    for line in head.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        if name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l") {
            let value = line[colon + 1..].trim_ascii();
            return std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| {
                    FramingError::BadContentLength(String::from_utf8_lossy(value).into_owned())
                });
        }
    }
    Ok(0)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &str = "OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 5\r\n\r\nhello";

    fn frames(f: &mut Framer) -> Vec<Frame> {
        let mut out = Vec::new();
        while let Some(fr) = f.next_frame().unwrap() {
            out.push(fr);
        }
        out
    }

    #[test]
    fn byte_by_byte_partial_reads() {
        let mut f = Framer::new(4096);
        let mut got = Vec::new();
        for b in MSG.as_bytes() {
            f.push(&[*b]);
            got.extend(frames(&mut f));
        }
        assert_eq!(got, vec![Frame::Message(Bytes::from(MSG))]);
        assert!(f.pending().is_empty());
    }

    #[test]
    fn several_messages_in_one_segment_with_keepalives() {
        let mut f = Framer::new(4096);
        let data = format!("{MSG}\r\n\r\n{MSG}{}", &MSG[..10]);
        f.push(data.as_bytes());
        assert_eq!(
            frames(&mut f),
            vec![
                Frame::Message(Bytes::from(MSG)),
                Frame::Ping,
                Frame::Message(Bytes::from(MSG))
            ]
        );
        assert_eq!(f.pending(), &MSG.as_bytes()[..10]);
        f.push(&MSG.as_bytes()[10..]);
        assert_eq!(frames(&mut f), vec![Frame::Message(Bytes::from(MSG))]);
    }

    #[test]
    fn missing_content_length_means_empty_body_and_compact_form_counts() {
        let mut f = Framer::new(4096);
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nl: 2\r\n\r\nokOPTIONS sip:a@b SIP/2.0\r\n\r\n");
        let got = frames(&mut f);
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[0],
            Frame::Message(Bytes::from_static(
                b"OPTIONS sip:a@b SIP/2.0\r\nl: 2\r\n\r\nok"
            ))
        );
    }

    #[test]
    fn oversize_and_bad_length_are_errors() {
        let mut f = Framer::new(1024);
        f.push(&vec![b'a'; 2000]);
        assert_eq!(f.next_frame(), Err(FramingError::TooLarge { limit: 1024 }));
        let mut f = Framer::new(1024);
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 999999\r\n\r\n");
        assert_eq!(f.next_frame(), Err(FramingError::TooLarge { limit: 1024 }));
        let mut f = Framer::new(1024);
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: -1\r\n\r\n");
        assert!(matches!(
            f.next_frame(),
            Err(FramingError::BadContentLength(_))
        ));
        let mut f = Framer::new(1024);
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 99999999999999999999999\r\n\r\n");
        assert!(f.next_frame().is_err());
    }
}
