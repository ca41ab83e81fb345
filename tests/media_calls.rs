//! End-to-end media: a test UA calls the hotline over loopback SIP and RTP, hears the
//! greeting, sends audio and DTMF, and the recording on disk is checked sample for sample.

mod support;

use hotline::callflow::{DtmfVia, Event};
use hotline::media::prompt::Prompts;
use hotline::sip::ua::{self, EndReason};
use std::time::Duration;
use support::rtp::*;
use support::*;

fn greeting() -> Vec<i16> {
    let prompts = Prompts::load(std::path::Path::new(PROMPTS)).unwrap();
    prompts
        .require("greeting_working")
        .unwrap()
        .samples()
        .to_vec()
}

/// `audio` from its first 20 ms frame that is not all `silence`, and how many frames
/// were skipped.
fn after_silence(audio: &[u8], silence: u8) -> (&[u8], usize) {
    let skipped = audio
        .chunks(160)
        .take_while(|frame| frame.iter().all(|&b| b == silence))
        .count();
    (&audio[(skipped * 160).min(audio.len())..], skipped)
}

/// Channel `ch` of an interleaved stereo recording.
fn channel(samples: &[i16], ch: usize) -> Vec<i16> {
    samples.iter().skip(ch).step_by(2).copied().collect()
}

#[tokio::test]
async fn caller_hears_the_greeting_and_the_recording_keeps_both_sides() {
    let (hotline, _dir) = start().await;
    let mut events = hotline.subscribe();
    let woken_before = media_thread_wakeups();
    let mut phone = Phone::call(hotline.sip_addr, "UDP", "greet@test", &[(0, "PCMU")]).await;
    let (rtp, media) = (&mut phone.rtp, phone.media);

    // The caller talks for 1 s while listening: a pattern that is not silence.
    let spoken: Vec<u8> = (0..8000u32)
        .map(|i| ((i * 37 + i / 160) % 251) as u8)
        .collect();
    rtp.stream(media, 0, &spoken).await;
    // What the hotline sent meanwhile waits in the socket: read it and 1.5 s more.
    let (packets, source) = rtp.collect(Duration::from_millis(1500)).await;
    // Symmetric RTP: it comes from the address the SDP named.
    assert_eq!(source, Some(media));
    assert!(packets.len() >= 100, "{} packets in 2.5 s", packets.len());
    // The session ran on the media runtime's (real-time) threads: they were woken for the
    // packets, at least once per 20 ms in one direction or the other.
    let woken = media_thread_wakeups_since(&woken_before);
    assert!(
        woken >= 100,
        "media threads woken {woken} times in 2.5 s of RTP"
    );
    // One stream: one SSRC, sequence +1, timestamp +160 per 20 ms packet, all PCMU.
    for w in packets.windows(2) {
        assert_eq!(w[1].ssrc, w[0].ssrc);
        assert_eq!(w[1].seq, w[0].seq.wrapping_add(1));
        assert_eq!(w[1].ts.wrapping_sub(w[0].ts), 160);
        assert_eq!(w[1].pt, 0);
    }
    // The audio is the greeting: what the UA decodes equals the prompt's samples through
    // G.711 (encoded here by the textbook algorithm, independently of the hotline).
    // The session paces from the moment it starts, and the call flow's order to play
    // reaches it a moment later: the caller may first hear a few frames of silence.
    let greeting = greeting();
    let heard: Vec<u8> = packets.iter().flat_map(|p| p.payload.clone()).collect();
    assert_eq!(heard.len() % 160, 0);
    let expected: Vec<u8> = greeting.iter().map(|&s| ulaw_encode(s)).collect();
    let (heard, skipped) = after_silence(&heard, 0xFF);
    assert!(
        skipped <= 10,
        "{skipped} frames of silence before the greeting"
    );
    let (expected, greeting_lead) = after_silence(&expected, 0xFF);
    assert!(heard.len() >= 50 * 160, "{} bytes of greeting", heard.len());
    assert_eq!(heard, &expected[..heard.len()]);

    phone.bye().await;
    let path = recording_saved(&mut events).await;
    assert!(
        path.to_string_lossy().contains("/recordings/"),
        "{}",
        path.display()
    );
    assert!(path.ends_with("greet_test.wav"), "{}", path.display());
    let (samples, channels) = read_wav(&path);
    assert_eq!(channels, 2);
    // Left: the caller, sample for sample.
    let caller: Vec<i16> = spoken.iter().map(|&b| ulaw_decode(b)).collect();
    let left = channel(&samples, 0);
    assert!(
        find(&left, &caller).is_some(),
        "caller audio not in the left channel"
    );
    // Right: what the caller heard, the greeting.
    let right = channel(&samples, 1);
    let heard_part = &greeting[greeting_lead * 160..][..heard.len()];
    assert!(
        find(&right, heard_part).is_some(),
        "greeting not in the right channel"
    );
    hotline.shutdown().await;
}

