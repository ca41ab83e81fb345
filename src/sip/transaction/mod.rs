//! SIP transactions (RFC 3261 §17, with the RFC 6026 corrections) as sans-IO state machines.
//!
//! Each machine owns no socket, no task and no clock. The owner feeds it inputs (received
//! messages, responses from the TU) together with the current time, then drains
//! [`poll_output`](ServerInvite::poll_output) and arms a single timer at
//! [`poll_timeout`](ServerInvite::poll_timeout), calling `handle_timeout(now)` when it expires.
//! This keeps every retransmission and timeout rule deterministic and testable with a fake
//! clock, in the style of `quinn-proto` and `str0m`.
//!
//! Transport reliability matters because RFC 3261 §17.1.1.2 / §17.1.2.2 / §17.2.1 only
//! retransmit over unreliable transports (UDP): on TCP/TLS Timers A, E and G are never armed and
//! the "absorb stray retransmissions" timers D, I, J and K are zero.
//!
//! One file per machine ([`ServerInvite`], [`ServerNonInvite`], [`ClientInvite`],
//! [`ClientNonInvite`]) over the timer plumbing they share (`timer`); this module holds
//! what the owner needs besides them: [`Timers`], [`Output`], the matching keys
//! ([`TransactionKey`]) and the requests a transaction builds itself (ACK for a non-2xx,
//! CANCEL).

mod client_invite;
mod client_non_invite;
mod server_invite;
mod server_non_invite;
#[cfg(test)]
mod testkit;
mod timer;

pub use client_invite::{ClientInvite, ClientInviteState};
pub use client_non_invite::{ClientNonInvite, ClientNonInviteState};
pub use server_invite::{ServerInvite, ServerInviteState};
pub use server_non_invite::{ServerNonInvite, ServerNonInviteState};

use std::hash::{Hash, Hasher};
use std::time::Duration;

use super::headers;
use bytes::Bytes;
use rsip::prelude::*;
use rsip::{Header, Headers, Method};

/// RFC 3261 §8.1.1.7: a branch starting with this cookie was built by an RFC 3261 element and
/// is unique per transaction, so it alone identifies the transaction.
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// Everything that can go wrong while feeding a transaction or computing a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransactionError {
    /// A header needed for matching or message construction is absent.
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    /// A header is present but could not be understood.
    #[error("malformed {header} header: {reason}")]
    MalformedHeader {
        header: &'static str,
        reason: String,
    },
    /// The top Via has no branch parameter, so a response cannot be matched (§17.1.3).
    #[error("top Via header has no branch parameter")]
    MissingBranch,
    /// The status code is outside 100..=699.
    #[error("invalid status code {0}")]
    InvalidStatus(u16),
    /// The TU tried to send a response the current state does not allow.
    #[error("cannot send a {status} response in state {state}")]
    InvalidState { status: u16, state: String },
}

/// Protocol timer base values (RFC 3261 §17.1.1.1 and Table 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timers {
    /// RTT estimate; the initial retransmission interval.
    pub t1: Duration,
    /// Cap on the retransmission interval for non-INVITE requests and INVITE responses.
    pub t2: Duration,
    /// Maximum time a message stays in the network.
    pub t4: Duration,
}

