//! The browser phones of all operators: which operator has one connected, the call that
//! rings or is up on it, and the events both sides hear.
//!
//! To the call flow a browser phone is an operator leg like a SIP one: [`BrowserPhones::ring`]
//! answers as [`crate::sip::ua::UserAgent::originate`] does, and the leg's progress arrives
//! as the same [`ua::Event`]s on the same channel (placed, ringing, answered, failed,
//! ended), so that the ring timeout, refusal, pause on no answer and wrap-up apply
//! unchanged. To the page the phone is a stream of [`PageEvent`]s and a few actions
//! (answer, decline, hang up, mute), all under the operator's console session.
//!
//! Leg numbers start at [`FIRST_LEG`], far above the SIP core's, so one table serves both.

use super::peer::{BrowserPeer, Closed, PeerError};
use super::relay::{self, Relay, RelayCommand, RelayEvent};
use crate::media::ports::PortPool;
pub use crate::records::ring::RingAt;
use crate::sip::sdp::{Direction, Negotiated};
use crate::sip::ua::{self, EndReason, Originate, OriginateError};
use serde::Serialize;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{broadcast, mpsc};

/// Browser legs are numbered from here (the SIP core counts up from 1).
pub const FIRST_LEG: u64 = 1 << 48;

#[derive(Debug, thiserror::Error)]
pub enum PhoneError {
    #[error(transparent)]
    Peer(#[from] PeerError),
    #[error("no free RTP port for the browser's connection")]
    NoPort,
    #[error("the browser's socket: {0}")]
    Socket(#[from] std::io::Error),
    #[error("the browser phone is not connected")]
    NotConnected,
    #[error("no such call on this phone")]
    NoSuchLeg,
    #[error("the call rings for another operator")]
    NotYours,
}

/// What the page hears, as server-sent events (`type` names the kind).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PageEvent {
    /// ICE and DTLS are up: calls may ring here.
    Connected,
    /// A caller rings this phone.
    Ring {
        leg: u64,
        number: String,
        name: Option<String>,
    },
    /// The call is up (this page answered it).
    Answered {
        leg: u64,
    },
    /// The call is over, or the ring withdrawn; `why` says by whom.
    Ended {
        leg: u64,
        why: &'static str,
    },
    Muted {
        on: bool,
    },
    /// The connection is gone (closed, timed out, or replaced by a newer one).
    Closed {
        why: &'static str,
    },
}

/// A browser's new connection: the SDP answer, and the number that names this
/// connection when the page switches it off.
#[derive(Debug)]
pub struct Connection {
    pub answer: String,
    pub id: u64,
}

/// Where the hotline's own addresses are.
#[derive(Clone, Debug)]
pub struct PhoneAddresses {
    /// The candidate's address in the answer (the media address others reach us at).
    pub public_ip: IpAddr,
    /// Where the session's sockets are bound (the port pool's address; loopback for a
    /// wildcard): the relays' inner sockets bind here too.
    pub inner_ip: IpAddr,
}

#[derive(Clone, Debug)]
enum Leg {
    Ringing { id: u64 },
    Answered { id: u64 },
}

impl Leg {
    fn id(&self) -> u64 {
        match self {
            Leg::Ringing { id } | Leg::Answered { id } => *id,
        }
    }
}

struct Phone {
    /// Which connection of this operator this is (a newer one replaces it).
    generation: u64,
    commands: mpsc::UnboundedSender<RelayCommand>,
    inner: SocketAddr,
    codec: crate::sip::sdp::Codec,
    connected: bool,
    leg: Option<Leg>,
    muted: bool,
    /// The ringing call's details, repeated to a page that (re)subscribes.
    ring: Option<PageEvent>,
}

struct State {
    phones: HashMap<String, Phone>,
    /// Each operator's choice; [`RingAt::Phone`] where none was made.
    ring_at: HashMap<String, RingAt>,
    /// Leg → extension.
    legs: HashMap<u64, String>,
    pages: HashMap<String, broadcast::Sender<PageEvent>>,
    next_leg: u64,
    next_generation: u64,
}

/// Tells `extension`'s pages `ev`, under the lock that changed the state it reports, so
/// that the pages hear the changes in the order they were made.
fn page_in(s: &State, extension: &str, ev: PageEvent) {
    if let Some(tx) = s.pages.get(extension) {
        let _ = tx.send(ev);
    }
}

/// Every browser phone. Cheap to clone; see the module documentation.
#[derive(Clone)]
pub struct BrowserPhones {
    state: Arc<Mutex<State>>,
    ports: PortPool,
    addresses: PhoneAddresses,
    runtime: tokio::runtime::Handle,
    /// The call flow's event channel, shared with the SIP core.
    calls: mpsc::UnboundedSender<ua::Event>,
    /// Told whenever an operator's browser phone comes or goes.
    reachability: mpsc::UnboundedSender<String>,
}

impl BrowserPhones {
    pub fn new(
        ports: PortPool,
        addresses: PhoneAddresses,
        runtime: tokio::runtime::Handle,
        calls: mpsc::UnboundedSender<ua::Event>,
        reachability: mpsc::UnboundedSender<String>,
    ) -> Self {
        BrowserPhones {
            state: Arc::new(Mutex::new(State {
                phones: HashMap::new(),
                ring_at: HashMap::new(),
                legs: HashMap::new(),
                pages: HashMap::new(),
                next_leg: FIRST_LEG,
                next_generation: 1,
            })),
            ports,
            addresses,
            runtime,
            calls,
            reachability,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("browser phones lock")
    }

    /// Whether `leg` is one of ours.
    pub fn owns(leg: u64) -> bool {
        leg >= FIRST_LEG
    }

    /// Where `extension`'s calls ring.
    pub fn ring_at(&self, extension: &str) -> RingAt {
        self.lock()
            .ring_at
            .get(extension)
            .copied()
            .unwrap_or_default()
    }

    /// Sets where `extension`'s calls ring (the records keep it; this is the live copy).
    pub fn set_ring_at(&self, extension: &str, ring_at: RingAt) {
        self.lock().ring_at.insert(extension.to_string(), ring_at);
        let _ = self.reachability.send(extension.to_string());
    }

    /// Whether `extension`'s calls can ring somewhere, given their SIP registration.
    pub fn reachable(&self, extension: &str, sip_registered: bool) -> bool {
        self.ring_at(extension)
            .reachable(sip_registered, self.is_connected(extension))
    }

    /// Whether `extension` has a browser phone connected now.
    pub fn is_connected(&self, extension: &str) -> bool {
        self.lock()
            .phones
            .get(extension)
            .is_some_and(|p| p.connected)
    }

    /// The page's events for `extension`, starting with where things stand.
    pub fn subscribe(&self, extension: &str) -> (Vec<PageEvent>, broadcast::Receiver<PageEvent>) {
        let mut s = self.lock();
        let rx = s
            .pages
            .entry(extension.to_string())
            .or_insert_with(|| broadcast::channel(64).0)
            .subscribe();
        let mut now = Vec::new();
        if let Some(p) = s.phones.get(extension) {
            if p.connected {
                now.push(PageEvent::Connected);
            }
            if p.muted {
                now.push(PageEvent::Muted { on: true });
            }
            match &p.leg {
                Some(Leg::Ringing { .. }) => now.extend(p.ring.clone()),
                Some(Leg::Answered { id }) => now.push(PageEvent::Answered { leg: *id }),
                None => {}
            }
        }
        (now, rx)
    }

    /// A browser's SDP `offer` for `extension`'s phone: a new connection (replacing any
    /// earlier one of this operator), with the SDP answer for the page.
    pub fn connect(&self, extension: &str, offer: &str) -> Result<Connection, PhoneError> {
        let port = self.ports.allocate().ok_or(PhoneError::NoPort)?;
        let socket = self.ports.take(port).ok_or(PhoneError::NoPort)?;
        let local = SocketAddr::new(self.addresses.public_ip, port);
        let (peer, answer) = BrowserPeer::accept(offer, local, Instant::now())?;
        let codec = peer.codec().unwrap_or(crate::sip::sdp::Codec::Pcmu);
        let generation = {
            let mut s = self.lock();
            s.next_generation += 1;
            s.next_generation
        };
        let me = self.clone();
        let ext = extension.to_string();
        let Relay { commands, inner } = relay::start(
            &self.runtime,
            peer,
            socket,
            self.addresses.inner_ip,
            move |ev| me.on_relay(&ext, generation, ev),
        )?;
        let old = self.lock().phones.insert(
            extension.to_string(),
            Phone {
                generation,
                commands,
                inner,
                codec,
                connected: false,
                leg: None,
                muted: false,
                ring: None,
            },
        );
        if let Some(old) = old {
            let _ = old.commands.send(RelayCommand::Close);
            self.end_leg(extension, old.leg, EndReason::RemoteBye, "replaced");
            let _ = self.reachability.send(extension.to_string());
        }
        tracing::info!(extension, %local, generation, "browser phone connecting");
        Ok(Connection {
            answer,
            id: generation,
        })
    }

    /// The operator signed the browser phone out, or the page is closing. With the
    /// `connection` a page was given, only that connection ends: a window closed after
    /// another window took the phone over must not switch the new one off.
    pub fn disconnect(&self, extension: &str, connection: Option<u64>) {
        let phone = {
            let mut s = self.lock();
            match (s.phones.get(extension), connection) {
                (Some(p), Some(id)) if p.generation != id => None,
                _ => s.phones.remove(extension),
            }
        };
        if let Some(p) = phone {
            let _ = p.commands.send(RelayCommand::Close);
            self.end_leg(extension, p.leg, EndReason::RemoteBye, "signed_out");
            self.page(extension, PageEvent::Closed { why: "signed_out" });
            let _ = self.reachability.send(extension.to_string());
        }
    }

    fn on_relay(&self, extension: &str, generation: u64, ev: RelayEvent) {
        let mut s = self.lock();
        let Some(p) = s
            .phones
            .get_mut(extension)
            .filter(|p| p.generation == generation)
        else {
            return; // an older connection of this operator
        };
        match ev {
            RelayEvent::Connected => {
                p.connected = true;
                page_in(&s, extension, PageEvent::Connected);
                drop(s);
                tracing::info!(extension, "browser phone connected");
                let _ = self.reachability.send(extension.to_string());
            }
            RelayEvent::Closed(why) => {
                let leg = s.phones.remove(extension).and_then(|p| p.leg);
                drop(s);
                tracing::info!(extension, ?why, "browser phone gone");
                self.end_leg(extension, leg, EndReason::RemoteBye, "connection_lost");
                let why = match why {
                    Closed::Disconnected => "disconnected",
                    Closed::Silent => "silent",
                    Closed::NeverConnected => "never_connected",
                    Closed::Failed => "failed",
                };
                self.page(extension, PageEvent::Closed { why });
                let _ = self.reachability.send(extension.to_string());
            }
        }
    }

    /// Rings `o.extension`'s browser phone for a waiting caller, as
    /// [`crate::sip::ua::UserAgent::originate`] would ring a SIP phone.
    pub fn ring(&self, o: Originate) -> Result<u64, OriginateError> {
        let mut s = self.lock();
        let id = s.next_leg;
        let Some(p) = s.phones.get_mut(&o.extension).filter(|p| p.connected) else {
            return Err(OriginateError::NotRegistered(o.extension));
        };
        if p.leg.is_some() {
            // The queue rings an operator for one call at a time; a second is refused
            // as a busy phone would refuse it.
            return Err(OriginateError::NotRegistered(o.extension));
        }
        let number = ua::sanitize_user(&o.caller_number);
        let name = o
            .caller_name
            .as_deref()
            .map(ua::sanitize_display)
            .filter(|n| !n.is_empty());
        let ring = PageEvent::Ring {
            leg: id,
            number,
            name,
        };
        p.leg = Some(Leg::Ringing { id });
        p.ring = Some(ring.clone());
        // Every call starts with the microphone on.
        let unmute = std::mem::take(&mut p.muted);
        if unmute {
            let _ = p.commands.send(RelayCommand::Mute(false));
        }
        s.next_leg += 1;
        s.legs.insert(id, o.extension.clone());
        // Sent under the lock: an answer or a withdrawal cannot overtake them.
        if let Some(for_call) = o.for_call {
            let _ = self.calls.send(ua::Event::LegPlaced { call: id, for_call });
        }
        let _ = self.calls.send(ua::Event::OperatorRinging { call: id });
        if unmute {
            page_in(&s, &o.extension, PageEvent::Muted { on: false });
        }
        page_in(&s, &o.extension, ring);
        Ok(id)
    }

    /// Refuses `leg` unless it is `extension`'s (an operator acts on their own calls only).
    pub fn check_owner(&self, extension: &str, leg: u64) -> Result<(), PhoneError> {
        match self.lock().legs.get(&leg) {
            Some(owner) if owner != extension => Err(PhoneError::NotYours),
            Some(_) => Ok(()),
            None => Err(PhoneError::NoSuchLeg),
        }
    }

    /// The page answered `leg`: the call's media is bridged to the browser.
    pub fn answer(&self, extension: &str, leg: u64) -> Result<(), PhoneError> {
        let mut s = self.lock();
        let p = s
            .phones
            .get_mut(extension)
            .ok_or(PhoneError::NotConnected)?;
        if !matches!(p.leg, Some(Leg::Ringing { id }) if id == leg) {
            return Err(PhoneError::NoSuchLeg);
        }
        let Some(port) = self.ports.allocate() else {
            drop(s);
            self.fail(extension, leg, 503);
            return Err(PhoneError::NoPort);
        };
        p.leg = Some(Leg::Answered { id: leg });
        p.ring = None;
        let session = SocketAddr::new(self.addresses.inner_ip, port);
        let _ = p.commands.send(RelayCommand::Bridge { session });
        let media = Negotiated {
            codecs: vec![(p.codec.payload_type(), p.codec)],
            telephone_event: None,
            remote_rtp: Some(p.inner),
            direction: Direction::SendRecv,
            ptime: Some(20),
            srtp: None,
        };
        // Sent under the lock: a withdrawal cannot be heard before the answer it follows.
        let _ = self.calls.send(ua::Event::OperatorAnswered {
            call: leg,
            rtp_port: port,
            media,
        });
        page_in(&s, extension, PageEvent::Answered { leg });
        Ok(())
    }

    /// The page declined the ringing `leg` (603, as a phone's «Отклонить»).
    pub fn decline(&self, extension: &str, leg: u64) -> Result<(), PhoneError> {
        let ringing = self
            .lock()
            .phones
            .get(extension)
            .is_some_and(|p| matches!(p.leg, Some(Leg::Ringing { id }) if id == leg));
        if !ringing {
            return Err(PhoneError::NoSuchLeg);
        }
        self.fail(extension, leg, 603);
        Ok(())
    }

    /// The page hung `leg` up (a BYE from the operator).
    pub fn hang_up(&self, extension: &str, leg: u64) -> Result<(), PhoneError> {
        let taken = self.take_leg(extension, leg).ok_or(PhoneError::NoSuchLeg)?;
        match taken {
            Leg::Ringing { .. } => self.failed(extension, leg, 603),
            Leg::Answered { .. } => {
                let _ = self.calls.send(ua::Event::CallEnded {
                    call: leg,
                    reason: EndReason::RemoteBye,
                });
                self.page(
                    extension,
                    PageEvent::Ended {
                        leg,
                        why: "operator",
                    },
                );
            }
        }
        Ok(())
    }

    /// The operator's microphone off or on for the caller.
    pub fn mute(&self, extension: &str, on: bool) -> Result<(), PhoneError> {
        let mut s = self.lock();
        let p = s
            .phones
            .get_mut(extension)
            .ok_or(PhoneError::NotConnected)?;
        p.muted = on;
        let _ = p.commands.send(RelayCommand::Mute(on));
        page_in(&s, extension, PageEvent::Muted { on });
        Ok(())
    }

    /// The call flow withdraws `leg` (the ring timed out, or the caller left).
    pub fn cancel(&self, leg: u64) {
        self.withdraw(leg, EndReason::Cancelled, "cancelled");
    }

    /// The call flow ends `leg` (the caller hung up, or the call is being torn down).
    pub fn hang_up_leg(&self, leg: u64, reason: EndReason) {
        self.withdraw(leg, reason, "caller");
    }

    fn withdraw(&self, leg: u64, reason: EndReason, why: &'static str) {
        let Some(extension) = self.lock().legs.get(&leg).cloned() else {
            return;
        };
        let taken = self.take_leg(&extension, leg);
        self.end_leg(&extension, taken, reason, why);
    }

    /// Ends a leg that was taken off its phone: the call flow and the page are told.
    fn end_leg(&self, extension: &str, leg: Option<Leg>, reason: EndReason, why: &'static str) {
        let Some(leg) = leg else {
            return;
        };
        let mut s = self.lock();
        s.legs.remove(&leg.id());
        let id = leg.id();
        match leg {
            Leg::Ringing { .. } if reason != EndReason::Cancelled => {
                // A ring that never got an answer fails (480: the phone went away).
                let _ = self.calls.send(ua::Event::OperatorFailed {
                    call: id,
                    status: 480,
                });
            }
            _ => {
                let _ = self.calls.send(ua::Event::CallEnded { call: id, reason });
            }
        }
        page_in(&s, extension, PageEvent::Ended { leg: id, why });
    }

    /// Takes `leg` off `extension`'s phone (unbridging it), if it is there.
    fn take_leg(&self, extension: &str, leg: u64) -> Option<Leg> {
        let mut s = self.lock();
        let p = s.phones.get_mut(extension)?;
        if p.leg.as_ref().map(Leg::id) != Some(leg) {
            return None;
        }
        p.ring = None;
        let taken = p.leg.take();
        if matches!(taken, Some(Leg::Answered { .. })) {
            let _ = p.commands.send(RelayCommand::Unbridge);
        }
        s.legs.remove(&leg);
        taken
    }

    /// A ringing leg fails with `status` (declined, no port).
    fn fail(&self, extension: &str, leg: u64, status: u16) {
        if self.take_leg(extension, leg).is_some() {
            self.failed(extension, leg, status);
        }
    }

    fn failed(&self, extension: &str, leg: u64, status: u16) {
        let _ = self
            .calls
            .send(ua::Event::OperatorFailed { call: leg, status });
        let why = if status == 603 { "declined" } else { "failed" };
        self.page(extension, PageEvent::Ended { leg, why });
    }

    fn page(&self, extension: &str, ev: PageEvent) {
        page_in(&self.lock(), extension, ev);
    }
}

#[cfg(test)]
mod tests {
    //! The hub's legs without a browser: a phone put in place connected, with the test
    //! holding its relay's command channel.

