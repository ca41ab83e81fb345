//! RTP (RFC 3550) packet handling for the media path: parsing incoming
//! packets, writing outgoing ones, carrying timing across a relay, receiver
//! statistics for RTCP reports, and symmetric-RTP latching for NATed phones.
//!
//! Every function on the per-packet path works on caller-provided buffers and
//! fixed-size state, so nothing here allocates while media flows, and no input
//! bytes can make anything panic.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rtp_rs::{RtpReader, RtpReaderError};

/// Length of the fixed RTP header this module writes (no CSRCs, no extension).
pub const HEADER_LEN: usize = 12;

/// Errors from parsing or writing RTP packets.
///
/// Every variant is `Copy` and carries only static text, so rejecting a flood
/// of garbage packets costs no allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    /// The bytes are not a well-formed RTP version 2 packet.
    #[error("not RTP: {0}")]
    Invalid(&'static str),
    /// An RTCP packet multiplexed onto the RTP port (RFC 5761); it must go to
    /// the RTCP handler rather than be played as audio.
    #[error("RTCP packet on the RTP path")]
    Rtcp,
    /// The output buffer cannot hold the header plus the payload.
    #[error("output buffer too small for RTP packet")]
    BufferTooSmall,
    /// Payload types are 7 bits; anything larger cannot be encoded.
    #[error("payload type {0} is out of range 0..=127")]
    PayloadType(u8),
}

/// A parsed RTP packet borrowing its payload from the receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    pub payload_type: u8,
    pub marker: bool,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    /// Payload with CSRCs, header extension and padding already stripped.
    pub payload: &'a [u8],
}

/// Parses one datagram as RTP.
///
/// Packets whose second byte carries an RTCP packet type (200..=204, which
/// reads as payload type 72..=76 with the marker bit) are rejected as
/// [`RtpError::Rtcp`]: with RTP/RTCP multiplexing (RFC 5761 §4) that is how the
/// two are told apart, and playing a receiver report as audio would be noise.
pub fn parse(buf: &[u8]) -> Result<Packet<'_>, RtpError> {
    if let [first, second, ..] = buf {
        if first >> 6 == 2 && (72..=76).contains(&(second & 0x7F)) {
            return Err(RtpError::Rtcp);
        }
    }
    let reader = RtpReader::new(buf).map_err(|e| RtpError::Invalid(describe(&e)))?;
    Ok(Packet {
        payload_type: reader.payload_type(),
        marker: reader.mark(),
        sequence: reader.sequence_number().into(),
        timestamp: reader.timestamp(),
        ssrc: reader.ssrc(),
        payload: reader.payload(),
    })
}

/// Static description of an rtp-rs error (which has no `Display` of its own).
fn describe(e: &RtpReaderError) -> &'static str {
    match e {
        RtpReaderError::BufferTooShort(_) => "shorter than the 12-byte header",
        RtpReaderError::UnsupportedVersion(_) => "version is not 2",
        RtpReaderError::HeadersTruncated { .. } => "CSRC list or header extension truncated",
        RtpReaderError::PaddingLengthInvalid(_) => "invalid padding length",
    }
}

/// State of one outgoing RTP stream (one SSRC).
///
/// The caller writes a packet and then calls [`RtpSender::advance`] with the
/// frame's sample count; keeping the two separate lets a relay advance the
/// timestamp by the incoming gap (see [`RelayClock`]) instead of a fixed step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpSender {
    ssrc: u32,
    seq: u16,
    timestamp: u32,
    /// Set the marker bit on the next packet written. Starts `true` because the
    /// first packet of a stream begins a talkspurt (RFC 3551 §4.1).
    pending_marker: bool,
}

impl Default for RtpSender {
    fn default() -> Self {
        Self::new()
    }
}

impl RtpSender {
    /// A new stream with random SSRC, initial sequence number and initial
    /// timestamp, as RFC 3550 §5.1 requires (it makes known-plaintext attacks
    /// on SRTP and SSRC collisions less likely).
    pub fn new() -> Self {
        Self::with_state(rand::random(), rand::random(), rand::random())
    }

