//! The relay between a call's two legs: what one side sends is recorded on its channel and
//! re-sent on the other leg, transcoded when the legs negotiated different G.711 laws.
//!
//! Kept apart from the session's socket code so that the per-packet path can be benchmarked
//! (`benches/media.rs`) and tested on its own. It works in caller-provided buffers: nothing
//! is allocated per packet.

use super::g711;
use super::leg::{Audio, LegState};
use super::recorder::{Channel, Recorder};

/// Records `audio` on channel `from` and, when `to` is given, builds the packet for the
/// other leg in `out`. Returns that packet's length.
pub fn forward(
    audio: &Audio,
    from: Channel,
    recorder: Option<&mut Recorder>,
    to: Option<&mut LegState>,
    pcm: &mut [i16],
    out: &mut [u8],
) -> Option<usize> {
    if let Some(r) = recorder {
        if audio.gap > 0 {
            r.push_silence(from, audio.gap as usize);
        }
        let n = g711::decode(audio.codec, audio.packet.payload, pcm);
        r.push(from, &pcm[..n]);
    }
    let to = to?;
    let len = to.write_relayed(&audio.packet, audio.codec, out);
    (len > 0).then_some(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::rtp::{self, RtpSender};
    use crate::sip::sdp::{Codec, Direction, Negotiated};
    use std::time::{Duration, Instant};

    #[test]
    fn records_the_source_and_relays_transcoded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("call.wav");
        let t0 = Instant::now();
        let mut rec = Recorder::create(&path, t0).unwrap();
        let mut to = LegState::new(
            &Negotiated {
                codecs: vec![(8, Codec::Pcma)],
                telephone_event: None,
                remote_rtp: Some("127.0.0.1:4000".parse().unwrap()),
                direction: Direction::SendRecv,
                ptime: None,
                srtp: None,
            },
            t0,
        );
        let payload: Vec<u8> = (0..160u32).map(|i| (i * 3) as u8).collect();
        let mut wire = [0u8; 200];
        let n = RtpSender::with_state(1, 1, 0)
            .write(0, false, &payload, &mut wire)
            .unwrap();
        let audio = Audio {
            packet: rtp::parse(&wire[..n]).unwrap(),
            codec: Codec::Pcmu,
            gap: 160,
        };
        let (mut pcm, mut out) = ([0i16; 2048], [0u8; 2048]);
        let len = forward(
            &audio,
            Channel::Caller,
            Some(&mut rec),
            Some(&mut to),
            &mut pcm,
            &mut out,
        )
        .unwrap();
        let relayed = rtp::parse(&out[..len]).unwrap();
        assert_eq!(relayed.payload_type, 8);
        let mut expected = [0u8; 160];
        g711::transcode(Codec::Pcmu, Codec::Pcma, &payload, &mut expected);
        assert_eq!(relayed.payload, &expected[..]);
        rec.push_silence(Channel::Other, 320);
        rec.tick(t0 + Duration::from_millis(40)).unwrap();
        rec.finish().unwrap();
        let mut reader = hound::WavReader::open(&path).unwrap();
        let samples: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
        let left: Vec<i16> = samples.iter().step_by(2).copied().collect();
        assert!(left[..160].iter().all(|&s| s == 0), "the gap is silence");
        let decoded: Vec<i16> = payload.iter().map(|&b| g711::ulaw_to_linear(b)).collect();
        assert_eq!(&left[160..320], &decoded[..]);
    }
}
