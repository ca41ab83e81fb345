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
//! RTP ports come from an [`RtpPorts`] allocator: the real one binds sockets
//! ([`crate::media::ports::PortPool`]); tests use [`CountingPorts`]. A call's or leg's port is
//! released when it ends.

use super::dialog::{Dialog, DialogKey, DialogState, PendingAck};
use super::headers::{parse_cseq, parse_via, tag_param, top_via};
use super::message::{first_header, response_destination, ResponseBuilder};
use super::registrar::{Registrar, RegistrationEvent};
use super::sdp::{self, Direction, LocalMedia, Negotiated, SdpError};
use super::transaction::{
    self, ClientInvite, ClientNonInvite, Output, ServerInvite, ServerInviteState, ServerNonInvite,
    Timers, TransactionKey,
};
use super::{Peer, Transmit, Transport};
use crate::config::Config;
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

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

/// The settings the core needs, derived from [`Config`] and the bound address.
#[derive(Debug, Clone)]
pub struct UaSettings {
    pub hotline_numbers: HashSet<String>,
    /// The SIP domain (`sip.domain`): host part of the From/To/P-Asserted-Identity URIs of the
    /// legs to operators.
    pub domain: String,
    pub server: String,
    /// `host:port` for our Contact and Via.
    pub contact_host: String,
    pub media_ip: IpAddr,
    pub answer_delay: Duration,
    pub timers: Timers,
    pub max_calls: usize,
    /// `limits.peak_call_rate`: what the transaction table is sized for.
    pub peak_call_rate: u32,
    pub rtp_ports: (u16, u16),
    /// `media.sdp_trusted_sources`: peers (the carrier's SBC) whose SDP may name a media
    /// address other than their own; see [`vet_media_destination`].
    pub media_trusted: Vec<ipnet::IpNet>,
}

impl UaSettings {
    pub fn from_config(config: &Config, bound: SocketAddr) -> Self {
        let ip = config.sip.public_address.unwrap_or_else(|| {
            if bound.ip().is_unspecified() {
                IpAddr::from([127, 0, 0, 1])
            } else {
                bound.ip()
            }
        });
        let contact_host = match ip {
            IpAddr::V4(v4) => format!("{v4}:{}", bound.port()),
            IpAddr::V6(v6) => format!("[{v6}]:{}", bound.port()),
        };
        let t = &config.sip.timers;
        UaSettings {
            hotline_numbers: config.sip.hotline_numbers.iter().cloned().collect(),
            domain: config.sip.domain.clone(),
            server: config.sip.user_agent.clone(),
            contact_host,
            media_ip: ip,
            answer_delay: Duration::from_millis(config.sip.answer_delay_ms),
            timers: Timers {
                t1: Duration::from_millis(t.t1_ms),
                t2: Duration::from_millis(t.t2_ms),
                t4: Duration::from_millis(t.t4_ms),
            },
            max_calls: config.limits.max_calls,
            peak_call_rate: config.limits.peak_call_rate,
            rtp_ports: (config.media.rtp_port_min, config.media.rtp_port_max),
            media_trusted: config.media.sdp_trusted_sources.clone(),
        }
    }
}

/// Where RTP ports for the SDP answer come from.
///
/// Sans-IO code cannot bind sockets, so the core asks this allocator; the transport gives it
/// [`crate::media::ports::PortPool`], which binds a socket for the port and keeps it for the
/// call's media session.
pub trait RtpPorts: Send {
    /// A port for a new call, or `None` when the range is exhausted (the call gets 503).
    fn allocate(&mut self) -> Option<u16>;
    /// The call ended: a port whose media never started can be reused.
    fn release(&mut self, port: u16);
}

/// Round-robin port numbers without sockets: for tests and benchmarks of the SIP core.
pub struct CountingPorts {
    range: (u16, u16),
    next: u16,
}

impl CountingPorts {
    pub fn new(min: u16, max: u16) -> Self {
        CountingPorts {
            range: (min & !1, max),
            next: min & !1,
        }
    }
}

impl RtpPorts for CountingPorts {
    fn allocate(&mut self) -> Option<u16> {
        let (lo, hi) = self.range;
        let port = self.next;
        self.next = if u32::from(port) + 2 > u32::from(hi) {
            lo
        } else {
            port + 2
        };
        Some(port)
    }

    fn release(&mut self, _port: u16) {}
}

/// Why a call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// The caller (or, on an operator leg, the operator) sent BYE.
    RemoteBye,
    /// The caller cancelled before the answer; or we cancelled an operator leg
    /// ([`UserAgent::cancel`]).
    Cancelled,
    /// We answered but the ACK never came; we sent BYE.
    AckTimeout,
    /// The call flow hung up (we sent BYE).
    Hangup,
    /// The caller's RTP stopped for longer than `media.rtp_timeout_s`; we sent BYE.
    RtpTimeout,
}

/// Things that happened, for the call flow, the API and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// An INVITE to the hotline was accepted for answering.
    CallOffered {
        call: u64,
        call_id: String,
        from: String,
        number: String,
        /// Our RTP port in the SDP answer (bound by the [`RtpPorts`] allocator).
        rtp_port: u16,
        /// What the SDP offer/answer agreed.
        media: Negotiated,
    },
    /// 200 OK sent.
    CallAnswered {
        call: u64,
    },
    /// ACK received: media may flow.
    CallConfirmed {
        call: u64,
    },
    /// A re-INVITE changed the media: direction (hold / unhold), address or codecs.
    MediaChanged {
        call: u64,
        media: Negotiated,
    },
    /// A DTMF digit sent by SIP INFO.
    Dtmf {
        call: u64,
        digit: char,
    },
    CallEnded {
        call: u64,
        reason: EndReason,
    },
    Registration(RegistrationEvent),
    /// The operator's phone rings (first 180 or 183 to our INVITE).
    OperatorRinging {
        call: u64,
    },
    /// The operator answered and we sent the ACK: media may flow.
    OperatorAnswered {
        call: u64,
        /// Our RTP port in the SDP offer (bound by the [`RtpPorts`] allocator).
        rtp_port: u16,
        /// What the operator's SDP answer agreed.
        media: Negotiated,
    },
    /// The leg failed before an answer: the operator's final status (486 busy, 480, 603 …),
    /// 408 when nothing answered within Timer B, 488 for a 2xx without a usable SDP answer
    /// (ACKed and ended with BYE). The leg is over; no [`Event::CallEnded`] follows.
    OperatorFailed {
        call: u64,
        status: u16,
    },
}

/// A leg to ring an operator for a waiting caller ([`UserAgent::originate`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Originate {
    /// The operator's extension: a configured operator that is registered now.
    pub extension: String,
    /// The caller's number, from the caller's From (sanitised before use).
    pub caller_number: String,
    /// The caller's display name, if the caller sent one (sanitised before use).
    pub caller_name: Option<String>,
}

/// Why no operator leg was placed; nothing was sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OriginateError {
    #[error("{0:?} is not an operator extension")]
    UnknownExtension(String),
    #[error("operator {0:?} is not registered")]
    NotRegistered(String),
    #[error("operator {0:?} registered a contact we cannot call")]
    BadContact(String),
    /// The RTP port range is exhausted (the 503 of an inbound call).
    #[error("no free RTP port")]
    NoRtpPort,
    /// The SIP core task has stopped.
    #[error("the SIP core is not running")]
    Unavailable,
}

enum ServerTx {
    Invite(ServerInvite),
    NonInvite(ServerNonInvite),
}

struct ServerEntry {
    tx: ServerTx,
    peer: Peer,
    scheduled: Option<Instant>,
    /// The call an INVITE transaction created (a CANCEL finds it through here).
    dialog: Option<DialogKey>,
}

enum ClientTx {
    Invite(ClientInvite),
    NonInvite(ClientNonInvite),
}

impl ClientTx {
    fn poll_output(&mut self) -> Option<Output> {
        match self {
            ClientTx::Invite(t) => t.poll_output(),
            ClientTx::NonInvite(t) => t.poll_output(),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            ClientTx::Invite(t) => t.poll_timeout(),
            ClientTx::NonInvite(t) => t.poll_timeout(),
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        match self {
            ClientTx::Invite(t) => t.handle_timeout(now),
            ClientTx::NonInvite(t) => t.handle_timeout(now),
        }
    }

    fn on_response(&mut self, resp: rsip::Response, now: Instant) {
        match self {
            ClientTx::Invite(t) => t.on_response(resp, now),
            ClientTx::NonInvite(t) => t.on_response(resp, now),
        }
    }
}

/// Our own requests: the INVITE of an operator leg, and BYE / CANCEL.
struct ClientEntry {
    tx: ClientTx,
    peer: Peer,
    scheduled: Option<Instant>,
    /// An INVITE's leg: its responses go there.
    leg: Option<DialogKey>,
    /// The ACKs we sent for 2xx responses to this INVITE, by the 2xx's To tag: a
    /// retransmitted 2xx gets the same ACK again (§13.2.2.4), even after the leg ended.
    acks: Vec<(String, Bytes)>,
}

/// Whether we want an operator leg cancelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CancelState {
    No,
    /// Asked for before any provisional response: sent when the first one arrives (§9.1).
    Wanted,
    Sent,
}

/// What a leg we placed (to an operator) needs besides its dialog.
struct Outbound {
    /// The INVITE's client transaction.
    invite_tx: TransactionKey,
    /// A 180/183 was reported.
    ringing: bool,
    cancel: CancelState,
    /// After our CANCEL: when to stop waiting for the INVITE's final response (§9.1, 64·T1).
    give_up_at: Option<Instant>,
}

/// A call as the core sees it: the dialog plus what answering still needs.
struct Call {
    dialog: Dialog,
    /// The INVITE's server transaction while it has no final response.
    invite_tx: Option<TransactionKey>,
    /// The INVITE itself until the final response is sent (a delayed answer needs it).
    invite: Option<rsip::Request>,
    /// Where the INVITE came from (for `received`/`rport` in responses).
    source: SocketAddr,
    /// Our Contact in this dialog: the number dialled, at our address, on the caller's transport.
    contact: String,
    answer_sdp: String,
    scheduled: Option<Instant>,
    /// The call flow hung up before the ACK came: BYE once it does.
    hangup_on_ack: Option<EndReason>,
    /// `Some` for a leg we placed to an operator.
    outbound: Option<Outbound>,
    /// The RTP port was handed to the call flow (in [`Event::CallOffered`] or
    /// [`Event::OperatorAnswered`]): from then on the call flow owns it, takes its socket
    /// for the media, and frees it if the call ends first. The core must not free it
    /// then: a BYE right behind the ACK would close the socket before the media took it.
    port_handed_over: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum TimerRef {
    Server(TransactionKey),
    Client(TransactionKey),
    Dialog(DialogKey),
    Sweep,
}

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
}