    /// A stream with chosen starting values, for tests and reproducible load runs.
    pub fn with_state(ssrc: u32, seq: u16, timestamp: u32) -> Self {
        Self {
            ssrc,
            seq,
            timestamp,
            pending_marker: true,
        }
    }

    /// Writes a 12-byte RTP header followed by `payload` into `out` and returns
    /// the packet length. On success the sequence number advances by one; the
    /// timestamp does not (see [`RtpSender::advance`]).
    ///
    /// The marker bit is `marker`, or set anyway if [`RtpSender::resync`] was
    /// called (or nothing has been written yet).
    pub fn write(
        &mut self,
        payload_type: u8,
        marker: bool,
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<usize, RtpError> {
        if payload_type > 0x7F {
            return Err(RtpError::PayloadType(payload_type));
        }
        let len = payload
            .len()
            .checked_add(HEADER_LEN)
            .ok_or(RtpError::BufferTooSmall)?;
        let packet = out.get_mut(..len).ok_or(RtpError::BufferTooSmall)?;
        let (header, body) = packet.split_at_mut(HEADER_LEN);

        let marker = marker || self.pending_marker;
        let seq = self.seq.to_be_bytes();
        let ts = self.timestamp.to_be_bytes();
        let ssrc = self.ssrc.to_be_bytes();
        header.copy_from_slice(&[
            0x80, // version 2, no padding, no extension, no CSRCs
            (u8::from(marker) << 7) | payload_type,
            seq[0],
            seq[1],
            ts[0],
            ts[1],
            ts[2],
            ts[3],
            ssrc[0],
            ssrc[1],
            ssrc[2],
            ssrc[3],
        ]);
        body.copy_from_slice(payload);

        self.seq = self.seq.wrapping_add(1);
        self.pending_marker = false;
        Ok(len)
    }

    /// Advances the timestamp by `samples` (160 per 20 ms frame at 8 kHz).
    /// Wraps at 2³², as RTP timestamps do.
    pub fn advance(&mut self, samples: u32) {
        self.timestamp = self.timestamp.wrapping_add(samples);
    }

    /// Marks the next packet as the start of a talkspurt.
    ///
    /// Call this when the audio source changes (a prompt ends and a bridged
    /// operator starts, say): the marker tells the far end's jitter buffer that
    /// a discontinuity is expected and it may resynchronise its playout point
    /// instead of treating the change as late or early packets.
    pub fn resync(&mut self) {
        self.pending_marker = true;
    }

    /// Timestamp the next packet will carry.
    pub fn timestamp(&self) -> u32 {
        self.timestamp
    }

    /// This stream's synchronisation source identifier.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Sequence number the next packet will carry.
    pub fn sequence(&self) -> u16 {
        self.seq
    }
}

/// Largest incoming timestamp gap [`RelayClock`] reproduces: 10 s at 8 kHz.
/// Longer gaps are treated as a discontinuity rather than silence.
pub const MAX_RELAY_GAP: u32 = 8000 * 10;

/// Carries the timing of an incoming stream over to an outgoing one when
/// relaying (the outgoing stream has its own SSRC and timestamp base, so the
/// timestamps cannot simply be copied).
///
/// For each incoming packet, [`RelayClock::step`] says how far the outgoing
/// timestamp must advance:
///
/// * same SSRC and the timestamp moved forward by `1..=MAX_RELAY_GAP`: exactly
///   that amount, so packet loss and silence suppression (DTX) gaps come out
///   the same length on the other side;
/// * same SSRC and the same timestamp (a duplicate, or the repeated packets of
///   one RFC 4733 event): 0, so they keep sharing one timestamp;
/// * anything else — the first packet, a new SSRC, a packet older than the
///   last one (reordering) or a jump of more than `MAX_RELAY_GAP` either way
///   (the source restarted its clock) — `default_step`, i.e. assume the
///   packet follows on normally.
///
/// A reordered packet does not move the reference point back, so the packet
/// after it is measured from the newest timestamp seen and the gap is not
/// counted twice. All arithmetic wraps at 2³².
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayClock {
    last_in: Option<(u32, u32)>,
}

impl RelayClock {
    /// A clock that has not seen any packet yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// How far to advance the outgoing timestamp for an incoming packet with
    /// this `ssrc` and timestamp `ts`; see the type documentation for the rules.
    pub fn step(&mut self, ssrc: u32, ts: u32, default_step: u32) -> u32 {
        if let Some((last_ssrc, last_ts)) = self.last_in {
            if last_ssrc == ssrc {
                let forward = ts.wrapping_sub(last_ts);
                if forward <= MAX_RELAY_GAP {
                    self.last_in = Some((ssrc, ts));
                    return forward;
                }
                if last_ts.wrapping_sub(ts) <= MAX_RELAY_GAP {
                    // Reordered: keep measuring from the newest timestamp.
                    return default_step;
                }
            }
        }
        self.last_in = Some((ssrc, ts));
        default_step
    }
}

/// Sequence jump (forward) still treated as loss rather than a restart (RFC 3550 A.1).
const MAX_DROPOUT: u16 = 3000;
/// Sequence distance backwards still treated as reordering (RFC 3550 A.1).
const MAX_MISORDER: u16 = 100;

/// Receiver statistics for one incoming source, as RTCP receiver reports need
/// them (RFC 3550 A.1, A.3 and A.8).
///
/// Simplified from A.1: the first packet is accepted at once (the source is
/// already known from signalling, so there is no probation period), but a
/// sequence jump of more than `MAX_DROPOUT` ahead or `MAX_MISORDER` behind is
/// only believed when the next packet follows on from it; then the source is
/// taken to have restarted and counting begins again from there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceiveStats {
    started: bool,
    max_seq: u16,
    /// Number of times the sequence number has wrapped.
    cycles: u32,
    base_seq: u16,
    /// After a large jump, the sequence number that would confirm a restart.
    bad_seq: Option<u16>,
    received: u64,
    /// Previous relative transit time (arrival - timestamp), for A.8.
    transit: Option<u32>,
    /// Interarrival jitter scaled by 16 (the A.8 integer form).
    jitter_q4: u64,
}

