//! The bridge over real loopback sockets: a caller UA (PCMU) and an operator UA (PCMA) talk
//! through a media session, which transcodes between them and records both sides.

mod support;

use hotline::media::ports;
use hotline::media::session::{Command, LegConfig, Session, SessionConfig, SessionEvent};
use hotline::sip::sdp::{Codec, Direction, Negotiated};
use std::net::SocketAddr;
use std::time::Duration;
use support::rtp::*;

fn negotiated(pt: u8, codec: Codec, remote: SocketAddr) -> Negotiated {
    Negotiated {
        codecs: vec![(pt, codec)],
        telephone_event: Some(101),
        remote_rtp: Some(remote),
        direction: Direction::SendRecv,
        ptime: Some(20),
        srtp: None,
    }
}

fn leg(pt: u8, codec: Codec, remote: SocketAddr) -> (LegConfig, SocketAddr) {
    let socket = ports::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    (
        LegConfig {
            socket,
            media: negotiated(pt, codec, remote),
        },
        addr,
    )
}

/// Samples of a recording's channel `ch`.
fn channel(samples: &[i16], ch: usize) -> Vec<i16> {
    samples.iter().skip(ch).step_by(2).copied().collect()
}

#[tokio::test]
async fn caller_and_operator_hear_each_other_transcoded_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let mut caller = RtpPeer::bind().await;
    let mut operator = RtpPeer::bind().await;
    operator.ssrc = 0x0FE2_A70D;
    let caller_addr: SocketAddr = format!("127.0.0.1:{}", caller.port()).parse().unwrap();
    let operator_addr: SocketAddr = format!("127.0.0.1:{}", operator.port()).parse().unwrap();
    let (caller_leg, caller_media) = leg(0, Codec::Pcmu, caller_addr);
    let (operator_leg, operator_media) = leg(8, Codec::Pcma, operator_addr);
    let path = dir.path().join("2026/11/22/bridge.wav");
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let session = Session::spawn(
        SessionConfig {
            call: 7,
            caller: caller_leg,
            recording: Some(path.clone()),
            rtp_timeout: None,
        },
        events_tx,
    )
    .unwrap();
    assert!(session.command(Command::Bridge(operator_leg)));
    tokio::time::sleep(Duration::from_millis(50)).await;

    // 1 s each way, at the same time, as in a conversation.
    let said_by_caller: Vec<u8> = (0..8000u32).map(|i| ((i * 13 + 7) % 256) as u8).collect();
    let said_by_operator: Vec<u8> = (0..8000u32).map(|i| ((i * 29 + 3) % 256) as u8).collect();
    tokio::join!(
        caller.stream(caller_media, 0, &said_by_caller),
        operator.stream(operator_media, 8, &said_by_operator),
    );
    let ((to_caller, _), (to_operator, _)) = tokio::join!(
        caller.collect(Duration::from_millis(300)),
        operator.collect(Duration::from_millis(300)),
    );
    session.stop().await;

    // The operator hears the caller in A-law, the caller the operator in µ-law: each G.711
    // code maps to the other law's code for the same level.
    let heard_by_operator: Vec<u8> = to_operator.iter().flat_map(|p| p.payload.clone()).collect();
    let heard_by_caller: Vec<u8> = to_caller.iter().flat_map(|p| p.payload.clone()).collect();
    assert!(to_operator.iter().all(|p| p.pt == 8));
    assert!(to_caller.iter().all(|p| p.pt == 0));
    assert_eq!(
        heard_by_operator.len(),
        said_by_caller.len(),
        "no packet lost"
    );
    // The caller hears the operator after the silence sent before the bridge (if any).
    assert!(heard_by_caller.len() >= said_by_operator.len());
    for (i, (&a, &u)) in heard_by_operator.iter().zip(&said_by_caller).enumerate() {
        let (got, sent) = (i32::from(alaw_decode(a)), i32::from(ulaw_decode(u)));
        let step = (sent.abs() / 16).max(16);
        assert!((got - sent).abs() <= step, "sample {i}: {got} vs {sent}");
    }
    let tail = &heard_by_caller[heard_by_caller.len() - said_by_operator.len()..];
    for (i, (&u, &a)) in tail.iter().zip(&said_by_operator).enumerate() {
        let (got, sent) = (i32::from(ulaw_decode(u)), i32::from(alaw_decode(a)));
        let step = (sent.abs() / 16).max(16);
        assert!((got - sent).abs() <= step, "sample {i}: {got} vs {sent}");
    }
    // Relayed streams keep one SSRC and consecutive sequence numbers.
    for w in to_operator.windows(2) {
        assert_eq!(w[1].ssrc, w[0].ssrc);
        assert_eq!(w[1].seq, w[0].seq.wrapping_add(1));
    }

    // The recording has each side, sample for sample, on its own channel.
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(2), events.recv()).await {
            Ok(Some((7, SessionEvent::Ended(summary)))) => break summary,
            Ok(Some(_)) => {}
            other => panic!("no end: {other:?}"),
        }
    };
    assert_eq!(ended.caller.received, 50);
    assert_eq!(ended.caller.lost, 0);
    assert_eq!(ended.operator.unwrap().received, 50);
    let (samples, channels) = read_wav(&path);
    assert_eq!(channels, 2);
    let left = channel(&samples, 0);
    let right = channel(&samples, 1);
    let caller_pcm: Vec<i16> = said_by_caller.iter().map(|&b| ulaw_decode(b)).collect();
    let operator_pcm: Vec<i16> = said_by_operator.iter().map(|&b| alaw_decode(b)).collect();
    let l = find(&left, &caller_pcm).expect("caller in the left channel");
    let r = find(&right, &operator_pcm).expect("operator in the right channel");
    // Spoken at the same time, recorded at the same time (within the 200 ms jitter allowance).
    assert!(l.abs_diff(r) <= 1600, "left at {l}, right at {r}");
}