#[tokio::test]
async fn pcma_caller_hears_a_law() {
    let (hotline, _dir) = start().await;
    let mut phone = Phone::call(hotline.sip_addr, "TCP", "pcma@test", &[(8, "PCMA")]).await;
    let (packets, _) = phone.rtp.collect(Duration::from_millis(600)).await;
    assert!(packets.len() >= 20);
    assert!(packets.iter().all(|p| p.pt == 8));
    let greeting = greeting();
    let heard: Vec<i16> = packets
        .iter()
        .flat_map(|p| p.payload.iter().map(|&b| alaw_decode(b)))
        .collect();
    // A-law keeps 12 bits: every sample within its quantisation step of the prompt.
    for (i, (&h, &g)) in heard.iter().zip(&greeting).enumerate() {
        let step = (i32::from(g).abs() / 16).max(16);
        assert!(
            (i32::from(h) - i32::from(g)).abs() <= step,
            "sample {i}: {h} vs {g}"
        );
    }
    phone.bye().await;
    hotline.shutdown().await;
}

#[tokio::test]
async fn dtmf_by_rfc4733_and_by_info_arrives_exactly_once() {
    let (hotline, _dir) = start().await;
    let mut events = hotline.subscribe();
    let mut phone = Phone::call(hotline.sip_addr, "UDP", "dtmf@test", &[(0, "PCMU")]).await;
    for digit in ['5', '5', '#'] {
        phone.rtp.press(phone.media, 101, digit).await;
    }
    // INFO with DTMF is taken; a body that is not DTMF is refused, and delivers nothing.
    for (content_type, body, answer) in [
        (
            "application/dtmf-relay",
            "Signal=7\r\nDuration=160\r\n",
            "SIP/2.0 200",
        ),
        ("application/x-unknown", "hello", "SIP/2.0 415"),
    ] {
        let cseq = phone.next_cseq();
        let branch = format!("z9hG4bK-info-{cseq}");
        let mut info = phone.sip.req("INFO", "dtmf@test");
        info.branch = &branch;
        info.to_tag = Some(&phone.to_tag);
        info.cseq = cseq;
        info.content_type = content_type;
        info.body = body;
        let text = info.build();
        phone.sip.send(&text).await;
        phone.sip.expect(answer).await;
    }

    let mut digits = Vec::new();
    while let Ok(Ok(ev)) = tokio::time::timeout(Duration::from_millis(500), events.recv()).await {
        if let Event::Dtmf { digit, via, .. } = ev {
            digits.push((digit, via));
        }
    }
    assert_eq!(
        digits,
        vec![
            ('5', DtmfVia::Rtp),
            ('5', DtmfVia::Rtp),
            ('#', DtmfVia::Rtp),
            ('7', DtmfVia::SipInfo)
        ]
    );
    phone.bye().await;
    hotline.shutdown().await;
}

