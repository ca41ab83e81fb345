//! One browser's WebRTC connection, sans-IO: str0m's [`Rtc`] behind the few calls the
//! browser phone needs, so that the relay task only moves datagrams and the tests drive it
//! on a fake clock against a second `Rtc` playing the browser.
//!
//! The hotline is ICE-lite (RFC 8445 §2.5) on one host candidate, the browser the
//! controlling agent. DTLS-SRTP keys the media; the browser's certificate must match the
//! `a=fingerprint` of its offer, which arrived over the console's authenticated channel
//! (str0m checks it). Only PCMU and PCMA are accepted, so audio crosses to the caller's leg
//! without a transcoder (G.711 μ-law ↔ A-law at most). Datagrams from any address other
//! than the one ICE validated are dropped by str0m before they reach us.

use crate::sip::sdp::Codec;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::crypto::CryptoProvider;
use str0m::format::Codec as RtcCodec;
use str0m::media::{Frequency, MediaTime, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::Extension;
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};

/// A connection that receives nothing at all for this long is gone: browsers send an ICE
/// consent check every 5 s or so (RFC 7675), and audio 50 times a second.
pub const SILENCE_LIMIT: Duration = Duration::from_secs(15);

/// How long the ICE and DTLS handshakes may take before the connection is given up.
pub const CONNECT_LIMIT: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("the SDP offer: {0}")]
    Offer(String),
    #[error("the offer has no audio in PCMU or PCMA")]
    NoAudio,
    #[error("the local candidate {0} is not usable")]
    Candidate(SocketAddr),
    #[error("WebRTC: {0}")]
    Rtc(#[from] str0m::RtcError),
}

/// Why a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closed {
    /// ICE reported the browser gone (or it closed DTLS).
    Disconnected,
    /// Nothing arrived for [`SILENCE_LIMIT`].
    Silent,
    /// ICE and DTLS did not complete within [`CONNECT_LIMIT`] (a wrong fingerprint ends
    /// here too: the handshake fails).
    NeverConnected,
    /// str0m refused a datagram in a way that ends the session.
    Failed,
}

/// What the connection asks of its owner.
#[derive(Debug, PartialEq, Eq)]
pub enum PeerOutput {
    /// Send `bytes` to `to` from the local candidate's socket.
    Transmit { to: SocketAddr, bytes: Vec<u8> },
    /// 20 ms (or whatever the browser packs) of the operator's audio.
    Audio {
        codec: Codec,
        payload: Vec<u8>,
        rtp_time: u32,
    },
    /// ICE and DTLS are up: media flows.
    Connected,
    /// The connection is over; nothing more comes out.
    Closed(Closed),
}

/// One browser's connection. See the module documentation.
pub struct BrowserPeer {
    rtc: Rtc,
    local: SocketAddr,
    mid: Option<Mid>,
    /// Our payload type for each codec, once the offer is accepted.
    pts: Vec<(Codec, Pt)>,
    connected: bool,
    closed: Option<Closed>,
    started: Instant,
    last_heard: Instant,
    reported_closed: bool,
}

/// Our codec for str0m's, where it is G.711.
fn g711(codec: RtcCodec) -> Option<Codec> {
    match codec {
        RtcCodec::PCMU => Some(Codec::Pcmu),
        RtcCodec::PCMA => Some(Codec::Pcma),
        _ => None,
    }
}

/// str0m's crypto (aws-lc, as the crate's features choose), built once for the process.
pub(super) fn crypto() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(str0m::crypto::from_feature_flags()))
        .clone()
}

