//! DTMF digits from RFC 4733 telephone-event RTP packets (the SIP INFO bodies some phones
//! send instead are read by `sip::info`).
//!
//! RFC 4733 sends every event as a burst of packets (a start, periodic
//! updates, and the end packet three times), so the hard part is reporting
//! each keypress exactly once despite repeats, retransmissions, loss and
//! reordering. [`Detector`] does that; [`parse_event`] and [`write_event`] are
//! the wire format.

/// Errors from decoding DTMF payloads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DtmfError {
    /// A telephone-event payload is 4 bytes; this one was shorter.
    #[error("telephone-event payload too short: {0} bytes, need 4")]
    Truncated(usize),
    /// A valid event code that is not a DTMF key (16 is hook flash, for instance).
    #[error("unsupported telephone-event code {0}")]
    Unsupported(u8),
    /// A character that is not one of 0-9, *, #, A-D.
    #[error("not a DTMF digit: {0:?}")]
    BadDigit(char),
    /// Volume is a 6-bit field (0 to -63 dBm0).
    #[error("volume {0} out of range 0..=63")]
    BadVolume(u8),
}

/// One decoded RFC 4733 telephone-event payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// '0'-'9', '*', '#' or 'A'-'D'.
    pub digit: char,
    /// The E bit: this packet reports the end of the event.
    pub end: bool,
    /// Power level as a positive number of dB below 0 dBm0 (0..=63).
    pub volume: u8,
    /// Duration so far, in RTP timestamp units from the event's start.
    pub duration: u16,
}

/// Event codes 0..=15 in order (RFC 4733 §3.2).
const DIGITS: [char; 16] = [
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '*', '#', 'A', 'B', 'C', 'D',
];

fn code_to_digit(code: u8) -> Option<char> {
    DIGITS.get(usize::from(code)).copied()
}

fn digit_to_code(digit: char) -> Option<u8> {
    let upper = digit.to_ascii_uppercase();
    DIGITS.iter().position(|&d| d == upper).map(|i| i as u8)
}

/// Parses the first 4 bytes of a telephone-event payload:
/// event (8 bits), E (1), R (1), volume (6), duration (16).
pub fn parse_event(payload: &[u8]) -> Result<Event, DtmfError> {
    let [code, flags, d0, d1, ..] = *payload else {
        return Err(DtmfError::Truncated(payload.len()));
    };
    let digit = code_to_digit(code).ok_or(DtmfError::Unsupported(code))?;
    Ok(Event {
        digit,
        end: flags & 0x80 != 0,
        volume: flags & 0x3F,
        duration: u16::from_be_bytes([d0, d1]),
    })
}

/// Writes a telephone-event payload (for test user agents and load generators).
/// Lower-case 'a'-'d' are accepted; the reserved R bit is written as zero.
pub fn write_event(
    digit: char,
    end: bool,
    volume: u8,
    duration: u16,
    out: &mut [u8; 4],
) -> Result<(), DtmfError> {
    let code = digit_to_code(digit).ok_or(DtmfError::BadDigit(digit))?;
    if volume > 0x3F {
        return Err(DtmfError::BadVolume(volume));
    }
    let [d0, d1] = duration.to_be_bytes();
    *out = [code, (u8::from(end) << 7) | volume, d0, d1];
    Ok(())
}

/// How many recent event identities [`Detector`] remembers.
const REMEMBERED_EVENTS: usize = 4;

/// How far past the previous segment's last reported duration a continuation
/// segment may start (200 ms at 8 kHz), allowing for lost updates at the end
/// of the previous segment.
const CONTINUATION_SLACK: u32 = 1600;

/// The event currently (or most recently) in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Current {
    ssrc: u32,
    /// Start timestamp of the latest segment of this event.
    timestamp: u32,
    digit: char,
    ended: bool,
    /// Longest duration seen in the latest segment.
    duration: u16,
}