impl UserAgent {
    pub fn new(config: &Config, settings: UaSettings, now: Instant) -> Self {
        let settings_calls = settings.max_calls.min(100_000);
        let transactions = (settings.peak_call_rate as usize)
            .saturating_mul(TRANSACTIONS_PER_CALL * LINGER_S)
            .min(1 << 20);
        let mut ua = UserAgent {
            registrar: Registrar::new(config, now),
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
        };
        ua.schedule(now + SWEEP_INTERVAL, TimerRef::Sweep);
        ua
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
        if !self.registrar.is_operator(&o.extension) {
            return Err(OriginateError::UnknownExtension(o.extension));
        }
        let Some(binding) = self.registrar.newest(&o.extension, now) else {
            return Err(OriginateError::NotRegistered(o.extension));
        };
        let target = binding.contact.clone();
        let peer = Peer {
            transport: binding.transport,
            addr: binding.source,
        };
        if !is_plain_uri(&target) {
            return Err(OriginateError::BadContact(o.extension));
        }
        let Some(rtp_port) = self.ports.allocate() else {
            return Err(OriginateError::NoRtpPort);
        };
        let id = self.next_call;
        let number = sanitize_user(&o.caller_number);
        let display = o
            .caller_name
            .as_deref()
            .map(sanitize_display)
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| number.clone());
        let domain = &self.settings.domain;
        let key = DialogKey {
            call_id: format!("{}{}@{domain}", random_tag(), random_tag()),
            local_tag: random_tag(),
        };
        let identity = format!("\"{display}\" <sip:{number}@{domain}>");
        let from = format!("{identity};tag={}", key.local_tag);
        let to = format!("<sip:{}@{domain}>", o.extension);
        let contact = contact_header("hotline", &self.settings.contact_host, peer.transport);
        let mut dialog = Dialog::uac(id, key.clone(), from, to, target, peer);
        dialog.rtp_port = rtp_port;
        let local = LocalMedia {
            address: self.settings.media_ip,
            port: rtp_port,
            session_id: dialog.sdp_session_id,
            session_version: dialog.sdp_version,
        };
        let offer = sdp::offer(&local, Direction::SendRecv);
        let text = format!(
            "INVITE {target} SIP/2.0\r\n\
             Via: SIP/2.0/{transport} {host};branch=z9hG4bK{branch};rport\r\n\
             Max-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\n\
             CSeq: 1 INVITE\r\nContact: {contact}\r\nP-Asserted-Identity: {identity}\r\n\
             Allow: {ALLOW}\r\nUser-Agent: {server}\r\nContent-Type: application/sdp\r\n\
             Content-Length: {len}\r\n\r\n{offer}",
            target = dialog.remote_target,
            transport = peer.transport.as_str(),
            host = self.settings.contact_host,
            branch = random_tag(),
            from = dialog.local_header,
            to = dialog.remote_header,
            call_id = key.call_id,
            server = self.settings.server,
            len = offer.len(),
        );
        let parsed = rsip::Request::try_from(text.as_bytes())
            .ok()
            .and_then(|req| Some((transaction::client_request_key(&req).ok()?, req)));
        let Some((tx_key, req)) = parsed else {
            tracing::warn!(extension = %o.extension, "cannot build an INVITE to the operator's contact");
            self.ports.release(rtp_port);
            return Err(OriginateError::BadContact(o.extension));
        };
        self.next_call += 1;
        let tx = ClientInvite::new(req, peer.transport.is_reliable(), self.settings.timers, now);
        self.client.insert(
            tx_key.clone(),
            ClientEntry {
                tx: ClientTx::Invite(tx),
                peer,
                scheduled: None,
                leg: Some(key.clone()),
                acks: Vec::new(),
            },
        );
        self.calls.insert(
            key,
            Box::new(Call {
                dialog,
                invite_tx: None,
                invite: None,
                source: peer.addr,
                contact,
                answer_sdp: String::new(),
                scheduled: None,
                hangup_on_ack: None,
                port_handed_over: false,
                outbound: Some(Outbound {
                    invite_tx: tx_key.clone(),
                    ringing: false,
                    cancel: CancelState::No,
                    give_up_at: None,
                }),
            }),
        );
        tracing::info!(call = id, extension = %o.extension, peer = %peer.addr, "ringing operator");
        self.drive_client(&tx_key, now);
        Ok(id)
    }

    /// Withdraws an operator leg: CANCEL while it has no final response (held back until a
    /// provisional response has arrived, §9.1), BYE once answered. The leg ends with one
    /// [`Event::CallEnded`] with [`EndReason::Cancelled`] — after the 487, after a 2xx that
    /// crossed the CANCEL (ACKed, then BYE), or when nothing came (Timer B before any 1xx,
    /// 64·T1 after the CANCEL). Inbound calls and unknown numbers are ignored.
    pub fn cancel(&mut self, call: u64, now: Instant) {
        let Some(dkey) = self.call_key(call) else {
            return;
        };
        let c = self.calls.get_mut(&dkey).expect("found");
        let Some(out) = c.outbound.as_mut() else {
            tracing::debug!(call, "cancel of an inbound call ignored");
            return;
        };
        if c.dialog.state == DialogState::Confirmed {
            self.send_bye(&dkey, now);
            self.end_call(&dkey, EndReason::Cancelled);
            return;
        }
        if out.cancel == CancelState::No {
            out.cancel = CancelState::Wanted;
            self.send_cancel(&dkey, now);
        }
    }

    /// Sends the CANCEL a leg wants once its INVITE transaction allows it (Proceeding).
    fn send_cancel(&mut self, dkey: &DialogKey, now: Instant) {
        let Some(out) = self.calls.get_mut(dkey).and_then(|c| c.outbound.as_mut()) else {
            return;
        };
        if out.cancel != CancelState::Wanted {
            return;
        }
        let Some(ClientEntry {
            tx: ClientTx::Invite(tx),
            peer,
            ..
        }) = self.client.get(&out.invite_tx)
        else {
            return;
        };
        let Some(cancel) = tx.cancel() else {
            return; // no provisional response yet
        };
        let peer = *peer;
        out.cancel = CancelState::Sent;
        out.give_up_at = Some(now + self.settings.timers.t1 * 64);
        self.start_client(cancel, peer, now);
        self.reschedule_call(dkey);
    }

    /// The dialog of call number `call`.
    fn call_key(&self, call: u64) -> Option<DialogKey> {
        self.calls
            .iter()
            .find(|(_, c)| c.dialog.id == call)
            .map(|(k, _)| k.clone())
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
            match target {
                TimerRef::Server(key) => {
                    if let Some(e) = self.server.get_mut(&key) {
                        e.scheduled = None;
                        match &mut e.tx {
                            ServerTx::Invite(t) => t.handle_timeout(now),
                            ServerTx::NonInvite(t) => t.handle_timeout(now),
                        }
                        self.drive_server(&key, now);
                    }
                }
                TimerRef::Client(key) => {
                    if let Some(e) = self.client.get_mut(&key) {
                        e.scheduled = None;
                        e.tx.handle_timeout(now);
                        self.drive_client(&key, now);
                    }
                }
                TimerRef::Dialog(key) => self.on_dialog_timer(&key, now),
                TimerRef::Sweep => {
                    for ev in self.registrar.sweep(now) {
                        self.events.push_back(Event::Registration(ev));
                    }
                    self.schedule(now + SWEEP_INTERVAL, TimerRef::Sweep);
                }
            }
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

    fn schedule(&mut self, at: Instant, target: TimerRef) {
        self.timer_seq += 1;
        self.timers.insert((at, self.timer_seq), target);
    }

    // ---------------------------------------------------------------- requests

    fn on_request(
        &mut self,
        req: rsip::Request,
        source: SocketAddr,
        transport: Transport,
        now: Instant,
    ) {
        let Ok(key) = transaction::server_key(&req) else {
            tracing::debug!(%source, "request without usable Via branch dropped");
            return;
        };
        if req.method == rsip::Method::Ack {
            // ACK to a non-2xx final belongs to the INVITE transaction (same branch)…
            if let Some(ServerEntry {
                tx: ServerTx::Invite(tx),
                ..
            }) = self.server.get_mut(&key).map(|e| &mut **e)
            {
                if matches!(
                    tx.state(),
                    ServerInviteState::Completed | ServerInviteState::Confirmed
                ) {
                    tx.on_ack(now);
                    self.drive_server(&key, now);
                    return;
                }
            }
            // …an ACK to a 2xx is a request of its own within the dialog (§13.2.2.4).
            self.on_ack(&req, now);
            return;
        }
        if let Some(e) = self.server.get_mut(&key) {
            match &mut e.tx {
                ServerTx::Invite(t) => t.on_retransmission(now),
                ServerTx::NonInvite(t) => t.on_retransmission(now),
            }
            self.drive_server(&key, now);
            return;
        }
        let Some(via) = first_header(&req.headers, "Via").and_then(|v| parse_via(top_via(v)).ok())
        else {
            return;
        };
        let peer = Peer {
            transport,
            addr: response_destination(&via, source, transport),
        };
        let reliable = transport.is_reliable();
        let tx = if req.method == rsip::Method::Invite {
            ServerTx::Invite(ServerInvite::new(reliable, self.settings.timers, now))
        } else {
            ServerTx::NonInvite(ServerNonInvite::new(reliable, self.settings.timers, now))
        };
        self.server.insert(
            key.clone(),
            Box::new(ServerEntry {
                tx,
                peer,
                scheduled: None,
                dialog: None,
            }),
        );
        let to_tag = first_header(&req.headers, "To")
            .and_then(tag_param)
            .map(str::to_string);
        let initial_invite = req.method == rsip::Method::Invite && to_tag.is_none();
        if !initial_invite && req.method != rsip::Method::Cancel {
            // We support no extension (RFC 3261 §8.2.2.3); an initial INVITE is checked
            // after its Request-URI (404 comes first).
            if let Some(r) = bad_extension(&req, source) {
                return self.respond(&key, 420, r, now);
            }
        }
        match req.method {
            rsip::Method::Invite => match to_tag {
                None => self.on_invite(req, key, source, peer, now),
                Some(tag) => self.on_reinvite(req, key, tag, source, now),
            },
            rsip::Method::Bye => self.on_bye(&req, &key, to_tag, source, now),
            rsip::Method::Cancel => self.on_cancel(&req, &key, source, now),
            rsip::Method::Options => {
                let ours = match req.uri.user() {
                    None => true,
                    Some(u) => self.settings.hotline_numbers.contains(u),
                };
                let resp = if ours || to_tag.is_some() {
                    ResponseBuilder::new(&req, source, 200, "OK")
                        .to_tag(&random_tag())
                        .header("Allow", ALLOW)
                        .header("Accept", "application/sdp")
                        .header("Accept-Language", "ru, en")
                        .header("Server", &self.settings.server)
                        .build()
                } else {
                    self.simple(&req, source, 404, "Not Found")
                };
                self.respond(&key, status_of(&resp), resp, now);
            }
            rsip::Method::Info => self.on_info(&req, &key, to_tag, source, now),
            rsip::Method::Register => {
                let outcome = self.registrar.handle(&req, source, transport, now);
                for ev in outcome.events {
                    self.events.push_back(Event::Registration(ev));
                }
                self.respond(&key, outcome.status, outcome.response, now);
            }
            _ => {
                let resp = ResponseBuilder::new(&req, source, 405, "Method Not Allowed")
                    .to_tag("hl405")
                    .header("Allow", ALLOW)
                    .header("Server", &self.settings.server)
                    .build();
                self.respond(&key, 405, resp, now);
            }
        }
    }

    /// INFO in a dialog: DTMF relay (RFC 2976 style, as phones send it), or an empty keepalive.
    fn on_info(
        &mut self,
        req: &rsip::Request,
        key: &TransactionKey,
        to_tag: Option<String>,
        source: SocketAddr,
        now: Instant,
    ) {
        let Some(dkey) = to_tag.and_then(|tag| self.find_call(req, &tag)) else {
            let r = self.simple(req, source, 481, "Call/Transaction Does Not Exist");
            return self.respond(key, 481, r, now);
        };
        if req.body.is_empty() {
            let r = self.simple(req, source, 200, "OK");
            return self.respond(key, 200, r, now);
        }
        let content_type = first_header(&req.headers, "Content-Type").unwrap_or_default();
        match crate::media::dtmf::parse_info(content_type, &req.body) {
            Ok(digit) => {
                let call = self.calls[&dkey].dialog.id;
                self.events.push_back(Event::Dtmf { call, digit });
                let r = self.simple(req, source, 200, "OK");
                self.respond(key, 200, r, now);
            }
            Err(e) => {
                tracing::debug!(%source, error = %e, "INFO refused");
                let r = ResponseBuilder::new(req, source, 415, "Unsupported Media Type")
                    .to_tag(&dkey.local_tag)
                    .header("Accept", "application/dtmf-relay, application/dtmf")
                    .header("Warning", format!("399 hotline \"{e}\""))
                    .build();
                self.respond(key, 415, r, now);
            }
        }
    }

    /// A final response with only the mandatory headers (and our To tag if it had none).
    fn simple(&self, req: &rsip::Request, source: SocketAddr, code: u16, reason: &str) -> Bytes {
        ResponseBuilder::new(req, source, code, reason)
            .to_tag(&random_tag())
            .header("Server", &self.settings.server)
            .build()
    }

    fn on_invite(
        &mut self,
        req: rsip::Request,
        key: TransactionKey,
        source: SocketAddr,
        peer: Peer,
        now: Instant,
    ) {
        // 100 Trying at once: stops the caller's INVITE retransmissions (§17.2.1).
        let trying = ResponseBuilder::new(&req, source, 100, "Trying").build();
        self.respond(&key, 100, trying, now);

        let number = req.uri.user().unwrap_or_default().to_string();
        if !self.settings.hotline_numbers.contains(&number) {
            let r = self.simple(&req, source, 404, "Not Found");
            return self.respond(&key, 404, r, now);
        }
        if self.calls.len() >= self.settings.max_calls {
            let r = ResponseBuilder::new(&req, source, 503, "Service Unavailable")
                .to_tag(&random_tag())
                .header("Retry-After", 5)
                .header("Server", &self.settings.server)
                .build();
            return self.respond(&key, 503, r, now);
        }
        if let Some(r) = bad_extension(&req, source) {
            return self.respond(&key, 420, r, now);
        }
        // RFC 3261 §21.4.16 / §21.4.7: a body we cannot read is 415, an answer the caller
        // cannot read is 406; both name what we do take.
        let ctype = first_header(&req.headers, "Content-Type").unwrap_or_default();
        if !req.body.is_empty() && !is_sdp_or_multipart(ctype) {
            let r = ResponseBuilder::new(&req, source, 415, "Unsupported Media Type")
                .to_tag(&random_tag())
                .header("Accept", "application/sdp")
                .header("Server", &self.settings.server)
                .build();
            return self.respond(&key, 415, r, now);
        }
        if !accepts_sdp(first_header(&req.headers, "Accept")) {
            let r = ResponseBuilder::new(&req, source, 406, "Not Acceptable")
                .to_tag(&random_tag())
                .header("Accept", "application/sdp")
                .header("Server", &self.settings.server)
                .build();
            return self.respond(&key, 406, r, now);
        }
        let local_tag = random_tag();
        let id = self.next_call;
        self.next_call += 1;
        let Some(mut dialog) = Dialog::from_invite(id, &req, local_tag, peer) else {
            let r = self.simple(&req, source, 400, "Bad Request");
            return self.respond(&key, 400, r, now);
        };
        let Some(rtp_port) = self.ports.allocate() else {
            let r = ResponseBuilder::new(&req, source, 503, "Service Unavailable")
                .to_tag(&dialog.key.local_tag)
                .header("Retry-After", 5)
                .header("Warning", "399 hotline \"no free RTP port\"")
                .header("Server", &self.settings.server)
                .build();
            return self.respond(&key, 503, r, now);
        };
        let local = LocalMedia {
            address: self.settings.media_ip,
            port: rtp_port,
            session_id: dialog.sdp_session_id,
            session_version: dialog.sdp_version,
        };
        let mut answer = match sdp_offer(&req).and_then(|offer| sdp::answer(offer, &local)) {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(%source, error = %e, "INVITE refused: SDP");
                let r = ResponseBuilder::new(&req, source, 488, "Not Acceptable Here")
                    .to_tag(&dialog.key.local_tag)
                    .header("Warning", format!("{} hotline \"{e}\"", warning_code(&e)))
                    .header("Server", &self.settings.server)
                    .build();
                self.ports.release(rtp_port);
                return self.respond(&key, 488, r, now);
            }
        };
        vet_media_destination(
            &mut answer.negotiated,
            dialog.peer.addr.ip(),
            &self.settings.media_trusted,
        );
        dialog.rtp_port = rtp_port;
        dialog.media = Some(answer.negotiated.clone());
        let dkey = dialog.key.clone();
        let contact = contact_header(&number, &self.settings.contact_host, peer.transport);
        self.events.push_back(Event::CallOffered {
            call: id,
            call_id: dkey.call_id.clone(),
            from: dialog.remote_header.clone(),
            number,
            rtp_port,
            media: answer.negotiated,
        });
        let ring = self.settings.answer_delay;
        let call = Call {
            dialog,
            invite_tx: Some(key.clone()),
            invite: Some(req),
            source,
            contact,
            answer_sdp: answer.sdp,
            scheduled: None,
            hangup_on_ack: None,
            outbound: None,
            port_handed_over: true,
        };
        self.calls.insert(dkey.clone(), Box::new(call));
        if let Some(entry) = self.server.get_mut(&key) {
            entry.dialog = Some(dkey.clone());
        }
        if ring.is_zero() {
            self.answer(&dkey, now);
        } else {
            let call = self.calls.get_mut(&dkey).expect("just inserted");
            let req = call.invite.as_ref().expect("kept until answered");
            let ringing = ResponseBuilder::new(req, source, 180, "Ringing")
                .to_tag(&dkey.local_tag)
                .header("Contact", &call.contact)
                .build();
            call.dialog.answer_at = Some(now + ring);
            self.respond(&key, 180, ringing, now);
            self.reschedule_call(&dkey);
        }
    }

    /// Sends the 200 OK to a pending INVITE.
    fn answer(&mut self, dkey: &DialogKey, now: Instant) {
        let Some(call) = self.calls.get_mut(dkey) else {
            return;
        };
        let (Some(req), Some(tx_key)) = (call.invite.take(), call.invite_tx.take()) else {
            return;
        };
        let ok = ResponseBuilder::new(&req, call.source, 200, "OK")
            .to_tag(&dkey.local_tag)
            .header("Contact", &call.contact)
            .header("Allow", ALLOW)
            .header("Server", &self.settings.server)
            .body("application/sdp", call.answer_sdp.as_bytes())
            .build();
        call.dialog.state = DialogState::WaitingAck;
        call.dialog.pending_ack = Some(PendingAck::new(
            ok.clone(),
            call.dialog.remote_cseq,
            &self.settings.timers,
            now,
        ));
        let id = call.dialog.id;
        self.respond(&tx_key, 200, ok, now);
        self.events.push_back(Event::CallAnswered { call: id });
        self.reschedule_call(dkey);
    }

    fn on_ack(&mut self, req: &rsip::Request, now: Instant) {
        let Some(tag) = first_header(&req.headers, "To").and_then(tag_param) else {
            return;
        };
        let tag = tag.to_string();
        let Some(dkey) = self.find_call(req, &tag) else {
            return;
        };
        let cseq = first_header(&req.headers, "CSeq")
            .and_then(|v| parse_cseq(v).ok())
            .map(|(n, _)| n);
        let call = self.calls.get_mut(&dkey).expect("found");
        if let Some(p) = &call.dialog.pending_ack {
            if Some(p.cseq) == cseq {
                call.dialog.pending_ack = None;
                let first = call.dialog.state != DialogState::Confirmed;
                call.dialog.state = DialogState::Confirmed;
                call.dialog.reinvite_in_progress = false;
                let id = call.dialog.id;
                if !req.body.is_empty() {
                    // The answer to the offer we made in a 2xx to an offer-less re-INVITE.
                    if let Ok(mut n) = sdp::parse_answer(&req.body) {
                        vet_media_destination(
                            &mut n,
                            call.dialog.peer.addr.ip(),
                            &self.settings.media_trusted,
                        );
                        if call.dialog.media.as_ref() != Some(&n) {
                            call.dialog.media = Some(n.clone());
                            self.events
                                .push_back(Event::MediaChanged { call: id, media: n });
                        }
                    }
                }
                if first {
                    self.events.push_back(Event::CallConfirmed { call: id });
                }
                if let Some(reason) = call.hangup_on_ack.take() {
                    self.send_bye(&dkey, now);
                    self.end_call(&dkey, reason);
                }
            }
        }
    }

    fn on_bye(
        &mut self,
        req: &rsip::Request,
        key: &TransactionKey,
        to_tag: Option<String>,
        source: SocketAddr,
        now: Instant,
    ) {
        let found = to_tag.and_then(|t| self.find_call(req, &t));
        let Some(dkey) = found else {
            let r = self.simple(req, source, 481, "Call/Transaction Does Not Exist");
            return self.respond(key, 481, r, now);
        };
        let cseq = first_header(&req.headers, "CSeq")
            .and_then(|v| parse_cseq(v).ok())
            .map(|(n, _)| n)
            .unwrap_or(0);
        let call = self.calls.get_mut(&dkey).expect("found");
        if !call.dialog.accept_remote_cseq(cseq, false) {
            let r = self.simple(req, source, 500, "Server Internal Error");
            return self.respond(key, 500, r, now);
        }
        let ok = self.simple(req, source, 200, "OK");
        self.respond(key, 200, ok, now);
        self.end_call(&dkey, EndReason::RemoteBye);
    }

    fn on_cancel(
        &mut self,
        req: &rsip::Request,
        key: &TransactionKey,
        source: SocketAddr,
        now: Instant,
    ) {
        let invite_key = TransactionKey {
            method: rsip::Method::Invite,
            ..key.clone()
        };
        let pending = match self.server.get(&invite_key).map(|e| &**e) {
            Some(ServerEntry {
                tx: ServerTx::Invite(tx),
                dialog,
                ..
            }) => Some((tx.state() == ServerInviteState::Proceeding, dialog.clone())),
            _ => None,
        };
        let Some((pending, dkey)) = pending else {
            let r = self.simple(req, source, 481, "Call/Transaction Does Not Exist");
            return self.respond(key, 481, r, now);
        };
        let ok = self.simple(req, source, 200, "OK");
        self.respond(key, 200, ok, now);
        if !pending {
            return; // already answered: CANCEL has no effect (§9.2)
        }
        if let Some(call) = dkey.as_ref().and_then(|k| self.calls.get_mut(k)) {
            let dkey = call.dialog.key.clone();
            call.invite_tx = None;
            if let Some(inv) = call.invite.take() {
                let r = ResponseBuilder::new(&inv, call.source, 487, "Request Terminated")
                    .to_tag(&dkey.local_tag)
                    .build();
                self.respond(&invite_key, 487, r, now);
            }
            self.end_call(&dkey, EndReason::Cancelled);
        }
    }

    fn on_reinvite(
        &mut self,
        req: rsip::Request,
        key: TransactionKey,
        to_tag: String,
        source: SocketAddr,
        now: Instant,
    ) {
        let Some(dkey) = self.find_call(&req, &to_tag) else {
            let r = self.simple(&req, source, 481, "Call/Transaction Does Not Exist");
            return self.respond(&key, 481, r, now);
        };
        let cseq = first_header(&req.headers, "CSeq")
            .and_then(|v| parse_cseq(v).ok())
            .map(|(n, _)| n)
            .unwrap_or(0);
        let call = self.calls.get_mut(&dkey).expect("found");
        if !call.dialog.accept_remote_cseq(cseq, false) {
            let r = self.simple(&req, source, 500, "Server Internal Error");
            return self.respond(&key, 500, r, now);
        }
        if call.dialog.state == DialogState::Early || call.dialog.reinvite_in_progress {
            // §14.2: an INVITE while one is still being answered.
            let r = ResponseBuilder::new(&req, source, 500, "Server Internal Error")
                .header("Retry-After", 1)
                .build();
            return self.respond(&key, 500, r, now);
        }
        if let Some(c) = first_header(&req.headers, "Contact") {
            call.dialog.remote_target = super::message::addr_uri(c).to_string();
        }
        call.dialog.sdp_version += 1;
        let local = LocalMedia {
            address: self.settings.media_ip,
            port: call.dialog.rtp_port,
            session_id: call.dialog.sdp_session_id,
            session_version: call.dialog.sdp_version,
        };
        let body = if req.body.is_empty() {
            // Offer-less re-INVITE: we offer, the ACK answers (§14.2).
            Ok(sdp::offer(&local, Direction::SendRecv))
        } else {
            sdp::answer(&req.body, &local).map(|mut a| {
                vet_media_destination(
                    &mut a.negotiated,
                    call.dialog.peer.addr.ip(),
                    &self.settings.media_trusted,
                );
                let id = call.dialog.id;
                if call.dialog.media.as_ref() != Some(&a.negotiated) {
                    call.dialog.media = Some(a.negotiated.clone());
                    self.events.push_back(Event::MediaChanged {
                        call: id,
                        media: a.negotiated,
                    });
                }
                a.sdp
            })
        };
        let call = self.calls.get_mut(&dkey).expect("found");
        let body = match body {
            Ok(b) => b,
            Err(e) => {
                call.dialog.sdp_version -= 1;
                let r = ResponseBuilder::new(&req, source, 488, "Not Acceptable Here")
                    .header("Warning", format!("{} hotline \"{e}\"", warning_code(&e)))
                    .build();
                return self.respond(&key, 488, r, now);
            }
        };
        let ok = ResponseBuilder::new(&req, source, 200, "OK")
            .header("Contact", &call.contact)
            .header("Allow", ALLOW)
            .header("Server", &self.settings.server)
            .body("application/sdp", body.as_bytes())
            .build();
        call.dialog.reinvite_in_progress = true;
        call.dialog.pending_ack = Some(PendingAck::new(
            ok.clone(),
            cseq,
            &self.settings.timers,
            now,
        ));
        self.respond(&key, 200, ok, now);
        self.reschedule_call(&dkey);
    }

    /// The dialog an in-dialog request belongs to (Call-ID and our tag).
    fn find_call(&self, req: &rsip::Request, local_tag: &str) -> Option<DialogKey> {
        let key = DialogKey {
            call_id: first_header(&req.headers, "Call-ID")?.to_string(),
            local_tag: local_tag.to_string(),
        };
        self.calls.contains_key(&key).then_some(key)
    }

    fn end_call(&mut self, dkey: &DialogKey, reason: EndReason) {
        if let Some(call) = self.calls.remove(dkey) {
            if !call.port_handed_over {
                self.ports.release(call.dialog.rtp_port);
            }
            self.events.push_back(Event::CallEnded {
                call: call.dialog.id,
                reason,
            });
        }
    }

    // ---------------------------------------------------------------- timers of calls

    fn reschedule_call(&mut self, dkey: &DialogKey) {
        let Some(call) = self.calls.get_mut(dkey) else {
            return;
        };
        let next = [
            call.dialog.answer_at,
            call.outbound.as_ref().and_then(|o| o.give_up_at),
            call.dialog
                .pending_ack
                .as_ref()
                .map(|p| p.next_resend.min(p.give_up)),
        ]
        .into_iter()
        .flatten()
        .min();
        if let Some(at) = next {
            if call.scheduled.is_none_or(|s| at < s) {
                call.scheduled = Some(at);
                self.schedule(at, TimerRef::Dialog(dkey.clone()));
            }
        }
    }

    fn on_dialog_timer(&mut self, dkey: &DialogKey, now: Instant) {
        let Some(call) = self.calls.get_mut(dkey) else {
            return;
        };
        call.scheduled = None;
        if let Some(out) = &call.outbound {
            if out.give_up_at.is_some_and(|t| t <= now) {
                // §9.1: no final response 64·T1 after our CANCEL: the INVITE counts as
                // cancelled and its transaction is destroyed.
                let tx = out.invite_tx.clone();
                self.client.remove(&tx);
                self.end_call(dkey, EndReason::Cancelled);
                return;
            }
        }
        if call.dialog.answer_at.is_some_and(|t| t <= now) {
            call.dialog.answer_at = None;
            self.answer(dkey, now);
            return;
        }
        let call = self.calls.get_mut(dkey).expect("present");
        let peer = call.dialog.peer;
        if let Some(p) = &mut call.dialog.pending_ack {
            if now >= p.give_up {
                // §13.3.1.4: no ACK within 64·T1: the session is over; tell the caller.
                call.dialog.pending_ack = None;
                tracing::info!(call_id = %dkey.call_id, "no ACK for 2xx; sending BYE");
                self.send_bye(dkey, now);
                self.end_call(dkey, EndReason::AckTimeout);
                return;
            }
            if now >= p.next_resend {
                self.transmits.push_back(Transmit {
                    peer,
                    bytes: p.response.clone(),
                });
                p.resent(&self.settings.timers, now);
            }
        }
        self.reschedule_call(dkey);
    }

    /// Sends BYE in a dialog through a client non-INVITE transaction.
    fn send_bye(&mut self, dkey: &DialogKey, now: Instant) {
        let Some(call) = self.calls.get_mut(dkey) else {
            return;
        };
        let branch = format!("z9hG4bK{}", random_tag());
        let bytes = call.dialog.request(
            "BYE",
            &self.settings.contact_host,
            &branch,
            &self.settings.server,
        );
        let peer = call.dialog.peer;
        let Ok(req) = rsip::Request::try_from(&bytes[..]) else {
            tracing::error!("could not parse our own BYE");
            return;
        };
        self.start_client(req, peer, now);
    }

    /// Runs one of our non-INVITE requests (BYE, CANCEL) in a client transaction.
    fn start_client(&mut self, req: rsip::Request, peer: Peer, now: Instant) {
        let Ok(key) = transaction::client_request_key(&req) else {
            return;
        };
        let tx = ClientNonInvite::new(req, peer.transport.is_reliable(), self.settings.timers, now);
        self.client.insert(
            key.clone(),
            ClientEntry {
                tx: ClientTx::NonInvite(tx),
                peer,
                scheduled: None,
                leg: None,
                acks: Vec::new(),
            },
        );
        self.drive_client(&key, now);
    }

    // ---------------------------------------------------------------- operator legs

    /// A response the INVITE transaction of leg `leg` delivered.
    fn on_leg_response(
        &mut self,
        tx_key: &TransactionKey,
        leg: &DialogKey,
        resp: rsip::Response,
        now: Instant,
    ) {
        match resp.status_code.code() {
            100..=199 => self.on_leg_provisional(leg, resp.status_code.code(), now),
            200..=299 => self.on_leg_2xx(tx_key, leg, &resp, now),
            status => self.on_leg_failed(leg, status),
        }
    }

    fn on_leg_provisional(&mut self, leg: &DialogKey, status: u16, now: Instant) {
        let Some(call) = self.calls.get_mut(leg) else {
            return;
        };
        let Some(out) = call.outbound.as_mut() else {
            return;
        };
        match out.cancel {
            CancelState::Wanted => self.send_cancel(leg, now),
            CancelState::Sent => {}
            CancelState::No => {
                if matches!(status, 180 | 183) && !out.ringing {
                    out.ringing = true;
                    let call = call.dialog.id;
                    self.events.push_back(Event::OperatorRinging { call });
                }
            }
        }
    }

    /// A 2xx to a leg's INVITE: the answer, a retransmission of it, or one nobody wants any
    /// more (the leg was cancelled or has ended, or a second fork answered).
    fn on_leg_2xx(
        &mut self,
        tx_key: &TransactionKey,
        leg: &DialogKey,
        resp: &rsip::Response,
        now: Instant,
    ) {
        let tag = first_header(&resp.headers, "To")
            .and_then(tag_param)
            .unwrap_or_default()
            .to_string();
        let Some(entry) = self.client.get(tx_key) else {
            return;
        };
        let peer = entry.peer;
        if let Some((_, ack)) = entry.acks.iter().find(|(t, _)| *t == tag) {
            // §13.2.2.4: every retransmission of the 2xx gets the ACK again.
            let bytes = ack.clone();
            self.transmits.push_back(Transmit { peer, bytes });
            return;
        }
        let branch = format!("z9hG4bK{}", random_tag());
        let (host, server) = (&self.settings.contact_host, &self.settings.server);
        let wanted = self.calls.get_mut(leg).filter(|c| {
            c.dialog.state == DialogState::Early
                && c.outbound
                    .as_ref()
                    .is_some_and(|o| o.cancel == CancelState::No)
        });
        if let Some(call) = wanted {
            call.dialog.confirm_uac(resp);
            let ack = call.dialog.ack(1, host, &branch, server);
            let answer = sdp_of(&resp.headers, &resp.body).and_then(sdp::parse_answer);
            let id = call.dialog.id;
            let rtp_port = call.dialog.rtp_port;
            if let Ok(media) = &answer {
                call.dialog.media = Some(media.clone());
                call.port_handed_over = true;
            }
            self.remember_ack(tx_key, tag, ack.clone());
            self.transmits.push_back(Transmit { peer, bytes: ack });
            match answer {
                Ok(media) => {
                    tracing::info!(call = id, "operator answered");
                    self.events.push_back(Event::OperatorAnswered {
                        call: id,
                        rtp_port,
                        media,
                    });
                }
                Err(e) => {
                    tracing::info!(call = id, error = %e, "operator's 2xx without a usable SDP answer; BYE");
                    self.send_bye(leg, now);
                    self.fail_leg(leg, 488);
                }
            }
            return;
        }
        // Still a dialog the far end considers up: ACK it, then end it (§13.2.2.4, §15).
        if entry.acks.len() >= MAX_2XX_DIALOGS {
            tracing::debug!(call_id = %leg.call_id, "too many 2xx dialogs for one INVITE; dropped");
            return;
        }
        let ClientTx::Invite(tx) = &entry.tx else {
            return;
        };
        let invite = tx.request();
        let text = |name| first_header(&invite.headers, name).unwrap_or_default();
        let key = DialogKey {
            call_id: text("Call-ID").to_string(),
            local_tag: tag_param(text("From")).unwrap_or_default().to_string(),
        };
        let mut dialog = Dialog::uac(
            0,
            key,
            text("From").to_string(),
            text("To").to_string(),
            invite.uri.to_string(),
            peer,
        );
        dialog.confirm_uac(resp);
        let ack = dialog.ack(1, host, &branch, server);
        let bye_branch = format!("z9hG4bK{}", random_tag());
        let bye = dialog.request("BYE", host, &bye_branch, server);
        self.remember_ack(tx_key, tag, ack.clone());
        self.transmits.push_back(Transmit { peer, bytes: ack });
        if let Ok(req) = rsip::Request::try_from(&bye[..]) {
            self.start_client(req, peer, now);
        }
        let cancelled = self.calls.get(leg).is_some_and(|c| {
            c.dialog.state == DialogState::Early
                && c.outbound
                    .as_ref()
                    .is_some_and(|o| o.cancel != CancelState::No)
        });
        if cancelled {
            tracing::info!(call_id = %leg.call_id, "2xx crossed our CANCEL; ACK and BYE");
            self.end_call(leg, EndReason::Cancelled);
        }
    }

    fn remember_ack(&mut self, tx_key: &TransactionKey, tag: String, ack: Bytes) {
        if let Some(e) = self.client.get_mut(tx_key) {
            e.acks.push((tag, ack));
        }
    }

    /// A leg's INVITE got a final ≥ 300 (ACKed by the transaction) or timed out (408): the
    /// leg ends, as cancelled if we had asked for that.
    fn on_leg_failed(&mut self, leg: &DialogKey, status: u16) {
        let Some(call) = self.calls.get(leg) else {
            return;
        };
        let Some(out) = &call.outbound else {
            return;
        };
        if call.dialog.state != DialogState::Early {
            return;
        }
        if out.cancel == CancelState::No {
            self.fail_leg(leg, status);
        } else {
            self.end_call(leg, EndReason::Cancelled);
        }
    }

    /// Ends an operator leg that was never answered with [`Event::OperatorFailed`].
    fn fail_leg(&mut self, leg: &DialogKey, status: u16) {
        if let Some(call) = self.calls.remove(leg) {
            if !call.port_handed_over {
                self.ports.release(call.dialog.rtp_port);
            }
            tracing::info!(call = call.dialog.id, status, "operator leg failed");
            self.events.push_back(Event::OperatorFailed {
                call: call.dialog.id,
                status,
            });
        }
    }

    // ---------------------------------------------------------------- responses

    fn on_response(&mut self, resp: rsip::Response, now: Instant) {
        let Ok(key) = transaction::client_key(&resp) else {
            return;
        };
        let Some(e) = self.client.get_mut(&key) else {
            tracing::debug!("stray response dropped");
            return;
        };
        e.tx.on_response(resp, now);
        self.drive_client(&key, now);
    }

    // ---------------------------------------------------------------- transaction plumbing

    /// Hands a response to a server transaction and collects what it wants sent.
    fn respond(&mut self, key: &TransactionKey, status: u16, bytes: Bytes, now: Instant) {
        let Some(e) = self.server.get_mut(key) else {
            return;
        };
        let result = match &mut e.tx {
            ServerTx::Invite(t) => t.send_response(status, bytes, now),
            ServerTx::NonInvite(t) => t.send_response(status, bytes, now),
        };
        if let Err(err) = result {
            tracing::warn!(%err, status, "response refused by transaction");
        }
        self.drive_server(key, now);
    }

    fn drive_server(&mut self, key: &TransactionKey, now: Instant) {
        let Some(e) = self.server.get_mut(key) else {
            return;
        };
        let mut terminated = false;
        loop {
            let out = match &mut e.tx {
                ServerTx::Invite(t) => t.poll_output(),
                ServerTx::NonInvite(t) => t.poll_output(),
            };
            match out {
                Some(Output::Transmit(bytes)) => self.transmits.push_back(Transmit {
                    peer: e.peer,
                    bytes,
                }),
                Some(Output::Terminated) => terminated = true,
                Some(Output::Timeout) => {
                    tracing::debug!("server transaction timed out (no ACK)");
                }
                Some(Output::Deliver(_)) => {}
                None => break,
            }
        }
        if terminated {
            self.server.remove(key);
            return;
        }
        let next = match &e.tx {
            ServerTx::Invite(t) => t.poll_timeout(),
            ServerTx::NonInvite(t) => t.poll_timeout(),
        };
        if let Some(at) = next {
            if e.scheduled.is_none_or(|s| at < s) {
                e.scheduled = Some(at);
                self.schedule(at.max(now), TimerRef::Server(key.clone()));
            }
        }
    }

    fn drive_client(&mut self, key: &TransactionKey, now: Instant) {
        let Some(e) = self.client.get_mut(key) else {
            return;
        };
        let leg = e.leg.clone();
        let mut terminated = false;
        let mut timed_out = false;
        let mut delivered = Vec::new();
        loop {
            let out = e.tx.poll_output();
            match out {
                Some(Output::Transmit(bytes)) => self.transmits.push_back(Transmit {
                    peer: e.peer,
                    bytes,
                }),
                Some(Output::Deliver(resp)) => {
                    tracing::debug!(status = resp.status_code.code(), "response to our request");
                    if leg.is_some() {
                        delivered.push(resp);
                    }
                }
                Some(Output::Timeout) => {
                    tracing::info!(peer = %e.peer.addr, "our request timed out");
                    timed_out = true;
                }
                Some(Output::Terminated) => terminated = true,
                None => break,
            }
        }
        if terminated {
            self.client.remove(key);
        } else if let Some(at) = e.tx.poll_timeout() {
            if e.scheduled.is_none_or(|s| at < s) {
                e.scheduled = Some(at);
                self.schedule(at.max(now), TimerRef::Client(key.clone()));
            }
        }
        let Some(leg) = leg else {
            return;
        };
        for resp in delivered {
            self.on_leg_response(key, &leg, resp, now);
        }
        if timed_out {
            self.on_leg_failed(&leg, 408);
        }
    }
}

