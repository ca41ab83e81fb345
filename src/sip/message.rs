//! Turning bytes from the wire into checked `rsip` messages, and building responses.
//!
//! `rsip` parses well-formed messages, but the hotline faces the open network: scanners,
//! broken phones, truncated datagrams. So before `rsip` sees a message we scan it ourselves,
//! leniently and without panicking, to
//! * expand compact header names (`v:`, `i:` …) and unfold continuation lines, which `rsip`
//!   does not understand;
//! * apply `Content-Length` (RFC 3261 §18.3): extra bytes are cut, a short body is an error;
//! * reject what a server must reject — missing mandatory headers, a CSeq that does not match
//!   the method, control characters, oversize messages — with a response built from the raw
//!   header lines, so that even a message `rsip` cannot parse gets its 400 (or 505/501) as long
//!   as its Via tells us where to send it. Anything we cannot route is dropped and logged.

use super::headers::{
    angle_span, is_token, parse_cseq, parse_via, split_top_via, split_unquoted, top_via, Via,
};
use super::Transport;
use bytes::Bytes;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

// Header parameters are read as the transaction layer reads them (one parser); these two
// stay reachable here for the call flow and the benchmarks.
pub use super::headers::{header_param, tag_param};

/// The request methods `rsip` knows. Any other well-formed method token gets 501.
const KNOWN_METHODS: &[&str] = &[
    "ACK",
    "BYE",
    "CANCEL",
    "INFO",
    "INVITE",
    "MESSAGE",
    "NOTIFY",
    "OPTIONS",
    "PRACK",
    "PUBLISH",
    "REFER",
    "REGISTER",
    "SUBSCRIBE",
    "UPDATE",
];

/// Where a message came from and the limits that apply to it.
#[derive(Clone, Copy, Debug)]
pub struct DecodeContext<'a> {
    pub transport: Transport,
    pub source: SocketAddr,
    pub max_size: usize,
    /// Value of the `Server` header in error responses.
    pub server: &'a str,
}

/// The outcome of decoding one message.
#[derive(Debug)]
pub enum Decoded {
    Message(rsip::SipMessage),
    /// Not accepted. `reply` is an error response and where to send it, when the message
    /// was a routable request; `None` means the message is dropped.
    Rejected {
        reason: String,
        reply: Option<(SocketAddr, Bytes)>,
    },
}

/// One header line after unfolding, with its canonical (long-form) name.
#[derive(Debug, Clone)]
struct RawHeader<'a> {
    name: &'a str,
    value: String,
}

/// What the lenient scan found.
struct Scanned<'a> {
    start_line: &'a str,
    headers: Vec<RawHeader<'a>>,
    body: &'a [u8],
    /// The problem that makes the message unacceptable, if any (first one found).
    problem: Option<String>,
}

/// Decodes one whole message (a UDP datagram, or one message framed out of a TCP stream).
pub fn decode(data: &[u8], ctx: &DecodeContext<'_>) -> Decoded {
    let scanned = match scan(data) {
        Ok(s) => s,
        Err(reason) => {
            return Decoded::Rejected {
                reason,
                reply: None,
            }
        }
    };
    let mut problem = scanned.problem.clone();
    if data.len() > ctx.max_size {
        problem = Some(format!(
            "message of {} bytes exceeds the {}-byte limit",
            data.len(),
            ctx.max_size
        ));
    }

    let start = scanned.start_line;
    if start.starts_with("SIP/") {
        // A response: nobody to complain to, so anything wrong means drop.
        if let Some(p) = problem {
            return Decoded::Rejected {
                reason: format!("malformed response: {p}"),
                reply: None,
            };
        }
        return finish(&scanned, ctx, None);
    }

    let parts: Vec<&str> = start.split(' ').collect();
    // An ACK is never answered (RFC 3261 §17.2.1): whatever is wrong with it, it is dropped.
    let is_ack = parts.first() == Some(&"ACK");
    let reject = |code: u16, reason: &str, detail: String| Decoded::Rejected {
        reply: if is_ack {
            None
        } else {
            error_reply(&scanned.headers, code, reason, ctx)
        },
        reason: detail,
    };
    if parts.len() != 3 || !is_token(parts[0]) || parts[1].is_empty() {
        return reject(
            400,
            "Bad Request",
            format!("malformed request line {:?}", truncate(start)),
        );
    }
    let method = parts[0];
    if let Some(p) = problem {
        return reject(400, "Bad Request", p);
    }
    if !parts[2].eq_ignore_ascii_case("SIP/2.0") {
        return reject(
            505,
            "Version Not Supported",
            format!("unsupported version {:?}", truncate(parts[2])),
        );
    }
    for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
        if !scanned.headers.iter().any(|h| h.name == name) {
            return reject(400, "Bad Request", format!("missing {name} header"));
        }
    }
    for name in ["From", "To", "Call-ID", "CSeq"] {
        if scanned.headers.iter().filter(|h| h.name == name).count() > 1 {
            return reject(400, "Bad Request", format!("more than one {name} header"));
        }
    }
    let call_id = header(&scanned.headers, "Call-ID").unwrap_or_default();
    if !is_call_id(call_id) {
        return reject(
            400,
            "Bad Request",
            format!("invalid Call-ID {:?}", truncate(call_id)),
        );
    }
    for name in ["From", "To"] {
        let value = header(&scanned.headers, name).unwrap_or_default();
        if let Err(why) = check_name_addr(value) {
            return reject(
                400,
                "Bad Request",
                format!("invalid {name} {:?}: {why}", truncate(value)),
            );
        }
    }
    let cseq = header(&scanned.headers, "CSeq").unwrap_or_default();
    match parse_cseq(cseq) {
        Ok((_, m)) if m == method => {}
        _ => {
            return reject(
                400,
                "Bad Request",
                format!("CSeq {:?} does not match method {method}", truncate(cseq)),
            )
        }
    }
    if !KNOWN_METHODS.contains(&method) {
        return reject(
            501,
            "Not Implemented",
            format!("unknown method {}", truncate(method)),
        );
    }
    if let Some(via) = header(&scanned.headers, "Via") {
        if parse_via(top_via(via)).is_err() {
            return Decoded::Rejected {
                reason: "unparseable Via".into(),
                reply: None,
            };
        }
    }
    let reply_400 = || error_reply(&scanned.headers, 400, "Bad Request", ctx);
    finish(&scanned, ctx, Some(&reply_400))
}

