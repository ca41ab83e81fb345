//! What the fuzzers feed: each function takes arbitrary bytes from the network's point of
//! view and must return without panicking, whatever they are. `fuzz/` wraps each in a
//! cargo-fuzz target (`bash fuzz/run.sh SECONDS`); `tests/fuzz_corpus.rs` replays the
//! committed corpus through the same functions on the stable toolchain, so a crash found
//! once and added to the corpus stays fixed.

use crate::sip::message::{decode, DecodeContext};
use crate::sip::Transport;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The SIP decoder on one datagram (UDP) and the same bytes as a TCP message.
pub fn sip_message(data: &[u8]) {
    let source: SocketAddr = "192.0.2.1:5060".parse().expect("literal");
    for transport in [Transport::Udp, Transport::Tcp] {
        let ctx = DecodeContext {
            transport,
            source,
            max_size: 16 * 1024,
            server: "Hotline-fuzz",
        };
        let _ = decode(data, &ctx);
    }
}

/// TCP framing: the bytes split at every point given by the first byte, then pushed piece
/// by piece; every frame taken out is decoded.
pub fn tcp_framing(data: &[u8]) {
    let Some((&step, rest)) = data.split_first() else {
        return;
    };
    let step = usize::from(step).max(1);
    let mut framer = crate::sip::framing::Framer::new(16 * 1024);
    for chunk in rest.chunks(step) {
        framer.push(chunk);
        loop {
            match framer.next_frame() {
                Ok(Some(crate::sip::framing::Frame::Message(m))) => sip_message(&m),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
    }
}

/// SDP offer/answer: an answer to the bytes as an offer, and the bytes read as an answer.
pub fn sdp(data: &[u8]) {
    let local = crate::sip::sdp::LocalMedia {
        address: "192.0.2.10".parse().expect("literal"),
        port: 20000,
        session_id: 1,
        session_version: 1,
    };
    let _ = crate::sip::sdp::answer(data, &local);
    let _ = crate::sip::sdp::parse_answer(data);
}

/// Digest: the Authorization parser, and a verification against a fixed password.
pub fn digest(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = crate::sip::digest::parse_params(text);
    let now = Instant::now();
    let mut auth = crate::sip::digest::DigestAuthenticator::new(
        "hotline.test",
        vec![
            crate::sip::digest::Algorithm::Sha256,
            crate::sip::digest::Algorithm::Md5,
        ],
        Duration::from_secs(300),
        now,
        // Fixed: fuzzing wants the same run for the same input.
        rand::SeedableRng::seed_from_u64(0),
    );
    let _ = auth.verify(text, "REGISTER", now, |_| Some("secret".to_string()));
}

/// RTP and RFC 4733: the packet parser, the telephone-event parser on its payload (and on
/// the whole input), and the DTMF detector fed the packet.
pub fn rtp(data: &[u8]) {
    let _ = crate::media::dtmf::parse_event(data);
    if let Ok(p) = crate::media::rtp::parse(data) {
        let _ = crate::media::dtmf::parse_event(p.payload);
        let mut detector = crate::media::dtmf::Detector::new();
        let _ = detector.on_packet(p.ssrc, p.timestamp, p.marker, p.payload);
    }
    let _ = crate::sip::info::parse_info("application/dtmf-relay", data);
    let _ = crate::sip::info::parse_info("application/dtmf", data);
}
