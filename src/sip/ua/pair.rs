//! The core and a scripted phone in simulated time, as quinn-proto's `Pair`: what one side
//! sends reaches the other at once (or is lost, if the script says so), and the clock jumps
//! straight to the next deadline of either side. Nothing sleeps and no step is skipped, so
//! a test reads the exact times of retransmissions, time-outs and expiries.

use super::testkit::*;
use crate::sip::Transmit;

/// What a scripted phone does with a message from the core: reply (after a delay), or
/// lose it (UDP loss).
pub(super) enum React {
    Reply(Duration, Box<rsip::SipMessage>),
    Lose,
}

impl React {
    pub(super) fn reply(after: Duration, msg: rsip::SipMessage) -> React {
        React::Reply(after, Box::new(msg))
    }
}

/// The phone's script: given what the core sent and the time, what the phone does.
type Script = Box<dyn FnMut(&str, Duration) -> Vec<React>>;

/// A phone on the far side of the wire, driven by its script.
pub(super) struct Phone {
    pub addr: SocketAddr,
    pub transport: Transport,
    script: Script,
    /// Messages the phone will send, with when.
    pending: Vec<(Instant, rsip::SipMessage)>,
}

impl Phone {
    pub(super) fn new(
        addr: SocketAddr,
        script: impl FnMut(&str, Duration) -> Vec<React> + 'static,
    ) -> Phone {
        Phone {
            addr,
            transport: Transport::Udp,
            script: Box::new(script),
            pending: Vec::new(),
        }
    }

    /// Sends `msg` to the core at `at`.
    pub(super) fn send_at(&mut self, at: Instant, msg: rsip::SipMessage) {
        self.pending.push((at, msg));
    }

    fn next_due(&self) -> Option<Instant> {
        self.pending.iter().map(|(t, _)| *t).min()
    }
}

/// One line of the wire log.
#[derive(Debug, Clone)]
pub(super) struct Sent {
    /// Since the pair started.
    pub at: Duration,
    /// From the core to the phone (else from the phone to the core).
    pub to_phone: bool,
    /// Lost on the way.
    pub lost: bool,
    pub text: String,
}

impl Sent {
    /// The request method or `SIP/2.0 <status>` the message starts with.
    pub fn first_line(&self) -> &str {
        self.text.split("\r\n").next().unwrap_or_default()
    }
}

pub(super) struct Pair {
    pub ua: UserAgent,
    pub phone: Phone,
    pub t0: Instant,
    pub now: Instant,
    pub wire: Vec<Sent>,
    pub events: Vec<(Duration, Event)>,
}

impl Pair {
    pub(super) fn new(ua: UserAgent, phone: Phone, t0: Instant) -> Pair {
        Pair {
            ua,
            phone,
            t0,
            now: t0,
            wire: Vec::new(),
            events: Vec::new(),
        }
    }

    /// Moves everything that is due now across the wire, until neither side has more.
    fn step(&mut self) -> bool {
        let mut any = false;
        while let Some(Transmit { peer, bytes }) = self.ua.poll_transmit() {
            any = true;
            let text = String::from_utf8(bytes.to_vec()).unwrap();
            let reactions = if peer.addr == self.phone.addr {
                (self.phone.script)(&text, self.now - self.t0)
            } else {
                Vec::new() // for nobody here: lost
            };
            let lost = reactions.iter().any(|r| matches!(r, React::Lose));
            self.wire.push(Sent {
                at: self.now - self.t0,
                to_phone: true,
                lost,
                text,
            });
            for r in reactions {
                if let React::Reply(after, msg) = r {
                    self.phone.send_at(self.now + after, *msg);
                }
            }
        }
        let now = self.now;
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.phone.pending)
            .into_iter()
            .partition(|(t, _)| *t <= now);
        self.phone.pending = later;
        for (_, msg) in due {
            any = true;
            self.wire.push(Sent {
                at: now - self.t0,
                to_phone: false,
                lost: false,
                text: msg.to_string(),
            });
            self.ua
                .handle_message(msg, self.phone.addr, self.phone.transport, now);
        }
        while let Some(e) = self.ua.poll_event() {
            any = true;
            self.events.push((now - self.t0, e));
        }
        any
    }

    /// Runs both sides until `until` (since the start), jumping from deadline to deadline.
    pub(super) fn drive_for(&mut self, until: Duration) {
        let end = self.t0 + until;
        loop {
            while self.step() {}
            let next = [self.ua.poll_timeout(), self.phone.next_due()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    if self.ua.poll_timeout().is_some_and(|d| d <= self.now) {
                        self.ua.handle_timeout(self.now);
                    }
                }
                _ => break,
            }
        }
        self.now = self.now.max(end);
    }

    /// When the core sent messages starting with `first_line` to the phone.
    pub(super) fn sent_at(&self, first_line: &str) -> Vec<Duration> {
        self.wire
            .iter()
            .filter(|s| s.to_phone && s.first_line().starts_with(first_line))
            .map(|s| s.at)
            .collect()
    }
}

