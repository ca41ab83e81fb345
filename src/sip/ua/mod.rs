//! The hotline's SIP user agent core, sans-IO.
//!
//! Everything the hotline decides about SIP happens here, in plain method calls: a parsed
//! message or a timer goes in, bytes to send ([`Transmit`]) and things that happened
//! ([`Event`]) come out. The tokio code in [`super::transport`] only moves bytes and calls
//! [`UserAgent::handle_message`], [`UserAgent::handle_timeout`] and the `poll_*` methods, in the
//! style of `quinn-proto` and `str0m`. Tests and benchmarks drive the same struct without
//! sockets.
//!
//! What it does (RFC 3261 unless noted):
//! * matches requests to server transactions; retransmissions are absorbed there;
//! * answers INVITEs to the hotline numbers with 100 Trying, then (after an optional ring) 200 OK
//!   with an SDP answer, retransmitting the 2xx until the ACK comes (BYE after 64·T1 without);
//! * BYE, CANCEL, re-INVITE (hold/unhold), OPTIONS, INFO, REGISTER (to the registrar);
//! * 404 for other request-URIs, 488 without SDP or a common codec, 481 outside dialogs,
//!   405/501 for methods the hotline does not serve, 503 over the call limit;
//! * DTMF by SIP INFO (`application/dtmf-relay`, `application/dtmf`) as [`Event::Dtmf`];
//! * BYE from our side when the call flow hangs up ([`UserAgent::hangup`]);
//! * the B2BUA's leg to an operator ([`UserAgent::originate`]): an INVITE with our SDP offer,
//!   sent only to the newest registrar binding of a configured operator extension (to the
//!   address the REGISTER came from, over its transport), run by a [`ClientInvite`]
//!   transaction (Timer A/B). 180/183 → [`Event::OperatorRinging`]; a 2xx builds the UAC
//!   dialog, is ACKed by us (again for each retransmitted 2xx, §13.2.2.4) and gives
//!   [`Event::OperatorAnswered`] with the negotiated media; a final ≥ 300 (ACKed by the
//!   transaction) or Timer B gives [`Event::OperatorFailed`]. [`UserAgent::cancel`] sends
//!   CANCEL (§9.1: not before a provisional response, and giving up 64·T1 later); a 2xx that
//!   crosses it is ACKed and ended with BYE. Either way a cancelled leg ends with exactly one
//!   [`Event::CallEnded`] with [`EndReason::Cancelled`]. Once answered the leg is a call like
//!   any other: BYE, INFO and re-INVITE from the operator, BYE from us.
//!
//! Inbound calls and operator legs share one numbering (`call` in every [`Event`]) and one
//! table; every call or leg ends with exactly one [`Event::CallEnded`], except an operator
//! leg that was never answered and not cancelled, which ends with its
//! [`Event::OperatorFailed`] instead.
//!
//! RTP ports come from an injected [`RtpPorts`] allocator: the core only asks it for port
//! numbers and never binds a socket; the production one binds at the edge
//! ([`crate::media::ports::PortPool`]); tests use [`CountingPorts`]. A call's or leg's port is
//! released when it ends. Randomness is injected too: one generator, seeded from
//! [`UaSettings::rng_seed`] (from the operating system in production), makes every tag,
//! branch, Call-ID and digest nonce.
//!
//! The struct and its public surface live here; the rest by what it handles: `inbound`
//! (requests and their server transactions), `invite` (new calls, ACK, re-INVITE),
//! `outbound` and `leg_responses` (operator legs), `call` (the call table and its timers),
//! `transactions` (the transaction tables and the timer queue), `event` and `settings` (the
//! public types), `helpers`.

mod call;
mod event;
mod helpers;
mod inbound;
mod invite;
mod leg_responses;
mod outbound;
#[cfg(test)]
mod pair;
mod settings;
#[cfg(test)]
mod testkit;
mod transactions;

pub use event::{EndReason, Event, Originate, OriginateError};
pub use helpers::{random_tag, sanitize_display, sanitize_user, vet_media_destination};
pub use settings::{CountingPorts, RtpPorts, UaSettings};

use super::dialog::{DialogKey, DialogState};
use super::message::ResponseBuilder;
use super::registrar::{Registrar, RegistrarSettings};
use super::transaction::TransactionKey;
use super::{Transmit, Transport};
use call::Call;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use transactions::{ClientEntry, ServerEntry, TimerRef};

/// Methods we serve; everything else known to `rsip` gets 405 with this list.
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REGISTER";

/// Server transactions one new call leaves lingering: its INVITE's and its BYE's.
const TRANSACTIONS_PER_CALL: usize = 2;

/// How long an ended server transaction lingers (64·T1 with the default T1).
const LINGER_S: usize = 32;