/// Our Contact: the dialled number at our address, with `transport=tcp` when on TCP so that
/// in-dialog requests come back over the same transport.
fn contact_header(number: &str, host: &str, transport: Transport) -> String {
    match transport {
        Transport::Udp => format!("<sip:{number}@{host}>"),
        Transport::Tcp => format!("<sip:{number}@{host};transport=tcp>"),
    }
}

/// The SDP offer of an INVITE, if it carries one.
/// 420 Bad Extension when the request's `Require` asks for anything: we support no
/// extension (RFC 3261 §8.2.2.3), and say which in `Unsupported`.
fn bad_extension(req: &rsip::Request, source: SocketAddr) -> Option<Bytes> {
    let required = first_header(&req.headers, "Require")
        .map(str::trim)
        .filter(|r| !r.is_empty())?;
    Some(
        ResponseBuilder::new(req, source, 420, "Bad Extension")
            .to_tag(&random_tag())
            .header("Unsupported", required)
            .build(),
    )
}

/// `application/sdp`, or a multipart body (SIP-I carriers wrap the SDP with ISUP); the
/// latter is then read by [`sdp_of`] like any other body and refused with 488 if no SDP.
fn is_sdp_or_multipart(ctype: &str) -> bool {
    let t = ctype.split(';').next().unwrap_or_default().trim();
    t.eq_ignore_ascii_case("application/sdp") || t.to_ascii_lowercase().starts_with("multipart/")
}