impl ReceiveStats {
    /// Statistics with nothing received yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn restart(&mut self, seq: u16) {
        self.started = true;
        self.base_seq = seq;
        self.max_seq = seq;
        self.cycles = 0;
        self.bad_seq = None;
        self.received = 0;
        // A new source has an unrelated timestamp base: don't measure one
        // enormous transit difference against the old one.
        self.transit = None;
    }

    /// Records one packet. `arrival` is the arrival time converted to RTP
    /// timestamp units (e.g. 8 kHz ticks) on any fixed base.
    ///
    /// Returns whether the packet was counted; `false` means a sequence jump
    /// is waiting to be confirmed and the packet should be treated as suspect.
    pub fn update(&mut self, seq: u16, ts: u32, arrival: u32) -> bool {
        if !self.started {
            self.restart(seq);
        } else {
            let udelta = seq.wrapping_sub(self.max_seq);
            if udelta < MAX_DROPOUT {
                // In order, possibly with a gap.
                if seq < self.max_seq {
                    self.cycles = self.cycles.wrapping_add(1);
                }
                self.max_seq = seq;
                self.bad_seq = None;
            } else if udelta <= u16::MAX - MAX_MISORDER + 1 {
                // A very large jump: a restart only if the next packet follows it.
                if self.bad_seq == Some(seq) {
                    self.restart(seq);
                } else {
                    self.bad_seq = Some(seq.wrapping_add(1));
                    return false;
                }
            }
            // Otherwise a duplicate or reordered packet: counted, no state change.
        }
        self.received += 1;
        self.update_jitter(ts, arrival);
        true
    }

    fn update_jitter(&mut self, ts: u32, arrival: u32) {
        let transit = arrival.wrapping_sub(ts);
        if let Some(previous) = self.transit {
            let d = u64::from((transit.wrapping_sub(previous) as i32).unsigned_abs());
            // J += (|D| - J) / 16, kept scaled by 16 to stay in integers.
            self.jitter_q4 = self.jitter_q4 + d - ((self.jitter_q4 + 8) >> 4);
        }
        self.transit = Some(transit);
    }

    /// Extended highest sequence number received: wrap count in the top 16
    /// bits, as carried in RTCP reception report blocks.
    pub fn extended_highest_seq(&self) -> u32 {
        (self.cycles << 16) | u32::from(self.max_seq)
    }

    /// Packets counted, including duplicates (as RFC 3550 A.3 does).
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Packets expected from the first to the highest sequence number seen.
    pub fn expected(&self) -> u64 {
        if !self.started {
            return 0;
        }
        let highest = (u64::from(self.cycles) << 16) + u64::from(self.max_seq);
        (highest + 1).saturating_sub(u64::from(self.base_seq))
    }

    /// Packets lost: expected minus received, floored at zero (duplicates can
    /// otherwise make it negative).
    pub fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.received)
    }

    /// Interarrival jitter estimate in RTP timestamp units (RFC 3550 A.8).
    pub fn jitter(&self) -> u32 {
        u32::try_from(self.jitter_q4 >> 4).unwrap_or(u32::MAX)
    }
}