#[tokio::test]
async fn rtp_timeout_hangs_up_with_bye() {
    let (hotline, _dir) = start_with("", "[media]\nrtp_timeout_s = 1").await;
    let mut events = hotline.subscribe();
    let mut phone = Phone::call(hotline.sip_addr, "UDP", "silent@test", &[(0, "PCMU")]).await;
    // Half a second of audio, then the phone "loses power".
    phone.rtp.stream(phone.media, 0, &[0xFF; 4000]).await;
    let stopped = std::time::Instant::now();
    let bye = phone.sip.expect("BYE ").await;
    let waited = stopped.elapsed();
    assert!(waited >= Duration::from_millis(900), "BYE after {waited:?}");
    assert!(waited < Duration::from_millis(2500), "BYE after {waited:?}");
    assert_eq!(header(&bye, "Call-ID"), Some("silent@test"));
    let mut reason = None;
    let mut timeout_seen = false;
    while let Ok(Ok(ev)) = tokio::time::timeout(Duration::from_millis(500), events.recv()).await {
        match ev {
            Event::Sip(ua::Event::CallEnded { reason: r, .. }) => reason = Some(r),
            Event::RtpTimeout { .. } => timeout_seen = true,
            _ => {}
        }
    }
    assert!(timeout_seen);
    assert_eq!(reason, Some(EndReason::RtpTimeout));
    hotline.shutdown().await;
}

#[tokio::test]
async fn held_call_without_media_does_not_time_out() {
    let (hotline, _dir) = start_with("", "[media]\nrtp_timeout_s = 1").await;
    let mut phone = Phone::call(hotline.sip_addr, "UDP", "held@test", &[(0, "PCMU")]).await;
    // Hold: a=inactive (no media either way).
    let (active, held) = (
        phone.offer.clone(),
        phone.offer.replace("a=sendrecv", "a=inactive"),
    );
    phone.reinvite(&held).await;
    // Drain what was sent before the hold took effect, then: silence both ways, no BYE.
    phone.rtp.collect(Duration::from_millis(200)).await;
    let (late, _) = phone.rtp.collect(Duration::from_millis(500)).await;
    assert!(late.is_empty(), "{} packets sent while on hold", late.len());
    assert_eq!(phone.sip.recv(Duration::from_millis(2000)).await, None);
    // Off hold: the stream resumes at 20 ms per packet, not with a burst of the ~2.5 s
    // of frames that were not sent.
    phone.reinvite(&active).await;
    let (resumed, _) = phone.rtp.collect(Duration::from_millis(400)).await;
    assert!(
        (12..=26).contains(&resumed.len()),
        "{} packets in the first 400 ms after unhold",
        resumed.len()
    );
    phone.bye().await;
    hotline.shutdown().await;
}

/// The 20 ms pacing follows the wall clock: after 4 s the stream is where it should be
/// (a loop that sleeps 20 ms after each send would be ~0.1–0.2 s late by then).
#[tokio::test]
async fn pacing_does_not_drift() {
    let (hotline, _dir) = start().await;
    let mut phone = Phone::call(hotline.sip_addr, "UDP", "pace@test", &[(0, "PCMU")]).await;
    let (packets, _) = phone.rtp.collect(Duration::from_secs(4)).await;
    let first = packets.first().expect("packets").at;
    let mut worst = Duration::ZERO;
    for (k, p) in packets.iter().enumerate() {
        let due = first + Duration::from_millis(20 * k as u64);
        let off = if p.at > due { p.at - due } else { due - p.at };
        worst = worst.max(off);
    }
    assert!(packets.len() >= 195, "{} packets in 4 s", packets.len());
    assert!(
        worst < Duration::from_millis(30),
        "a packet {worst:?} off its slot"
    );
    phone.bye().await;
    hotline.shutdown().await;
}