/// Whether an `Accept` header (absent: SDP, RFC 3261 §20.1) takes `application/sdp`.
fn accepts_sdp(accept: Option<&str>) -> bool {
    let Some(accept) = accept.map(str::trim).filter(|a| !a.is_empty()) else {
        return true;
    };
    accept.split(',').any(|range| {
        let t = range.split(';').next().unwrap_or_default().trim();
        ["application/sdp", "application/*", "*/*"]
            .iter()
            .any(|ok| t.eq_ignore_ascii_case(ok))
    })
}

fn sdp_offer(req: &rsip::Request) -> Result<&[u8], SdpError> {
    sdp_of(&req.headers, &req.body)
}

/// The SDP body of a message, if it carries one.
fn sdp_of<'a>(headers: &rsip::Headers, body: &'a [u8]) -> Result<&'a [u8], SdpError> {
    let ctype = first_header(headers, "Content-Type").unwrap_or_default();
    if body.is_empty()
        || !ctype
            .trim()
            .to_ascii_lowercase()
            .starts_with("application/sdp")
    {
        return Err(SdpError::Parse("an SDP body is required".into()));
    }
    Ok(body)
}

/// A registered Contact we can put on a request line as it is: no spaces, controls, angle
/// brackets or quotes (it is parsed again with the whole INVITE before anything is sent).
fn is_plain_uri(uri: &str) -> bool {
    (uri.starts_with("sip:") || uri.starts_with("sips:"))
        && !uri
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"'))
}