/// Most 2xx dialogs (forks) one INVITE of ours ACKs and ends with BYE: a phone that keeps
/// answering with new tags gets no more of our requests.
const MAX_2XX_DIALOGS: usize = 8;

/// How often expired registrations and lock-outs are swept.
const SWEEP_INTERVAL: Duration = Duration::from_secs(10);

/// The SIP core. See the module documentation.
pub struct UserAgent {
    settings: UaSettings,
    registrar: Registrar,
    /// Boxed entries: ended transactions linger 64·T1 (tens of thousands at full load), and
    /// a growing table then moves pointers, not whole state machines.
    server: HashMap<TransactionKey, Box<ServerEntry>>,
    client: HashMap<TransactionKey, ClientEntry>,
    /// Boxed too: a call is about a kilobyte, and the table is pre-sized for `max_calls`.
    calls: HashMap<DialogKey, Box<Call>>,
    timers: BTreeMap<(Instant, u64), TimerRef>,
    timer_seq: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    next_call: u64,
    ports: Box<dyn RtpPorts>,
    /// The only source of randomness in the core ([`UaSettings::rng_seed`]); the registrar
    /// has its own, drawn from this one.
    rng: StdRng,
    /// New calls are refused and OPTIONS says 503 ([`UserAgent::drain`]).
    draining: bool,
}

impl UserAgent {
    /// A core with `settings`, owning a registrar with `registrar`; `now` starts its clock.
    pub fn new(settings: UaSettings, registrar: RegistrarSettings, now: Instant) -> Self {
        let settings_calls = settings.max_calls.min(100_000);
        let transactions = (settings.peak_call_rate as usize)
            .saturating_mul(TRANSACTIONS_PER_CALL * LINGER_S)
            .min(1 << 20);
        let mut rng = match settings.rng_seed {
            Some(seed) => StdRng::from_seed(seed),
            None => StdRng::from_os_rng(),
        };
        let mut ua = UserAgent {
            registrar: Registrar::new(registrar, StdRng::from_rng(&mut rng), now),
            rng,
            ports: Box::new(CountingPorts::new(
                settings.rtp_ports.0,
                settings.rtp_ports.1,
            )),
            settings,
            // Sized for the steady state at the peak call rate (2000 calls/s keep ~130k
            // transactions in their 64·T1 linger) so that the table never stops the core
            // to grow in the middle of a rush; a rate the hotline never sees would only
            // hold memory (17 MB of slots at 2000 calls/s).
            server: HashMap::with_capacity(transactions),
            client: HashMap::new(),
            calls: HashMap::with_capacity(settings_calls),
            timers: BTreeMap::new(),
            timer_seq: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            next_call: 1,
            draining: false,
        };
        ua.schedule(now + SWEEP_INTERVAL, TimerRef::Sweep);
        ua
    }

    /// Stops taking new calls, for a rolling upgrade: a new INVITE gets 503 with
    /// `Retry-After`, and OPTIONS gets 503, so that a SIP proxy probing the node (Kamailio's
    /// dispatcher) routes around it. Calls in progress go on, operators are still rung for
    /// the callers already here, and phones still register.
    pub fn drain(&mut self) {
        self.draining = true;
    }

    /// Whether [`UserAgent::drain`] was called.
    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// Takes RTP ports from `ports` instead of counting them.
    pub fn with_ports(mut self, ports: Box<dyn RtpPorts>) -> Self {
        self.ports = ports;
        self
    }

    /// Rings an operator for a waiting caller: an INVITE with our SDP offer to the newest
    /// current registrar binding of `o.extension`, which must be a configured operator.
    /// Returns the leg's call number (from the same numbering as inbound calls); what happens
    /// next arrives as [`Event::OperatorRinging`], [`Event::OperatorAnswered`],
    /// [`Event::OperatorFailed`] and [`Event::CallEnded`].
    ///
    /// The request goes to the address the operator's REGISTER came from, over its transport
    /// (phones behind NAT are reached there, not at their Contact), with the registered
    /// Contact as Request-URI. The caller's number and name are reduced to characters that
    /// cannot leave a URI user part or a quoted string, so a hostile From cannot add headers.
    /// On an error nothing is sent and no port is held.
    pub fn originate(&mut self, o: Originate, now: Instant) -> Result<u64, OriginateError> {
        let for_call = o.for_call;
        let leg = self.place_leg(o, now)?;
        if let Some(for_call) = for_call {
            self.events.push_back(Event::LegPlaced {
                call: leg,
                for_call,
            });
        }
        Ok(leg)
    }

