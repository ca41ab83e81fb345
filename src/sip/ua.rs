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
//! * BYE from our side when the call flow hangs up ([`UserAgent::hangup`]).
//!
//! RTP ports come from an [`RtpPorts`] allocator: the real one binds sockets
//! ([`crate::media::ports::PortPool`]); tests use [`CountingPorts`].

use super::dialog::{Dialog, DialogKey, DialogState, PendingAck};
use super::message::{
    first_header, parse_cseq, parse_via, response_destination, tag_param, top_via, ResponseBuilder,
};
use super::registrar::{Registrar, RegistrationEvent};
use super::sdp::{self, Direction, LocalMedia, Negotiated, SdpError};
use super::transaction::{
    self, ClientNonInvite, Output, ServerInvite, ServerInviteState, ServerNonInvite, Timers,
    TransactionKey,
};
use super::{Peer, Transmit, Transport};
use crate::config::Config;
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Methods we serve; everything else known to `rsip` gets 405 with this list.
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REGISTER";

/// Initial size of the server transaction table (boxed entries: ~10 MB of slots).
const INITIAL_TRANSACTIONS: usize = 1 << 17;

/// How often expired registrations and lock-outs are swept.
const SWEEP_INTERVAL: Duration = Duration::from_secs(10);

/// The settings the core needs, derived from [`Config`] and the bound address.
#[derive(Debug, Clone)]
pub struct UaSettings {
    pub hotline_numbers: HashSet<String>,
    pub server: String,
    /// `host:port` for our Contact and Via.
    pub contact_host: String,
    pub media_ip: IpAddr,
    pub answer_delay: Duration,
    pub timers: Timers,
    pub max_calls: usize,
    pub rtp_ports: (u16, u16),
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
            rtp_ports: (config.media.rtp_port_min, config.media.rtp_port_max),
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
    /// The caller sent BYE.
    RemoteBye,
    /// The caller cancelled before the answer.
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

/// Our own requests (BYE so far; the INVITE to operators arrives with the call flow).
struct ClientEntry {
    tx: ClientNonInvite,
    peer: Peer,
    scheduled: Option<Instant>,
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
    calls: HashMap<DialogKey, Call>,
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
        let mut ua = UserAgent {
            registrar: Registrar::new(config, now),
            ports: Box::new(CountingPorts::new(
                settings.rtp_ports.0,
                settings.rtp_ports.1,
            )),
            settings,
            // Sized for the steady state of a busy hotline (2000 calls/s keep ~130k
            // transactions in their 64·T1 linger) so that the table never stops the core
            // to grow in the middle of a rush.
            server: HashMap::with_capacity(INITIAL_TRANSACTIONS),
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

    /// Ends an answered call from our side with BYE (the call flow finished, or its RTP
    /// stopped). A call still waiting for its ACK is ended as soon as the ACK arrives: the
    /// callee must not send BYE before it (RFC 3261 §15). Unknown calls are ignored (the
    /// caller may have hung up at the same moment).
    pub fn hangup(&mut self, call: u64, reason: EndReason, now: Instant) {
        let Some(dkey) = self
            .calls
            .iter()
            .find(|(_, c)| c.dialog.id == call)
            .map(|(k, _)| k.clone())
        else {
            return;
        };
        let c = self.calls.get_mut(&dkey).expect("found");
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

    /// Calls in progress (answered or ringing).
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
        let Some(via) = first_header(&req.headers, "Via").and_then(|v| parse_via(top_via(v)))
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
        if let Some(required) = first_header(&req.headers, "Require") {
            if !required.trim().is_empty() {
                let r = ResponseBuilder::new(&req, source, 420, "Bad Extension")
                    .to_tag(&random_tag())
                    .header("Unsupported", required.trim())
                    .build();
                return self.respond(&key, 420, r, now);
            }
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
        let answer = match sdp_offer(&req).and_then(|offer| sdp::answer(offer, &local)) {
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
        };
        self.calls.insert(dkey.clone(), call);
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
            .and_then(parse_cseq)
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
                    if let Ok(n) = sdp::parse_answer(&req.body) {
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
            .and_then(parse_cseq)
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
            .and_then(parse_cseq)
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
            sdp::answer(&req.body, &local).map(|a| {
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
            self.ports.release(call.dialog.rtp_port);
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
        let Ok(key) = transaction::client_request_key(&req) else {
            return;
        };
        let tx = ClientNonInvite::new(req, peer.transport.is_reliable(), self.settings.timers, now);
        self.client.insert(
            key.clone(),
            ClientEntry {
                tx,
                peer,
                scheduled: None,
            },
        );
        self.drive_client(&key, now);
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
        let mut terminated = false;
        loop {
            let out = e.tx.poll_output();
            match out {
                Some(Output::Transmit(bytes)) => self.transmits.push_back(Transmit {
                    peer: e.peer,
                    bytes,
                }),
                Some(Output::Deliver(resp)) => {
                    tracing::debug!(status = resp.status_code.code(), "response to our request");
                }
                Some(Output::Timeout) => {
                    tracing::info!(peer = %e.peer.addr, "our request timed out");
                }
                Some(Output::Terminated) => terminated = true,
                None => break,
            }
        }
        if terminated {
            self.client.remove(key);
            return;
        }
        let next = e.tx.poll_timeout();
        if let Some(at) = next {
            if e.scheduled.is_none_or(|s| at < s) {
                e.scheduled = Some(at);
                self.schedule(at.max(now), TimerRef::Client(key.clone()));
            }
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
fn sdp_offer(req: &rsip::Request) -> Result<&[u8], SdpError> {
    let ctype = first_header(&req.headers, "Content-Type").unwrap_or_default();
    if req.body.is_empty()
        || !ctype
            .trim()
            .to_ascii_lowercase()
            .starts_with("application/sdp")
    {
        return Err(SdpError::Parse("an SDP offer is required".into()));
    }
    Ok(&req.body)
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
}
