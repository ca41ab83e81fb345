//! One RTP leg (the caller's, or an operator's) without its socket: what was negotiated,
//! where to send (latching), our outgoing stream (SSRC, sequence, timestamp), receive
//! statistics, DTMF detection and the RTP timeout clock.
//!
//! The media session owns the socket and calls [`LegState::receive_datagram`] for every
//! datagram and [`LegState::write_frame`] / [`LegState::write_relayed`] to build what it
//! sends, so every decision about a packet is testable and benchable without I/O. Nothing
//! here allocates per packet on a plain RTP leg; an SRTP leg's transform allocates once
//! per packet (see [`super::srtp`]).

use super::dtmf::Detector;
use super::g711;
use super::rtp::{self, Latch, Packet, ReceiveStats, RelayClock, RtpSender};
use super::srtp::{Refused, SrtpLeg};
use crate::sip::sdp::{Codec, Direction, Negotiated};
use std::net::SocketAddr;
use std::time::Instant;

/// Samples in one 20 ms G.711 frame: what prompts are cut into and what we pace.
pub const FRAME_SAMPLES: u32 = 160;

/// Gaps in a stream's RTP timestamps up to this long (1 s) are lost packets or silence
/// suppression and are recorded as silence; longer jumps are a new talk spurt after a
/// restart, which the recorder's wall-clock alignment covers instead.
const MAX_FILLED_GAP: u32 = 8000;

/// An audio packet received on a leg, in a negotiated codec.
#[derive(Debug)]
pub struct Audio<'a> {
    pub packet: Packet<'a>,
    pub codec: Codec,
    /// Samples missing before this packet (lost or suppressed), recorded as silence.
    pub gap: u32,
}

/// What a received datagram turned out to be.
#[derive(Debug)]
pub enum Inbound<'a> {
    /// Audio for the recorder and the other leg.
    Audio(Audio<'a>),
    /// The first packet of an RFC 4733 telephone-event.
    Digit(char),
    /// Anything else: a later packet of the same DTMF event, comfort noise, an unknown
    /// payload type, RTCP, garbage, or a packet from a source we have not latched to.
    Ignored,
}

/// Why packets were not used (for statistics and tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Not RTP at all.
    pub invalid: u64,
    /// From another address than the one we latched to (RTP injection, stale peers).
    pub foreign: u64,
    /// A payload type that was not negotiated.
    pub unknown_payload: u64,
    /// SRTP: a wrong authentication tag (forged, damaged, or keyed otherwise).
    pub unauthenticated: u64,
    /// SRTP: a packet received already (RFC 3711 §3.3.2).
    pub replayed: u64,
    /// SRTP: a new SSRC over the rate at which those are checked.
    pub throttled: u64,
}

/// Whether and how the leg's packets are protected.
enum Protection {
    Plain,
    Srtp(Box<SrtpLeg>),
    /// SRTP was agreed but could not be keyed: nothing is sent or taken, rather than
    /// falling back to cleartext.
    Unusable,
}

/// One leg's state. See the module documentation.
pub struct LegState {
    latch: Latch,
    sender: RtpSender,
    relay_clock: RelayClock,
    /// Payload type and codec we send (the first negotiated, RFC 3264 §6.1).
    send: (u8, Codec),
    /// What we accept, by payload type.
    accept: [Option<Codec>; 128],
    telephone_event: Option<u8>,
    direction: Direction,
    dtmf: Detector,
    /// SSRC and next expected timestamp of the audio received, for gap detection.
    expected: Option<(u32, u32)>,
    last_rx: Instant,
    origin: Instant,
    stats: ReceiveStats,
    dropped: Dropped,
    /// Transcoded payloads are built here (kept, not zeroed per packet).
    scratch: [u8; MAX_PAYLOAD],
    protection: Protection,
}

/// Largest payload relayed: 128 ms of G.711.
const MAX_PAYLOAD: usize = 1024;

impl LegState {
    pub fn new(media: &Negotiated, now: Instant) -> Self {
        let mut leg = LegState {
            latch: Latch::new(media.remote_rtp),
            sender: RtpSender::new(),
            relay_clock: RelayClock::default(),
            send: media.codecs[0],
            accept: [None; 128],
            telephone_event: None,
            direction: media.direction,
            dtmf: Detector::default(),
            expected: None,
            last_rx: now,
            origin: now,
            stats: ReceiveStats::default(),
            dropped: Dropped::default(),
            scratch: [0; MAX_PAYLOAD],
            protection: Protection::Plain,
        };
        leg.update(media);
        leg
    }

