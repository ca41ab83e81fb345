//! The one reading of Via, CSeq and header parameters (RFC 3261 §20, §25.1).
//!
//! The message checks ([`super::message`]) and the transaction keys
//! ([`super::transaction`]) both read these headers, and they must read them alike: a Via
//! that the checks let through but the transaction layer splits differently would key a
//! request to the wrong transaction, or to none. Where the two used to disagree, this
//! module takes the stricter reading: parameters respect quoted strings (a `;` or `,`
//! inside quotes separates nothing), and a CSeq number must be below 2^31 (§8.1.1.5).
//!
//! Lookup of headers in a parsed message stays with the callers; this is text in, parts
//! out, with no allocation.

use std::net::{IpAddr, Ipv6Addr};

/// Why a header value was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("sent-protocol is not SIP/2.0/<transport> in {0:?}")]
    Protocol(String),
    #[error("invalid sent-by {0:?}")]
    SentBy(String),
    #[error("CSeq is not <number> <method>: {0:?}")]
    CSeq(String),
    #[error("CSeq number {0:?} is not below 2^31")]
    CSeqNumber(String),
}

/// One via-parm (`SIP/2.0/UDP host:port;branch=…;rport`), borrowed from the header value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Via<'a> {
    /// As sent (`UDP`, `tcp`, …): compare it case-insensitively.
    pub transport: &'a str,
    /// As sent; an IPv6 reference keeps its brackets.
    pub host: &'a str,
    pub port: Option<u16>,
    /// The first non-empty `branch`.
    pub branch: Option<&'a str>,
    /// `Some(None)` for a bare `rport` (RFC 3581 asks us to fill it in).
    pub rport: Option<Option<u16>>,
    pub received: Option<&'a str>,
}

impl Via<'_> {
    /// `host:port` as transactions match it (§17.2.3): a lower-cased host, a canonical IP
    /// literal and the transport's default port filled in (§18.2.1, §19.1.2: 5061 for TLS,
    /// 5060 otherwise), so equivalent spellings of one sender match.
    pub fn normalized_sent_by(&self) -> String {
        let tls = self.transport.eq_ignore_ascii_case("TLS");
        let port = self.port.unwrap_or(if tls { 5061 } else { 5060 });
        let host = match self.host.strip_prefix('[') {
            Some(v6) => {
                let v6 = v6.trim_end_matches(']');
                match v6.parse::<Ipv6Addr>() {
                    Ok(ip) => format!("[{ip}]"),
                    Err(_) => self.host.to_ascii_lowercase(),
                }
            }
            None => match self.host.parse::<IpAddr>() {
                Ok(ip) => ip.to_string(),
                Err(_) => self.host.to_ascii_lowercase(),
            },
        };
        format!("{host}:{port}")
    }
}

/// Parses one via-parm. LWS around the `/`s must already be folded (the message scan does
/// that); LWS around `;` and `=` is allowed.
pub fn parse_via(value: &str) -> Result<Via<'_>, HeaderError> {
    let value = value.trim();
    let protocol_error = || HeaderError::Protocol(clip(value).to_string());
    let (protocol, rest) = value
        .split_once(char::is_whitespace)
        .ok_or_else(protocol_error)?;
    let mut proto = protocol.splitn(3, '/');
    let transport = match (proto.next(), proto.next(), proto.next()) {
        (Some(name), Some("2.0"), Some(transport))
            if name.eq_ignore_ascii_case("SIP") && is_token(transport) =>
        {
            transport
        }
        _ => return Err(protocol_error()),
    };
    let mut pieces = split_unquoted(rest.trim(), ';');
    let sent_by = pieces.next().unwrap_or_default().trim();
    let (host, port) =
        split_host_port(sent_by).ok_or_else(|| HeaderError::SentBy(clip(sent_by).to_string()))?;
    let mut via = Via {
        transport,
        host,
        port,
        branch: None,
        rport: None,
        received: None,
    };
    for (name, value) in pieces.map(param) {
        if name.eq_ignore_ascii_case("branch") {
            if via.branch.is_none() {
                via.branch = value.filter(|b| !b.is_empty());
            }
        } else if name.eq_ignore_ascii_case("rport") {
            if via.rport.is_none() {
                via.rport = Some(value.and_then(|v| v.parse().ok()));
            }
        } else if name.eq_ignore_ascii_case("received") && via.received.is_none() {
            via.received = value;
        }
    }
    Ok(via)
}