/// A caller's number reduced to a SIP URI user part that needs no escaping and cannot end
/// the URI or the header: letters, digits and `+-._~*!`, at most 32 of them; `anonymous`
/// when nothing is left.
pub fn sanitize_user(raw: &str) -> String {
    let user: String = raw
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "+-._~*!".contains(*c))
        .take(32)
        .collect();
    if user.is_empty() {
        "anonymous".to_string()
    } else {
        user
    }
}

/// A caller's display name reduced to what a quoted string may hold unescaped (RFC 3261
/// `qdtext`): no quotes, backslashes or control characters (CR and LF among them), and no
/// angle brackets either (legal there, but they mislead parsers that look for `<` to find the
/// URI); runs of white space become one space; at most 64 characters.
pub fn sanitize_display(raw: &str) -> String {
    let cleaned: String = raw
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .filter(|c| !matches!(c, '"' | '\\' | '<' | '>'))
        .collect();
    cleaned
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(64)
        .collect()
}

/// Where a caller's RTP may go before any has arrived from it. An SDP address other than
/// the signalling source's is believed only for trusted peers (the carrier's SBC, whose
/// media gateway has another address). Anyone else's is dropped, so the media plane sends
/// nothing until RTP arrives and then answers where it came from (symmetric RTP, see
/// [`crate::media::rtp::Latch`]). Otherwise one INVITE naming a third party's address would
/// make the hotline stream a greeting at it: a reflector.
pub fn vet_media_destination(n: &mut Negotiated, signalling: IpAddr, trusted: &[ipnet::IpNet]) {
    if let Some(dest) = n.remote_rtp {
        if dest.ip().to_canonical() != signalling.to_canonical()
            && !super::guard::is_trusted(trusted, signalling)
        {
            tracing::debug!(%dest, %signalling, "SDP address is not the caller's: latching");
            n.remote_rtp = None;
        }
    }
}

/// RFC 3261 §20.43 warning codes: 305 incompatible media format, 304 media type not available.
fn warning_code(e: &SdpError) -> u16 {
    match e {
        SdpError::NoCommonCodec => 305,
        SdpError::NoAudio => 304,
        _ => 399,
    }
}

fn status_of(resp: &Bytes) -> u16 {
    resp.get(8..11)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(500)
}

/// Random tag / branch material: 64 bits of entropy, hex.
pub fn random_tag() -> String {
    format!("{:016x}", rand::random::<u64>())
}

#[cfg(test)]
mod tests {
    //! The core in simulated time: no sockets, a fake clock, bytes checked as they would
    //! leave the machine.
    use super::*;

    const CALLER: &str = "192.0.2.10:5062";

    fn ua(t0: Instant) -> UserAgent {
        let config = Config::from_toml(
            "[sip]\nlisten = \"127.0.0.1:5060\"\ndomain = \"hotline.test\"\nhotline_numbers = [\"8800\"]\n",
        )
        .unwrap();
        let settings = UaSettings::from_config(&config, "127.0.0.1:5060".parse().unwrap());
        UserAgent::new(&config, settings, t0)
    }

    fn request(text: &str) -> rsip::SipMessage {
        rsip::SipMessage::try_from(text).unwrap()
    }

    /// The server transaction table is allocated for the configured peak rate's 32 s of
    /// lingering transactions, not for the 2,000 calls/s of the SIP benchmark.
    #[test]
    fn transaction_table_is_sized_by_the_peak_call_rate() {
        let base = "[sip]\nlisten = \"127.0.0.1:5060\"\ndomain = \"hotline.test\"\nhotline_numbers = [\"8800\"]\n";
        let capacity = |limits: &str| {
            let config = Config::from_toml(&format!("{base}{limits}")).unwrap();
            let settings = UaSettings::from_config(&config, "127.0.0.1:5060".parse().unwrap());
            UserAgent::new(&config, settings, Instant::now())
                .server
                .capacity()
        };
        let default = capacity("");
        assert!((200 * 64..100_000).contains(&default), "{default}");
        let busy = capacity("[limits]\npeak_call_rate = 2000\n");
        assert!(busy >= 2000 * 64, "{busy}");
    }

