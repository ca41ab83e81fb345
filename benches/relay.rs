//! The relay path per packet, without sockets: one RTP datagram received on the caller's
//! leg (parse, latch, statistics), recorded (decode into the two-channel WAV writer) and
//! rebuilt for the operator's leg, with and without PCMU→PCMA transcoding; and with SRTP on
//! both legs (decrypted from the caller, encrypted again for the operator), beside what the
//! phone's own encryption of the packet costs alone.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use hotline::media::bridge;
use hotline::media::leg::{Inbound, LegState};
use hotline::media::recorder::{Channel, Recorder};
use hotline::media::srtp::SrtpLeg;
use hotline::sip::sdes::{new_key, Keys, Suite};
use hotline::sip::sdp::{Codec, Direction, Negotiated};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn media(pt: u8, codec: Codec, remote: &str) -> Negotiated {
    Negotiated {
        codecs: vec![(pt, codec)],
        telephone_event: Some(101),
        remote_rtp: Some(remote.parse().unwrap()),
        direction: Direction::SendRecv,
        ptime: Some(20),
        srtp: None,
    }
}

/// A caller's stream: 12-byte header + 160 bytes, sequence and timestamp advancing.
fn datagram(seq: u16, ts: u32, out: &mut [u8; 172]) {
    out[0] = 0x80;
    out[1] = 0;
    out[2..4].copy_from_slice(&seq.to_be_bytes());
    out[4..8].copy_from_slice(&ts.to_be_bytes());
    out[8..12].copy_from_slice(&0x00CA_11E2_u32.to_be_bytes());
    for (i, b) in out[12..].iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37);
    }
}

fn relay(c: &mut Criterion, name: &str, operator_codec: (u8, Codec), record: bool) {
    let dir = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let source: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let mut caller = LegState::new(&media(0, Codec::Pcmu, "127.0.0.1:40000"), t0);
    let mut operator = LegState::new(
        &media(operator_codec.0, operator_codec.1, "127.0.0.1:40002"),
        t0,
    );
    let mut recorder = record.then(|| Recorder::create(&dir.path().join("bench.wav"), t0).unwrap());
    let (mut pcm, mut out) = ([0i16; 2048], [0u8; 2048]);
    let mut wire = [0u8; 172];
    let mut n: u32 = 0;
    c.bench_function(name, |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            datagram(n as u16, n.wrapping_mul(160), &mut wire);
            // Simulated arrival time: 20 ms per packet.
            let now = t0 + Duration::from_millis(20 * u64::from(n % 1_000_000));
            if let Inbound::Audio(audio) = caller.receive(&wire, source, now) {
                let len = bridge::forward(
                    &audio,
                    Channel::Caller,
                    recorder.as_mut(),
                    Some(&mut operator),
                    &mut pcm,
                    &mut out,
                );
                black_box(len);
            }
            if let Some(r) = recorder.as_mut() {
                // The other side talks too: keeps the recorder writing frames.
                r.push(Channel::Other, &pcm[..160]);
                if n.is_multiple_of(50) {
                    r.tick(now).unwrap();
                }
            }
        })
    });
}

fn keys() -> Keys {
    let suite = Suite::AesCm128HmacSha1_80;
    Keys {
        suite,
        theirs: new_key(suite),
        ours: new_key(suite),
        savp: true,
    }
}