#[tokio::test]
async fn same_codec_legs_relay_payload_unchanged() {
    let mut caller = RtpPeer::bind().await;
    let operator = RtpPeer::bind().await;
    let caller_addr: SocketAddr = format!("127.0.0.1:{}", caller.port()).parse().unwrap();
    let operator_addr: SocketAddr = format!("127.0.0.1:{}", operator.port()).parse().unwrap();
    let (caller_leg, caller_media) = leg(0, Codec::Pcmu, caller_addr);
    let (operator_leg, _) = leg(0, Codec::Pcmu, operator_addr);
    let (events_tx, _events) = tokio::sync::mpsc::unbounded_channel();
    let session = Session::spawn(
        SessionConfig {
            call: 1,
            caller: caller_leg,
            recording: None,
            rtp_timeout: None,
        },
        events_tx,
    )
    .unwrap();
    session.command(Command::Bridge(operator_leg));
    tokio::time::sleep(Duration::from_millis(30)).await;
    let said: Vec<u8> = (0..1600u32).map(|i| (i % 256) as u8).collect();
    caller.stream(caller_media, 0, &said).await;
    let (got, _) = operator.collect(Duration::from_millis(200)).await;
    let heard: Vec<u8> = got.iter().flat_map(|p| p.payload.clone()).collect();
    assert_eq!(heard, said, "G.711 pass-through is byte for byte");
    // The first relayed packet marks the new talk spurt.
    assert!(got[0].marker);
    session.stop().await;
}

/// A recording that cannot be created (here its directory is a file) does not cost the
/// caller the call: the media runs unrecorded and the summary says so.
#[tokio::test]
async fn unrecordable_call_still_has_audio() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("blocked"), b"a file, not a directory").unwrap();
    let caller = RtpPeer::bind().await;
    let caller_addr: SocketAddr = format!("127.0.0.1:{}", caller.port()).parse().unwrap();
    let (caller_leg, _) = leg(0, Codec::Pcmu, caller_addr);
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let session = Session::spawn(
        SessionConfig {
            call: 3,
            caller: caller_leg,
            recording: Some(dir.path().join("blocked/2026/call.wav")),
            rtp_timeout: None,
        },
        events_tx,
    )
    .unwrap();
    let (heard, _) = caller.collect(Duration::from_millis(300)).await;
    assert!(heard.len() >= 10, "{} packets of silence", heard.len());
    session.stop().await;
    match events.recv().await {
        Some((3, SessionEvent::Ended(summary))) => assert!(summary.recording.is_none()),
        other => panic!("{other:?}"),
    }
}