    fn invite(call_id: &str, branch: &str) -> rsip::SipMessage {
        let sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
        request(&format!(
            "INVITE sip:8800@hotline.test SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch={branch}\r\n\
             From: <sip:caller@x>;tag=ft\r\nTo: <sip:8800@hotline.test>\r\nCall-ID: {call_id}\r\n\
             CSeq: 1 INVITE\r\nContact: <sip:caller@{CALLER}>\r\nContent-Type: application/sdp\r\n\
             Content-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        ))
    }

    fn drain(ua: &mut UserAgent) -> Vec<String> {
        std::iter::from_fn(|| ua.poll_transmit())
            .map(|t| String::from_utf8(t.bytes.to_vec()).unwrap())
            .collect()
    }

    /// Runs the clock from `from` to `to` in 10 ms steps, collecting what is sent and when.
    fn run(ua: &mut UserAgent, from: Instant, to: Instant) -> Vec<(Duration, String)> {
        let mut out = Vec::new();
        let mut now = from;
        while now <= to {
            if ua.poll_timeout().is_some_and(|t| t <= now) {
                ua.handle_timeout(now);
                for m in drain(ua) {
                    out.push((now - from, m));
                }
            }
            now += Duration::from_millis(10);
        }
        out
    }

    /// An in-dialog request from the caller (To carries our tag).
    fn in_dialog(method: &str, call_id: &str, branch: &str, to: &str, cseq: u32) -> String {
        format!(
            "{method} sip:8800@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch={branch}\r\n\
             From: <sip:caller@x>;tag=ft\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n\
             Content-Length: 0\r\n\r\n"
        )
    }

    /// The To header (with our tag) of a response.
    fn to_of(msg: &str) -> String {
        msg.split("\r\n")
            .find_map(|l| l.strip_prefix("To: "))
            .unwrap()
            .to_string()
    }

    fn src() -> SocketAddr {
        CALLER.parse().unwrap()
    }

    #[test]
    fn unacknowledged_2xx_backs_off_to_t2_then_bye_at_64_t1() {
        let t0 = Instant::now();
        let mut ua = ua(t0);
        ua.handle_message(invite("c1", "z9hG4bK1"), src(), Transport::Udp, t0);
        let sent = drain(&mut ua);
        assert!(sent[0].starts_with("SIP/2.0 100"));
        assert!(sent[1].starts_with("SIP/2.0 200"));
        let later = run(&mut ua, t0, t0 + Duration::from_secs(33));
        let resends: Vec<u64> = later
            .iter()
            .filter(|(_, m)| m.starts_with("SIP/2.0 200"))
            .map(|(d, _)| d.as_millis() as u64)
            .collect();
        // 0.5, 1.5, 3.5, 7.5, then every 4 s until 32 s.
        assert_eq!(
            resends,
            vec![500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
        );
        let bye = later.iter().find(|(_, m)| m.starts_with("BYE ")).unwrap();
        assert_eq!(bye.0, Duration::from_secs(32));
        assert!(bye.1.contains("To: <sip:caller@x>;tag=ft\r\n"));
        assert_eq!(ua.active_calls(), 0);
        let events: Vec<Event> = std::iter::from_fn(|| ua.poll_event()).collect();
        assert!(events.contains(&Event::CallEnded {
            call: 1,
            reason: EndReason::AckTimeout
        }));
    }

    #[test]
    fn unanswered_bye_is_retransmitted_until_timer_f() {
        let t0 = Instant::now();
        let mut ua = ua(t0);
        ua.handle_message(invite("c2", "z9hG4bK2"), src(), Transport::Udp, t0);
        drain(&mut ua);
        let t_bye = t0 + Duration::from_secs(32);
        run(&mut ua, t0, t_bye);
        let byes: Vec<u64> = run(&mut ua, t_bye, t_bye + Duration::from_secs(40))
            .iter()
            .filter(|(_, m)| m.starts_with("BYE "))
            .map(|(d, _)| d.as_millis() as u64)
            .collect();
        // Timer E: 0.5, 1.5, 3.5, 7.5, then T2 (4 s) steps, up to Timer F at 32 s.
        assert_eq!(byes[..5], [500, 1500, 3500, 7500, 11500]);
        assert!(byes.iter().all(|&t| t < 32_000));
        assert_eq!(
            ua.open_transactions(),
            0,
            "Timer F ended the BYE; Timer L the INVITE"
        );
    }

    #[test]
    fn ack_stops_retransmissions_and_transactions_are_cleaned_up() {
        let t0 = Instant::now();
        let mut ua = ua(t0);
        ua.handle_message(invite("c3", "z9hG4bK3"), src(), Transport::Udp, t0);
        let to = to_of(&drain(&mut ua).pop().unwrap());
        let t1 = t0 + Duration::from_millis(200);
        let ack = in_dialog("ACK", "c3", "z9hG4bKa", &to, 1);
        ua.handle_message(request(&ack), src(), Transport::Udp, t1);
        assert!(run(&mut ua, t1, t0 + Duration::from_secs(40)).is_empty());
        assert_eq!(ua.active_calls(), 1, "the call stays up");
        assert_eq!(
            ua.open_transactions(),
            0,
            "Timer L removed the INVITE transaction"
        );
    }

    #[test]
    fn bye_response_is_absorbed_on_retransmitted_bye() {
        let t0 = Instant::now();
        let mut ua = ua(t0);
        ua.handle_message(invite("c4", "z9hG4bK4"), src(), Transport::Udp, t0);
        let to = to_of(&drain(&mut ua).pop().unwrap());
        let bye = in_dialog("BYE", "c4", "z9hG4bKb", &to, 2);
        ua.handle_message(request(&bye), src(), Transport::Udp, t0);
        let first = drain(&mut ua);
        assert_eq!(first.len(), 1);
        assert!(first[0].starts_with("SIP/2.0 200"));
        // The retransmitted BYE gets the same 200 again from the transaction (not a 481).
        ua.handle_message(
            request(&bye),
            src(),
            Transport::Udp,
            t0 + Duration::from_millis(500),
        );
        assert_eq!(drain(&mut ua), first);
        // After Timer J (64·T1) the transaction is gone.
        run(&mut ua, t0, t0 + Duration::from_secs(33));
        assert_eq!(ua.open_transactions(), 0);
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
    fn info_dtmf_becomes_an_event_and_other_bodies_get_415() {
        let t0 = Instant::now();
        let mut ua = ua(t0);
        ua.handle_message(invite("i1", "z9hG4bKi1"), src(), Transport::Udp, t0);
        let to = to_of(&drain(&mut ua).pop().unwrap());
        let info = |branch: &str, ctype: &str, body: &str, cseq: u32| {
            format!(
                "INFO sip:8800@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch={branch}\r\n\
                 From: <sip:caller@x>;tag=ft\r\nTo: {to}\r\nCall-ID: i1\r\nCSeq: {cseq} INFO\r\n\
                 Content-Type: {ctype}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        let _: Vec<Event> = std::iter::from_fn(|| ua.poll_event()).collect();
        let msg = info(
            "z9hG4bKi2",
            "application/dtmf-relay",
            "Signal=*\r\nDuration=250\r\n",
            2,
        );
        ua.handle_message(request(&msg), src(), Transport::Udp, t0);
        assert!(drain(&mut ua)[0].starts_with("SIP/2.0 200"));
        assert_eq!(
            ua.poll_event(),
            Some(Event::Dtmf {
                call: 1,
                digit: '*'
            })
        );
        let msg = info("z9hG4bKi3", "text/plain", "hello", 3);
        ua.handle_message(request(&msg), src(), Transport::Udp, t0);
        let r = drain(&mut ua);
        assert!(r[0].starts_with("SIP/2.0 415"), "{}", r[0]);
        assert!(r[0].contains("Accept: application/dtmf-relay"));
        assert_eq!(ua.poll_event(), None);
    }

    #[test]
    fn hangup_while_ringing_refuses_the_invite() {
        let t0 = Instant::now();
        let config = Config::from_toml(
            "[sip]\nlisten = \"127.0.0.1:5060\"\ndomain = \"hotline.test\"\n\
             hotline_numbers = [\"8800\"]\nanswer_delay_ms = 3000\n",
        )
        .unwrap();
        let settings = UaSettings::from_config(&config, "127.0.0.1:5060".parse().unwrap());
        let mut ua = UserAgent::new(&config, settings, t0);
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

    struct NoPorts;
    impl RtpPorts for NoPorts {
        fn allocate(&mut self) -> Option<u16> {
            None
        }
        fn release(&mut self, _port: u16) {}
    }

    #[test]
    fn no_rtp_port_gives_503() {
        let t0 = Instant::now();
        let mut ua = ua(t0).with_ports(Box::new(NoPorts));
        ua.handle_message(invite("p1", "z9hG4bKp1"), src(), Transport::Udp, t0);
        let sent = drain(&mut ua);
        assert!(sent[1].starts_with("SIP/2.0 503"), "{}", sent[1]);
        assert!(sent[1].contains("no free RTP port"));
        assert_eq!(ua.active_calls(), 0);
    }

    // ------------------------------------------------------------ operator legs

    /// Where operator 1001's REGISTER comes from (its NAT's public side)…
    const OP_SOURCE: &str = "198.51.100.20:40000";
    /// …and the Contact it registers (its private address).
    const OP_CONTACT: &str = "sip:1001@10.0.0.5:5070";

    /// Allocates like [`CountingPorts`] and remembers what is held, so tests see releases.
    #[derive(Clone, Default)]
    struct HeldPorts(std::sync::Arc<std::sync::Mutex<(u16, HashSet<u16>)>>);
    impl HeldPorts {
        fn held(&self) -> HashSet<u16> {
            self.0.lock().unwrap().1.clone()
        }
    }
    impl RtpPorts for HeldPorts {
        fn allocate(&mut self) -> Option<u16> {
            let mut g = self.0.lock().unwrap();
            let port = 20000 + g.0 * 2;
            g.0 += 1;
            g.1.insert(port);
            Some(port)
        }
        fn release(&mut self, port: u16) {
            self.0.lock().unwrap().1.remove(&port);
        }
    }

    fn op_ua(t0: Instant) -> (UserAgent, HeldPorts) {
        let config = Config::from_toml(
            "[sip]\nlisten = \"127.0.0.1:5060\"\ndomain = \"hotline.test\"\n\
             hotline_numbers = [\"8800\"]\n\n\
             [[operators]]\nextension = \"1001\"\nname = \"Op One\"\npassword = \"pw1\"\n\n\
             [[operators]]\nextension = \"1002\"\nname = \"Op Two\"\npassword = \"pw2\"\n",
        )
        .unwrap();
        let settings = UaSettings::from_config(&config, "127.0.0.1:5060".parse().unwrap());
        let ports = HeldPorts::default();
        let ua = UserAgent::new(&config, settings, t0).with_ports(Box::new(ports.clone()));
        (ua, ports)
    }

    /// Digest REGISTER of `user` (challenge, then the answer) from `source`.
    fn register_op(
        ua: &mut UserAgent,
        user: &str,
        password: &str,
        contact: &str,
        source: &str,
        transport: Transport,
        now: Instant,
    ) {
        let tr = transport.as_str();
        let register = |n: u32, auth: &str| {
            format!(
                "REGISTER sip:hotline.test SIP/2.0\r\nVia: SIP/2.0/{tr} {source};branch=z9hG4bKreg{user}{n};rport\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:{user}@hotline.test>;tag=r{user}\r\nTo: <sip:{user}@hotline.test>\r\n\
                 Call-ID: reg-{user}\r\nCSeq: {n} REGISTER\r\nContact: <{contact}>\r\nExpires: 300\r\n{auth}\
                 Content-Length: 0\r\n\r\n"
            )
        };
        let source: SocketAddr = source.parse().unwrap();
        let n = now.elapsed().as_nanos() as u32 % 1000 * 2 + 1;
        ua.handle_message(request(&register(n, "")), source, transport, now);
        let challenge = drain(ua).pop().unwrap();
        assert!(challenge.starts_with("SIP/2.0 401"), "{challenge}");
        let www = challenge
            .split("\r\n")
            .find_map(|l| l.strip_prefix("WWW-Authenticate: "))
            .unwrap();
        let auth = crate::sip::digest::client_authorization(
            www,
            "REGISTER",
            "sip:hotline.test",
            user,
            password,
            "c0ffee",
            1,
        )
        .unwrap();
        let msg = register(n + 1, &format!("Authorization: {auth}\r\n"));
        ua.handle_message(request(&msg), source, transport, now);
        let ok = drain(ua).pop().unwrap();
        assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
        let _: Vec<Event> = std::iter::from_fn(|| ua.poll_event()).collect();
    }

    fn leg_to(ext: &str, number: &str, name: Option<&str>) -> Originate {
        Originate {
            extension: ext.into(),
            caller_number: number.into(),
            caller_name: name.map(str::to_string),
        }
    }

    fn drain_peers(ua: &mut UserAgent) -> Vec<(Peer, String)> {
        std::iter::from_fn(|| ua.poll_transmit())
            .map(|t| (t.peer, String::from_utf8(t.bytes.to_vec()).unwrap()))
            .collect()
    }

    fn events(ua: &mut UserAgent) -> Vec<Event> {
        std::iter::from_fn(|| ua.poll_event()).collect()
    }

    fn line<'a>(msg: &'a str, name: &str) -> &'a str {
        msg.split("\r\n")
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(": ")))
            .unwrap_or_else(|| panic!("no {name} in {msg}"))
    }

    fn op_src() -> SocketAddr {
        OP_SOURCE.parse().unwrap()
    }

    /// The operator's SDP answer: PCMA and telephone-event.
    const OP_ANSWER: &str = "v=0\r\no=- 2 2 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\n\
        m=audio 30000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n";

    /// The operator's response to one of our requests (`req` as sent).
    fn op_reply(
        req: &str,
        status: u16,
        to_tag: Option<&str>,
        extra: &str,
        body: &str,
    ) -> rsip::SipMessage {
        let to = match to_tag {
            Some(t) if !line(req, "To").contains(";tag=") => format!("{};tag={t}", line(req, "To")),
            _ => line(req, "To").to_string(),
        };
        let ctype = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp\r\n"
        };
        request(&format!(
            "SIP/2.0 {status} Whatever\r\nVia: {}\r\nFrom: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\n\
             {extra}{ctype}Content-Length: {}\r\n\r\n{body}",
            line(req, "Via"),
            line(req, "From"),
            line(req, "Call-ID"),
            line(req, "CSeq"),
            body.len()
        ))
    }

    const OP_2XX_EXTRA: &str = "Contact: <sip:1001@10.0.0.5:5070;ob>\r\n\
        Record-Route: <sip:p1.test;lr>\r\nRecord-Route: <sip:p2.test;lr>\r\n";

    /// A registered operator and an INVITE sent to it: (ua, ports, leg, INVITE text).
    fn rung(t0: Instant) -> (UserAgent, HeldPorts, u64, String) {
        let (mut ua, ports) = op_ua(t0);
        register_op(
            &mut ua,
            "1001",
            "pw1",
            OP_CONTACT,
            OP_SOURCE,
            Transport::Udp,
            t0,
        );
        let leg = ua
            .originate(leg_to("1001", "+79780000001", Some("Иван Петров")), t0)
            .unwrap();
        let sent = drain_peers(&mut ua);
        assert_eq!(sent.len(), 1);
        (ua, ports, leg, sent[0].1.clone())
    }

    /// `rung`, then 180 and a 200 with SDP: returns the ACK too.
    fn answered(t0: Instant) -> (UserAgent, HeldPorts, u64, String, String) {
        let (mut ua, ports, leg, invite) = rung(t0);
        ua.handle_message(
            op_reply(&invite, 180, Some("op1"), "", ""),
            op_src(),
            Transport::Udp,
            t0,
        );
        ua.handle_message(
            op_reply(&invite, 200, Some("op1"), OP_2XX_EXTRA, OP_ANSWER),
            op_src(),
            Transport::Udp,
            t0,
        );
        let sent = drain_peers(&mut ua);
        assert_eq!(sent.len(), 1, "{sent:?}");
        (ua, ports, leg, invite, sent[0].1.clone())
    }

    #[test]
    fn originate_sends_the_invite_to_the_registered_source() {
        let t0 = Instant::now();
        let (mut ua, ports) = op_ua(t0);
        register_op(
            &mut ua,
            "1001",
            "pw1",
            OP_CONTACT,
            OP_SOURCE,
            Transport::Udp,
            t0,
        );
        let before = ua.next_call;
        let leg = ua
            .originate(leg_to("1001", "+79780000001", Some("Иван Петров")), t0)
            .unwrap();
        assert_eq!(leg, before, "legs are numbered like inbound calls");
        assert_eq!(ua.active_calls(), 1);
        let sent = drain_peers(&mut ua);
        assert_eq!(sent.len(), 1);
        let (peer, invite) = &sent[0];
        assert_eq!(
            *peer,
            Peer {
                transport: Transport::Udp,
                addr: op_src()
            },
            "sent to where the REGISTER came from, not to the Contact"
        );
        assert!(
            invite.starts_with(&format!("INVITE {OP_CONTACT} SIP/2.0\r\n")),
            "{invite}"
        );
        let via = line(invite, "Via");
        assert!(
            via.starts_with("SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK"),
            "{via}"
        );
        assert!(via.ends_with(";rport"), "{via}");
        assert_eq!(line(invite, "Max-Forwards"), "70");
        let from = line(invite, "From");
        assert!(
            from.starts_with("\"Иван Петров\" <sip:+79780000001@hotline.test>;tag="),
            "{from}"
        );
        assert_eq!(line(invite, "To"), "<sip:1001@hotline.test>");
        assert_eq!(
            line(invite, "P-Asserted-Identity"),
            "\"Иван Петров\" <sip:+79780000001@hotline.test>"
        );
        assert_eq!(line(invite, "CSeq"), "1 INVITE");
        assert_eq!(line(invite, "Contact"), "<sip:hotline@127.0.0.1:5060>");
        assert_eq!(line(invite, "Allow"), ALLOW);
        assert_eq!(line(invite, "User-Agent"), ua.settings.server);
        assert_eq!(line(invite, "Content-Type"), "application/sdp");
        let body = invite.split_once("\r\n\r\n").unwrap().1;
        assert_eq!(line(invite, "Content-Length"), body.len().to_string());
        let port = *ports.held().iter().next().unwrap();
        assert!(
            body.contains(&format!("m=audio {port} RTP/AVP 0 8 101\r\n")),
            "{body}"
        );
        assert!(body.contains("c=IN IP4 127.0.0.1\r\n"));
        assert!(body.contains("a=rtpmap:8 PCMA/8000\r\n"));
        assert!(body.contains("a=rtpmap:101 telephone-event/8000\r\n"));
        // Without a name the number is the display name.
        let _ = ua
            .originate(leg_to("1001", "84950000000", None), t0)
            .unwrap();
        let invite = drain_peers(&mut ua).pop().unwrap().1;
        assert!(
            line(&invite, "From")
                .starts_with("\"84950000000\" <sip:84950000000@hotline.test>;tag="),
            "{invite}"
        );
        assert_ne!(line(&invite, "Call-ID"), line(&sent[0].1, "Call-ID"));
    }

    #[test]
    fn ringing_answer_ack_and_retransmitted_2xx() {
        let t0 = Instant::now();
        let (mut ua, ports, leg, invite) = rung(t0);
        // 100 is not ringing; 180 is, once.
        ua.handle_message(
            op_reply(&invite, 100, None, "", ""),
            op_src(),
            Transport::Udp,
            t0,
        );
        assert!(events(&mut ua).is_empty());
        ua.handle_message(
            op_reply(&invite, 180, Some("op1"), "", ""),
            op_src(),
            Transport::Udp,
            t0,
        );
        ua.handle_message(
            op_reply(&invite, 180, Some("op1"), "", ""),
            op_src(),
            Transport::Udp,
            t0,
        );
        assert_eq!(events(&mut ua), vec![Event::OperatorRinging { call: leg }]);
        assert!(
            drain(&mut ua).is_empty(),
            "no INVITE retransmissions once ringing"
        );
        let ok = op_reply(&invite, 200, Some("op1"), OP_2XX_EXTRA, OP_ANSWER);
        let t1 = t0 + Duration::from_secs(3);
        ua.handle_message(ok.clone(), op_src(), Transport::Udp, t1);
        let sent = drain_peers(&mut ua);
        assert_eq!(sent.len(), 1, "{sent:?}");
        let (peer, ack) = &sent[0];
        assert_eq!(peer.addr, op_src());
        assert!(
            ack.starts_with("ACK sip:1001@10.0.0.5:5070;ob SIP/2.0\r\n"),
            "{ack}"
        );
        assert_eq!(line(ack, "CSeq"), "1 ACK");
        assert_eq!(line(ack, "To"), "<sip:1001@hotline.test>;tag=op1");
        assert_eq!(line(ack, "From"), line(&invite, "From"));
        assert_eq!(line(ack, "Call-ID"), line(&invite, "Call-ID"));
        assert_ne!(
            line(ack, "Via"),
            line(&invite, "Via"),
            "an ACK to a 2xx has its own branch"
        );
        // Route set: the Record-Route in reverse.
        assert!(
            ack.find("Route: <sip:p2.test;lr>").unwrap()
                < ack.find("Route: <sip:p1.test;lr>").unwrap()
        );
        let port = *ports.held().iter().next().unwrap();
        assert_eq!(
            events(&mut ua),
            vec![Event::OperatorAnswered {
                call: leg,
                rtp_port: port,
                media: Negotiated {
                    codecs: vec![(8, sdp::Codec::Pcma)],
                    telephone_event: Some(101),
                    remote_rtp: Some("10.0.0.5:30000".parse().unwrap()),
                    direction: Direction::SendRecv,
                    ptime: None,
                },
            }]
        );
        // The 2xx again (our ACK was lost): the same ACK again, no second event.
        ua.handle_message(
            ok,
            op_src(),
            Transport::Udp,
            t1 + Duration::from_millis(500),
        );
        assert_eq!(drain_peers(&mut ua), sent);
        assert!(events(&mut ua).is_empty());
        assert_eq!(ua.active_calls(), 1);
        // The operator hangs up.
        let bye = format!(
            "BYE sip:hotline@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bKobye;rport\r\n\
             From: <sip:1001@hotline.test>;tag=op1\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 1 BYE\r\n\
             Content-Length: 0\r\n\r\n",
            line(&invite, "From"),
            line(&invite, "Call-ID")
        );
        ua.handle_message(request(&bye), op_src(), Transport::Udp, t1);
        let sent = drain_peers(&mut ua);
        assert_eq!(sent.len(), 1);
        assert!(sent[0].1.starts_with("SIP/2.0 200"), "{}", sent[0].1);
        assert_eq!(sent[0].0.addr, op_src(), "rport: back to the source");
        assert_eq!(
            events(&mut ua),
            vec![Event::CallEnded {
                call: leg,
                reason: EndReason::RemoteBye
            }]
        );
        assert_eq!(ua.active_calls(), 0);
        // Answered: the port was handed to the call flow with OperatorAnswered, and it is
        // the call flow's to free (the core freeing it would race the media taking it).
        assert_eq!(
            ports.held().len(),
            1,
            "handed over, not released by the core"
        );
        // Timer M ends the INVITE transaction, Timer J the BYE's.
        run(&mut ua, t1, t1 + Duration::from_secs(40));
        assert_eq!(ua.open_transactions(), 0);
    }

    #[test]
    fn in_dialog_requests_on_the_leg_and_our_bye() {
        let t0 = Instant::now();
        let (mut ua, ports, leg, invite, _ack) = answered(t0);
        let _ = events(&mut ua);
        let our_tag = tag_param(line(&invite, "From")).unwrap().to_string();
        let in_dialog = |method: &str, cseq: u32, extra: &str, body: &str| {
            let ctype = if body.is_empty() {
                String::new()
            } else {
                format!("Content-Type: {extra}\r\n")
            };
            format!(
                "{method} sip:hotline@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bKo{method}{cseq}\r\n\
                 From: <sip:1001@hotline.test>;tag=op1\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\n\
                 Contact: <sip:1001@10.0.0.5:5070;ob>\r\n{ctype}Content-Length: {}\r\n\r\n{body}",
                line(&invite, "From"),
                line(&invite, "Call-ID"),
                body.len()
            )
        };
        // INFO keepalive and DTMF.
        ua.handle_message(
            request(&in_dialog("INFO", 1, "", "")),
            op_src(),
            Transport::Udp,
            t0,
        );
        assert!(drain(&mut ua)[0].starts_with("SIP/2.0 200"));
        let dtmf = in_dialog(
            "INFO",
            2,
            "application/dtmf-relay",
            "Signal=5\r\nDuration=160\r\n",
        );
        ua.handle_message(request(&dtmf), op_src(), Transport::Udp, t0);
        assert!(drain(&mut ua)[0].starts_with("SIP/2.0 200"));
        assert_eq!(
            events(&mut ua),
            vec![Event::Dtmf {
                call: leg,
                digit: '5'
            }]
        );
        // Hold: re-INVITE with sendonly, answered with our port, recvonly.
        let hold = OP_ANSWER.replace("a=rtpmap:8", "a=sendonly\r\na=rtpmap:8");
        let reinvite = in_dialog("INVITE", 3, "application/sdp", &hold);
        ua.handle_message(request(&reinvite), op_src(), Transport::Udp, t0);
        let ok = drain(&mut ua).pop().unwrap();
        assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
        let port = *ports.held().iter().next().unwrap();
        assert!(
            ok.contains(&format!("m=audio {port} RTP/AVP 8 101")),
            "{ok}"
        );
        assert!(ok.contains("a=recvonly"), "{ok}");
        assert_eq!(line(&ok, "Contact"), "<sip:hotline@127.0.0.1:5060>");
        assert!(line(&ok, "To").ends_with(&format!(";tag={our_tag}")));
        let ev = events(&mut ua);
        assert!(
            matches!(&ev[..], [Event::MediaChanged { call, media }] if *call == leg && media.direction == Direction::RecvOnly),
            "{ev:?}"
        );
        ua.handle_message(
            request(&in_dialog("ACK", 3, "", "")),
            op_src(),
            Transport::Udp,
            t0,
        );
        assert!(drain(&mut ua).is_empty());
        // We hang up: BYE to the 2xx Contact (the re-INVITE's), via the route set, to the source.
        ua.hangup(leg, EndReason::Hangup, t0);
        let sent = drain_peers(&mut ua);
        assert_eq!(sent.len(), 1);
        let (peer, bye) = &sent[0];
        assert_eq!(peer.addr, op_src());
        assert!(
            bye.starts_with("BYE sip:1001@10.0.0.5:5070;ob SIP/2.0\r\n"),
            "{bye}"
        );
        assert_eq!(line(bye, "CSeq"), "2 BYE");
        assert_eq!(line(bye, "To"), "<sip:1001@hotline.test>;tag=op1");
        assert_eq!(line(bye, "From"), line(&invite, "From"));
        assert!(
            bye.find("Route: <sip:p2.test;lr>").unwrap()
                < bye.find("Route: <sip:p1.test;lr>").unwrap()
        );
        assert_eq!(
            events(&mut ua),
            vec![Event::CallEnded {
                call: leg,
                reason: EndReason::Hangup
            }]
        );
        assert_eq!(ports.held().len(), 1, "handed over to the call flow");
        assert_eq!(ua.active_calls(), 0);
    }

    #[test]
    fn cancel_after_180_then_487() {
        let t0 = Instant::now();
        let (mut ua, ports, leg, invite) = rung(t0);
        ua.handle_message(
            op_reply(&invite, 180, Some("op1"), "", ""),
            op_src(),
            Transport::Udp,
            t0,
        );
        assert_eq!(events(&mut ua), vec![Event::OperatorRinging { call: leg }]);
        ua.cancel(leg, t0);
        let sent = drain_peers(&mut ua);
        assert_eq!(sent.len(), 1);
        let (peer, cancel) = &sent[0];
        assert_eq!(peer.addr, op_src());
        assert!(
            cancel.starts_with(&format!("CANCEL {OP_CONTACT} SIP/2.0\r\n")),
            "{cancel}"
        );
        assert_eq!(
            line(cancel, "Via"),
            line(&invite, "Via"),
            "same branch as the INVITE"
        );
        assert_eq!(line(cancel, "CSeq"), "1 CANCEL");
        assert_eq!(line(cancel, "To"), "<sip:1001@hotline.test>");
        assert_eq!(line(cancel, "Call-ID"), line(&invite, "Call-ID"));
        ua.cancel(leg, t0);
        assert!(drain(&mut ua).is_empty(), "one CANCEL");
        assert_eq!(
            ua.active_calls(),
            1,
            "the leg lasts until the INVITE's final response"
        );
        ua.handle_message(
            op_reply(cancel, 200, Some("op1"), "", ""),
            op_src(),
            Transport::Udp,
            t0,
        );
        assert!(drain(&mut ua).is_empty());
        ua.handle_message(
            op_reply(&invite, 487, Some("op1"), "", ""),
            op_src(),
            Transport::Udp,
            t0,
        );
        let sent = drain(&mut ua);
        assert_eq!(sent.len(), 1);
        assert!(
            sent[0].starts_with(&format!("ACK {OP_CONTACT} SIP/2.0")),
            "{}",
            sent[0]
        );
        assert_eq!(line(&sent[0], "CSeq"), "1 ACK");
        assert_eq!(
            line(&sent[0], "Via"),
            line(&invite, "Via"),
            "the transaction's ACK"
        );
        assert_eq!(
            events(&mut ua),
            vec![Event::CallEnded {
                call: leg,
                reason: EndReason::Cancelled
            }]
        );
        assert!(ports.held().is_empty());
        assert_eq!(ua.active_calls(), 0);
        run(&mut ua, t0, t0 + Duration::from_secs(40));
        assert!(events(&mut ua).is_empty());
        assert_eq!(ua.open_transactions(), 0);
    }

    #[test]
    fn cancel_before_any_provisional_waits_for_it() {
        let t0 = Instant::now();
        let (mut ua, ports, leg, invite) = rung(t0);
        ua.cancel(leg, t0);
        assert!(
            drain(&mut ua).is_empty(),
            "§9.1: no CANCEL before a provisional response"
        );
        // hangup() of a leg not answered is the same as cancel().
        ua.hangup(leg, EndReason::Hangup, t0);
        assert!(drain(&mut ua).is_empty());
        let t1 = t0 + Duration::from_millis(200);
        ua.handle_message(
            op_reply(&invite, 180, Some("op1"), "", ""),
            op_src(),
            Transport::Udp,
            t1,
        );
        let sent = drain(&mut ua);
        assert_eq!(sent.len(), 1);
        assert!(sent[0].starts_with("CANCEL "), "{}", sent[0]);
        assert!(
            events(&mut ua).is_empty(),
            "no ringing for a leg being cancelled"
        );
        ua.handle_message(
            op_reply(&sent[0], 200, Some("op1"), "", ""),
            op_src(),
            Transport::Udp,
            t1,
        );
        ua.handle_message(
            op_reply(&invite, 487, Some("op1"), "", ""),
            op_src(),
            Transport::Udp,
            t1,
        );
        assert_eq!(
            events(&mut ua),
            vec![Event::CallEnded {
                call: leg,
                reason: EndReason::Cancelled
            }]
        );
        assert!(ports.held().is_empty());

        // Nothing ever comes: Timer B ends the leg, still as cancelled, without a CANCEL.
        let t2 = t0 + Duration::from_secs(100);
        let leg = ua.originate(leg_to("1001", "1", None), t2).unwrap();
        drain(&mut ua);
        ua.cancel(leg, t2);
        let later = run(&mut ua, t2, t2 + Duration::from_secs(33));
        assert!(
            later.iter().all(|(_, m)| m.starts_with("INVITE ")),
            "{later:?}"
        );
        assert_eq!(
            events(&mut ua),
            vec![Event::CallEnded {
                call: leg,
                reason: EndReason::Cancelled
            }]
        );
        assert!(ports.held().is_empty());

        // A CANCEL the operator never answers: given up 64·T1 after it.
        let t3 = t0 + Duration::from_secs(200);
        let leg = ua.originate(leg_to("1001", "1", None), t3).unwrap();
        let invite = drain(&mut ua).pop().unwrap();
        ua.handle_message(
            op_reply(&invite, 180, Some("op1"), "", ""),
            op_src(),
            Transport::Udp,
            t3,
        );
        let _ = events(&mut ua);
        ua.cancel(leg, t3);
        assert!(drain(&mut ua)[0].starts_with("CANCEL "));
        run(&mut ua, t3, t3 + Duration::from_secs(31));
        assert!(events(&mut ua).is_empty());
        run(
            &mut ua,
            t3 + Duration::from_secs(31),
            t3 + Duration::from_secs(33),
        );
        assert_eq!(
            events(&mut ua),
            vec![Event::CallEnded {
                call: leg,
                reason: EndReason::Cancelled
            }]
        );
        assert!(ports.held().is_empty());
        assert_eq!(ua.active_calls(), 0);
    }

    #[test]
    fn a_2xx_crossing_the_cancel_is_acked_and_ended_with_bye() {
        let t0 = Instant::now();
        let (mut ua, ports, leg, invite) = rung(t0);
        ua.handle_message(
            op_reply(&invite, 180, Some("op1"), "", ""),
            op_src(),
            Transport::Udp,
            t0,
        );
        let _ = events(&mut ua);
        ua.cancel(leg, t0);
        let cancel = drain(&mut ua).pop().unwrap();
        let ok = op_reply(&invite, 200, Some("op1"), OP_2XX_EXTRA, OP_ANSWER);
        ua.handle_message(ok.clone(), op_src(), Transport::Udp, t0);
        let sent = drain_peers(&mut ua);
        assert_eq!(sent.len(), 2, "{sent:?}");
        assert!(
            sent[0]
                .1
                .starts_with("ACK sip:1001@10.0.0.5:5070;ob SIP/2.0"),
            "{}",
            sent[0].1
        );
        assert_eq!(line(&sent[0].1, "To"), "<sip:1001@hotline.test>;tag=op1");
        let bye = &sent[1].1;
        assert!(
            bye.starts_with("BYE sip:1001@10.0.0.5:5070;ob SIP/2.0"),
            "{bye}"
        );
        assert_eq!(line(bye, "CSeq"), "2 BYE");
        assert_eq!(line(bye, "To"), "<sip:1001@hotline.test>;tag=op1");
        assert_eq!(line(bye, "From"), line(&invite, "From"));
        assert!(sent.iter().all(|(p, _)| p.addr == op_src()));
        assert_eq!(
            events(&mut ua),
            vec![Event::CallEnded {
                call: leg,
                reason: EndReason::Cancelled
            }]
        );
        assert!(ports.held().is_empty());
        // The CANCEL's 200 (or a 481), a retransmitted 2xx: the ACK again, nothing else.
        ua.handle_message(
            op_reply(&cancel, 200, Some("op1"), "", ""),
            op_src(),
            Transport::Udp,
            t0,
        );
        ua.handle_message(
            ok,
            op_src(),
            Transport::Udp,
            t0 + Duration::from_millis(500),
        );
        let again = drain(&mut ua);
        assert_eq!(again, vec![sent[0].1.clone()]);
        ua.handle_message(
            op_reply(bye, 200, None, "", ""),
            op_src(),
            Transport::Udp,
            t0,
        );
        run(&mut ua, t0, t0 + Duration::from_secs(40));
        assert!(events(&mut ua).is_empty());
        assert_eq!(ua.open_transactions(), 0);
    }

    #[test]
    fn busy_operator_fails_the_leg() {
        let t0 = Instant::now();
        let (mut ua, ports, leg, invite) = rung(t0);
        ua.handle_message(
            op_reply(&invite, 486, Some("op1"), "", ""),
            op_src(),
            Transport::Udp,
            t0,
        );
        let sent = drain_peers(&mut ua);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0.addr, op_src());
        assert!(
            sent[0].1.starts_with(&format!("ACK {OP_CONTACT} SIP/2.0")),
            "{}",
            sent[0].1
        );
        assert_eq!(line(&sent[0].1, "To"), "<sip:1001@hotline.test>;tag=op1");
        assert_eq!(
            events(&mut ua),
            vec![Event::OperatorFailed {
                call: leg,
                status: 486
            }]
        );
        assert!(ports.held().is_empty());
        assert_eq!(ua.active_calls(), 0);
        // Cancelling or hanging up a failed leg does nothing.
        ua.cancel(leg, t0);
        ua.hangup(leg, EndReason::Hangup, t0);
        assert!(drain(&mut ua).is_empty());
        assert!(events(&mut ua).is_empty());
    }

    #[test]
    fn answer_without_sdp_is_acked_ended_and_fails_with_488() {
        let t0 = Instant::now();
        let (mut ua, ports, leg, invite) = rung(t0);
        ua.handle_message(
            op_reply(&invite, 200, Some("op1"), OP_2XX_EXTRA, ""),
            op_src(),
            Transport::Udp,
            t0,
        );
        let sent = drain(&mut ua);
        assert_eq!(sent.len(), 2, "{sent:?}");
        assert!(sent[0].starts_with("ACK "), "{}", sent[0]);
        assert!(sent[1].starts_with("BYE "), "{}", sent[1]);
        assert_eq!(
            events(&mut ua),
            vec![Event::OperatorFailed {
                call: leg,
                status: 488
            }]
        );
        assert!(ports.held().is_empty());
        // An answer with no codec in common counts the same.
        let leg = ua.originate(leg_to("1001", "2", None), t0).unwrap();
        let invite = drain(&mut ua).pop().unwrap();
        let g729 = OP_ANSWER
            .replace("RTP/AVP 8 101", "RTP/AVP 18")
            .replace("a=rtpmap:8 PCMA", "a=rtpmap:18 G729");
        ua.handle_message(
            op_reply(&invite, 200, Some("op1"), OP_2XX_EXTRA, &g729),
            op_src(),
            Transport::Udp,
            t0,
        );
        assert_eq!(drain(&mut ua).len(), 2);
        assert_eq!(
            events(&mut ua),
            vec![Event::OperatorFailed {
                call: leg,
                status: 488
            }]
        );
        assert!(ports.held().is_empty());
    }

    #[test]
    fn no_response_retransmits_on_timer_a_then_408() {
        let t0 = Instant::now();
        let (mut ua, ports, leg, invite) = rung(t0);
        let later = run(&mut ua, t0, t0 + Duration::from_secs(33));
        let resends: Vec<u64> = later
            .iter()
            .filter(|(_, m)| *m == invite)
            .map(|(d, _)| d.as_millis() as u64)
            .collect();
        assert_eq!(resends, vec![500, 1500, 3500, 7500, 15500, 31500]);
        assert_eq!(later.len(), resends.len());
        assert_eq!(
            events(&mut ua),
            vec![Event::OperatorFailed {
                call: leg,
                status: 408
            }]
        );
        assert!(ports.held().is_empty());
        assert_eq!(ua.active_calls(), 0);
        assert_eq!(ua.open_transactions(), 0);
    }

    #[test]
    fn originate_only_to_registered_operators() {
        let t0 = Instant::now();
        let (mut ua, ports) = op_ua(t0);
        assert_eq!(
            ua.originate(leg_to("1001", "1", None), t0),
            Err(OriginateError::NotRegistered("1001".into()))
        );
        assert_eq!(
            ua.originate(leg_to("8800", "1", None), t0),
            Err(OriginateError::UnknownExtension("8800".into())),
            "a hotline number is no operator"
        );
        assert_eq!(
            ua.originate(leg_to("sip:evil@203.0.113.9", "1", None), t0),
            Err(OriginateError::UnknownExtension(
                "sip:evil@203.0.113.9".into()
            ))
        );
        register_op(
            &mut ua,
            "1001",
            "pw1",
            OP_CONTACT,
            OP_SOURCE,
            Transport::Udp,
            t0,
        );
        assert_eq!(
            ua.originate(leg_to("1002", "1", None), t0),
            Err(OriginateError::NotRegistered("1002".into()))
        );
        // The binding expires (Expires: 300).
        let late = t0 + Duration::from_secs(301);
        assert_eq!(
            ua.originate(leg_to("1001", "1", None), late),
            Err(OriginateError::NotRegistered("1001".into()))
        );
        assert!(drain(&mut ua).is_empty(), "nothing sent");
        assert!(events(&mut ua).is_empty());
        assert!(ports.held().is_empty(), "no port held");
        assert_eq!(ua.active_calls(), 0);
        let mut ua = ua.with_ports(Box::new(NoPorts));
        register_op(
            &mut ua,
            "1001",
            "pw1",
            OP_CONTACT,
            OP_SOURCE,
            Transport::Udp,
            late,
        );
        assert_eq!(
            ua.originate(leg_to("1001", "1", None), late),
            Err(OriginateError::NoRtpPort)
        );
        assert!(drain(&mut ua).is_empty());
    }

    #[test]
    fn the_newest_binding_is_rung_over_its_transport() {
        let t0 = Instant::now();
        let (mut ua, _ports) = op_ua(t0);
        register_op(
            &mut ua,
            "1001",
            "pw1",
            OP_CONTACT,
            OP_SOURCE,
            Transport::Udp,
            t0,
        );
        let t1 = t0 + Duration::from_secs(5);
        let tcp_contact = "sip:1001@10.0.0.6:5080;transport=tcp";
        register_op(
            &mut ua,
            "1001",
            "pw1",
            tcp_contact,
            "198.51.100.21:41000",
            Transport::Tcp,
            t1,
        );
        ua.originate(leg_to("1001", "5", None), t1).unwrap();
        let sent = drain_peers(&mut ua);
        assert_eq!(sent.len(), 1);
        let (peer, invite) = &sent[0];
        assert_eq!(
            *peer,
            Peer {
                transport: Transport::Tcp,
                addr: "198.51.100.21:41000".parse().unwrap()
            }
        );
        // (rsip prints the transport parameter's value in capitals.)
        let request_line = invite.split("\r\n").next().unwrap();
        assert!(
            request_line.eq_ignore_ascii_case(&format!("INVITE {tcp_contact} SIP/2.0")),
            "{invite}"
        );
        assert!(line(invite, "Via").starts_with("SIP/2.0/TCP "));
        assert_eq!(
            line(invite, "Contact"),
            "<sip:hotline@127.0.0.1:5060;transport=tcp>"
        );
        // No Timer A on TCP: silence until Timer B.
        let later = run(&mut ua, t1, t1 + Duration::from_secs(33));
        assert!(later.is_empty(), "{later:?}");
        assert!(matches!(
            &events(&mut ua)[..],
            [Event::OperatorFailed { status: 408, .. }]
        ));
    }

    #[test]
    fn a_hostile_caller_cannot_inject_headers() {
        let t0 = Instant::now();
        let (mut ua, _ports) = op_ua(t0);
        register_op(
            &mut ua,
            "1001",
            "pw1",
            OP_CONTACT,
            OP_SOURCE,
            Transport::Udp,
            t0,
        );
        let leg = ua
            .originate(
                leg_to(
                    "1001",
                    "+7978\r\nX-Evil: 1\r\n<sip:x@y>;\"",
                    Some("Bob\" <sip:bob@evil>\r\nX-Injected: yes\r\n\r\nv=0\\"),
                ),
                t0,
            )
            .unwrap();
        let invite = drain(&mut ua).pop().unwrap();
        let (head, body) = invite.split_once("\r\n\r\n").unwrap();
        assert!(body.starts_with("v=0\r\no=hotline "), "{body}");
        for l in head.split("\r\n").skip(1) {
            let name = l.split(':').next().unwrap();
            assert!(
                [
                    "Via",
                    "Max-Forwards",
                    "From",
                    "To",
                    "Call-ID",
                    "CSeq",
                    "Contact",
                    "P-Asserted-Identity",
                    "Allow",
                    "User-Agent",
                    "Content-Type",
                    "Content-Length"
                ]
                .contains(&name),
                "unexpected header line {l:?} in {invite}"
            );
        }
        let from = line(&invite, "From");
        assert!(
            from.starts_with("\"Bob sip:bob@evil X-Injected: yes v=0\" <sip:+7978X-Evil1sipxy@hotline.test>;tag="),
            "{from}"
        );
        assert_eq!(
            line(&invite, "P-Asserted-Identity"),
            "\"Bob sip:bob@evil X-Injected: yes v=0\" <sip:+7978X-Evil1sipxy@hotline.test>"
        );
        ua.cancel(leg, t0);
        // Nothing usable left: anonymous, and the number as name.
        ua.originate(leg_to("1001", "\"\r\n<>;@", Some("\r\n\"\"")), t0)
            .unwrap();
        let invite = drain(&mut ua).pop().unwrap();
        assert!(
            line(&invite, "From").starts_with("\"anonymous\" <sip:anonymous@hotline.test>;tag="),
            "{invite}"
        );
        assert_eq!(sanitize_display(&"я".repeat(100)).chars().count(), 64);
        assert_eq!(sanitize_user(&"1".repeat(100)).len(), 32);
    }
}