impl BrowserPeer {
    /// Accepts the browser's `offer` for a connection on `local` (our host candidate: the
    /// socket the owner reads and sends on) and returns the answer to send back.
    pub fn accept(
        offer: &str,
        local: SocketAddr,
        now: Instant,
    ) -> Result<(Self, String), PeerError> {
        let offer =
            SdpOffer::from_sdp_string(offer).map_err(|e| PeerError::Offer(e.to_string()))?;
        let mut rtc = RtcConfig::new()
            .set_crypto_provider(crypto())
            .set_ice_lite(true)
            // Only the mid: transport-wide congestion control feedback (and the others)
            // buys nothing for G.711 at its fixed rate, and costs a tenth of the relay's CPU.
            .clear_extension_map()
            .set_extension(4, Extension::RtpMid)
            .clear_codecs()
            .enable_pcmu(true, false)
            .enable_pcma(true, false)
            .build(now);
        let candidate = Candidate::host(local, "udp").map_err(|_| PeerError::Candidate(local))?;
        rtc.add_local_candidate(candidate)
            .ok_or(PeerError::Candidate(local))?;
        let answer: SdpAnswer = rtc.sdp_api().accept_offer(offer)?;

        let mut peer = BrowserPeer {
            rtc,
            local,
            mid: None,
            pts: Vec::new(),
            connected: false,
            closed: None,
            started: now,
            last_heard: now,
            reported_closed: false,
        };
        let answer = answer.to_sdp_string();
        peer.learn_media(&answer);
        if peer.pts.is_empty() {
            return Err(PeerError::NoAudio);
        }
        Ok((peer, answer))
    }

    /// The audio m-line (its `a=mid` in our `answer`) and its payload types, as the
    /// answer agreed them.
    fn learn_media(&mut self, answer: &str) {
        let audio = answer
            .split("\r\nm=")
            .skip(1)
            .find(|m| m.starts_with("audio ") && !m.starts_with("audio 0 "));
        self.mid = audio
            .and_then(|m| m.lines().find_map(|l| l.strip_prefix("a=mid:")))
            .map(|mid| Mid::from(mid.trim()));
        let Some(writer) = self.mid.and_then(|mid| self.rtc.writer(mid)) else {
            return;
        };
        let mut pts = Vec::new();
        for p in writer.payload_params() {
            let Some(codec) = g711(p.spec().codec) else {
                continue;
            };
            if !pts.iter().any(|(c, _)| *c == codec) {
                pts.push((codec, p.pt()));
            }
        }
        self.pts = pts;
    }

