//! DTMF keys sent by SIP INFO (`application/dtmf-relay`, `application/dtmf`), which phones
//! use when RTP telephone-events (RFC 4733, read in `media::dtmf`) are not negotiated.

/// Why an INFO body is not a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InfoError {
    /// An INFO body of a type we do not understand.
    #[error("unsupported DTMF content type {0:?}")]
    UnsupportedContentType(String),
    /// An application/dtmf-relay body with no `Signal=` line.
    #[error("dtmf-relay body has no Signal line")]
    NoSignal,
    /// A signal value that is not a DTMF key.
    #[error("unrecognised DTMF signal {0:?}")]
    BadSignal(String),
}

/// The keys by their event number (RFC 4733 §3.2), which some phones send as the signal.
const KEYS: [char; 16] = [
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '*', '#', 'A', 'B', 'C', 'D',
];

/// A key written as itself, in either case.
fn key(c: char) -> Option<char> {
    let upper = c.to_ascii_uppercase();
    KEYS.contains(&upper).then_some(upper)
}

/// Extracts the digit from a SIP INFO request carrying DTMF.
///
/// Accepts `application/dtmf-relay` (`Signal=5\r\nDuration=160\r\n`; keys are
/// case-insensitive and spaces around `=` are allowed) and `application/dtmf`
/// (a body of just the digit). The content type is compared case-insensitively
/// and any parameters after `;` are ignored. Signals may be 0-9, *, #, A-D
/// (either case) or the event numbers 10-15, which some phones send for
/// *, #, A-D.
pub fn parse_info(content_type: &str, body: &[u8]) -> Result<char, InfoError> {
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    let relay = if media_type.eq_ignore_ascii_case("application/dtmf-relay") {
        true
    } else if media_type.eq_ignore_ascii_case("application/dtmf") {
        false
    } else {
        return Err(InfoError::UnsupportedContentType(content_type.to_string()));
    };
    let text = std::str::from_utf8(body)
        .map_err(|_| InfoError::BadSignal(String::from_utf8_lossy(body).into_owned()))?;

    if !relay {
        return parse_signal(text.trim());
    }
    for line in text.lines() {
        if let Some((key, value)) = line.split_once('=') {
            if key.trim().eq_ignore_ascii_case("signal") {
                return parse_signal(value.trim());
            }
        }
    }
    Err(InfoError::NoSignal)
}

/// One signal value from an INFO body: a single key, or an event number 0..=15.
fn parse_signal(value: &str) -> Result<char, InfoError> {
    let mut chars = value.chars();
    let digit = match (chars.next(), chars.next()) {
        (Some(c), None) => key(c),
        _ => value
            .parse::<usize>()
            .ok()
            .and_then(|n| KEYS.get(n).copied()),
    };
    digit.ok_or_else(|| InfoError::BadSignal(value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_dtmf_relay() {
        let ct = "application/dtmf-relay";
        assert_eq!(parse_info(ct, b"Signal=5\r\nDuration=160\r\n"), Ok('5'));
        assert_eq!(parse_info(ct, b"Signal= *\r\nDuration= 100\r\n"), Ok('*'));
        assert_eq!(parse_info(ct, b"signal = #\nduration=250"), Ok('#'));
        assert_eq!(parse_info(ct, b"Duration=160\r\nSIGNAL=10\r\n"), Ok('*'));
        assert_eq!(parse_info(ct, b"Signal=11"), Ok('#'));
        assert_eq!(parse_info(ct, b"Signal=b"), Ok('B'));
        assert_eq!(parse_info(ct, b"Signal=D\r\n"), Ok('D'));
        assert_eq!(
            parse_info("Application/DTMF-Relay; charset=utf-8", b"Signal=0"),
            Ok('0')
        );
        assert_eq!(
            parse_info(ct, b"Duration=160\r\n"),
            Err(InfoError::NoSignal)
        );
        assert_eq!(parse_info(ct, b""), Err(InfoError::NoSignal));
        assert_eq!(
            parse_info(ct, b"Signal=16"),
            Err(InfoError::BadSignal("16".into()))
        );
        assert_eq!(
            parse_info(ct, b"Signal=x"),
            Err(InfoError::BadSignal("x".into()))
        );
        assert_eq!(
            parse_info(ct, b"Signal=\r\n"),
            Err(InfoError::BadSignal(String::new()))
        );
        assert!(matches!(
            parse_info(ct, b"Signal=\xFF"),
            Err(InfoError::BadSignal(_))
        ));
    }

    #[test]
    fn info_dtmf_and_other_types() {
        assert_eq!(parse_info("application/dtmf", b"5"), Ok('5'));
        assert_eq!(parse_info("APPLICATION/DTMF", b" #\r\n"), Ok('#'));
        assert_eq!(parse_info(" application/dtmf ;x=y", b"11"), Ok('#'));
        assert_eq!(
            parse_info("application/dtmf", b"55"),
            Err(InfoError::BadSignal("55".into()))
        );
        assert_eq!(
            parse_info("application/sdp", b"Signal=5"),
            Err(InfoError::UnsupportedContentType("application/sdp".into()))
        );
        let err = parse_info("text/plain", b"5").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsupported DTMF content type \"text/plain\""
        );
    }
}
