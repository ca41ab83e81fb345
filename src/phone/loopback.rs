//! A browser played by a second str0m `Rtc` (full ICE, controlling), connected to a
//! [`BrowserPeer`] in memory on a clock that jumps to the next deadline: what the
//! per-frame benchmarks (`benches/relay.rs`) measure against, with no socket and no
//! Chromium. [`Offering`] is the same browser without the pairing, which the load
//! benchmark (`benches/webrtc_load.rs`) runs by the hundred over real sockets.

use super::peer::{BrowserPeer, PeerOutput};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::format::Codec as RtcCodec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};

const OURS: &str = "127.0.0.1:40000";
const THEIRS: &str = "127.0.0.1:50000";

/// The browser's side of a [`connect`]ed pair.
pub struct FakeBrowser {
    rtc: Rtc,
    mid: Mid,
    pt: Pt,
    /// The clock both sides run on.
    pub now: Instant,
}

/// A browser's `Rtc` (full ICE, PCMU only, as [`crate::phone::peer`] agrees it) that has
/// offered one audio m-line from its host candidate `local`: what the hub's
/// [`BrowserPeer::accept`] takes. The load benchmark drives it over real sockets.
pub struct Offering {
    rtc: Rtc,
    mid: Mid,
    pending: SdpPendingOffer,
    /// The SDP offer, as a page would POST it.
    pub sdp: String,
}

/// A browser connected (or connecting) after [`Offering::accept`]: its `Rtc`, the audio
/// m-line and the PCMU payload type the answer agreed.
pub struct Answered {
    pub rtc: Rtc,
    pub mid: Mid,
    pub pt: Pt,
}

impl Offering {
    pub fn new(local: SocketAddr, now: Instant) -> Option<Offering> {
        let mut rtc = RtcConfig::new()
            .set_crypto_provider(super::peer::crypto())
            .clear_codecs()
            .enable_pcmu(true, false)
            .build(now);
        rtc.add_local_candidate(Candidate::host(local, "udp").ok()?);
        let mut change = rtc.sdp_api();
        let mid = change.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        let (offer, pending) = change.apply()?;
        Some(Offering {
            rtc,
            mid,
            pending,
            sdp: offer.to_sdp_string(),
        })
    }

    /// The hotline's SDP `answer` applied; `None` if it is not one this offer can take.
    pub fn accept(mut self, answer: &str) -> Option<Answered> {
        self.rtc
            .sdp_api()
            .accept_answer(self.pending, SdpAnswer::from_sdp_string(answer).ok()?)
            .ok()?;
        let pt = self
            .rtc
            .writer(self.mid)?
            .payload_params()
            .find(|p| p.spec().codec == RtcCodec::PCMU)?
            .pt();
        Some(Answered {
            rtc: self.rtc,
            mid: self.mid,
            pt,
        })
    }
}

/// A [`BrowserPeer`] and a browser with ICE and DTLS done, or `None` if they did not
/// connect within 30 s of fake time.
pub fn connect() -> Option<(BrowserPeer, FakeBrowser)> {
    let mut now = Instant::now();
    let offering = Offering::new(THEIRS.parse().ok()?, now)?;
    let (mut peer, answer) = BrowserPeer::accept(&offering.sdp, OURS.parse().ok()?, now).ok()?;
    let Answered { rtc, mid, pt } = offering.accept(&answer)?;
    let mut browser = FakeBrowser { rtc, mid, pt, now };
    let deadline = now + Duration::from_secs(30);
    while now < deadline {
        let next = browser.exchange(&mut peer)?;
        if peer.is_connected() && browser.rtc.is_connected() {
            return Some((peer, browser));
        }
        now = next.max(now + Duration::from_millis(1));
        browser.now = now;
        browser.rtc.handle_input(Input::Timeout(now)).ok()?;
        peer.tick(now);
    }
    None
}

