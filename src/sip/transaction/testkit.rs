//! What the machines' tests share: RFC 3261's example INVITE and responses to it, and a
//! driver that follows a machine's timers in simulated time.

pub(super) use super::ServerNonInviteState;
pub(super) use super::{
    ack_for_non_2xx, cancel_for, client_key, client_request_key, server_key, Output, Timers,
};
pub(super) use super::{ClientInvite, ClientNonInvite, ServerInvite, ServerNonInvite};
pub(super) use rsip::prelude::*;
pub(super) use rsip::{Header, Method};
pub(super) use std::time::{Duration, Instant};

pub(super) const INVITE: &str = "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
    Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8\r\n\
    Route: <sip:proxy1.example.com;lr>\r\n\
    Route: <sip:proxy2.example.com;lr>\r\n\
    Max-Forwards: 70\r\n\
    To: Bob <sip:bob@biloxi.example.com>\r\n\
    From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
    Call-ID: a84b4c76e66710\r\n\
    CSeq: 314159 INVITE\r\n\
    Content-Length: 0\r\n\r\n";

pub(super) fn req(raw: &str) -> rsip::Request {
    rsip::Request::try_from(raw.as_bytes()).expect("test request parses")
}

pub(super) fn invite() -> rsip::Request {
    req(INVITE)
}

pub(super) fn options() -> rsip::Request {
    req(&INVITE.replace("INVITE", "OPTIONS"))
}

pub(super) fn resp(code: u16, to_tag: Option<&str>) -> rsip::Response {
    let tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    let raw = format!(
        "SIP/2.0 {code} Whatever\r\n\
         Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8\r\n\
         To: Bob <sip:bob@biloxi.example.com>{tag}\r\n\
         From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
         Call-ID: a84b4c76e66710\r\n\
         CSeq: 314159 INVITE\r\n\
         Content-Length: 0\r\n\r\n"
    );
    rsip::Response::try_from(raw.as_bytes()).expect("test response parses")
}

pub(super) fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// Uniform access to the four machines for the timer-driving helpers.
pub(super) trait Machine {
    fn timeout(&self) -> Option<Instant>;
    fn fire(&mut self, now: Instant);
    fn output(&mut self) -> Option<Output>;
}

macro_rules! machine {
    ($($t:ty),*) => {$(
        impl Machine for $t {
            fn timeout(&self) -> Option<Instant> { self.poll_timeout() }
            fn fire(&mut self, now: Instant) { self.handle_timeout(now) }
            fn output(&mut self) -> Option<Output> { self.poll_output() }
        }
    )*};
}
machine!(ServerInvite, ServerNonInvite, ClientInvite, ClientNonInvite);

pub(super) fn drain(m: &mut impl Machine) -> Vec<Output> {
    std::iter::from_fn(|| m.output()).collect()
}

/// Follows `poll_timeout` until no timer is left (or `until`), returning each output with
/// its offset from `start` in seconds.
pub(super) fn run(m: &mut impl Machine, start: Instant, until: Option<f64>) -> Vec<(f64, Output)> {
    let mut events = Vec::new();
    while let Some(at) = m.timeout() {
        if until.is_some_and(|u| at > start + secs(u)) {
            break;
        }
        m.fire(at);
        let offset = (at - start).as_secs_f64();
        events.extend(drain(m).into_iter().map(|o| (offset, o)));
    }
    events
}

pub(super) fn transmit_times(events: &[(f64, Output)]) -> Vec<f64> {
    events
        .iter()
        .filter(|(_, o)| matches!(o, Output::Transmit(_)))
        .map(|(t, _)| *t)
        .collect()
}

pub(super) fn tail(events: &[(f64, Output)], n: usize) -> Vec<(f64, Output)> {
    events[events.len() - n..].to_vec()
}

pub(super) fn parse_sent(output: &Output) -> rsip::Request {
    match output {
        Output::Transmit(bytes) => rsip::Request::try_from(bytes.clone()).expect("parses"),
        other => panic!("expected Transmit, got {other:?}"),
    }
}

pub(super) fn intervals(times: &[f64]) -> Vec<f64> {
    times.windows(2).map(|w| w[1] - w[0]).collect()
}