    /// The codec the operator's leg uses: the first the answer agreed (the browser sends
    /// in it, and we send in it too).
    pub fn codec(&self) -> Option<Codec> {
        self.pts.first().map(|(c, _)| *c)
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// A datagram that arrived on the local socket from `source`.
    pub fn receive(&mut self, source: SocketAddr, datagram: &[u8], now: Instant) {
        if self.closed.is_some() {
            return;
        }
        let Ok(receive) = Receive::new(Protocol::Udp, source, self.local, datagram) else {
            return; // not STUN, DTLS, RTP or RTCP: dropped
        };
        match self.rtc.handle_input(Input::Receive(now, receive)) {
            Ok(()) => self.last_heard = now,
            Err(e) => {
                tracing::debug!(error = %e, %source, "WebRTC datagram refused");
                if !self.rtc.is_alive() {
                    self.closed = Some(Closed::Failed);
                }
            }
        }
    }

    /// Time has passed: `now` is at or after the deadline [`BrowserPeer::poll`] gave.
    pub fn tick(&mut self, now: Instant) {
        if self.closed.is_some() {
            return;
        }
        if !self.connected && now.saturating_duration_since(self.started) >= CONNECT_LIMIT {
            self.close(Closed::NeverConnected);
            return;
        }
        if now.saturating_duration_since(self.last_heard) >= SILENCE_LIMIT {
            self.close(Closed::Silent);
            return;
        }
        if let Err(e) = self.rtc.handle_input(Input::Timeout(now)) {
            tracing::debug!(error = %e, "WebRTC timeout handling failed");
            self.close(Closed::Failed);
        }
    }

    /// Sends one frame of the caller's audio to the browser, in `codec` at RTP time
    /// `rtp_time` (8 kHz). Dropped before the connection is up, as str0m would.
    pub fn send_audio(&mut self, codec: Codec, payload: &[u8], rtp_time: u32, now: Instant) {
        if !self.connected || self.closed.is_some() {
            return;
        }
        let (Some(mid), Some(pt)) = (
            self.mid,
            self.pts
                .iter()
                .find(|(c, _)| *c == codec)
                .map(|(_, pt)| *pt),
        ) else {
            return;
        };
        let Some(writer) = self.rtc.writer(mid) else {
            return;
        };
        let time = MediaTime::new(u64::from(rtp_time), Frequency::EIGHT_KHZ);
        if let Err(e) = writer.write(pt, now, time, payload.to_vec()) {
            tracing::debug!(error = %e, "audio to the browser not written");
            return;
        }
        // str0m's pacer releases the packet on its next timeout: let it go now, not a
        // turn of the relay's loop later.
        if let Err(e) = self.rtc.handle_input(Input::Timeout(now)) {
            tracing::debug!(error = %e, "WebRTC timeout handling failed");
        }
    }

    /// Ends the connection from our side (the operator signed the browser phone out).
    pub fn close(&mut self, why: Closed) {
        if self.closed.is_none() {
            self.closed = Some(why);
            self.rtc.disconnect();
        }
    }

    /// The next thing to do, or the instant to call [`BrowserPeer::tick`] at.
    pub fn poll(&mut self, now: Instant) -> Result<PeerOutput, Instant> {
        if let Some(why) = self.closed {
            if self.reported_closed {
                return Err(now + Duration::from_secs(3600));
            }
            self.reported_closed = true;
            return Ok(PeerOutput::Closed(why));
        }
        loop {
            let output = match self.rtc.poll_output() {
                Ok(o) => o,
                Err(e) => {
                    tracing::debug!(error = %e, "WebRTC poll failed");
                    self.close(Closed::Failed);
                    return self.poll(now);
                }
            };
            match output {
                Output::Transmit(t) => {
                    return Ok(PeerOutput::Transmit {
                        to: t.destination,
                        bytes: t.contents.to_vec(),
                    })
                }
                Output::Timeout(at) => {
                    let mut at = at.min(self.last_heard + SILENCE_LIMIT);
                    if !self.connected {
                        at = at.min(self.started + CONNECT_LIMIT);
                    }
                    return Err(at);
                }
                Output::Event(Event::Connected) => {
                    self.connected = true;
                    return Ok(PeerOutput::Connected);
                }
                Output::Event(
                    Event::IceConnectionStateChange(IceConnectionState::Disconnected)
                    | Event::Closed,
                ) => {
                    self.close(Closed::Disconnected);
                    return self.poll(now);
                }
                Output::Event(Event::MediaData(data)) => {
                    let Some(codec) = g711(data.params.spec().codec) else {
                        continue;
                    };
                    return Ok(PeerOutput::Audio {
                        codec,
                        payload: data.data.to_vec(),
                        rtp_time: data.time.numer() as u32,
                    });
                }
                Output::Event(_) => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Our peer against a second str0m `Rtc` playing the browser (full ICE, controlling),
    //! datagrams handed across in memory on a clock that jumps to the next deadline.

    use super::*;
    use str0m::media::{Direction, MediaKind};

    const OURS: &str = "127.0.0.1:40000";
    const THEIRS: &str = "127.0.0.1:50000";

    struct Browser {
        rtc: Rtc,
        mid: Mid,
        heard: Vec<(Pt, Vec<u8>)>,
        connected: bool,
    }

    /// A browser's offer: one audio m-line, G.711 among what it offers.
    fn browser(now: Instant) -> (Browser, String, str0m::change::SdpPendingOffer) {
        let mut rtc = RtcConfig::new()
            .set_crypto_provider(crypto())
            .clear_codecs()
            .enable_opus(true, false)
            .enable_pcmu(true, false)
            .enable_pcma(true, false)
            .build(now);
        let local = Candidate::host(THEIRS.parse().unwrap(), "udp").unwrap();
        rtc.add_local_candidate(local);
        let mut change = rtc.sdp_api();
        let mid = change.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        let (offer, pending) = change.apply().unwrap();
        let b = Browser {
            rtc,
            mid,
            heard: Vec::new(),
            connected: false,
        };
        (b, offer.to_sdp_string(), pending)
    }

    /// Runs both sides until `until` (fake time), the browser sending a frame every 20 ms
    /// when `talk`, and us answering each with a frame. Returns our outputs.
    fn run(
        peer: &mut BrowserPeer,
        b: &mut Browser,
        now: &mut Instant,
        until: Instant,
        browser_alive: bool,
    ) -> Vec<PeerOutput> {
        let ours: SocketAddr = OURS.parse().unwrap();
        let theirs: SocketAddr = THEIRS.parse().unwrap();
        let mut out = Vec::new();
        let mut next_frame = *now;
        let mut ts: u32 = 0;
        while *now < until {
            // The browser's side.
            let mut browser_next = until;
            if browser_alive {
                loop {
                    match b.rtc.poll_output().unwrap() {
                        Output::Transmit(t) => {
                            assert_eq!(t.destination, ours);
                            peer.receive(theirs, &t.contents, *now);
                        }
                        Output::Timeout(t) => {
                            browser_next = t;
                            break;
                        }
                        Output::Event(Event::Connected) => b.connected = true,
                        Output::Event(Event::MediaData(d)) => b.heard.push((d.pt, d.data.to_vec())),
                        Output::Event(_) => {}
                    }
                }
            }
            // Ours.
            let ours_next = loop {
                match peer.poll(*now) {
                    Ok(PeerOutput::Transmit { to, bytes }) => {
                        if browser_alive {
                            assert_eq!(to, theirs);
                            let r = Receive::new(Protocol::Udp, ours, theirs, &bytes).unwrap();
                            b.rtc.handle_input(Input::Receive(*now, r)).unwrap();
                        }
                    }
                    Ok(PeerOutput::Audio {
                        codec,
                        payload,
                        rtp_time,
                    }) => {
                        // What the caller's leg would send back: the same frame.
                        peer.send_audio(codec, &payload, rtp_time, *now);
                        out.push(PeerOutput::Audio {
                            codec,
                            payload,
                            rtp_time,
                        });
                    }
                    Ok(o) => out.push(o),
                    Err(at) => break at,
                }
            };
            if browser_alive && b.connected && *now >= next_frame {
                let pt = b
                    .rtc
                    .writer(b.mid)
                    .unwrap()
                    .payload_params()
                    .find(|p| p.spec().codec == RtcCodec::PCMU)
                    .map(|p| p.pt())
                    .unwrap();
                let frame = vec![(ts / 160 % 200) as u8; 160];
                let time = MediaTime::new(u64::from(ts), Frequency::EIGHT_KHZ);
                b.rtc
                    .writer(b.mid)
                    .unwrap()
                    .write(pt, *now, time, frame)
                    .unwrap();
                ts += 160;
                next_frame = *now + Duration::from_millis(20);
                continue;
            }
            let mut next = ours_next.min(browser_next).min(until);
            if browser_alive && b.connected {
                next = next.min(next_frame);
            }
            *now = next.max(*now + Duration::from_micros(100));
            if browser_alive {
                b.rtc.handle_input(Input::Timeout(*now)).unwrap();
            }
            peer.tick(*now);
        }
        out
    }

    #[test]
    fn a_browser_connects_and_audio_crosses_both_ways_in_pcmu() {
        let mut now = Instant::now();
        let (mut b, offer, pending) = browser(now);
        assert!(
            offer.contains("opus"),
            "the browser offers Opus too: {offer}"
        );
        let (mut peer, answer) = BrowserPeer::accept(&offer, OURS.parse().unwrap(), now).unwrap();
        assert!(answer.contains("a=ice-lite"), "{answer}");
        assert!(!answer.contains("opus"), "G.711 only: {answer}");
        assert!(answer.contains("a=fingerprint:sha-256"), "{answer}");
        assert_eq!(peer.codec(), Some(Codec::Pcmu));
        let answer = SdpAnswer::from_sdp_string(&answer).unwrap();
        b.rtc.sdp_api().accept_answer(pending, answer).unwrap();

        let until = now + Duration::from_secs(3);
        let out = run(&mut peer, &mut b, &mut now, until, true);
        assert!(b.connected && peer.is_connected());
        assert_eq!(
            out.iter().filter(|o| **o == PeerOutput::Connected).count(),
            1
        );
        let audio: Vec<_> = out
            .iter()
            .filter_map(|o| match o {
                PeerOutput::Audio { codec, payload, .. } => Some((codec, payload)),
                _ => None,
            })
            .collect();
        assert!(audio.len() >= 50, "{} frames from the browser", audio.len());
        assert!(audio
            .iter()
            .all(|(c, p)| **c == Codec::Pcmu && p.len() == 160));
        // Each frame carries its number: in order, none lost in memory.
        for w in audio.windows(2) {
            assert_eq!(w[1].1[0], w[0].1[0].wrapping_add(1) % 200);
        }
        // And what we sent back reached the browser, decrypted, in PCMU's payload type.
        assert!(
            b.heard.len() >= 50,
            "{} frames to the browser",
            b.heard.len()
        );
        assert!(b.heard.iter().all(|(_, d)| d.len() == 160));
    }

    #[test]
    fn a_browser_that_goes_silent_is_closed() {
        let mut now = Instant::now();
        let (mut b, offer, pending) = browser(now);
        let (mut peer, answer) = BrowserPeer::accept(&offer, OURS.parse().unwrap(), now).unwrap();
        b.rtc
            .sdp_api()
            .accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap())
            .unwrap();
        let until = now + Duration::from_secs(1);
        run(&mut peer, &mut b, &mut now, until, true);
        assert!(peer.is_connected());
        // The tab is gone: nothing more arrives.
        let until = now + SILENCE_LIMIT + Duration::from_secs(1);
        let out = run(&mut peer, &mut b, &mut now, until, false);
        let closed: Vec<_> = out
            .iter()
            .filter(|o| matches!(o, PeerOutput::Closed(_)))
            .collect();
        assert_eq!(closed.len(), 1, "{out:?}");
        assert!(matches!(
            closed[0],
            PeerOutput::Closed(Closed::Silent | Closed::Disconnected)
        ));
    }

    #[test]
    fn a_fingerprint_that_does_not_match_the_certificate_fails_the_connection() {
        let mut now = Instant::now();
        let (mut b, offer, pending) = browser(now);
        // One hex digit of the browser's fingerprint changed on the way.
        let at = offer.find("a=fingerprint:sha-256 ").unwrap() + "a=fingerprint:sha-256 ".len();
        let mut forged = offer.clone().into_bytes();
        forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        let (mut peer, answer) = BrowserPeer::accept(&forged, OURS.parse().unwrap(), now).unwrap();
        b.rtc
            .sdp_api()
            .accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap())
            .unwrap();
        let until = now + CONNECT_LIMIT + Duration::from_secs(1);
        let out = run(&mut peer, &mut b, &mut now, until, true);
        assert!(!peer.is_connected());
        assert!(!out.contains(&PeerOutput::Connected));
        assert!(!out.iter().any(|o| matches!(o, PeerOutput::Audio { .. })));
        assert!(
            out.iter().any(|o| matches!(o, PeerOutput::Closed(_))),
            "{out:?}"
        );
    }

    #[test]
    fn an_offer_without_g711_is_refused() {
        let now = Instant::now();
        let mut rtc = RtcConfig::new()
            .set_crypto_provider(crypto())
            .clear_codecs()
            .enable_opus(true, false)
            .build(now);
        let mut change = rtc.sdp_api();
        change.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        let (offer, _) = change.apply().unwrap();
        let r = BrowserPeer::accept(&offer.to_sdp_string(), OURS.parse().unwrap(), now);
        assert!(matches!(r, Err(PeerError::NoAudio)), "{:?}", r.err());
        assert!(matches!(
            BrowserPeer::accept("v=0\r\nnonsense", OURS.parse().unwrap(), now),
            Err(PeerError::Offer(_))
        ));
    }
}