impl Default for Timers {
    /// The RFC 3261 recommended values: T1 = 500 ms, T2 = 4 s, T4 = 5 s.
    fn default() -> Self {
        Self {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl Timers {
    /// 64*T1: the transaction timeout (Timers B, F, H, J, L, M).
    fn t1x64(&self) -> Duration {
        self.t1.saturating_mul(64)
    }
}

/// What a transaction asks its owner to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Put these bytes on the wire to the transaction's peer.
    Transmit(Bytes),
    /// Client transactions: pass this response up to the TU.
    Deliver(rsip::Response),
    /// Timer B / F (client) or Timer H (server INVITE: no ACK for a non-2xx final) fired.
    Timeout,
    /// The transaction is over; the owner removes it. Emitted exactly once.
    Terminated,
}

fn check_status(status: u16) -> Result<(), TransactionError> {
    if (100..=699).contains(&status) {
        Ok(())
    } else {
        Err(TransactionError::InvalidStatus(status))
    }
}

fn invalid_state(status: u16, state: impl std::fmt::Debug) -> TransactionError {
    TransactionError::InvalidState {
        status,
        state: format!("{state:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Matching (§17.1.3, §17.2.3)
// ---------------------------------------------------------------------------------------------

/// Transaction matching key (§17.1.3 / §17.2.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionKey {
    /// The top Via branch, or an `rfc2543:`-prefixed composite for pre-RFC 3261 peers.
    pub branch: String,
    /// Normalised top Via sent-by: lower-cased host, explicit port.
    pub sent_by: String,
    /// ACK is mapped to INVITE on the server side; CANCEL stays CANCEL.
    pub method: Method,
}

// `rsip::Method` does not implement `Hash`, so hash its discriminant (consistent with its `Eq`).
impl Hash for TransactionKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.branch.hash(state);
        self.sent_by.hash(state);
        std::mem::discriminant(&self.method).hash(state);
    }
}

/// The key of the server transaction a received request belongs to (§17.2.3).
///
/// With an RFC 3261 branch the key is branch + sent-by + method, ACK mapped to INVITE so the
/// ACK for a non-2xx final finds its INVITE transaction; a CANCEL keeps its own method because
/// it is a separate transaction (§9.2). Without the magic cookie (RFC 2543 peers) the key is
/// built from the Request-URI, From tag, Call-ID, CSeq number and top Via, which are equal in
/// the INVITE, its retransmissions and the ACK for a non-2xx (the To tag is left out because
/// the ACK carries one the INVITE lacks).
pub fn server_key(request: &rsip::Request) -> Result<TransactionKey, TransactionError> {
    let top = top_via(&request.headers)?;
    let via = parse_via(top)?;
    let method = match request.method {
        Method::Ack => Method::Invite,
        other => other,
    };
    let branch = match via.branch {
        Some(branch) if branch.starts_with(MAGIC_COOKIE) => branch,
        _ => {
            let from = header_str(&request.headers, Field::From)
                .ok_or(TransactionError::MissingHeader("From"))?;
            let from_tag = headers::tag_param(from).unwrap_or_default();
            let call_id = header_str(&request.headers, Field::CallId)
                .ok_or(TransactionError::MissingHeader("Call-ID"))?
                .trim();
            let (seq, _) = parse_cseq(&request.headers)?;
            format!(
                "rfc2543:{}|{}|{}|{}|{}",
                request.uri,
                from_tag,
                call_id,
                seq,
                top.trim()
            )
        }
    };
    Ok(TransactionKey {
        branch,
        sent_by: via.sent_by,
        method,
    })
}

/// The key of the client transaction a received response belongs to (§17.1.3): top Via branch,
/// sent-by and the CSeq method (which tells an INVITE's response from its CANCEL's).
pub fn client_key(response: &rsip::Response) -> Result<TransactionKey, TransactionError> {
    client_key_from(&response.headers)
}

/// The key under which a client transaction for an outgoing `request` is registered; equals
/// [`client_key`] of its responses.
pub fn client_request_key(request: &rsip::Request) -> Result<TransactionKey, TransactionError> {
    client_key_from(&request.headers)
}

fn client_key_from(headers: &Headers) -> Result<TransactionKey, TransactionError> {
    let via = parse_via(top_via(headers)?)?;
    let branch = via.branch.ok_or(TransactionError::MissingBranch)?;
    let (_, method) = parse_cseq(headers)?;
    Ok(TransactionKey {
        branch,
        sent_by: via.sent_by,
        method,
    })
}

// ---------------------------------------------------------------------------------------------
// Message construction (§17.1.1.3, §9.1)
// ---------------------------------------------------------------------------------------------

/// The ACK for a non-2xx final response, built by the INVITE client transaction
/// (§17.1.1.3): same Request-URI, Call-ID, From and CSeq number (method ACK) as the INVITE, To
/// from the response (carrying its tag), a single Via equal to the INVITE's top Via (so it
/// matches the server transaction), the INVITE's Route headers, Max-Forwards 70 and no body.
/// Headers missing from the inputs are left out rather than invented.
pub fn ack_for_non_2xx(request: &rsip::Request, response: &rsip::Response) -> rsip::Request {
    let to = first_header(&response.headers, Field::To).cloned();
    derived_request(request, Method::Ack, to)
}

/// A CANCEL for `request` (§9.1): same Request-URI, Call-ID, To, From and CSeq number (method
/// CANCEL), a single Via equal to the request's top Via (so the server matches it to the INVITE
/// transaction), the same Route headers, Max-Forwards 70 and no body.
pub fn cancel_for(request: &rsip::Request) -> rsip::Request {
    let to = first_header(&request.headers, Field::To).cloned();
    derived_request(request, Method::Cancel, to)
}

/// Shared body of [`ack_for_non_2xx`] and [`cancel_for`].
fn derived_request(request: &rsip::Request, method: Method, to: Option<Header>) -> rsip::Request {
    let src = &request.headers;
    let mut headers = Headers::default();
    if let Ok(via) = top_via(src) {
        headers.push(Header::Via(rsip::headers::Via::new(via.trim())));
    }
    for header in src.iter() {
        if let Header::Route(_) = header {
            headers.push(header.clone());
        }
    }
    headers.push(Header::MaxForwards(70.into()));
    if let Some(from) = first_header(src, Field::From) {
        headers.push(from.clone());
    }
    if let Some(to) = to {
        headers.push(to);
    }
    if let Some(call_id) = first_header(src, Field::CallId) {
        headers.push(call_id.clone());
    }
    if let Some(seq) = header_str(src, Field::CSeq).and_then(|v| v.split_whitespace().next()) {
        headers.push(Header::CSeq(rsip::headers::CSeq::new(format!(
            "{seq} {method}"
        ))));
    }
    headers.push(Header::ContentLength(0.into()));
    rsip::Request {
        method,
        uri: request.uri.clone(),
        version: request.version.clone(),
        headers,
        body: Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// Header lookup. rsip does not know compact header forms (§7.3.3), so the few fields
// transactions need are found here; their values are read by [`super::headers`].
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Field {
    Via,
    From,
    To,
    CallId,
    CSeq,
}

impl Field {
    /// Compact form (§7.3.3); rsip parses those as `Header::Other`.
    fn compact(self) -> Option<&'static str> {
        match self {
            Field::Via => Some("v"),
            Field::From => Some("f"),
            Field::To => Some("t"),
            Field::CallId => Some("i"),
            Field::CSeq => None,
        }
    }
}

fn field_value(header: &Header, field: Field) -> Option<&str> {
    match (field, header) {
        (Field::Via, Header::Via(h)) => Some(h.value()),
        (Field::From, Header::From(h)) => Some(h.value()),
        (Field::To, Header::To(h)) => Some(h.value()),
        (Field::CallId, Header::CallId(h)) => Some(h.value()),
        (Field::CSeq, Header::CSeq(h)) => Some(h.value()),
        (field, Header::Other(name, value)) => field
            .compact()
            .filter(|c| name.trim().eq_ignore_ascii_case(c))
            .map(|_| value.as_str()),
        _ => None,
    }
}

fn first_header(headers: &Headers, field: Field) -> Option<&Header> {
    headers
        .iter()
        .find(|header| field_value(header, field).is_some())
}

fn header_str(headers: &Headers, field: Field) -> Option<&str> {
    headers.iter().find_map(|header| field_value(header, field))
}

/// The first value of the first Via header (a header line may carry several, comma-separated).
fn top_via(headers: &Headers) -> Result<&str, TransactionError> {
    let value = header_str(headers, Field::Via).ok_or(TransactionError::MissingHeader("Via"))?;
    Some(headers::top_via(value))
        .filter(|v| !v.is_empty())
        .ok_or_else(|| malformed("Via", "empty value"))
}

fn malformed(header: &'static str, reason: impl Into<String>) -> TransactionError {
    TransactionError::MalformedHeader {
        header,
        reason: reason.into(),
    }
}

/// The parts of one Via value that matching needs.
struct ViaParts {
    sent_by: String,
    branch: Option<String>,
}

/// Reads a via-parm as the message checks do ([`headers::parse_via`]).
fn parse_via(value: &str) -> Result<ViaParts, TransactionError> {
    let via = headers::parse_via(value).map_err(|e| malformed("Via", e.to_string()))?;
    Ok(ViaParts {
        sent_by: via.normalized_sent_by(),
        branch: via.branch.map(str::to_string),
    })
}

/// CSeq number and method.
fn parse_cseq(headers: &Headers) -> Result<(u32, Method), TransactionError> {
    let value = header_str(headers, Field::CSeq).ok_or(TransactionError::MissingHeader("CSeq"))?;
    let (seq, method) = headers::parse_cseq(value).map_err(|e| malformed("CSeq", e.to_string()))?;
    let method = method
        .parse::<Method>()
        .map_err(|_| malformed("CSeq", format!("unknown method {method:?}")))?;
    Ok((seq, method))
}

#[cfg(test)]
mod tests {
    use super::testkit::*;
    use super::*;

    #[test]
    fn server_key_matching() {
        let invite_key = server_key(&invite()).unwrap();
        assert_eq!(
            invite_key,
            TransactionKey {
                branch: "z9hG4bKnashds8".into(),
                sent_by: "pc33.atlanta.example.com:5060".into(),
                method: Method::Invite,
            }
        );
        let ack = ack_for_non_2xx(&invite(), &resp(486, Some("t")));
        assert_eq!(server_key(&ack).unwrap(), invite_key);
        let cancel = cancel_for(&invite());
        assert_ne!(server_key(&cancel).unwrap(), invite_key);
        // Explicit default port and host case do not matter; another sent-by does.
        let same = INVITE.replace(
            "pc33.atlanta.example.com;",
            "PC33.Atlanta.Example.com:5060;",
        );
        assert_eq!(server_key(&req(&same)).unwrap(), invite_key);
        let other = INVITE.replace(
            "pc33.atlanta.example.com;",
            "pc33.atlanta.example.com:5070;",
        );
        assert_ne!(server_key(&req(&other)).unwrap(), invite_key);
        // Compact form and IPv6 sent-by.
        let v6 = INVITE.replace(
            "Via: SIP/2.0/UDP pc33.atlanta.example.com",
            "v: SIP/2.0/TLS [2001:DB8:0::1]",
        );
        assert_eq!(server_key(&req(&v6)).unwrap().sent_by, "[2001:db8::1]:5061");
        // Usable as a HashMap key.
        let map: std::collections::HashMap<_, _> = [(invite_key.clone(), 1)].into();
        assert_eq!(map.get(&server_key(&ack).unwrap()), Some(&1));
    }

    #[test]
    fn server_key_rfc2543_fallback() {
        let old = INVITE.replace(";branch=z9hG4bKnashds8", "");
        let key = server_key(&req(&old)).unwrap();
        assert!(key.branch.starts_with("rfc2543:"));
        assert!(key.branch.contains("1928301774") && key.branch.contains("a84b4c76e66710"));
        assert_eq!(key.method, Method::Invite);
        let ack = ack_for_non_2xx(&req(&old), &resp(486, Some("t")));
        assert_eq!(server_key(&ack).unwrap(), key);
        let retrans = server_key(&req(&old)).unwrap();
        assert_eq!(retrans, key);
        let other_call = old.replace("a84b4c76e66710", "zzz");
        assert_ne!(server_key(&req(&other_call)).unwrap(), key);
        let non_cookie = INVITE.replace("z9hG4bKnashds8", "oldbranch");
        assert!(server_key(&req(&non_cookie))
            .unwrap()
            .branch
            .starts_with("rfc2543:"));
    }

    #[test]
    fn keys_error_instead_of_panicking() {
        let no_via = INVITE.replace(
            "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8\r\n",
            "",
        );
        assert_eq!(
            server_key(&req(&no_via)),
            Err(TransactionError::MissingHeader("Via"))
        );
        for bad in [
            "Via: garbage",
            "Via: SIP/2.0/UDP host:99999;branch=z9hG4bK1",
            "Via: SIP/2.0/UDP [::1;branch=z9hG4bK1",
            "Via: SIP/2.0/UDP ;branch=z9hG4bK1",
            "Via: SIP/2.0/UDP a:b:c;branch=z9hG4bK1",
        ] {
            let raw = INVITE.replace(
                "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8",
                bad,
            );
            assert!(
                matches!(
                    server_key(&req(&raw)),
                    Err(TransactionError::MalformedHeader { .. })
                ),
                "{bad}"
            );
        }
        let no_cseq_old = INVITE
            .replace(";branch=z9hG4bKnashds8", "")
            .replace("CSeq: 314159 INVITE\r\n", "");
        assert_eq!(
            server_key(&req(&no_cseq_old)),
            Err(TransactionError::MissingHeader("CSeq"))
        );
        // Client side: responses need a branch and a parsable CSeq.
        let mut r = resp(200, None);
        assert_eq!(
            client_key(&r).unwrap(),
            client_request_key(&invite()).unwrap()
        );
        r.headers.retain(|h| !matches!(h, Header::CSeq(_)));
        assert_eq!(client_key(&r), Err(TransactionError::MissingHeader("CSeq")));
        let mut r = resp(200, None);
        r.headers
            .unique_push(Header::Via(rsip::headers::Via::new("SIP/2.0/UDP h")));
        assert_eq!(client_key(&r), Err(TransactionError::MissingBranch));
        let mut r = resp(200, None);
        r.headers
            .unique_push(Header::CSeq(rsip::headers::CSeq::new("x INVITE")));
        assert!(matches!(
            client_key(&r),
            Err(TransactionError::MalformedHeader { .. })
        ));
        // Builders never panic on header-less input.
        let bare = req("OPTIONS sip:a@b SIP/2.0\r\n\r\n");
        let ack = ack_for_non_2xx(
            &bare,
            &rsip::Response::try_from(&b"SIP/2.0 500 X\r\n\r\n"[..]).unwrap(),
        );
        assert_eq!(ack.method, Method::Ack);
        assert_eq!(cancel_for(&bare).method, Method::Cancel);
    }

    #[test]
    fn client_key_distinguishes_cancel_from_invite() {
        let invite_key = client_request_key(&invite()).unwrap();
        let cancel_key = client_request_key(&cancel_for(&invite())).unwrap();
        assert_eq!(invite_key.branch, cancel_key.branch);
        assert_ne!(invite_key, cancel_key);
        let mut r = resp(200, None);
        r.headers
            .unique_push(Header::CSeq(rsip::headers::CSeq::new("314159 CANCEL")));
        assert_eq!(client_key(&r).unwrap(), cancel_key);
    }

    #[test]
    fn top_via_of_multi_value_header() {
        let raw = INVITE.replace(
            "branch=z9hG4bKnashds8\r\n",
            "branch=z9hG4bKnashds8, SIP/2.0/UDP other:5070;branch=z9hG4bKzzz\r\n",
        );
        let request = req(&raw);
        assert_eq!(
            server_key(&request).unwrap(),
            server_key(&invite()).unwrap()
        );
        let cancel = cancel_for(&request);
        assert_eq!(
            cancel.via_header().unwrap().value(),
            "SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8"
        );
    }
}