mod tests {
    use super::*;
    use crate::sip::ua::EndReason;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&m| Duration::from_millis(m)).collect()
    }

    /// The operator's phone loses our first two INVITEs (UDP), rings on the third and
    /// answers four seconds later: Timer A resends at T1 then 2·T1, the 180 stops it, and
    /// the 2xx is ACKed the moment it arrives.
    #[test]
    fn a_lost_invite_is_resent_on_timer_a_and_the_late_answer_is_acked() {
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
        let mut invites = 0;
        let phone = Phone::new(op_src(), move |msg, _| {
            if !msg.starts_with("INVITE ") {
                return Vec::new();
            }
            invites += 1;
            if invites <= 2 {
                return vec![React::Lose];
            }
            vec![
                React::reply(
                    Duration::from_millis(100),
                    op_reply(msg, 180, Some("op1"), "", ""),
                ),
                React::reply(
                    Duration::from_secs(4),
                    op_reply(msg, 200, Some("op1"), OP_2XX_EXTRA, OP_ANSWER),
                ),
            ]
        });
        let mut pair = Pair::new(ua, phone, t0);
        let leg = pair
            .ua
            .originate(leg_to("1001", "+79780000001", None), t0)
            .unwrap();
        pair.drive_for(Duration::from_secs(60));
        assert_eq!(pair.sent_at("INVITE "), ms(&[0, 500, 1500]));
        assert_eq!(pair.sent_at("ACK "), ms(&[5500]));
        let ringing: Vec<Duration> = pair
            .events
            .iter()
            .filter(|(_, e)| *e == Event::OperatorRinging { call: leg })
            .map(|(at, _)| *at)
            .collect();
        assert_eq!(ringing, ms(&[1600]));
        let answered: Vec<Duration> = pair
            .events
            .iter()
            .filter(|(_, e)| matches!(e, Event::OperatorAnswered { call, .. } if *call == leg))
            .map(|(at, _)| *at)
            .collect();
        assert_eq!(answered, ms(&[5500]));
        assert_eq!(pair.ua.active_calls(), 1, "the answered leg is up");
    }

    /// A caller's phone that never sends the ACK: our 2xx is resent at 0.5, 1.5, 3.5 s and
    /// then every T2 (4 s), and at 64·T1 (32 s) the call is ended with BYE, which the phone
    /// answers.
    #[test]
    fn a_caller_that_never_acks_gets_the_2xx_until_64_t1_then_bye() {
        let t0 = Instant::now();
        let phone = Phone::new(src(), |msg, _| {
            if msg.starts_with("BYE ") {
                vec![React::reply(
                    Duration::from_millis(20),
                    op_reply(msg, 200, None, "", ""),
                )]
            } else {
                Vec::new()
            }
        });
        let mut pair = Pair::new(ua(t0), phone, t0);
        pair.phone.send_at(t0, invite("no-ack", "z9hG4bKna"));
        pair.drive_for(Duration::from_secs(40));
        assert_eq!(
            pair.sent_at("SIP/2.0 200"),
            ms(&[0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500])
        );
        assert_eq!(pair.sent_at("BYE "), ms(&[32_000]));
        assert!(pair.events.contains(&(
            Duration::from_secs(32),
            Event::CallEnded {
                call: 1,
                reason: EndReason::AckTimeout
            }
        )));
        assert_eq!(pair.ua.active_calls(), 0);
        // The BYE's transaction is over once answered; only lingering ones remain.
        assert!(pair.wire.iter().all(|s| !s.lost));
    }

    /// An operator leg placed for a call is reported before any of its progress.
    #[test]
    fn a_leg_for_a_call_is_reported_before_its_progress() {
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
        let phone = Phone::new(op_src(), |msg, _| {
            if msg.starts_with("INVITE ") {
                vec![React::reply(
                    Duration::ZERO,
                    op_reply(msg, 180, Some("op1"), "", ""),
                )]
            } else {
                Vec::new()
            }
        });
        let mut pair = Pair::new(ua, phone, t0);
        let o = Originate {
            for_call: Some(7),
            ..leg_to("1001", "+79780000001", None)
        };
        let leg = pair.ua.originate(o, t0).unwrap();
        pair.drive_for(Duration::from_secs(1));
        let events: Vec<&Event> = pair.events.iter().map(|(_, e)| e).collect();
        assert_eq!(
            events,
            [
                &Event::LegPlaced {
                    call: leg,
                    for_call: 7
                },
                &Event::OperatorRinging { call: leg }
            ]
        );
    }
}