/// Rebuilds a canonical message and hands it to `rsip`.
fn finish(
    scanned: &Scanned<'_>,
    ctx: &DecodeContext<'_>,
    reply: Option<&dyn Fn() -> Option<(SocketAddr, Bytes)>>,
) -> Decoded {
    let mut canonical = Vec::with_capacity(
        scanned.start_line.len() + 64 * scanned.headers.len() + scanned.body.len(),
    );
    // The version is case-insensitive (`sip/2.0`, RFC 3261 §7.1); written canonically.
    match scanned.start_line.rsplit_once(' ') {
        Some((head, version))
            if !scanned.start_line.starts_with("SIP/")
                && version.eq_ignore_ascii_case("SIP/2.0") =>
        {
            canonical.extend_from_slice(head.as_bytes());
            canonical.extend_from_slice(b" SIP/2.0");
        }
        _ => canonical.extend_from_slice(scanned.start_line.as_bytes()),
    }
    canonical.extend_from_slice(b"\r\n");
    for h in &scanned.headers {
        canonical.extend_from_slice(h.name.as_bytes());
        canonical.extend_from_slice(b": ");
        canonical.extend_from_slice(h.value.as_bytes());
        canonical.extend_from_slice(b"\r\n");
    }
    canonical.extend_from_slice(b"\r\n");
    canonical.extend_from_slice(scanned.body);
    // The start line already says which grammar applies; `SipMessage::try_from` would try
    // the response grammar first and format an error before trying the request one.
    let parsed = if scanned.start_line.starts_with("SIP/") {
        rsip::Response::try_from(canonical.as_slice()).map(rsip::SipMessage::Response)
    } else {
        rsip::Request::try_from(canonical.as_slice()).map(rsip::SipMessage::Request)
    };
    match parsed {
        Ok(msg) => Decoded::Message(msg),
        Err(e) => Decoded::Rejected {
            reason: format!(
                "unparseable ({}) from {}",
                truncate(&e.to_string()),
                ctx.source
            ),
            reply: reply.and_then(|f| f()),
        },
    }
}