/// Silence from the latched source after which another source may take over.
pub const RELEARN_AFTER: Duration = Duration::from_secs(2);

/// Symmetric RTP latching: send media to wherever the peer's media actually
/// comes from, since a phone behind NAT signals a private address that cannot
/// be reached. This is Asterisk's "strictrtp" idea.
///
/// Rules:
///
/// 1. Until something is latched, the first packet is accepted and its source
///    address is latched and locked.
/// 2. While locked, packets from the latched address are accepted; packets
///    from any other address are dropped and counted in [`Latch::rejected`], so
///    a third party cannot hijack or inject into the call.
/// 3. If the latched address has sent nothing for [`RELEARN_AFTER`], the next
///    packet from a new address is accepted and becomes the latched address
///    (the NAT rebound the phone to a new port, or the phone moved).
/// 4. [`Latch::set_signalled`] with a new address (a re-INVITE changed the SDP)
///    unlocks, and rule 1 applies again.
///
/// [`Latch::remote`] is where to send: the latched address, or the signalled
/// one before anything has arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Latch {
    signalled: Option<SocketAddr>,
    locked: Option<Locked>,
    rejected: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Locked {
    addr: SocketAddr,
    ssrc: u32,
    last_seen: Instant,
}

impl Latch {
    /// A latch for a peer whose SDP gave `signalled` (if any).
    pub fn new(signalled: Option<SocketAddr>) -> Self {
        Self {
            signalled,
            locked: None,
            rejected: 0,
        }
    }

    /// Decides whether to accept a packet from `source` received at `now`,
    /// latching onto it where the rules allow. `ssrc` is recorded with the
    /// latched address for diagnostics; it does not affect the decision.
    pub fn on_packet(&mut self, source: SocketAddr, ssrc: u32, now: Instant) -> bool {
        if !self.admits(source, now) {
            self.rejected += 1;
            return false;
        }
        if let Some(locked) = self.locked.as_mut().filter(|l| l.addr == source) {
            // `max` so an out-of-order timestamp from another thread can't
            // move the clock backwards.
            locked.last_seen = locked.last_seen.max(now);
            locked.ssrc = ssrc;
            return true;
        }
        self.locked = Some(Locked {
            addr: source,
            ssrc,
            last_seen: now,
        });
        true
    }

    /// Whether [`Latch::on_packet`] would accept a packet from `source` now, without
    /// latching: asked before a packet's SRTP is checked, so that only a packet that
    /// authenticates can move the latch.
    pub fn admits(&self, source: SocketAddr, now: Instant) -> bool {
        match &self.locked {
            Some(locked) => {
                locked.addr == source
                    || now.saturating_duration_since(locked.last_seen) >= RELEARN_AFTER
            }
            None => true,
        }
    }

    /// Where to send media: the latched source, or else the signalled address.
    pub fn remote(&self) -> Option<SocketAddr> {
        self.latched().or(self.signalled)
    }

    /// The latched source address, if a packet has been accepted.
    pub fn latched(&self) -> Option<SocketAddr> {
        self.locked.map(|l| l.addr)
    }