/// The caller's phone seals each packet (`srtp/phone_protect` measures that alone), the
/// caller's leg opens it, the operator's leg seals the relayed packet.
fn relay_srtp(c: &mut Criterion) {
    let t0 = Instant::now();
    let source: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let caller_keys = keys();
    let phone_keys = Keys {
        theirs: caller_keys.ours.clone(),
        ours: caller_keys.theirs.clone(),
        ..caller_keys.clone()
    };
    let with_srtp = |pt_codec: (u8, Codec), remote: &str, k: &Keys| {
        let mut m = media(pt_codec.0, pt_codec.1, remote);
        m.srtp = Some(k.clone());
        LegState::new(&m, t0)
    };
    let mut caller = with_srtp((0, Codec::Pcmu), "127.0.0.1:40000", &caller_keys);
    let mut operator = with_srtp((0, Codec::Pcmu), "127.0.0.1:40002", &keys());
    let mut phone = SrtpLeg::new(&phone_keys, t0).unwrap();
    let (mut pcm, mut out) = ([0i16; 2048], [0u8; 2048]);
    let mut wire = [0u8; 200];
    let mut n: u32 = 0;
    c.bench_function("relay/pcmu_to_pcmu_srtp", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            let plain: &mut [u8; 172] = (&mut wire[..172]).try_into().unwrap();
            datagram(n as u16, n.wrapping_mul(160), plain);
            let len = phone.protect(&mut wire, 172).unwrap();
            let now = t0 + Duration::from_millis(20 * u64::from(n % 1_000_000));
            if let Inbound::Audio(audio) = caller.receive_datagram(&mut wire[..len], source, now) {
                let len = bridge::forward(
                    &audio,
                    Channel::Caller,
                    None,
                    Some(&mut operator),
                    &mut pcm,
                    &mut out,
                );
                black_box(len);
            }
        })
    });
    let mut phone = SrtpLeg::new(&phone_keys, t0).unwrap();
    c.bench_function("srtp/phone_protect", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            let plain: &mut [u8; 172] = (&mut wire[..172]).try_into().unwrap();
            datagram(n as u16, n.wrapping_mul(160), plain);
            black_box(phone.protect(&mut wire, 172));
        })
    });
}

/// The browser phone's cost per 20 ms frame in our WebRTC peer (str0m): to the browser
/// (packetising, SRTP, the pacer) and from it (SRTP, depacketising), against a browser
/// played by a second str0m in memory. The relay's local RTP hop to the session is not in
/// it: that is a plain leg's `relay/*`.
fn webrtc(c: &mut Criterion) {
    use hotline::phone::loopback::{connect, FakeBrowser};
    use hotline::phone::peer::PeerOutput;
    use std::time::{Duration, Instant};
    let frame = [0x55u8; 160];
    let mut g = c.benchmark_group("webrtc");
    // Only our peer's work is timed; every second (50 frames) the pair is kept alive
    // untimed (ICE consent, RTCP), as on the wire.
    g.bench_function("frame_to_browser", |b| {
        b.iter_custom(|iters| {
            let (mut peer, mut browser) = connect().expect("the pair connects");
            let mut now = browser.now;
            let mut took = Duration::ZERO;
            for i in 0..iters {
                now += Duration::from_millis(20);
                let start = Instant::now();
                peer.send_audio(Codec::Pcmu, &frame, (i as u32).wrapping_mul(160), now);
                while let Ok(out) = peer.poll(now) {
                    black_box(out);
                }
                took += start.elapsed();
                if i % 50 == 49 {
                    browser.keep_alive(&mut peer, now);
                }
            }
            took
        })
    });
    // The browser's frames are made ahead, 50 at a time (a second of audio), and only their
    // reception is timed; between batches the pair exchanges what it has pending (ICE
    // consent, RTCP), as it would on the wire.
    g.bench_function("frame_from_browser", |b| {
        b.iter_custom(|iters| {
            let (mut peer, mut browser) = connect().expect("the pair connects");
            let from = FakeBrowser::address();
            let mut took = Duration::ZERO;
            let mut done = 0u64;
            while done < iters {
                let n = (iters - done).min(50);
                let datagrams: Vec<Vec<u8>> = (done..done + n)
                    .flat_map(|i| browser.frame(&frame, (i as u32).wrapping_mul(160)))
                    .collect();
                let now = browser.now;
                let start = Instant::now();
                let mut back = Vec::new();
                for d in &datagrams {
                    peer.receive(from, d, now);
                    while let Ok(out) = peer.poll(now) {
                        match out {
                            PeerOutput::Transmit { bytes, .. } => back.push(bytes),
                            out => drop(black_box(out)),
                        }
                    }
                }
                took += start.elapsed();
                for bytes in &back {
                    browser.deliver(bytes);
                }
                browser.keep_alive(&mut peer, now);
                done += n;
            }
            took
        })
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    relay(c, "relay/pcmu_to_pcmu", (0, Codec::Pcmu), false);
    relay(c, "relay/pcmu_to_pcma", (8, Codec::Pcma), false);
    relay(c, "relay/pcmu_to_pcmu_recorded", (0, Codec::Pcmu), true);
    relay(c, "relay/pcmu_to_pcma_recorded", (8, Codec::Pcma), true);
    relay_srtp(c);
    webrtc(c);
}

criterion_group!(relay_benches, benches);
criterion_main!(relay_benches);