/// Lenient scan of start line, headers and body. Errs only when the bytes are not a SIP
/// message at all (then nothing can be answered).
fn scan(data: &[u8]) -> Result<Scanned<'_>, String> {
    let (head, rest, complete) = match find(data, b"\r\n\r\n") {
        Some(i) => (&data[..i], &data[i + 4..], true),
        None => (data, &data[data.len()..], false),
    };
    let text = std::str::from_utf8(head).map_err(|_| "header section is not UTF-8".to_string())?;
    let mut lines = text.split("\r\n");
    let start_line = lines.next().unwrap_or_default();
    if start_line.is_empty() || start_line.len() > 4096 {
        return Err("no start line".into());
    }
    if !start_line.starts_with("SIP/") && !start_line.to_ascii_uppercase().contains(" SIP/") {
        return Err(format!("not a SIP message: {:?}", truncate(start_line)));
    }
    let mut problem = None;
    let mut note = |p: String| {
        if problem.is_none() {
            problem = Some(p)
        }
    };
    if !complete {
        note("message truncated: no empty line after the headers".into());
    }
    if start_line.chars().any(|c| c.is_control()) {
        note("control character in the start line".into());
    }
    let mut headers: Vec<RawHeader<'_>> = Vec::new();
    for line in lines {
        if line.chars().any(|c| c.is_control() && c != '\t') {
            note("control character in a header".into());
            continue;
        }
        if line.starts_with([' ', '\t']) {
            match headers.last_mut() {
                Some(h) => {
                    h.value.push(' ');
                    h.value.push_str(line.trim());
                }
                None => note("continuation line before any header".into()),
            }
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            note(format!("header line without a colon: {:?}", truncate(line)));
            continue;
        };
        let name = name.trim_end();
        if !is_token(name) {
            note(format!("invalid header name {:?}", truncate(name)));
            continue;
        }
        let name = canonical_name(name);
        let value = if name == "Via" {
            // RFC 3261 allows LWS around the `/` of `SIP / 2.0 / UDP` (RFC 4475 `wsinv`);
            // folded here so that every later reader sees `SIP/2.0/UDP`.
            fold_slash_space(value.trim())
        } else {
            value.trim().to_string()
        };
        headers.push(RawHeader { name, value });
    }
    let mut body = rest;
    let lengths: Vec<&RawHeader<'_>> = headers
        .iter()
        .filter(|h| h.name == "Content-Length")
        .collect();
    if lengths.len() > 1 {
        note("more than one Content-Length".into());
    }
    if let Some(h) = lengths.first() {
        match h.value.parse::<usize>() {
            Ok(n) if n <= body.len() => body = &body[..n],
            Ok(n) => note(format!(
                "Content-Length {n} but only {} body bytes",
                body.len()
            )),
            Err(_) => note(format!("invalid Content-Length {:?}", truncate(&h.value))),
        }
    }
    Ok(Scanned {
        start_line,
        headers,
        body,
        problem,
    })
}