    /// A re-INVITE renegotiated: new address (relearned), codecs, direction.
    pub fn update(&mut self, media: &Negotiated) {
        if media.remote_rtp != self.latch.signalled() {
            self.latch.set_signalled(media.remote_rtp);
        }
        if let Some(first) = media.codecs.first() {
            self.send = *first;
        }
        self.accept = [None; 128];
        for (pt, codec) in &media.codecs {
            if let Some(slot) = self.accept.get_mut(usize::from(*pt)) {
                *slot = Some(*codec);
            }
        }
        self.telephone_event = media.telephone_event;
        self.direction = media.direction;
        self.protection = match (
            std::mem::replace(&mut self.protection, Protection::Plain),
            &media.srtp,
        ) {
            (_, None) => Protection::Plain,
            (Protection::Srtp(mut leg), Some(keys)) => match leg.rekey(keys) {
                Ok(()) => Protection::Srtp(leg),
                Err(e) => {
                    tracing::error!(error = %e, "SRTP re-key failed; the leg is silenced");
                    Protection::Unusable
                }
            },
            (_, Some(keys)) => match SrtpLeg::new(keys, self.origin) {
                Ok(leg) => Protection::Srtp(Box::new(leg)),
                Err(e) => {
                    tracing::error!(error = %e, "SRTP keys unusable; the leg is silenced");
                    Protection::Unusable
                }
            },
        };
    }

    /// Whether the leg is SRTP.
    pub fn is_srtp(&self) -> bool {
        !matches!(self.protection, Protection::Plain)
    }