/// Behind NAT the SDP names an address the caller cannot be reached at; the hotline sends
/// to where the caller's RTP comes from once it has seen a packet (symmetric RTP).
#[tokio::test]
async fn rtp_latches_to_the_source_of_the_callers_packets() {
    let (hotline, _dir) = start().await;
    let rtp = RtpPeer::bind().await;
    // The SDP advertises an address and port the phone cannot be reached at (its private
    // address behind NAT; here another loopback address, as tests stay on loopback).
    let offer = offer(rtp.port(), &[(0, "PCMU")])
        .replace("c=IN IP4 127.0.0.1", "c=IN IP4 127.0.0.2")
        .replace(&format!("m=audio {} ", rtp.port()), "m=audio 4000 ");
    let mut phone = Phone::call_with(hotline.sip_addr, "UDP", "nat@test", rtp, offer).await;
    let (rtp, media) = (&mut phone.rtp, phone.media);
    let (before, _) = rtp.collect(Duration::from_millis(200)).await;
    assert!(
        before.is_empty(),
        "nothing reaches the real address before latching"
    );
    rtp.stream(media, 0, &[0xFF; 160]).await;
    let (after, source) = rtp.collect(Duration::from_millis(300)).await;
    assert!(after.len() >= 10, "{} packets after latching", after.len());
    assert_eq!(source, Some(media));
    phone.bye().await;
    hotline.shutdown().await;
}

/// An SDP naming someone else's address (here 127.0.0.55) must not turn the hotline into a
/// reflector: nothing is sent there, not even the greeting. Once RTP arrives from the
/// caller, the hotline answers where it came from (symmetric RTP).
#[tokio::test]
async fn rtp_goes_nowhere_until_the_caller_sends_and_never_to_a_third_party() {
    let (hotline, _dir) = start().await;
    let victim = tokio::net::UdpSocket::bind("127.0.0.55:0").await.unwrap();
    let victim_port = victim.local_addr().unwrap().port();
    let rtp = RtpPeer::bind().await;
    let offer = offer(victim_port, &[(0, "PCMU")]).replace("IN IP4 127.0.0.1", "IN IP4 127.0.0.55");
    let mut phone = Phone::call_with(hotline.sip_addr, "UDP", "reflect@test", rtp, offer).await;
    let mut buf = [0u8; 2048];
    let got = tokio::time::timeout(Duration::from_millis(1500), victim.recv_from(&mut buf)).await;
    assert!(got.is_err(), "RTP reached the third party: {got:?}");
    let (nothing, _) = phone.rtp.collect(Duration::from_millis(200)).await;
    assert!(nothing.is_empty(), "sent before the caller's first packet");
    // The caller speaks from its real address: the hotline latches and answers there.
    let media = phone.media;
    phone.rtp.stream(media, 0, &[0xFF; 1600]).await;
    let (packets, source) = phone.rtp.collect(Duration::from_millis(800)).await;
    assert!(
        packets.len() >= 20,
        "{} packets after latching",
        packets.len()
    );
    assert_eq!(source, Some(media));
    let got = tokio::time::timeout(Duration::from_millis(100), victim.recv_from(&mut buf)).await;
    assert!(got.is_err(), "RTP reached the third party after latching");
    phone.bye().await;
}

/// Multicast and broadcast connection addresses are refused with 488.
#[tokio::test]
async fn multicast_and_broadcast_media_addresses_get_488() {
    let (hotline, _dir) = start().await;
    for (i, addr) in ["224.2.1.1", "255.255.255.255"].iter().enumerate() {
        let mut sip = Peer::new("UDP", hotline.sip_addr).await;
        let offer =
            offer(7000, &[(0, "PCMU")]).replace("IN IP4 127.0.0.1", &format!("IN IP4 {addr}"));
        let call_id = format!("mcast-{i}@test");
        let mut invite = sip.req("INVITE", &call_id);
        invite.body = &offer;
        sip.send(&invite.build()).await;
        let resp = sip.expect("SIP/2.0 488").await;
        assert!(header(&resp, "Warning").is_some(), "{resp}");
    }
}