/// `SIP / 2.0 / UDP host` -> `SIP/2.0/UDP host`: white space on either side of a `/`
/// goes. A Via has no other `/` outside quoted parameters, which never hold one here.
fn fold_slash_space(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '/' {
            while out.ends_with([' ', '\t']) {
                out.pop();
            }
            out.push('/');
            while chars.peek().is_some_and(|c| *c == ' ' || *c == '\t') {
                chars.next();
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Builds an error response from raw header lines; `None` if no Via can route it.
fn error_reply(
    headers: &[RawHeader<'_>],
    code: u16,
    reason: &str,
    ctx: &DecodeContext<'_>,
) -> Option<(SocketAddr, Bytes)> {
    let vias: Vec<&str> = headers
        .iter()
        .filter(|h| h.name == "Via")
        .map(|h| h.value.as_str())
        .collect();
    let first = vias.first()?;
    let (top, rest) = split_top_via(first);
    let via = parse_via(top).ok()?;
    let dest = response_destination(&via, ctx.source, ctx.transport);
    let mut out = String::with_capacity(512);
    let _ = write!(out, "SIP/2.0 {code} {reason}\r\n");
    let _ = write!(out, "Via: {}", stamp_via(top, &via, ctx.source));
    if let Some(rest) = rest {
        let _ = write!(out, ", {rest}");
    }
    out.push_str("\r\n");
    for v in &vias[1..] {
        let _ = write!(out, "Via: {v}\r\n");
    }
    for name in ["From", "To", "Call-ID", "CSeq"] {
        if let Some(v) = header(headers, name) {
            let _ = write!(out, "{name}: {v}");
            if name == "To" && tag_param(v).is_none() {
                out.push_str(";tag=hl-err");
            }
            out.push_str("\r\n");
        }
    }
    let _ = write!(out, "Server: {}\r\nContent-Length: 0\r\n\r\n", ctx.server);
    Some((dest, Bytes::from(out)))
}

/// Where a response to a request with this top Via goes (RFC 3261 §18.2.2, RFC 3581).
///
/// Over TCP the response follows the connection the request came on, i.e. the source.
/// Over UDP: with `rport`, the source address and port; otherwise the source address (the
/// `received` address) and the port in sent-by. `maddr` is deliberately ignored: answering
/// to an address the sender chose would make the hotline a reflector for attacks.
pub fn response_destination(via: &Via<'_>, source: SocketAddr, transport: Transport) -> SocketAddr {
    match transport {
        Transport::Tcp | Transport::Tls => source,
        Transport::Udp => {
            if via.rport.is_some() {
                source
            } else {
                SocketAddr::new(source.ip(), via.port.unwrap_or(5060))
            }
        }
    }
}

/// The top Via with `received` and `rport` filled in (RFC 3261 §18.2.1, RFC 3581 §4).
pub fn stamp_via(top: &str, via: &Via<'_>, source: SocketAddr) -> String {
    let mut out = String::with_capacity(top.len() + 40);
    let host_is_source = via
        .host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .map(|ip| ip == source.ip())
        .unwrap_or(false);
    for (i, p) in split_unquoted(top.trim(), ';').enumerate() {
        if i > 0 {
            let key = p.split('=').next().unwrap_or_default().trim();
            if key.eq_ignore_ascii_case("rport") || key.eq_ignore_ascii_case("received") {
                continue;
            }
            out.push(';');
        }
        out.push_str(p);
    }
    if via.rport.is_some() || !host_is_source {
        let _ = write!(out, ";received={}", source.ip());
    }
    if via.rport.is_some() {
        let _ = write!(out, ";rport={}", source.port());
    }
    out
}

/// The URI inside a name-addr (`"Bob" <sip:bob@host>;tag=1` -> `sip:bob@host`).
pub fn addr_uri(value: &str) -> &str {
    match angle_span(value) {
        Some((a, b)) => &value[a + 1..b],
        None => value.split(';').next().unwrap_or_default().trim(),
    }
}

/// The user part of a SIP URI string (`sip:1001@host;x` -> `1001`).
pub fn uri_user(uri: &str) -> Option<&str> {
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))?;
    let (user, _) = rest.split_once('@')?;
    Some(user.split(':').next().unwrap_or(user))
}

/// Compact forms (RFC 3261 §7.3.3 and extensions) and canonical spelling of common names.
fn canonical_name(name: &str) -> &str {
    const NAMES: &[(&str, &str)] = &[
        ("v", "Via"),
        ("f", "From"),
        ("t", "To"),
        ("i", "Call-ID"),
        ("m", "Contact"),
        ("l", "Content-Length"),
        ("c", "Content-Type"),
        ("e", "Content-Encoding"),
        ("k", "Supported"),
        ("s", "Subject"),
        ("o", "Event"),
        ("via", "Via"),
        ("from", "From"),
        ("to", "To"),
        ("call-id", "Call-ID"),
        ("cseq", "CSeq"),
        ("contact", "Contact"),
        ("content-length", "Content-Length"),
        ("content-type", "Content-Type"),
        ("max-forwards", "Max-Forwards"),
        ("expires", "Expires"),
        ("authorization", "Authorization"),
    ];
    NAMES
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| *v)
        .unwrap_or(name)
}

fn header<'a>(headers: &'a [RawHeader<'_>], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|h| h.name == name)
        .map(|h| h.value.as_str())
}

/// RFC 3261 `callid = word [ "@" word ]`. An empty or spaced Call-ID cannot identify a
/// dialog, a journal entry or a file name, so it is refused rather than guessed at.
pub fn is_call_id(s: &str) -> bool {
    let word = |w: &str| {
        !w.is_empty()
            && w.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~()<>:\\\"/[]?{}".contains(&b))
    };
    match s.split_once('@') {
        Some((a, b)) => word(a) && word(b),
        None => word(s),
    }
}