    use super::*;

    struct Rig {
        phones: BrowserPhones,
        calls: mpsc::UnboundedReceiver<ua::Event>,
        reach: mpsc::UnboundedReceiver<String>,
        relay: mpsc::UnboundedReceiver<RelayCommand>,
        page: broadcast::Receiver<PageEvent>,
    }

    const INNER: &str = "127.0.0.1:41000";

    fn rig() -> Rig {
        let (calls_tx, calls) = mpsc::unbounded_channel();
        let (reach_tx, reach) = mpsc::unbounded_channel();
        let ip = IpAddr::from([127, 0, 0, 1]);
        let phones = BrowserPhones::new(
            PortPool::new(ip, 42000, 42100),
            PhoneAddresses {
                public_ip: ip,
                inner_ip: ip,
            },
            tokio::runtime::Handle::current(),
            calls_tx,
            reach_tx,
        );
        let (tx, relay) = mpsc::unbounded_channel();
        let (_, page) = phones.subscribe("1001");
        phones.lock().phones.insert(
            "1001".into(),
            Phone {
                generation: 7,
                commands: tx,
                inner: INNER.parse().unwrap(),
                codec: crate::sip::sdp::Codec::Pcmu,
                connected: true,
                leg: None,
                muted: false,
                ring: None,
            },
        );
        Rig {
            phones,
            calls,
            reach,
            relay,
            page,
        }
    }