    /// SSRC of the last packet accepted from the latched source.
    pub fn latched_ssrc(&self) -> Option<u32> {
        self.locked.map(|l| l.ssrc)
    }

    /// The address from the SDP.
    pub fn signalled(&self) -> Option<SocketAddr> {
        self.signalled
    }

    /// Packets dropped because they came from somewhere other than the latched source.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Records the address from a new SDP. If it differs from the current one
    /// the latch unlocks and relearns from the next packet; setting the same
    /// address again (a session-timer refresh, say) keeps the lock, so routine
    /// re-INVITEs do not reopen the window for a hijack.
    pub fn set_signalled(&mut self, addr: Option<SocketAddr>) {
        if addr != self.signalled {
            self.signalled = addr;
            self.locked = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(pt: u8, marker: bool, seq: u16, ts: u32, ssrc: u32) -> Vec<u8> {
        let mut v = vec![0x80, (u8::from(marker) << 7) | pt];
        v.extend_from_slice(&seq.to_be_bytes());
        v.extend_from_slice(&ts.to_be_bytes());
        v.extend_from_slice(&ssrc.to_be_bytes());
        v
    }

    #[test]
    fn parse_basic_packet() {
        let mut buf = header(0, true, 1234, 0xDEAD_BEEF, 0x0102_0304);
        buf.extend_from_slice(&[0xFF; 160]);
        let p = parse(&buf).unwrap();
        assert_eq!(p.payload_type, 0);
        assert!(p.marker);
        assert_eq!(p.sequence, 1234);
        assert_eq!(p.timestamp, 0xDEAD_BEEF);
        assert_eq!(p.ssrc, 0x0102_0304);
        assert_eq!(p.payload.len(), 160);
    }

    #[test]
    fn parse_strips_csrc_extension_and_padding() {
        // CC=1, X=1, P=1.
        let mut buf = header(8, false, 7, 8, 9);
        buf[0] = 0x80 | 0x20 | 0x10 | 0x01;
        buf.extend_from_slice(&[0, 0, 0, 42]); // CSRC
        buf.extend_from_slice(&[0xBE, 0xDE, 0, 1, 1, 2, 3, 4]); // extension, 1 word
        buf.extend_from_slice(&[0xAA, 0xBB, 0xCC]); // payload
        buf.extend_from_slice(&[0, 0, 3]); // 3 bytes of padding
        let p = parse(&buf).unwrap();
        assert_eq!(p.payload_type, 8);
        assert_eq!(p.payload, &[0xAA, 0xBB, 0xCC]);
    }

    #[test]
    fn parse_rejects_rtcp_and_garbage() {
        // RTCP receiver report header: V=2, RC=1, PT=201.
        let rr = [0x81, 201, 0, 7, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(parse(&rr), Err(RtpError::Rtcp));
        let sr = [0x80, 200, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(parse(&sr), Err(RtpError::Rtcp));
        // PT 77 with marker (0xCD) is not in the RTCP range.
        let mut ok = header(77, true, 0, 0, 0);
        ok.push(1);
        assert!(parse(&ok).is_ok());

        assert!(matches!(parse(&[]), Err(RtpError::Invalid(_))));
        assert!(matches!(parse(&[0x80; 11]), Err(RtpError::Invalid(_))));
        let mut v1 = header(0, false, 0, 0, 0);
        v1[0] = 0x40;
        assert!(matches!(parse(&v1), Err(RtpError::Invalid(_))));
        // Padding longer than the packet.
        let mut pad = header(0, false, 0, 0, 0);
        pad[0] |= 0x20;
        pad.push(200);
        assert!(matches!(parse(&pad), Err(RtpError::Invalid(_))));
        // Claims 15 CSRCs but has none.
        let mut cc = header(0, false, 0, 0, 0);
        cc[0] |= 0x0F;
        assert!(matches!(parse(&cc), Err(RtpError::Invalid(_))));
    }

    #[test]
    fn parse_never_panics_on_short_or_odd_input() {
        let mut buf = [0u8; 24];
        for len in 0..=buf.len() {
            for first in [0x80u8, 0xA0, 0x90, 0xBF, 0xFF] {
                for last in [0u8, 1, 12, 255] {
                    buf[0] = first;
                    if len > 0 {
                        buf[len - 1] = last;
                    }
                    let _ = parse(&buf[..len]);
                }
            }
        }
        // Random bytes with the version bits forced to 2 so the deeper header
        // checks (CSRC count, extension length, padding) are exercised.
        let mut buf = [0u8; 40];
        for _ in 0..100_000 {
            let len = rand::random_range(0..=buf.len());
            rand::fill(&mut buf[..len]);
            if len > 0 {
                buf[0] = (buf[0] & 0x3F) | 0x80;
            }
            if let Ok(p) = parse(&buf[..len]) {
                assert!(p.payload.len() + HEADER_LEN <= len);
            }
        }
    }

    #[test]
    fn sender_writes_header_and_advances() {
        let mut tx = RtpSender::with_state(0xCAFE_BABE, 65535, 4_294_967_200);
        let mut out = [0u8; 200];
        let payload = [0xD5u8; 160];

        let n = tx.write(8, false, &payload, &mut out).unwrap();
        assert_eq!(n, 172);
        let r = RtpReader::new(&out[..n]).unwrap();
        assert_eq!(r.version(), 2);
        assert_eq!(r.payload_type(), 8);
        assert!(r.mark(), "first packet of a stream starts a talkspurt");
        assert_eq!(u16::from(r.sequence_number()), 65535);
        assert_eq!(r.timestamp(), 4_294_967_200);
        assert_eq!(r.ssrc(), 0xCAFE_BABE);
        assert_eq!(r.csrc_count(), 0);
        assert_eq!(r.padding(), None);
        assert_eq!(r.payload(), &payload[..]);

        tx.advance(160);
        assert_eq!(tx.sequence(), 0);
        assert_eq!(tx.timestamp(), 64, "timestamp wraps");

        let n = tx.write(8, false, &payload, &mut out).unwrap();
        let r = RtpReader::new(&out[..n]).unwrap();
        assert!(!r.mark());
        assert_eq!(u16::from(r.sequence_number()), 0);
        assert_eq!(r.timestamp(), 64);
        assert_eq!(tx.ssrc(), 0xCAFE_BABE);
    }

    #[test]
    fn resync_marks_exactly_the_next_packet() {
        let mut tx = RtpSender::with_state(1, 100, 0);
        let mut out = [0u8; 64];
        let marks: Vec<bool> = (0..5)
            .map(|i| {
                if i == 3 {
                    tx.resync();
                }
                let n = tx.write(0, false, &[0xFF; 20], &mut out).unwrap();
                tx.advance(160);
                parse(&out[..n]).unwrap().marker
            })
            .collect();
        assert_eq!(marks, [true, false, false, true, false]);
        // An explicit marker is honoured without resync.
        let n = tx.write(0, true, &[], &mut out).unwrap();
        assert_eq!(n, HEADER_LEN);
        assert!(parse(&out[..n]).unwrap().marker);
    }

    #[test]
    fn sender_rejects_small_buffer_and_bad_payload_type() {
        let mut tx = RtpSender::with_state(1, 10, 0);
        let mut out = [0u8; 171];
        assert_eq!(
            tx.write(0, false, &[0; 160], &mut out),
            Err(RtpError::BufferTooSmall)
        );
        assert_eq!(
            tx.write(128, false, &[0; 10], &mut out),
            Err(RtpError::PayloadType(128))
        );
        // Failed writes consume neither a sequence number nor the pending marker.
        assert_eq!(tx.sequence(), 10);
        let n = tx.write(0, false, &[0; 10], &mut out).unwrap();
        assert!(parse(&out[..n]).unwrap().marker);
    }

    #[test]
    fn new_senders_are_randomised() {
        let a = RtpSender::new();
        let b = RtpSender::new();
        // A 2^-80 chance of a false failure.
        assert!((a.ssrc(), a.sequence(), a.timestamp()) != (b.ssrc(), b.sequence(), b.timestamp()));
    }

    #[test]
    fn relay_clock_follows_incoming_gaps() {
        let mut c = RelayClock::new();
        assert_eq!(c.step(7, 1000, 160), 160, "first packet");
        assert_eq!(c.step(7, 1160, 160), 160);
        assert_eq!(c.step(7, 1640, 160), 480, "two lost packets");
        assert_eq!(c.step(7, 1640, 160), 0, "duplicate keeps the timestamp");
        assert_eq!(c.step(7, 1640 + 80_000, 160), 80_000, "10 s DTX gap");
        assert_eq!(c.step(7, 1640 + 80_000 + 80_001, 160), 160, "too long");
        assert_eq!(c.step(8, 5, 160), 160, "new SSRC");
        assert_eq!(c.step(8, 165, 160), 160);
    }

    #[test]
    fn relay_clock_handles_wrap_and_reordering() {
        let mut c = RelayClock::new();
        c.step(1, u32::MAX - 59, 160);
        assert_eq!(c.step(1, 100, 160), 160, "wraps forwards");
        assert_eq!(c.step(1, 420, 160), 320);
        assert_eq!(c.step(1, 260, 160), 160, "reordered packet");
        assert_eq!(c.step(1, 580, 160), 160, "measured from the newest");
        // A jump backwards beyond the window is a restart; follow from there.
        assert_eq!(c.step(1, 580u32.wrapping_sub(1_000_000), 160), 160);
        assert_eq!(c.step(1, 580u32.wrapping_sub(1_000_000 - 160), 160), 160);
        assert_eq!(c.step(1, 580u32.wrapping_sub(1_000_000 - 480), 160), 320);
    }

    /// Feeds packets `seqs` with 20 ms spacing and perfect arrival times.
    fn feed(stats: &mut ReceiveStats, seqs: impl IntoIterator<Item = u16>) {
        for seq in seqs {
            let ts = u32::from(seq).wrapping_mul(160);
            stats.update(seq, ts, ts.wrapping_add(12_345));
        }
    }

    #[test]
    fn stats_in_order_stream() {
        let mut s = ReceiveStats::new();
        assert_eq!((s.received(), s.expected(), s.lost()), (0, 0, 0));
        feed(&mut s, 100..150);
        assert_eq!(s.received(), 50);
        assert_eq!(s.expected(), 50);
        assert_eq!(s.lost(), 0);
        assert_eq!(s.extended_highest_seq(), 149);
        assert_eq!(s.jitter(), 0, "constant spacing has no jitter");
    }

    #[test]
    fn stats_count_a_dropped_packet() {
        let mut s = ReceiveStats::new();
        feed(&mut s, (0..20).filter(|&q| q != 7));
        assert_eq!(s.received(), 19);
        assert_eq!(s.expected(), 20);
        assert_eq!(s.lost(), 1);
    }

    #[test]
    fn stats_sequence_wrap() {
        let mut s = ReceiveStats::new();
        feed(&mut s, (65530..=65535).chain(0..=5));
        assert_eq!(s.received(), 12);
        assert_eq!(s.expected(), 12);
        assert_eq!(s.lost(), 0);
        assert_eq!(s.extended_highest_seq(), 65536 + 5);
    }

    #[test]
    fn stats_reordering_and_duplicates() {
        let mut s = ReceiveStats::new();
        feed(&mut s, [10, 11, 13, 12, 14, 14, 15]);
        assert_eq!(s.extended_highest_seq(), 15);
        assert_eq!(s.expected(), 6);
        assert_eq!(s.received(), 7);
        assert_eq!(s.lost(), 0, "never negative");
    }

    #[test]
    fn stats_source_restart() {
        let mut s = ReceiveStats::new();
        feed(&mut s, 1000..1010);
        // A lone far-away packet is not believed...
        assert!(!s.update(40_000, 0, 0));
        assert_eq!(s.extended_highest_seq(), 1009);
        assert_eq!(s.received(), 10);
        // ...and normal service continues.
        assert!(s.update(1010, 1010 * 160, 1010 * 160 + 12_345));
        // A jump followed by its successor is a restart.
        assert!(!s.update(30_000, 0, 0));
        assert!(s.update(30_001, 160, 160));
        feed(&mut s, 30_002..30_010);
        assert_eq!(s.extended_highest_seq(), 30_009);
        assert_eq!(s.received(), 9);
        assert_eq!(s.expected(), 9);
        assert_eq!(s.lost(), 0);
    }

    #[test]
    fn stats_jitter_converges_on_alternating_noise() {
        let mut s = ReceiveStats::new();
        for n in 0..400u32 {
            let ts = n * 160;
            // Packets alternately 80 units (10 ms) late and 80 early, so every
            // consecutive transit difference |D| is 160.
            let arrival = if n % 2 == 0 {
                ts + 1000 + 80
            } else {
                ts + 1000 - 80
            };
            s.update(n as u16, ts, arrival);
        }
        // J converges to |D| = 160; the A.8 integer form settles where
        // (16J + 8) >> 4 == 160, i.e. 16J in 2552..=2567, so J reads 159 or 160.
        assert!((159..=160).contains(&s.jitter()), "jitter {}", s.jitter());
    }

    #[test]
    fn stats_jitter_first_steps() {
        let mut s = ReceiveStats::new();
        s.update(0, 0, 500);
        assert_eq!(s.jitter(), 0);
        // |D| = 320: J = 320 / 16 = 20.
        s.update(1, 160, 980);
        assert_eq!(s.jitter(), 20);
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn latch_locks_on_first_packet() {
        let signalled = addr("10.0.0.5:4000");
        let nat = addr("203.0.113.9:31000");
        let other = addr("198.51.100.1:5000");
        let t0 = Instant::now();
        let mut l = Latch::new(Some(signalled));
        assert_eq!(l.remote(), Some(signalled));
        assert_eq!(l.latched(), None);

        assert!(l.on_packet(nat, 42, t0));
        assert_eq!(l.latched(), Some(nat));
        assert_eq!(l.remote(), Some(nat));
        assert_eq!(l.latched_ssrc(), Some(42));

        assert!(l.on_packet(nat, 42, t0 + Duration::from_millis(20)));
        assert!(!l.on_packet(other, 99, t0 + Duration::from_millis(30)));
        assert!(!l.on_packet(signalled, 42, t0 + Duration::from_millis(40)));
        assert_eq!(l.rejected(), 2);
        assert_eq!(l.remote(), Some(nat));
    }

    #[test]
    fn latch_relearns_after_silence() {
        let first = addr("203.0.113.9:31000");
        let rebound = addr("203.0.113.9:31044");
        let t0 = Instant::now();
        let mut l = Latch::new(None);
        assert_eq!(l.remote(), None);
        assert!(l.on_packet(first, 1, t0));
        assert!(l.on_packet(first, 1, t0 + Duration::from_millis(1000)));
        // 1.999 s after the last packet from `first`: still locked.
        assert!(!l.on_packet(rebound, 1, t0 + Duration::from_millis(2999)));
        assert_eq!(l.rejected(), 1);
        // 2 s of silence: the new source takes over.
        assert!(l.on_packet(rebound, 1, t0 + Duration::from_millis(3000)));
        assert_eq!(l.latched(), Some(rebound));
        // And now the old source is the stranger.
        assert!(!l.on_packet(first, 1, t0 + Duration::from_millis(3020)));
        assert_eq!(l.rejected(), 2);
        // A stale `now` does not panic or unlock.
        assert!(!l.on_packet(first, 1, t0));
    }

    #[test]
    fn latch_set_signalled_unlocks_only_on_change() {
        let a = addr("192.0.2.1:4000");
        let b = addr("192.0.2.2:4002");
        let src = addr("203.0.113.9:31000");
        let t0 = Instant::now();
        let mut l = Latch::new(Some(a));
        assert!(l.on_packet(src, 5, t0));

        l.set_signalled(Some(a));
        assert_eq!(l.latched(), Some(src), "same SDP keeps the lock");

        l.set_signalled(Some(b));
        assert_eq!(l.latched(), None);
        assert_eq!(l.remote(), Some(b));
        assert_eq!(l.signalled(), Some(b));
        assert!(l.on_packet(b, 6, t0 + Duration::from_millis(10)));
        assert_eq!(l.remote(), Some(b));
        assert!(!l.on_packet(src, 5, t0 + Duration::from_millis(20)));
    }
}