/// From and To (RFC 3261 §20.20, §20.39): a name-addr (`["name"] <URI>`) or an addr-spec,
/// with a URI that has a scheme. Refused: empty values, an unterminated quoted display
/// name, an unclosed `<`, and bare words such as `To: garbage`.
pub fn check_name_addr(value: &str) -> Result<(), &'static str> {
    if value.is_empty() {
        return Err("empty");
    }
    let mut quoted = false;
    let mut escaped = false;
    for c in value.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            _ => {}
        }
    }
    if quoted {
        return Err("unterminated quoted string");
    }
    let uri = match angle_span(value) {
        Some((a, b)) => &value[a + 1..b],
        None if value.contains('<') => return Err("unclosed <"),
        None => {
            if value.starts_with('"') {
                return Err("display name without <URI>");
            }
            value.split(';').next().unwrap_or_default().trim()
        }
    };
    match uri.split_once(':') {
        Some((scheme, rest))
            if !rest.is_empty()
                && !scheme.is_empty()
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
                && scheme.as_bytes()[0].is_ascii_alphabetic() =>
        {
            Ok(())
        }
        _ => Err("no URI with a scheme"),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Keeps log lines short when a peer sends something huge.
fn truncate(s: &str) -> &str {
    match s.char_indices().nth(80) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Builder for responses to a parsed request: copies Via (stamped with received/rport),
/// From, To (adding our tag), Call-ID and CSeq, then the extra headers and the body.
pub struct ResponseBuilder<'a> {
    request: &'a rsip::Request,
    source: SocketAddr,
    code: u16,
    reason: &'a str,
    to_tag: Option<&'a str>,
    extra: String,
    body: Option<(&'a str, &'a [u8])>,
}

impl<'a> ResponseBuilder<'a> {
    pub fn new(request: &'a rsip::Request, source: SocketAddr, code: u16, reason: &'a str) -> Self {
        ResponseBuilder {
            request,
            source,
            code,
            reason,
            to_tag: None,
            extra: String::new(),
            body: None,
        }
    }

    /// Adds `;tag=` to To unless the request already carries one (in-dialog requests).
    pub fn to_tag(mut self, tag: &'a str) -> Self {
        self.to_tag = Some(tag);
        self
    }

    pub fn header(mut self, name: &str, value: impl std::fmt::Display) -> Self {
        let _ = write!(self.extra, "{name}: {value}\r\n");
        self
    }

    pub fn body(mut self, content_type: &'a str, body: &'a [u8]) -> Self {
        self.body = Some((content_type, body));
        self
    }

    pub fn build(self) -> Bytes {
        use rsip::headers::UntypedHeader;
        let mut out = String::with_capacity(512 + self.extra.len());
        let _ = write!(out, "SIP/2.0 {} {}\r\n", self.code, self.reason);
        let makes_dialog =
            self.request.method == rsip::Method::Invite && (101..300).contains(&self.code);
        let mut first_via = true;
        for h in self.request.headers.iter() {
            match h {
                rsip::Header::Via(v) => {
                    let value = v.value();
                    if first_via {
                        first_via = false;
                        let (top, rest) = split_top_via(value);
                        let stamped = match parse_via(top) {
                            Ok(info) => stamp_via(top, &info, self.source),
                            Err(_) => top.to_string(),
                        };
                        let _ = write!(out, "Via: {stamped}");
                        if let Some(rest) = rest {
                            let _ = write!(out, ", {rest}");
                        }
                        out.push_str("\r\n");
                    } else {
                        let _ = write!(out, "Via: {value}\r\n");
                    }
                }
                rsip::Header::From(v) => {
                    let _ = write!(out, "From: {}\r\n", v.value());
                }
                rsip::Header::To(v) => {
                    let value = v.value();
                    match self.to_tag {
                        Some(tag) if tag_param(value).is_none() => {
                            let _ = write!(out, "To: {value};tag={tag}\r\n");
                        }
                        _ => {
                            let _ = write!(out, "To: {value}\r\n");
                        }
                    }
                }
                rsip::Header::CallId(v) => {
                    let _ = write!(out, "Call-ID: {}\r\n", v.value());
                }
                rsip::Header::CSeq(v) => {
                    let _ = write!(out, "CSeq: {}\r\n", v.value());
                }
                // A response that makes a dialog (18x, 2xx to INVITE) carries the proxies'
                // Record-Route back, in order, so the caller routes its ACK and BYE through
                // them too (RFC 3261 §12.1.1).
                rsip::Header::RecordRoute(v) if makes_dialog => {
                    let _ = write!(out, "Record-Route: {}\r\n", v.value());
                }
                _ => {}
            }
        }
        out.push_str(&self.extra);
        match self.body {
            Some((ctype, body)) => {
                let _ = write!(
                    out,
                    "Content-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                let mut bytes = out.into_bytes();
                bytes.extend_from_slice(body);
                Bytes::from(bytes)
            }
            None => {
                out.push_str("Content-Length: 0\r\n\r\n");
                Bytes::from(out)
            }
        }
    }
}

/// First value of a header in a parsed message, as text.
pub fn first_header<'a>(headers: &'a rsip::Headers, name: &str) -> Option<&'a str> {
    use rsip::headers::UntypedHeader;
    headers.iter().find_map(|h| match (h, name) {
        (rsip::Header::Via(v), "Via") => Some(v.value()),
        (rsip::Header::From(v), "From") => Some(v.value()),
        (rsip::Header::To(v), "To") => Some(v.value()),
        (rsip::Header::CallId(v), "Call-ID") => Some(v.value()),
        (rsip::Header::CSeq(v), "CSeq") => Some(v.value()),
        (rsip::Header::Contact(v), "Contact") => Some(v.value()),
        (rsip::Header::Expires(v), "Expires") => Some(v.value()),
        (rsip::Header::Authorization(v), "Authorization") => Some(v.value()),
        (rsip::Header::ContentType(v), "Content-Type") => Some(v.value()),
        (rsip::Header::Require(v), "Require") => Some(v.value()),
        (rsip::Header::Accept(v), "Accept") => Some(v.value()),
        (rsip::Header::Other(k, v), n) if k.eq_ignore_ascii_case(n) => Some(v.as_str()),
        _ => None,
    })
}