    fn originate(for_call: u64) -> Originate {
        Originate {
            extension: "1001".into(),
            caller_number: "79161234567".into(),
            caller_name: Some("Клиент".into()),
            for_call: Some(for_call),
            via: None,
        }
    }

    impl Rig {
        fn events(&mut self) -> Vec<ua::Event> {
            std::iter::from_fn(|| self.calls.try_recv().ok()).collect()
        }
        fn page(&mut self) -> Vec<PageEvent> {
            std::iter::from_fn(|| self.page.try_recv().ok()).collect()
        }
    }

    #[tokio::test]
    async fn a_ring_is_declined_or_withdrawn_as_a_phones_would_be() {
        let mut r = rig();
        let leg = r.phones.ring(originate(5)).unwrap();
        assert!(BrowserPhones::owns(leg));
        assert_eq!(
            r.events(),
            vec![
                ua::Event::LegPlaced {
                    call: leg,
                    for_call: 5
                },
                ua::Event::OperatorRinging { call: leg }
            ]
        );
        assert_eq!(
            r.page(),
            vec![PageEvent::Ring {
                leg,
                number: "79161234567".into(),
                name: Some("Клиент".into())
            }]
        );
        // One call at a time; another operator's page cannot touch it.
        assert!(r.phones.ring(originate(6)).is_err());
        assert!(matches!(
            r.phones.check_owner("1002", leg),
            Err(PhoneError::NotYours)
        ));
        // «Отклонить»: 603, as a phone's decline.
        r.phones.decline("1001", leg).unwrap();
        assert_eq!(
            r.events(),
            vec![ua::Event::OperatorFailed {
                call: leg,
                status: 603
            }]
        );
        assert_eq!(
            r.page(),
            vec![PageEvent::Ended {
                leg,
                why: "declined"
            }]
        );
        // The ring timeout: the call flow cancels; exactly one CallEnded(Cancelled).
        let leg = r.phones.ring(originate(5)).unwrap();
        r.events();
        r.page();
        r.phones.cancel(leg);
        r.phones.cancel(leg);
        assert_eq!(
            r.events(),
            vec![ua::Event::CallEnded {
                call: leg,
                reason: EndReason::Cancelled
            }]
        );
        assert_eq!(
            r.page(),
            vec![PageEvent::Ended {
                leg,
                why: "cancelled"
            }]
        );
        assert!(r.phones.answer("1001", leg).is_err(), "a withdrawn ring");
    }