    /// Withdraws an operator leg: CANCEL while it has no final response (held back until a
    /// provisional response has arrived, §9.1), BYE once answered. The leg ends with one
    /// [`Event::CallEnded`] with [`EndReason::Cancelled`] — after the 487, after a 2xx that
    /// crossed the CANCEL (ACKed, then BYE), or when nothing came (Timer B before any 1xx,
    /// 64·T1 after the CANCEL). Inbound calls and unknown numbers are ignored.
    pub fn cancel(&mut self, call: u64, now: Instant) {
        self.withdraw_leg(call, now)
    }

    /// Ends an answered call from our side with BYE (the call flow finished, or its RTP
    /// stopped). A call still waiting for its ACK is ended as soon as the ACK arrives: the
    /// callee must not send BYE before it (RFC 3261 §15). An operator leg not answered yet is
    /// cancelled instead ([`UserAgent::cancel`]; it ends as [`EndReason::Cancelled`]). Unknown
    /// calls are ignored (the caller may have hung up at the same moment).
    pub fn hangup(&mut self, call: u64, reason: EndReason, now: Instant) {
        let Some(dkey) = self.call_key(call) else {
            return;
        };
        let c = self.calls.get_mut(&dkey).expect("found");
        if c.outbound.is_some() && c.dialog.state != DialogState::Confirmed {
            return self.cancel(call, now);
        }
        match c.dialog.state {
            DialogState::Confirmed => {
                self.send_bye(&dkey, now);
                self.end_call(&dkey, reason);
            }
            DialogState::WaitingAck => c.hangup_on_ack = Some(reason),
            DialogState::Early => {
                // Not answered yet: refuse the INVITE instead.
                if let (Some(inv), Some(tx)) = (c.invite.take(), c.invite_tx.take()) {
                    let r = ResponseBuilder::new(&inv, c.source, 480, "Temporarily Unavailable")
                        .to_tag(&dkey.local_tag)
                        .header("Server", &self.settings.server)
                        .build();
                    self.respond(&tx, 480, r, now);
                }
                self.end_call(&dkey, reason);
            }
        }
    }

    /// Calls in progress (answered or ringing), inbound calls and operator legs alike.
    pub fn active_calls(&self) -> usize {
        self.calls.len()
    }

    /// Open transactions (for metrics and tests of clean-up).
    pub fn open_transactions(&self) -> usize {
        self.server.len() + self.client.len()
    }