    /// Classifies one datagram from `source` as it came off the socket: on an SRTP leg it
    /// is first authenticated and decrypted in place (from the latched source only, so that
    /// strangers cost no cryptography), then [`Self::receive`]d.
    pub fn receive_datagram<'a>(
        &mut self,
        buf: &'a mut [u8],
        source: SocketAddr,
        now: Instant,
    ) -> Inbound<'a> {
        let len = match &mut self.protection {
            Protection::Plain => buf.len(),
            Protection::Unusable => return Inbound::Ignored,
            Protection::Srtp(srtp) => {
                if !self.latch.admits(source, now) {
                    self.dropped.foreign += 1;
                    return Inbound::Ignored;
                }
                let len = buf.len();
                match srtp.unprotect(buf, len, now) {
                    Ok(n) => n,
                    Err(refused) => {
                        let counter = match refused {
                            Refused::Replay => &mut self.dropped.replayed,
                            Refused::Throttled => &mut self.dropped.throttled,
                            Refused::Authentication => &mut self.dropped.unauthenticated,
                            // As a plain leg counts what is not RTP (RTCP included).
                            Refused::Malformed | Refused::Rtcp => &mut self.dropped.invalid,
                        };
                        *counter += 1;
                        return Inbound::Ignored;
                    }
                }
            }
        };
        self.receive(&buf[..len], source, now)
    }

    /// Seals the packet `out[..len]` we built, on an SRTP leg; returns what to send (0:
    /// nothing).
    fn seal(&mut self, out: &mut [u8], len: usize) -> usize {
        match &mut self.protection {
            Protection::Plain => len,
            Protection::Unusable => 0,
            Protection::Srtp(_) if len == 0 => 0,
            Protection::Srtp(srtp) => srtp.protect(out, len).unwrap_or(0),
        }
    }

    /// Classifies one clear RTP datagram from `source`.
    pub fn receive<'a>(&mut self, buf: &'a [u8], source: SocketAddr, now: Instant) -> Inbound<'a> {
        let Ok(packet) = rtp::parse(buf) else {
            self.dropped.invalid += 1;
            return Inbound::Ignored;
        };
        if !self.latch.on_packet(source, packet.ssrc, now) {
            self.dropped.foreign += 1;
            return Inbound::Ignored;
        }
        self.last_rx = now;
        let arrival = (now.saturating_duration_since(self.origin).as_micros() * 8 / 1000) as u32;
        self.stats
            .update(packet.sequence, packet.timestamp, arrival);
        if Some(packet.payload_type) == self.telephone_event {
            return match self.dtmf.on_packet(
                packet.ssrc,
                packet.timestamp,
                packet.marker,
                packet.payload,
            ) {
                Some(d) => Inbound::Digit(d),
                None => Inbound::Ignored,
            };
        }
        let Some(codec) = self
            .accept
            .get(usize::from(packet.payload_type))
            .copied()
            .flatten()
        else {
            self.dropped.unknown_payload += 1;
            return Inbound::Ignored;
        };
        let samples = packet.payload.len() as u32;
        let gap = match self.expected {
            Some((ssrc, next)) if ssrc == packet.ssrc => {
                let ahead = packet.timestamp.wrapping_sub(next);
                if ahead <= MAX_FILLED_GAP {
                    ahead
                } else if ahead > u32::MAX / 2 {
                    // Late (reordered) packet: its place in the recording is gone.
                    return Inbound::Ignored;
                } else {
                    0
                }
            }
            _ => 0,
        };
        self.expected = Some((packet.ssrc, packet.timestamp.wrapping_add(samples)));
        Inbound::Audio(Audio { packet, codec, gap })
    }

    /// Builds our next paced packet from one frame already encoded in [`Self::codec`]
    /// (a prompt frame or silence). Returns the datagram length.
    pub fn write_frame(&mut self, frame: &[u8], out: &mut [u8]) -> usize {
        self.sender.advance(frame.len() as u32);
        let len = self
            .sender
            .write(self.send.0, false, frame, out)
            .unwrap_or(0);
        self.seal(out, len)
    }

    /// Builds the packet that carries `packet` (received on the other leg, in `codec`) on
    /// this leg: transcoded to our codec when the legs differ, timestamps advancing as the
    /// source's did so that the far end's jitter buffer sees the original timing.
    pub fn write_relayed(&mut self, packet: &Packet, codec: Codec, out: &mut [u8]) -> usize {
        let step = self
            .relay_clock
            .step(packet.ssrc, packet.timestamp, FRAME_SAMPLES);
        self.sender.advance(step);
        let n = packet.payload.len().min(MAX_PAYLOAD);
        let payload = if codec == self.send.1 {
            &packet.payload[..n]
        } else {
            g711::transcode(
                codec,
                self.send.1,
                &packet.payload[..n],
                &mut self.scratch[..n],
            );
            &self.scratch[..n]
        };
        let len = self
            .sender
            .write(self.send.0, packet.marker, payload, out)
            .unwrap_or(0);
        self.seal(out, len)
    }

    /// The next packet we send starts a new talk spurt (the audio source changed).
    pub fn resync(&mut self) {
        self.sender.resync();
    }

    /// Where to send: the latched source, else the SDP address.
    pub fn remote(&self) -> Option<SocketAddr> {
        self.latch.remote()
    }

    /// The codec we send in.
    pub fn codec(&self) -> Codec {
        self.send.1
    }

    /// Whether we may send (the peer did not put us on hold with `inactive`/`recvonly`).
    pub fn we_send(&self) -> bool {
        matches!(self.direction, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether the peer said it would send; only then can its silence be a dead call.
    pub fn peer_sends(&self) -> bool {
        matches!(self.direction, Direction::SendRecv | Direction::RecvOnly)
    }

    /// Time of the last packet accepted (or of the leg's start).
    pub fn last_rx(&self) -> Instant {
        self.last_rx
    }

    /// Restarts the RTP timeout clock (media resumed after hold).
    pub fn touch(&mut self, now: Instant) {
        self.last_rx = now;
    }

    pub fn stats(&self) -> &ReceiveStats {
        &self.stats
    }

    pub fn dropped(&self) -> Dropped {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn media(codecs: &[(u8, Codec)], remote: &str) -> Negotiated {
        Negotiated {
            codecs: codecs.to_vec(),
            telephone_event: Some(101),
            remote_rtp: Some(remote.parse().unwrap()),
            direction: Direction::SendRecv,
            ptime: None,
            srtp: None,
        }
    }

    fn packet(pt: u8, seq: u16, ts: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; 12 + payload.len()];
        let mut s = RtpSender::with_state(0x1234_5678, seq, ts);
        let n = s.write(pt, marker, payload, &mut out).unwrap();
        out.truncate(n);
        out
    }

    #[test]
    fn audio_is_classified_with_gaps_and_latches_to_the_first_source() {
        let t0 = Instant::now();
        let mut leg = LegState::new(&media(&[(0, Codec::Pcmu)], "127.0.0.1:4000"), t0);
        let real: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let other: SocketAddr = "127.0.0.1:6000".parse().unwrap();
        let p = packet(0, 1, 1000, false, &[0xFF; 160]);
        assert!(matches!(
            leg.receive(&p, real, t0),
            Inbound::Audio(Audio { gap: 0, .. })
        ));
        assert_eq!(
            leg.remote(),
            Some(real),
            "symmetric RTP: answer where it came from"
        );
        // An injected packet from elsewhere is dropped while the real peer is alive.
        let p = packet(0, 2, 1160, false, &[0xFF; 160]);
        assert!(matches!(leg.receive(&p, other, t0), Inbound::Ignored));
        assert_eq!(leg.dropped().foreign, 1);
        // Seq 3 lost: the next packet reports a 160-sample gap.
        let p = packet(0, 4, 1480, false, &[0xFF; 160]);
        match leg.receive(&p, real, t0 + Duration::from_millis(60)) {
            Inbound::Audio(Audio { gap, codec, .. }) => {
                assert_eq!(gap, 320);
                assert_eq!(codec, Codec::Pcmu);
            }
            other => panic!("{other:?}"),
        }
        // Unknown payload type (PCMA was not negotiated) and garbage are counted.
        let p = packet(8, 5, 1640, false, &[0xD5; 160]);
        assert!(matches!(leg.receive(&p, real, t0), Inbound::Ignored));
        assert!(matches!(leg.receive(b"junk", real, t0), Inbound::Ignored));
        assert_eq!(leg.dropped().unknown_payload, 1);
        assert_eq!(leg.dropped().invalid, 1);
    }

    #[test]
    fn telephone_event_gives_one_digit() {
        let t0 = Instant::now();
        let mut leg = LegState::new(&media(&[(0, Codec::Pcmu)], "127.0.0.1:4000"), t0);
        let src: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let mut digits = Vec::new();
        for (i, (end, dur)) in [
            (false, 160u16),
            (false, 320),
            (true, 480),
            (true, 480),
            (true, 480),
        ]
        .into_iter()
        .enumerate()
        {
            let mut ev = [0u8; 4];
            crate::media::dtmf::write_event('7', end, 10, dur, &mut ev).unwrap();
            let p = packet(101, 10 + i as u16, 5000, i == 0, &ev);
            if let Inbound::Digit(d) = leg.receive(&p, src, t0) {
                digits.push(d);
            }
        }
        assert_eq!(digits, vec!['7']);
    }

    #[test]
    fn relayed_packets_are_transcoded_and_keep_the_source_timing() {
        let t0 = Instant::now();
        let mut pcma_leg = LegState::new(&media(&[(8, Codec::Pcma)], "127.0.0.1:4000"), t0);
        let payload: Vec<u8> = (0..160u32).map(|i| (i * 7 % 256) as u8).collect();
        let first = packet(0, 1, 1000, true, &payload);
        let first = rtp::parse(&first).unwrap();
        let mut out = [0u8; 1500];
        let n = pcma_leg.write_relayed(&first, Codec::Pcmu, &mut out);
        let a = rtp::parse(&out[..n]).unwrap();
        assert_eq!(a.payload_type, 8);
        let mut expected = [0u8; 160];
        g711::transcode(Codec::Pcmu, Codec::Pcma, &payload, &mut expected);
        assert_eq!(a.payload, &expected[..]);
        let (ts1, seq1, ssrc1) = (a.timestamp, a.sequence, a.ssrc);
        // The source skipped one frame: so does the relayed stream.
        let third = packet(0, 3, 1320, false, &payload);
        let third = rtp::parse(&third).unwrap();
        let n = pcma_leg.write_relayed(&third, Codec::Pcmu, &mut out);
        let b = rtp::parse(&out[..n]).unwrap();
        assert_eq!(b.timestamp.wrapping_sub(ts1), 320);
        assert_eq!(b.sequence, seq1.wrapping_add(1));
        assert_eq!(b.ssrc, ssrc1);
    }

    #[test]
    fn an_srtp_leg_takes_only_authentic_packets_and_seals_what_it_sends() {
        use crate::media::srtp::SrtpLeg;
        use crate::sip::sdes::{new_key, Keys, Suite};
        let t0 = Instant::now();
        let suite = Suite::AesCm128HmacSha1_80;
        let keys = Keys {
            suite,
            theirs: new_key(suite),
            ours: new_key(suite),
            savp: true,
        };
        let mut m = media(&[(0, Codec::Pcmu)], "127.0.0.1:4000");
        m.srtp = Some(keys.clone());
        let mut leg = LegState::new(&m, t0);
        assert!(leg.is_srtp());
        let mut phone = SrtpLeg::new(
            &Keys {
                suite,
                theirs: keys.ours.clone(),
                ours: keys.theirs.clone(),
                savp: true,
            },
            t0,
        )
        .unwrap();
        let real: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let sealed = |phone: &mut SrtpLeg, seq: u16| {
            let mut buf = [0u8; 512];
            let clear = packet(0, seq, 160 * u32::from(seq), false, &[0x42; 160]);
            buf[..clear.len()].copy_from_slice(&clear);
            let n = phone.protect(&mut buf, clear.len()).unwrap();
            buf[..n].to_vec()
        };
        // An authentic packet is decrypted in place and classified as audio.
        let mut p = sealed(&mut phone, 1);
        match leg.receive_datagram(&mut p, real, t0) {
            Inbound::Audio(a) => assert_eq!(a.packet.payload, &[0x42; 160][..]),
            other => panic!("{other:?}"),
        }
        // The same packet again, a forged one, one from elsewhere: dropped and counted.
        let mut again = sealed(&mut phone, 2);
        let replay = again.clone();
        assert!(matches!(
            leg.receive_datagram(&mut again, real, t0),
            Inbound::Audio(_)
        ));
        let mut replay = replay;
        assert!(matches!(
            leg.receive_datagram(&mut replay, real, t0),
            Inbound::Ignored
        ));
        let mut forged = packet(0, 3, 480, false, &[0x42; 170]);
        assert!(matches!(
            leg.receive_datagram(&mut forged, real, t0),
            Inbound::Ignored
        ));
        let mut elsewhere = sealed(&mut phone, 4);
        let other: SocketAddr = "127.0.0.1:6000".parse().unwrap();
        assert!(matches!(
            leg.receive_datagram(&mut elsewhere, other, t0),
            Inbound::Ignored
        ));
        let d = leg.dropped();
        assert_eq!(
            (d.replayed, d.unauthenticated, d.foreign),
            (1, 1, 1),
            "{d:?}"
        );
        // What the leg sends is SRTP the phone can open; the payload is not in clear.
        let mut out = [0u8; 512];
        let n = leg.write_frame(&[0x33; 160], &mut out);
        assert_eq!(n, 12 + 160 + 10);
        assert_ne!(out[12..172], [0x33; 160]);
        let back = phone.unprotect(&mut out, n, t0).unwrap();
        assert_eq!(out[12..back], [0x33; 160]);
        // A re-INVITE back to plain RTP (allowed by the policy) sends plain RTP.
        m.srtp = None;
        leg.update(&m);
        assert!(!leg.is_srtp());
        assert_eq!(leg.write_frame(&[0x33; 160], &mut out), 172);
        // Keys that cannot key a context silence the leg rather than send in clear.
        m.srtp = Some(Keys {
            ours: vec![1; 3],
            ..keys
        });
        let mut broken = LegState::new(&m, t0);
        assert_eq!(broken.write_frame(&[0x33; 160], &mut out), 0);
        let mut p = sealed(&mut phone, 5);
        assert!(matches!(
            broken.receive_datagram(&mut p, real, t0),
            Inbound::Ignored
        ));
    }

    #[test]
    fn hold_directions() {
        let t0 = Instant::now();
        let mut m = media(&[(0, Codec::Pcmu)], "127.0.0.1:4000");
        m.direction = Direction::Inactive;
        let leg = LegState::new(&m, t0);
        assert!(!leg.we_send() && !leg.peer_sends());
        m.direction = Direction::RecvOnly;
        let leg = LegState::new(&m, t0);
        assert!(!leg.we_send() && leg.peer_sends());
    }
}