    #[tokio::test]
    async fn an_answer_bridges_and_either_side_ends_the_call() {
        let mut r = rig();
        let leg = r.phones.ring(originate(5)).unwrap();
        r.events();
        r.phones.answer("1001", leg).unwrap();
        let answered = r.events();
        let [ua::Event::OperatorAnswered {
            call,
            rtp_port,
            media,
        }] = answered.as_slice()
        else {
            panic!("{answered:?}")
        };
        assert_eq!(*call, leg);
        assert_eq!(media.remote_rtp, Some(INNER.parse().unwrap()));
        assert_eq!(media.codecs, vec![(0, crate::sip::sdp::Codec::Pcmu)]);
        // The relay is told where the session's socket is: the port handed to the flow.
        match r.relay.try_recv().unwrap() {
            RelayCommand::Bridge { session } => assert_eq!(session.port(), *rtp_port),
            other => panic!("{other:?}"),
        }
        r.phones.mute("1001", true).unwrap();
        assert!(matches!(r.relay.try_recv(), Ok(RelayCommand::Mute(true))));
        // The caller hangs up: the call flow ends the leg.
        r.phones.hang_up_leg(leg, EndReason::Hangup);
        assert_eq!(
            r.events(),
            vec![ua::Event::CallEnded {
                call: leg,
                reason: EndReason::Hangup
            }]
        );
        assert!(matches!(r.relay.try_recv(), Ok(RelayCommand::Unbridge)));

        // The next call: the microphone is on again; the operator hangs up in the page
        // (a BYE from the operator).
        let leg = r.phones.ring(originate(8)).unwrap();
        assert!(matches!(r.relay.try_recv(), Ok(RelayCommand::Mute(false))));
        r.phones.answer("1001", leg).unwrap();
        r.events();
        r.phones.hang_up("1001", leg).unwrap();
        assert_eq!(
            r.events(),
            vec![ua::Event::CallEnded {
                call: leg,
                reason: EndReason::RemoteBye
            }]
        );
    }