impl FakeBrowser {
    /// Hands every pending datagram across both ways (ICE consent, RTCP); the earlier of
    /// the two deadlines.
    pub fn exchange(&mut self, peer: &mut BrowserPeer) -> Option<Instant> {
        let ours: SocketAddr = OURS.parse().ok()?;
        let theirs: SocketAddr = THEIRS.parse().ok()?;
        loop {
            let mut moved = false;
            let browser_next = loop {
                match self.rtc.poll_output().ok()? {
                    Output::Transmit(t) => {
                        peer.receive(theirs, &t.contents, self.now);
                        moved = true;
                    }
                    Output::Timeout(t) => break t,
                    Output::Event(_) => {}
                }
            };
            let peer_next = loop {
                match peer.poll(self.now) {
                    Ok(PeerOutput::Transmit { bytes, .. }) => {
                        let r = Receive::new(Protocol::Udp, ours, theirs, &bytes).ok()?;
                        self.rtc.handle_input(Input::Receive(self.now, r)).ok()?;
                        moved = true;
                    }
                    Ok(_) => {}
                    Err(at) => break at,
                }
            };
            if !moved {
                return Some(browser_next.min(peer_next));
            }
        }
    }

    /// A datagram our peer sent (a [`PeerOutput::Transmit`]), received by the browser.
    pub fn deliver(&mut self, bytes: &[u8]) {
        let (Ok(ours), Ok(theirs)) = (OURS.parse(), THEIRS.parse()) else {
            return;
        };
        if let Ok(r) = Receive::new(Protocol::Udp, ours, theirs, bytes) {
            let _ = self.rtc.handle_input(Input::Receive(self.now, r));
        }
    }

    /// Both sides at `now`: their timers run and what they have pending crosses (ICE
    /// consent checks, RTCP). Without it a minute of frames one way only ends the
    /// connection, as it would on the wire.
    pub fn keep_alive(&mut self, peer: &mut BrowserPeer, now: Instant) {
        self.now = self.now.max(now);
        let _ = self.rtc.handle_input(Input::Timeout(self.now));
        peer.tick(self.now);
        self.exchange(peer);
    }

    /// The datagrams (SRTP) that carry one 20 ms PCMU frame from the browser at RTP time
    /// `ts`, as the hotline's socket would receive them.
    pub fn frame(&mut self, payload: &[u8], ts: u32) -> Vec<Vec<u8>> {
        self.now += Duration::from_millis(20);
        let time = MediaTime::new(u64::from(ts), Frequency::EIGHT_KHZ);
        let written = self
            .rtc
            .writer(self.mid)
            .map(|w| w.write(self.pt, self.now, time, payload.to_vec()));
        let mut out = Vec::new();
        if !matches!(written, Some(Ok(()))) {
            return out;
        }
        let _ = self.rtc.handle_input(Input::Timeout(self.now));
        while let Ok(o) = self.rtc.poll_output() {
            match o {
                Output::Transmit(t) => out.push(t.contents.to_vec()),
                Output::Timeout(_) => break,
                Output::Event(Event::MediaData(_)) | Output::Event(_) => {}
            }
        }
        out
    }

    /// Where the browser sends from (the source of [`FakeBrowser::frame`]'s datagrams).
    pub fn address() -> SocketAddr {
        THEIRS.parse().expect("a socket address")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::sdp::Codec;

    /// What the benchmarks measure is real work, for as long as they run: each frame is a
    /// datagram that our peer decrypts into audio, and each frame we send leaves as a
    /// datagram, over a minute of frames with the pair kept alive every second.
    #[test]
    fn frames_cross_both_ways_for_a_minute() {
        let (mut peer, mut browser) = connect().expect("the pair connects");
        let (mut heard, mut datagrams) = (0, 0);
        for i in 0..3000u32 {
            for d in browser.frame(&[0x55; 160], i * 160) {
                datagrams += 1;
                peer.receive(FakeBrowser::address(), &d, browser.now);
            }
            while let Ok(out) = peer.poll(browser.now) {
                match out {
                    PeerOutput::Audio { .. } => heard += 1,
                    PeerOutput::Transmit { bytes, .. } => browser.deliver(&bytes),
                    _ => {}
                }
            }
            if i % 50 == 49 {
                let now = browser.now;
                browser.keep_alive(&mut peer, now);
            }
        }
        assert!(
            datagrams >= 3000 && heard >= 2990,
            "{heard} of {datagrams} heard"
        );
        let (mut sent, mut now) = (0, browser.now);
        for i in 0..3000u32 {
            now += Duration::from_millis(20);
            peer.send_audio(Codec::Pcmu, &[0x55; 160], i * 160, now);
            while let Ok(out) = peer.poll(now) {
                sent += u32::from(matches!(out, PeerOutput::Transmit { .. }));
            }
            if i % 50 == 49 {
                browser.keep_alive(&mut peer, now);
            }
        }
        assert!(sent >= 3000, "{sent} datagrams to the browser");
    }
}