/// `host[:port]`: a hostname or IPv4 address, or an IPv6 reference in brackets.
fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let end = rest.find(']')?;
        rest[..end].parse::<Ipv6Addr>().ok()?;
        let port = match &rest[end + 1..] {
            "" => None,
            after => Some(after.strip_prefix(':')?.parse().ok()?),
        };
        (&s[..end + 2], port)
    } else {
        let (host, port) = match s.split_once(':') {
            Some((h, p)) => (h, Some(p.parse().ok()?)),
            None => (s, None),
        };
        let hostname = |c: char| c.is_ascii_alphanumeric() || ".-_".contains(c);
        if host.is_empty() || !host.chars().all(hostname) {
            return None;
        }
        (host, port)
    };
    Some((host, port))
}

/// Splits a header value into its first element and the rest (`a, b, c`): at the first
/// comma outside quoted strings and IPv6 brackets.
pub fn split_top_via(value: &str) -> (&str, Option<&str>) {
    let (mut quoted, mut escaped, mut bracketed) = (false, false, false);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '[' if !quoted => bracketed = true,
            ']' if !quoted => bracketed = false,
            ',' if !quoted && !bracketed => {
                return (value[..i].trim(), Some(value[i + 1..].trim()));
            }
            _ => {}
        }
    }
    (value.trim(), None)
}

/// The first via-parm of a Via header value.
pub fn top_via(value: &str) -> &str {
    split_top_via(value).0
}

/// `CSeq: 314159 INVITE` → (314159, "INVITE"): a number below 2^31 (§8.1.1.5) and a
/// method token, nothing else.
pub fn parse_cseq(value: &str) -> Result<(u32, &str), HeaderError> {
    let mut parts = value.split_whitespace();
    let (Some(number), Some(method), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(HeaderError::CSeq(clip(value).to_string()));
    };
    let Ok(n) = number.parse::<u32>() else {
        return Err(HeaderError::CSeq(clip(value).to_string()));
    };
    if n >= 1 << 31 {
        return Err(HeaderError::CSeqNumber(clip(number).to_string()));
    }
    if !is_token(method) {
        return Err(HeaderError::CSeq(clip(value).to_string()));
    }
    Ok((n, method))
}

/// The `tag` parameter of a From/To value (after the URI, outside angle brackets).
pub fn tag_param(value: &str) -> Option<&str> {
    header_param(value, "tag")
}

/// A header parameter of a name-addr / addr-spec value such as From, To or Contact: the
/// parameters after the `>` of a name-addr, or after the URI's first `;` in an addr-spec.
/// Names are case-insensitive; a parameter without a value reads as `""`; quotes around a
/// value are dropped.
pub fn header_param<'a>(value: &'a str, name: &str) -> Option<&'a str> {
    let params = match angle_span(value) {
        Some((_, end)) => &value[end + 1..],
        None => value,
    };
    split_unquoted(params, ';').skip(1).find_map(|p| {
        let (k, v) = param(p);
        k.eq_ignore_ascii_case(name)
            .then(|| v.unwrap_or_default().trim_matches('"'))
    })
}

/// One `name[=value]` parameter, both sides trimmed.
pub fn param(p: &str) -> (&str, Option<&str>) {
    match p.split_once('=') {
        Some((k, v)) => (k.trim(), Some(v.trim())),
        None => (p.trim(), None),
    }
}

/// Splits on `sep` outside double-quoted strings (in which a backslash escapes the next
/// character).
pub fn split_unquoted(value: &str, sep: char) -> impl Iterator<Item = &str> {
    let mut rest = Some(value);
    std::iter::from_fn(move || {
        let s = rest?;
        let (mut quoted, mut escaped) = (false, false);
        for (i, c) in s.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                c if c == sep && !quoted => {
                    rest = Some(&s[i + c.len_utf8()..]);
                    return Some(&s[..i]);
                }
                _ => {}
            }
        }
        rest = None;
        Some(s)
    })
}