    #[tokio::test]
    async fn a_lost_connection_ends_its_call_and_the_operator_is_unreachable() {
        let mut r = rig();
        assert!(
            !r.phones.reachable("1001", false),
            "on the SIP phone by default"
        );
        r.phones.set_ring_at("1001", RingAt::Browser);
        assert!(r.phones.reachable("1001", false));
        r.phones.set_ring_at("1001", RingAt::Phone);
        assert!(
            !r.phones.reachable("1001", false),
            "rung on the SIP phone only"
        );
        r.phones.set_ring_at("1001", RingAt::Browser);
        let leg = r.phones.ring(originate(5)).unwrap();
        r.phones.answer("1001", leg).unwrap();
        r.events();
        r.page();
        while r.reach.try_recv().is_ok() {}
        // An older connection's report is ignored; this one's ends the call.
        r.phones
            .on_relay("1001", 6, RelayEvent::Closed(Closed::Silent));
        assert!(r.events().is_empty());
        r.phones
            .on_relay("1001", 7, RelayEvent::Closed(Closed::Silent));
        assert_eq!(
            r.events(),
            vec![ua::Event::CallEnded {
                call: leg,
                reason: EndReason::RemoteBye
            }]
        );
        assert_eq!(
            r.page(),
            vec![
                PageEvent::Ended {
                    leg,
                    why: "connection_lost"
                },
                PageEvent::Closed { why: "silent" }
            ]
        );
        assert_eq!(r.reach.try_recv().unwrap(), "1001");
        assert!(!r.phones.is_connected("1001"));
        assert!(!r.phones.reachable("1001", true));
        assert!(r.phones.ring(originate(9)).is_err());
    }

    /// A window that lost the phone to a newer one, then closes, leaves the newer one on;
    /// the operator's own «Выключить» (no connection named) or the current window's
    /// switches it off.
    #[tokio::test]
    async fn only_the_named_connection_is_switched_off() {
        let mut r = rig();
        r.phones.set_ring_at("1001", RingAt::Browser);
        while r.reach.try_recv().is_ok() {}
        r.phones.disconnect("1001", Some(6));
        assert!(r.phones.is_connected("1001"), "an older window's beacon");
        assert!(r.page().is_empty());
        assert!(r.relay.try_recv().is_err());
        r.phones.disconnect("1001", Some(7));
        assert!(!r.phones.is_connected("1001"));
        assert!(matches!(r.relay.try_recv(), Ok(RelayCommand::Close)));
        assert_eq!(r.page(), vec![PageEvent::Closed { why: "signed_out" }]);
        assert_eq!(r.reach.try_recv().unwrap(), "1001");
        r.phones.disconnect("1001", None);
        assert!(r.page().is_empty(), "nothing left to switch off");
    }
}