/// Turns a stream of telephone-event packets into keypresses, one digit per
/// event.
///
/// An event is identified by (SSRC, RTP timestamp): every packet of one event
/// carries the timestamp of its start (RFC 4733 §2.5.1.2). The digit is
/// reported on the *first* packet seen with a new identity — whether that is
/// the start packet (marker set), an update because the start was lost, or
/// even an end packet — so a lost start costs nothing and latency is one
/// packet. Later packets of the same event are ignored, and the last few
/// identities are remembered so that late duplicates or retransmitted end
/// packets arriving after the next event has begun do not fire again.
///
/// Long events are split into segments (RFC 4733 §2.5.1.3): a new segment has
/// a new timestamp but no marker bit. Such a packet is taken as a continuation,
/// not a new press, when it has the same SSRC and digit as the current event,
/// the current event has not ended, and its timestamp lies within the current
/// segment's duration plus 200 ms of slack. (The only case this can get wrong
/// is a second press of the same digit whose start packet *and* every end
/// packet of the press before were lost, within 200 ms — then one digit is
/// reported instead of two.)
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Detector {
    /// Ring of recently seen (ssrc, timestamp) identities.
    recent: [Option<(u32, u32)>; REMEMBERED_EVENTS],
    next_slot: usize,
    current: Option<Current>,
}

impl Detector {
    /// A detector that has seen no events.
    pub fn new() -> Self {
        Self::default()
    }

    fn remember(&mut self, id: (u32, u32)) {
        self.recent[self.next_slot] = Some(id);
        self.next_slot = (self.next_slot + 1) % REMEMBERED_EVENTS;
    }