    pub fn registrar(&self) -> &Registrar {
        &self.registrar
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The next instant at which [`UserAgent::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.keys().next().map(|(t, _)| *t)
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let target = entry.remove();
            self.on_timer(target, now);
        }
    }

    /// Processes one decoded message from `source` over `transport`.
    pub fn handle_message(
        &mut self,
        msg: rsip::SipMessage,
        source: SocketAddr,
        transport: Transport,
        now: Instant,
    ) {
        match msg {
            rsip::SipMessage::Request(req) => self.on_request(req, source, transport, now),
            rsip::SipMessage::Response(resp) => self.on_response(resp, now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testkit::*;
    use super::*;

    /// The server transaction table is allocated for the configured peak rate's 32 s of
    /// lingering transactions, not for the 2,000 calls/s of the SIP benchmark.
    #[test]
    fn transaction_table_is_sized_by_the_peak_call_rate() {
        let capacity = |peak_call_rate: u32| {
            let settings = UaSettings {
                peak_call_rate,
                ..settings()
            };
            UserAgent::new(settings, registrar_settings(&[]), Instant::now())
                .server
                .capacity()
        };
        // 200: the configuration's default `limits.peak_call_rate`.
        let default = capacity(200);
        assert!((200 * 64..100_000).contains(&default), "{default}");
        let busy = capacity(2000);
        assert!(busy >= 2000 * 64, "{busy}");
    }

    /// Tags, branches and digest nonces come from the seeded generator alone: two cores
    /// with the same seed answer the same inputs with the same bytes; another seed gives
    /// other values.
    #[test]
    fn the_seed_decides_tags_branches_and_nonces() {
        let t0 = Instant::now();
        let phone: SocketAddr = "192.0.2.20:5070".parse().unwrap();
        let register = "REGISTER sip:hotline.test SIP/2.0\r\n\
            Via: SIP/2.0/UDP 192.0.2.20:5070;branch=z9hG4bKr1\r\n\
            From: <sip:1001@hotline.test>;tag=r1\r\nTo: <sip:1001@hotline.test>\r\n\
            Call-ID: reg1\r\nCSeq: 1 REGISTER\r\nContact: <sip:1001@192.0.2.20:5070>\r\n\
            Content-Length: 0\r\n\r\n";
        let run = |seed: u8| {
            let settings = UaSettings {
                rng_seed: Some([seed; 32]),
                ..settings()
            };
            let mut ua = UserAgent::new(settings, registrar_settings(&[("1001", "pw1")]), t0);
            ua.handle_message(invite("s1", "z9hG4bKs1"), src(), Transport::Udp, t0);
            let to = to_of(&drain(&mut ua).pop().unwrap());
            let ack = in_dialog("ACK", "s1", "z9hG4bKs1a", &to, 1);
            ua.handle_message(request(&ack), src(), Transport::Udp, t0);
            ua.hangup(1, EndReason::Hangup, t0);
            let bye = drain(&mut ua).pop().unwrap();
            ua.handle_message(request(register), phone, Transport::Udp, t0);
            let challenge = drain(&mut ua).pop().unwrap();
            (
                to,
                line(&bye, "Via").to_string(),
                line(&challenge, "WWW-Authenticate").to_string(),
            )
        };
        let (tag, branch, nonce) = run(1);
        assert!(tag.contains(";tag=") && branch.contains(";branch=z9hG4bK"));
        assert!(nonce.contains("nonce=\""), "{nonce}");
        assert_eq!(run(1), (tag.clone(), branch.clone(), nonce.clone()));
        let (other_tag, other_branch, other_nonce) = run(2);
        assert_ne!(other_tag, tag);
        assert_ne!(other_branch, branch);
        assert_ne!(other_nonce, nonce);
    }

    #[test]
    fn hangup_sends_bye_at_once_when_confirmed_and_after_the_ack_otherwise() {
        let t0 = Instant::now();
        let mut ua = ua(t0);
        // Confirmed call: BYE now.
        ua.handle_message(invite("h1", "z9hG4bKh1"), src(), Transport::Udp, t0);
        let to = to_of(&drain(&mut ua).pop().unwrap());
        let ack = in_dialog("ACK", "h1", "z9hG4bKh1a", &to, 1);
        ua.handle_message(request(&ack), src(), Transport::Udp, t0);
        ua.hangup(1, EndReason::RtpTimeout, t0);
        let sent = drain(&mut ua);
        assert_eq!(sent.len(), 1);
        assert!(sent[0].starts_with("BYE sip:caller@"), "{}", sent[0]);
        assert!(sent[0].contains("Call-ID: h1\r\n"));
        assert_eq!(ua.active_calls(), 0);
        let events: Vec<Event> = std::iter::from_fn(|| ua.poll_event()).collect();
        assert!(events.contains(&Event::CallEnded {
            call: 1,
            reason: EndReason::RtpTimeout
        }));
        // Waiting for the ACK: nothing yet (RFC 3261 §15), BYE when it arrives.
        ua.handle_message(invite("h2", "z9hG4bKh2"), src(), Transport::Udp, t0);
        let to = to_of(&drain(&mut ua).pop().unwrap());
        ua.hangup(2, EndReason::Hangup, t0);
        assert!(drain(&mut ua).is_empty());
        assert_eq!(ua.active_calls(), 1);
        let ack = in_dialog("ACK", "h2", "z9hG4bKh2a", &to, 1);
        ua.handle_message(request(&ack), src(), Transport::Udp, t0);
        let sent = drain(&mut ua);
        assert!(sent.iter().any(|m| m.starts_with("BYE ")), "{sent:?}");
        assert_eq!(ua.active_calls(), 0);
        // Unknown calls are ignored.
        ua.hangup(99, EndReason::Hangup, t0);
        assert!(drain(&mut ua).is_empty());
    }

    #[test]
    fn hangup_while_ringing_refuses_the_invite() {
        let t0 = Instant::now();
        let settings = UaSettings {
            answer_delay: Duration::from_millis(3000),
            ..settings()
        };
        let mut ua = UserAgent::new(settings, registrar_settings(&[]), t0);
        ua.handle_message(invite("r1", "z9hG4bKr1"), src(), Transport::Udp, t0);
        let sent = drain(&mut ua);
        assert!(sent[1].starts_with("SIP/2.0 180"), "{}", sent[1]);
        ua.hangup(1, EndReason::Hangup, t0);
        let sent = drain(&mut ua);
        assert!(sent[0].starts_with("SIP/2.0 480"), "{}", sent[0]);
        assert_eq!(ua.active_calls(), 0);
        // The answer timer finds no call: no 200 OK later.
        let later = run(&mut ua, t0, t0 + Duration::from_secs(4));
        assert!(later.iter().all(|(_, m)| !m.starts_with("SIP/2.0 200")));
        let events: Vec<Event> = std::iter::from_fn(|| ua.poll_event()).collect();
        assert!(events.contains(&Event::CallEnded {
            call: 1,
            reason: EndReason::Hangup
        }));
    }
}