/// All values of a header without a typed form in `rsip` (Path, say), in order, split at
/// top-level commas.
pub fn header_values(headers: &rsip::Headers, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for h in headers.iter() {
        if let rsip::Header::Other(k, v) = h {
            if !k.eq_ignore_ascii_case(name) {
                continue;
            }
            let mut rest = Some(v.as_str());
            while let Some(r) = rest {
                let (first, tail) = split_top_via(r);
                if !first.is_empty() {
                    out.push(first.trim().to_string());
                }
                rest = tail;
            }
        }
    }
    out
}

/// All values of the Contact header(s), split at top-level commas.
pub fn contacts(headers: &rsip::Headers) -> Vec<String> {
    use rsip::headers::UntypedHeader;
    let mut out = Vec::new();
    for h in headers.iter() {
        if let rsip::Header::Contact(c) = h {
            let mut rest = Some(c.value());
            while let Some(r) = rest {
                let (first, tail) = split_top_via(r);
                if !first.is_empty() {
                    out.push(first.to_string());
                }
                rest = tail;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn name_addr_with_angle_brackets_in_its_parameters() {
        let c = "<sip:1001-0x5@127.0.0.1:25070>;expires=600;+sip.instance=\"<urn:uuid:d1aa>\"";
        assert_eq!(super::addr_uri(c), "sip:1001-0x5@127.0.0.1:25070");
        assert_eq!(super::header_param(c, "expires"), Some("600"));
        assert_eq!(
            super::header_param(c, "+sip.instance"),
            Some("<urn:uuid:d1aa>")
        );
        let q = "\"A <B>\" <sip:a@h>;tag=1";
        assert_eq!(super::addr_uri(q), "sip:a@h");
        assert_eq!(super::header_param(q, "tag"), Some("1"));
    }

    use super::*;

    /// A 2xx or 18x to an INVITE carries the request's Record-Route, every value in order;
    /// 100 Trying and a refusal do not (they make no dialog).
    #[test]
    fn a_dialog_making_response_copies_record_route() {
        let invite = "INVITE sip:8800@hotline.test SIP/2.0\r\n\
            Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\r\n\
            Record-Route: <sip:edge.test;lr;ftag=1>\r\n\
            Record-Route: <sip:10.0.0.1;lr>\r\n\
            From: <sip:a@x>;tag=1\r\nTo: <sip:8800@hotline.test>\r\nCall-ID: rr@x\r\n\
            CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
        let rsip::SipMessage::Request(req) = rsip::SipMessage::try_from(invite).unwrap() else {
            panic!("a request")
        };
        let src: SocketAddr = "10.0.0.1:5060".parse().unwrap();
        let text = |code, reason| {
            String::from_utf8(
                ResponseBuilder::new(&req, src, code, reason)
                    .build()
                    .to_vec(),
            )
            .unwrap()
        };
        for (code, reason) in [(200, "OK"), (180, "Ringing")] {
            let r = text(code, reason);
            let rr =
                "Record-Route: <sip:edge.test;lr;ftag=1>\r\nRecord-Route: <sip:10.0.0.1;lr>\r\n";
            assert!(r.contains(rr), "{r}");
        }
        for (code, reason) in [(100, "Trying"), (486, "Busy Here")] {
            assert!(!text(code, reason).contains("Record-Route"));
        }
    }

    fn ctx() -> DecodeContext<'static> {
        DecodeContext {
            transport: Transport::Udp,
            source: "192.0.2.7:5070".parse().unwrap(),
            max_size: 16384,
            server: "Hotline-test",
        }
    }

    const OPTIONS: &str = "OPTIONS sip:8800@hotline.test SIP/2.0\r\n\
        Via: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK776;rport\r\n\
        Max-Forwards: 70\r\n\
        From: <sip:a@x>;tag=1\r\n\
        To: <sip:8800@hotline.test>\r\n\
        Call-ID: abc@x\r\n\
        CSeq: 1 OPTIONS\r\n\
        Content-Length: 0\r\n\r\n";

    fn reply_of(d: Decoded) -> (SocketAddr, String) {
        match d {
            Decoded::Rejected {
                reply: Some((addr, b)),
                ..
            } => (addr, String::from_utf8(b.to_vec()).unwrap()),
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    #[test]
    fn bad_call_id_from_and_to_get_400() {
        for (name, bad) in [
            ("Call-ID", "Call-ID: \r\n"),
            ("Call-ID", "Call-ID: a b\r\n"),
            ("Call-ID", "Call-ID: @x\r\n"),
            ("From", "From: \r\n"),
            ("From", "From: \"unterminated <sip:a@x>;tag=1\r\n"),
            ("From", "From: <sip:a@x;tag=1\r\n"),
            ("To", "To: garbage\r\n"),
        ] {
            let good = OPTIONS.lines().find(|l| l.starts_with(name)).unwrap();
            let msg = OPTIONS.replace(&format!("{good}\r\n"), bad);
            let (_, text) = reply_of(decode(msg.as_bytes(), &ctx()));
            assert!(text.starts_with("SIP/2.0 400 "), "{bad:?}: {text}");
        }
        for good in [
            "From: sip:a@x;tag=1\r\n",
            "From: \"A \\\" B\" <sip:a@x>;tag=1\r\n",
            "From: <tel:+79781234567>;tag=1\r\n",
        ] {
            let msg = OPTIONS.replace("From: <sip:a@x>;tag=1\r\n", good);
            assert!(
                matches!(decode(msg.as_bytes(), &ctx()), Decoded::Message(_)),
                "{good:?}"
            );
        }
    }

    #[test]
    fn an_ack_is_never_answered() {
        let ack = OPTIONS.replace("OPTIONS sip", "ACK sip");
        for bad in [
            ack.replace("CSeq: 1 OPTIONS", "CSeq: x ACK"),
            ack.replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE"),
            ack.replace("Call-ID: abc@x\r\n", ""),
        ] {
            match decode(bad.as_bytes(), &ctx()) {
                Decoded::Rejected { reply: None, .. } => {}
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn spaced_via_and_lower_case_version_are_accepted() {
        let msg = OPTIONS
            .replace("Via: SIP/2.0/UDP", "Via: SIP  /  2.0 /\tUDP")
            .replace("SIP/2.0\r\nVia", "sip/2.0\r\nVia");
        match decode(msg.as_bytes(), &ctx()) {
            Decoded::Message(rsip::SipMessage::Request(r)) => {
                let via = first_header(&r.headers, "Via").unwrap();
                assert!(via.starts_with("SIP/2.0/UDP 10.0.0.1:5070"), "{via}");
                assert_eq!(r.version, rsip::Version::V2);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn decodes_a_good_request() {
        match decode(OPTIONS.as_bytes(), &ctx()) {
            Decoded::Message(rsip::SipMessage::Request(r)) => {
                assert_eq!(r.method, rsip::Method::Options)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn compact_and_folded_headers_are_expanded() {
        let msg = "OPTIONS sip:8800@h SIP/2.0\r\nv: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\nf: <sip:a@x>\r\n ;tag=9\r\nt: <sip:8800@h>\r\ni: id1\r\nCSeq: 2 OPTIONS\r\nl: 0\r\n\r\n";
        match decode(msg.as_bytes(), &ctx()) {
            Decoded::Message(rsip::SipMessage::Request(r)) => {
                assert_eq!(first_header(&r.headers, "Call-ID"), Some("id1"));
                assert_eq!(first_header(&r.headers, "From"), Some("<sip:a@x> ;tag=9"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn content_length_cuts_extra_bytes_and_rejects_short_bodies() {
        let long = OPTIONS.replace("Content-Length: 0", "Content-Length: 3") + "abcdef";
        match decode(long.as_bytes(), &ctx()) {
            Decoded::Message(m) => assert_eq!(m.body(), b"abc"),
            other => panic!("{other:?}"),
        }
        let short = OPTIONS.replace("Content-Length: 0", "Content-Length: 10") + "abc";
        let (addr, text) = reply_of(decode(short.as_bytes(), &ctx()));
        assert!(text.starts_with("SIP/2.0 400 "), "{text}");
        assert_eq!(addr, "192.0.2.7:5070".parse().unwrap());
        assert!(text.contains(";received=192.0.2.7;rport=5070"), "{text}");
    }

    #[test]
    fn missing_mandatory_headers_get_400() {
        for name in ["From", "To", "Call-ID", "CSeq"] {
            let msg: String = OPTIONS
                .split("\r\n")
                .filter(|l| !l.starts_with(&format!("{name}:")))
                .collect::<Vec<_>>()
                .join("\r\n");
            let (_, text) = reply_of(decode(msg.as_bytes(), &ctx()));
            assert!(text.starts_with("SIP/2.0 400"), "{name}: {text}");
        }
        let no_via = OPTIONS.replace(
            "Via: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK776;rport\r\n",
            "",
        );
        assert!(matches!(
            decode(no_via.as_bytes(), &ctx()),
            Decoded::Rejected { reply: None, .. }
        ));
    }

    #[test]
    fn version_method_and_cseq_errors() {
        let v3 = OPTIONS.replacen("SIP/2.0\r\n", "SIP/3.0\r\n", 1);
        assert!(reply_of(decode(v3.as_bytes(), &ctx()))
            .1
            .starts_with("SIP/2.0 505"));
        let foo = OPTIONS
            .replacen("OPTIONS sip", "FOO sip", 1)
            .replace("1 OPTIONS", "1 FOO");
        assert!(reply_of(decode(foo.as_bytes(), &ctx()))
            .1
            .starts_with("SIP/2.0 501"));
        let mismatch = OPTIONS.replace("1 OPTIONS", "1 INVITE");
        assert!(reply_of(decode(mismatch.as_bytes(), &ctx()))
            .1
            .starts_with("SIP/2.0 400"));
    }

    #[test]
    fn nul_bytes_truncation_and_size() {
        let nul = OPTIONS.replace("Call-ID: abc@x", "Call-ID: abc\0x");
        assert!(reply_of(decode(nul.as_bytes(), &ctx()))
            .1
            .starts_with("SIP/2.0 400"));
        let truncated = &OPTIONS[..OPTIONS.find("Call-ID").unwrap()];
        assert!(reply_of(decode(truncated.as_bytes(), &ctx()))
            .1
            .starts_with("SIP/2.0 400"));
        let huge = OPTIONS.replace(
            "Max-Forwards: 70",
            &format!("X-Big: {}\r\nMax-Forwards: 70", "a".repeat(64 * 1024)),
        );
        assert!(reply_of(decode(huge.as_bytes(), &ctx()))
            .1
            .starts_with("SIP/2.0 400"));
    }

    #[test]
    fn garbage_and_ack_are_dropped_without_reply() {
        for g in [
            &b"\x00\x01\x02garbage"[..],
            b"",
            b"hello world\r\n\r\n",
            &[0xff; 300],
        ] {
            assert!(matches!(
                decode(g, &ctx()),
                Decoded::Rejected { reply: None, .. }
            ));
        }
        let ack = OPTIONS
            .replacen("OPTIONS sip", "ACK sip", 1)
            .replace("1 OPTIONS", "1 ACK")
            .replace("Call-ID: abc@x", "Call-ID: a\0b");
        assert!(matches!(
            decode(ack.as_bytes(), &ctx()),
            Decoded::Rejected { reply: None, .. }
        ));
    }

    #[test]
    fn via_parsing_and_destination() {
        let v = parse_via("SIP/2.0/UDP [2001:db8::1]:5080;branch=z9hG4bKx;rport").unwrap();
        assert_eq!(v.host, "[2001:db8::1]");
        assert_eq!(v.port, Some(5080));
        assert_eq!(v.rport, Some(None));
        let src: SocketAddr = "203.0.113.5:40000".parse().unwrap();
        assert_eq!(response_destination(&v, src, Transport::Udp), src);
        let v = parse_via("SIP/2.0/UDP pc33.example.com;branch=z9hG4bKx").unwrap();
        assert_eq!(
            response_destination(&v, src, Transport::Udp),
            "203.0.113.5:5060".parse().unwrap()
        );
        assert_eq!(
            stamp_via("SIP/2.0/UDP pc33.example.com;branch=z9hG4bKx", &v, src),
            "SIP/2.0/UDP pc33.example.com;branch=z9hG4bKx;received=203.0.113.5"
        );
        assert!(parse_via("SIP/2.0/UDP").is_err());
        assert!(parse_via("HTTP/1.1 host").is_err());
        assert!(parse_via("SIP/2.0/UDP host:99999").is_err());
    }

    #[test]
    fn param_helpers() {
        assert_eq!(tag_param("\"A;b\" <sip:a@x;tag=no>;tag=yes"), Some("yes"));
        assert_eq!(tag_param("<sip:a@x>"), None);
        assert_eq!(
            addr_uri("\"Bob\" <sip:bob@h:5060>;expires=60"),
            "sip:bob@h:5060"
        );
        assert_eq!(uri_user("sip:1001@h;transport=tcp"), Some("1001"));
        assert_eq!(parse_cseq("10 INVITE").ok(), Some((10, "INVITE")));
        assert_eq!(parse_cseq("4294967295 INVITE").ok(), None);
        assert_eq!(
            split_top_via("SIP/2.0/UDP a;branch=1, SIP/2.0/UDP b"),
            ("SIP/2.0/UDP a;branch=1", Some("SIP/2.0/UDP b"))
        );
    }

    #[test]
    fn response_builder_copies_dialog_headers() {
        let Decoded::Message(rsip::SipMessage::Request(req)) = decode(OPTIONS.as_bytes(), &ctx())
        else {
            panic!()
        };
        let bytes = ResponseBuilder::new(&req, ctx().source, 200, "OK")
            .to_tag("srv1")
            .header("Allow", "INVITE, ACK")
            .build();
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(text.starts_with("SIP/2.0 200 OK\r\n"));
        assert!(text.contains("To: <sip:8800@hotline.test>;tag=srv1\r\n"));
        assert!(text.contains(
            "Via: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK776;received=192.0.2.7;rport=5070\r\n"
        ));
        assert!(text.ends_with("Content-Length: 0\r\n\r\n"));
        assert!(rsip::Response::try_from(text).is_ok());
    }
}