/// The `<` and `>` around a name-addr's URI: the first `<` outside the quoted display name
/// and the first `>` after it. Not the last `>`: header parameters may hold angle brackets
/// of their own (`;+sip.instance="<urn:uuid:…>"`, RFC 5626, sent by baresip and most
/// desk phones).
pub fn angle_span(value: &str) -> Option<(usize, usize)> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '<' if !quoted => {
                let end = value[i..].find('>')? + i;
                return Some((i, end));
            }
            _ => {}
        }
    }
    None
}

/// RFC 3261 `token`.
pub fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
}

/// Keeps error texts short when a peer sends something huge.
fn clip(s: &str) -> &str {
    match s.char_indices().nth(80) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::{decode, first_header, DecodeContext, Decoded};
    use crate::sip::transaction::{client_request_key, server_key, TransactionError};
    use crate::sip::Transport;

    /// A Via whose quoted parameter holds `;` and `,` and what would be a second branch.
    const QUOTED_VIA: &str =
        "SIP/2.0/UDP 192.0.2.7:5070;x=\"a;branch=z9hG4bKfake, SIP/2.0/UDP evil;rport\";branch=z9hG4bKreal";

    #[test]
    fn via_parameters_respect_quoted_strings() {
        let (top, rest) = split_top_via(QUOTED_VIA);
        assert_eq!((top, rest), (QUOTED_VIA, None), "no split inside quotes");
        let via = parse_via(top).unwrap();
        assert_eq!(via.host, "192.0.2.7");
        assert_eq!(via.port, Some(5070));
        assert_eq!(via.branch, Some("z9hG4bKreal"));
        assert_eq!(via.rport, None, "the quoted `;rport` is no parameter");
        let two = format!("{QUOTED_VIA}, SIP/2.0/TCP h2;branch=z9hG4bK2");
        assert_eq!(
            split_top_via(&two),
            (QUOTED_VIA, Some("SIP/2.0/TCP h2;branch=z9hG4bK2"))
        );
        // An escaped quote does not end the quoted string.
        let escaped = "SIP/2.0/UDP h;x=\"a\\\";branch=z9hG4bKfake\";branch=z9hG4bKreal";
        assert_eq!(parse_via(escaped).unwrap().branch, Some("z9hG4bKreal"));
    }

    #[test]
    fn a_quoted_via_is_keyed_alike_by_the_check_and_the_transaction() {
        let msg = format!(
            "OPTIONS sip:8800@hotline.test SIP/2.0\r\nVia: {QUOTED_VIA}\r\n\
             From: <sip:a@x>;tag=1\r\nTo: <sip:8800@hotline.test>\r\nCall-ID: q1\r\n\
             CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        let ctx = DecodeContext {
            transport: Transport::Udp,
            source: "192.0.2.7:5070".parse().unwrap(),
            max_size: 16384,
            server: "Hotline-test",
        };
        let Decoded::Message(rsip::SipMessage::Request(req)) = decode(msg.as_bytes(), &ctx) else {
            panic!("the check refused {msg}")
        };
        let checked = parse_via(top_via(first_header(&req.headers, "Via").unwrap())).unwrap();
        let key = server_key(&req).unwrap();
        assert_eq!(Some(key.branch.as_str()), checked.branch);
        assert_eq!(key.sent_by, checked.normalized_sent_by());
        assert_eq!(key.sent_by, "192.0.2.7:5070");
        assert_eq!(client_request_key(&req).unwrap().branch, "z9hG4bKreal");
    }

    #[test]
    fn cseq_numbers_must_be_below_2_to_the_31() {
        assert_eq!(parse_cseq("2147483647 INVITE"), Ok((2147483647, "INVITE")));
        for n in ["2147483648", "4294967295"] {
            assert_eq!(
                parse_cseq(&format!("{n} INVITE")),
                Err(HeaderError::CSeqNumber(n.into()))
            );
            // The message check answers 400…
            let options = format!(
                "OPTIONS sip:8800@h SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bK1\r\n\
                 From: <sip:a@x>;tag=1\r\nTo: <sip:8800@h>\r\nCall-ID: c1\r\nCSeq: {n} OPTIONS\r\n\
                 Content-Length: 0\r\n\r\n"
            );
            let ctx = DecodeContext {
                transport: Transport::Udp,
                source: "192.0.2.7:5070".parse().unwrap(),
                max_size: 16384,
                server: "Hotline-test",
            };
            match decode(options.as_bytes(), &ctx) {
                Decoded::Rejected {
                    reply: Some((_, r)),
                    ..
                } => assert!(r.starts_with(b"SIP/2.0 400 "), "{n}"),
                other => panic!("{n}: {other:?}"),
            }
            // …and the transaction layer cannot key it: neither the response-side key nor
            // the RFC 2543 server key, which both need the CSeq.
            let req = rsip::Request::try_from(options.as_bytes()).unwrap();
            assert!(matches!(
                client_request_key(&req),
                Err(TransactionError::MalformedHeader { header: "CSeq", .. })
            ));
            let old = options.replace(";branch=z9hG4bK1", "");
            let req = rsip::Request::try_from(old.as_bytes()).unwrap();
            assert!(matches!(
                server_key(&req),
                Err(TransactionError::MalformedHeader { header: "CSeq", .. })
            ));
        }
        for bad in ["", "1", "1 INVITE x", "x INVITE", "-1 INVITE", "1 IN(VITE"] {
            assert!(
                matches!(parse_cseq(bad), Err(HeaderError::CSeq(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn parameters_with_and_without_values_and_any_case() {
        let to = "\"A;b\" <sip:a@x;tag=no>;TAG = yes;lr;Expires=\"60\"";
        assert_eq!(header_param(to, "tag"), Some("yes"));
        assert_eq!(header_param(to, "LR"), Some(""));
        assert_eq!(header_param(to, "expires"), Some("60"));
        assert_eq!(header_param(to, "maddr"), None);
        assert_eq!(header_param("sip:a@x;tag=1", "tag"), Some("1"));
        assert_eq!(
            header_param("<sip:a@x>;x=\"p;tag=no\";tag=2", "tag"),
            Some("2")
        );
        assert_eq!(param(" rport "), ("rport", None));
        assert_eq!(param("received = 1.2.3.4"), ("received", Some("1.2.3.4")));
        let via = parse_via("sip/2.0/udp h;RPORT;Branch=z9hG4bKb;ReCeIvEd=10.0.0.1").unwrap();
        assert_eq!(via.rport, Some(None));
        assert_eq!(via.branch, Some("z9hG4bKb"));
        assert_eq!(via.received, Some("10.0.0.1"));
        assert_eq!(
            parse_via("SIP/2.0/UDP h;rport=5071").unwrap().rport,
            Some(Some(5071))
        );
        // A valueless or empty branch is none; the first non-empty one counts.
        assert_eq!(parse_via("SIP/2.0/UDP h;branch").unwrap().branch, None);
        let v = parse_via("SIP/2.0/UDP h;branch=;branch=z9hG4bK1;branch=z9hG4bK2").unwrap();
        assert_eq!(v.branch, Some("z9hG4bK1"));
    }

    #[test]
    fn sent_by_forms() {
        let v = parse_via("SIP/2.0/TLS [2001:DB8:0::1]").unwrap();
        assert_eq!(v.host, "[2001:DB8:0::1]");
        assert_eq!(v.normalized_sent_by(), "[2001:db8::1]:5061");
        let v = parse_via("SIP/2.0/UDP PC33.Example.com:5070 ;branch=z9hG4bK1").unwrap();
        assert_eq!(v.normalized_sent_by(), "pc33.example.com:5070");
        for bad in [
            "SIP/2.0/UDP",
            "HTTP/1.1 host",
            "SIP/2.0/UDP host:99999",
            "SIP/2.0/UDP [::1",
            "SIP/2.0/UDP [host]:5060",
            "SIP/2.0/UDP [::1]x",
            "SIP/2.0/UDP a:b:c",
            "SIP/2.0/UDP ;branch=z9hG4bK1",
            "SIP/2.0/ UDP host",
            "SIP/2.0/UDP/X host",
            "SIP/2.0/UDP ho st",
        ] {
            assert!(parse_via(bad).is_err(), "{bad:?}");
        }
    }
}