    /// Feeds one telephone-event packet (its SSRC, RTP timestamp, marker bit
    /// and payload); returns the digit if this packet begins a new keypress.
    /// Payloads that do not parse, or carry non-DTMF events, are ignored.
    pub fn on_packet(
        &mut self,
        ssrc: u32,
        timestamp: u32,
        marker: bool,
        payload: &[u8],
    ) -> Option<char> {
        let event = parse_event(payload).ok()?;
        let id = (ssrc, timestamp);

        if self.recent.contains(&Some(id)) {
            if let Some(cur) = &mut self.current {
                if (cur.ssrc, cur.timestamp) == id {
                    cur.ended |= event.end;
                    cur.duration = cur.duration.max(event.duration);
                }
            }
            return None;
        }
        self.remember(id);

        if let Some(cur) = &mut self.current {
            let offset = timestamp.wrapping_sub(cur.timestamp);
            let continues = !marker
                && !cur.ended
                && cur.ssrc == ssrc
                && cur.digit == event.digit
                && offset > 0
                && offset <= u32::from(cur.duration) + CONTINUATION_SLACK;
            if continues {
                cur.timestamp = timestamp;
                cur.duration = event.duration;
                cur.ended = event.end;
                return None;
            }
        }

        self.current = Some(Current {
            ssrc,
            timestamp,
            digit: event.digit,
            ended: event.end,
            duration: event.duration,
        });
        Some(event.digit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(digit: char, end: bool, duration: u16) -> [u8; 4] {
        let mut p = [0u8; 4];
        write_event(digit, end, 10, duration, &mut p).unwrap();
        p
    }

    /// Packets of one RFC 4733 event as a typical phone sends it: start with
    /// the marker, updates every 20 ms (160 units), the end packet three times.
    fn press(digit: char, ts: u32, updates: u16) -> Vec<(u32, bool, [u8; 4])> {
        let mut v = vec![(ts, true, payload(digit, false, 160))];
        for i in 1..=updates {
            v.push((ts, false, payload(digit, false, 160 * (i + 1))));
        }
        for _ in 0..3 {
            v.push((ts, false, payload(digit, true, 160 * (updates + 2))));
        }
        v
    }

    fn run(d: &mut Detector, ssrc: u32, packets: &[(u32, bool, [u8; 4])]) -> String {
        packets
            .iter()
            .filter_map(|(ts, m, p)| d.on_packet(ssrc, *ts, *m, p))
            .collect()
    }

    #[test]
    fn parse_and_write_event_wire_format() {
        // Digit 5, E=1, R=0, volume 10, duration 800 (0x0320).
        let e = parse_event(&[5, 0x8A, 0x03, 0x20]).unwrap();
        assert_eq!(
            e,
            Event {
                digit: '5',
                end: true,
                volume: 10,
                duration: 800
            }
        );
        // The R bit is ignored; trailing bytes are ignored.
        let e = parse_event(&[11, 0x7F, 0, 0, 99]).unwrap();
        assert_eq!((e.digit, e.end, e.volume, e.duration), ('#', false, 63, 0));
        assert_eq!(parse_event(&[10, 0, 0, 0]).unwrap().digit, '*');
        assert_eq!(parse_event(&[12, 0, 0, 0]).unwrap().digit, 'A');
        assert_eq!(parse_event(&[15, 0, 0, 0]).unwrap().digit, 'D');
        assert_eq!(parse_event(&[16, 0, 0, 0]), Err(DtmfError::Unsupported(16)));
        assert_eq!(parse_event(&[1, 2, 3]), Err(DtmfError::Truncated(3)));

        let mut out = [0u8; 4];
        write_event('#', true, 10, 800, &mut out).unwrap();
        assert_eq!(out, [11, 0x8A, 0x03, 0x20]);
        write_event('d', false, 0, 0xFFFF, &mut out).unwrap();
        assert_eq!(out, [15, 0x00, 0xFF, 0xFF]);
        assert_eq!(
            write_event('x', false, 0, 0, &mut out),
            Err(DtmfError::BadDigit('x'))
        );
        assert_eq!(
            write_event('1', false, 64, 0, &mut out),
            Err(DtmfError::BadVolume(64))
        );
        for (code, &digit) in DIGITS.iter().enumerate() {
            write_event(digit, false, 7, 320, &mut out).unwrap();
            assert_eq!(out[0] as usize, code);
            assert_eq!(parse_event(&out).unwrap().digit, digit);
        }
    }

    #[test]
    fn one_digit_per_realistic_event() {
        let mut d = Detector::new();
        let packets = press('7', 16_000, 5);
        assert_eq!(packets.len(), 9);
        assert_eq!(d.on_packet(1, 16_000, true, &packets[0].2), Some('7'));
        assert_eq!(run(&mut d, 1, &packets[1..]), "");
        // Retransmitting the whole event changes nothing.
        assert_eq!(run(&mut d, 1, &packets), "");
    }

    #[test]
    fn same_digit_twice_is_two_presses() {
        let mut d = Detector::new();
        let mut packets = press('3', 1000, 5);
        packets.extend(press('3', 3000, 3));
        assert_eq!(run(&mut d, 9, &packets), "33");
    }

    #[test]
    fn lost_start_packet_still_reports_once() {
        let mut d = Detector::new();
        let packets = press('9', 500, 5);
        assert_eq!(run(&mut d, 2, &packets[2..]), "9");
        // Even if only the end packets arrive.
        let packets = press('1', 5000, 2);
        assert_eq!(run(&mut d, 2, &packets[3..]), "1");
    }

    #[test]
    fn late_duplicate_after_next_event_is_ignored() {
        let mut d = Detector::new();
        let first = press('4', 8000, 2);
        let second = press('4', 10_000, 2);
        let mut seen = run(&mut d, 3, &first[..4]);
        seen += &run(&mut d, 3, &second[..2]);
        // A delayed end packet of the first press turns up mid-second press.
        seen += &run(&mut d, 3, &first[4..]);
        seen += &run(&mut d, 3, &second[2..]);
        assert_eq!(seen, "44");
    }

    #[test]
    fn sequence_of_special_digits() {
        let mut d = Detector::new();
        let mut packets = press('#', 100, 1);
        packets.extend(press('*', 2000, 4));
        packets.extend(press('D', 4000, 0));
        packets.extend(press('0', 6000, 2));
        assert_eq!(run(&mut d, 5, &packets), "#*D0");
    }

    #[test]
    fn segmented_long_event_is_one_digit() {
        let mut d = Detector::new();
        // First segment saturates at 0xFFFF without an end bit.
        assert_eq!(
            d.on_packet(1, 0, true, &payload('5', false, 160)),
            Some('5')
        );
        assert_eq!(d.on_packet(1, 0, false, &payload('5', false, 0xFFFF)), None);
        // Next segment: new timestamp, no marker.
        assert_eq!(
            d.on_packet(1, 0xFFFF, false, &payload('5', false, 160)),
            None
        );
        assert_eq!(
            d.on_packet(1, 0xFFFF, false, &payload('5', true, 800)),
            None
        );
        // A fresh press after the end is reported.
        assert_eq!(
            d.on_packet(1, 0x20000, true, &payload('5', false, 160)),
            Some('5')
        );
    }

    #[test]
    fn different_sources_and_bad_payloads() {
        let mut d = Detector::new();
        assert_eq!(
            d.on_packet(1, 100, true, &payload('1', false, 160)),
            Some('1')
        );
        // Same timestamp, different SSRC: a different event.
        assert_eq!(
            d.on_packet(2, 100, true, &payload('2', false, 160)),
            Some('2')
        );
        assert_eq!(d.on_packet(1, 100, false, &payload('1', true, 320)), None);
        assert_eq!(d.on_packet(1, 900, true, &[16, 0, 0, 160]), None);
        assert_eq!(d.on_packet(1, 901, true, &[1, 2]), None);
        assert_eq!(d.on_packet(1, 902, true, &[]), None);
    }
}
