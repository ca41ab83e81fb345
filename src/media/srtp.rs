//! SRTP (RFC 3711) on one leg: the packets we send are encrypted and authenticated with
//! our key, the packets we receive are checked and decrypted with the peer's, both as SDES
//! agreed them ([`Keys`]). The transform is `webrtc-srtp`'s (the webrtc-rs project), which
//! also keeps the rollover counters and the replay window (RFC 3711 §3.3.1–3.3.2).
//!
//! Datagrams are transformed in the caller's buffer: the crate hands back a new buffer per
//! packet, which is copied into place, so the session keeps its fixed buffers. That is one
//! allocation per SRTP packet, which plain RTP does not have (`tests/media_no_alloc.rs`).
//!
//! The crate keeps state for every SSRC it is shown, before it checks the packet, so a
//! flood of forged packets with random SSRCs would grow it without bound. Packets with an
//! SSRC that has never authenticated are therefore let through to the check at most
//! [`NEW_SSRC_PER_SECOND`] times a second.

use crate::sip::sdes::{Keys, Suite};
use std::time::{Duration, Instant};
use webrtc_srtp::context::Context;
use webrtc_srtp::option::{srtcp_replay_protection, srtp_replay_protection};
use webrtc_srtp::protection_profile::ProtectionProfile;

/// Packets of the replay window (RFC 3711 §3.3.2 asks for at least 64).
const REPLAY_WINDOW: usize = 128;
/// How many packets with a not yet authenticated SSRC are checked per second.
pub const NEW_SSRC_PER_SECOND: u32 = 10;
/// SSRCs remembered as authenticated (a phone uses one; a restart or a re-INVITE adds one).
const KNOWN_SSRCS: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum SrtpError {
    #[error("SRTP key: {0}")]
    Key(String),
}

/// Why a received packet was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The authentication tag did not match: forged, damaged, or keyed otherwise.
    Authentication,
    /// Seen already, or older than the replay window.
    Replay,
    /// An SSRC that never authenticated, over the rate at which such packets are checked.
    Throttled,
    /// Not an RTP packet at all, or too short for its tag.
    Malformed,
    /// SRTCP multiplexed on the RTP port (RFC 5761 §4: a second byte of 192–223), which a
    /// leg neither reads nor sends, as it reads no plain RTCP either.
    Rtcp,
}

/// One leg's two SRTP contexts. See the module documentation.
pub struct SrtpLeg {
    keys: Keys,
    inbound: Context,
    outbound: Context,
    known: [Option<u32>; KNOWN_SSRCS],
    next_known: usize,
    window: (Instant, u32),
}

impl std::fmt::Debug for SrtpLeg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtpLeg")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

fn profile(suite: Suite) -> ProtectionProfile {
    match suite {
        Suite::AesCm128HmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
        Suite::AeadAes128Gcm => ProtectionProfile::AeadAes128Gcm,
    }
}

/// A context for one direction, keyed by `key_salt` (master key ‖ master salt).
fn context(suite: Suite, key_salt: &[u8], replay: bool) -> Result<Context, SrtpError> {
    let profile = profile(suite);
    let key_len = profile.key_len();
    if key_salt.len() != key_len + profile.salt_len() {
        return Err(SrtpError::Key(format!(
            "{} needs {} bytes of key and salt, not {}",
            suite.name(),
            key_len + profile.salt_len(),
            key_salt.len()
        )));
    }
    let (key, salt) = key_salt.split_at(key_len);
    let (rtp, rtcp) = if replay {
        (
            Some(srtp_replay_protection(REPLAY_WINDOW)),
            Some(srtcp_replay_protection(REPLAY_WINDOW)),
        )
    } else {
        (None, None)
    };
    Context::new(key, salt, profile, rtp, rtcp).map_err(|e| SrtpError::Key(e.to_string()))
}

impl SrtpLeg {
    pub fn new(keys: &Keys, now: Instant) -> Result<SrtpLeg, SrtpError> {
        Ok(SrtpLeg {
            inbound: context(keys.suite, &keys.theirs, true)?,
            outbound: context(keys.suite, &keys.ours, false)?,
            keys: keys.clone(),
            known: [None; KNOWN_SSRCS],
            next_known: 0,
            window: (now, 0),
        })
    }

    /// New keys from a re-INVITE. A direction whose key is unchanged keeps its context,
    /// and so its rollover counter: restarting it at zero under the same key could
    /// repeat a keystream.
    pub fn rekey(&mut self, keys: &Keys) -> Result<(), SrtpError> {
        if keys.suite != self.keys.suite || keys.theirs != self.keys.theirs {
            self.inbound = context(keys.suite, &keys.theirs, true)?;
            self.known = [None; KNOWN_SSRCS];
        }
        if keys.suite != self.keys.suite || keys.ours != self.keys.ours {
            self.outbound = context(keys.suite, &keys.ours, false)?;
        }
        self.keys = keys.clone();
        Ok(())
    }

    /// Checks and decrypts the SRTP packet `buf[..len]` in place; returns the length of
    /// the RTP packet it held.
    pub fn unprotect(
        &mut self,
        buf: &mut [u8],
        len: usize,
        now: Instant,
    ) -> Result<usize, Refused> {
        let packet = buf.get(..len).ok_or(Refused::Malformed)?;
        if packet.len() < 12 || packet[0] >> 6 != 2 {
            return Err(Refused::Malformed);
        }
        if (192..=223).contains(&packet[1]) {
            return Err(Refused::Rtcp);
        }
        let ssrc = u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
        let known = self.known.contains(&Some(ssrc));
        if !known {
            if now.saturating_duration_since(self.window.0) >= Duration::from_secs(1) {
                self.window = (now, 0);
            }
            if self.window.1 >= NEW_SSRC_PER_SECOND {
                return Err(Refused::Throttled);
            }
            self.window.1 += 1;
        }
        let clear = self.inbound.decrypt_rtp(packet).map_err(|e| match e {
            webrtc_srtp::Error::SrtpSsrcDuplicated(..) => Refused::Replay,
            webrtc_srtp::Error::ErrTooShortRtp
            | webrtc_srtp::Error::SrtpTooSmall(..)
            | webrtc_srtp::Error::Util(_) => Refused::Malformed,
            _ => Refused::Authentication,
        })?;
        if !known {
            self.known[self.next_known] = Some(ssrc);
            self.next_known = (self.next_known + 1) % KNOWN_SSRCS;
        }
        let n = clear.len().min(buf.len());
        buf[..n].copy_from_slice(&clear[..n]);
        Ok(n)
    }

    /// Encrypts and authenticates the RTP packet `buf[..len]` in place; returns the SRTP
    /// packet's length, or `None` when it does not fit `buf` with its tag (never for our
    /// packets, which are far below the datagram buffers).
    pub fn protect(&mut self, buf: &mut [u8], len: usize) -> Option<usize> {
        let sealed = self.outbound.encrypt_rtp(buf.get(..len)?).ok()?;
        let out = buf.get_mut(..sealed.len())?;
        out.copy_from_slice(&sealed);
        Some(sealed.len())
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::rtp::RtpSender;
    use crate::sip::sdes::new_key;

    fn keys(suite: Suite) -> Keys {
        Keys {
            suite,
            theirs: new_key(suite),
            ours: new_key(suite),
            savp: true,
        }
    }

    /// The far end's view of the same keys.
    fn mirrored(k: &Keys) -> Keys {
        Keys {
            suite: k.suite,
            theirs: k.ours.clone(),
            ours: k.theirs.clone(),
            savp: k.savp,
        }
    }

    fn rtp(sender: &mut RtpSender, payload: &[u8], buf: &mut [u8; 512]) -> usize {
        sender.advance(160);
        sender.write(0, false, payload, buf).unwrap()
    }

    #[test]
    fn both_suites_round_trip_and_the_payload_is_hidden() {
        for suite in [Suite::AesCm128HmacSha1_80, Suite::AeadAes128Gcm] {
            let t0 = Instant::now();
            let k = keys(suite);
            let mut us = SrtpLeg::new(&k, t0).unwrap();
            let mut phone = SrtpLeg::new(&mirrored(&k), t0).unwrap();
            let mut sender = RtpSender::with_state(7, 100, 1000);
            let payload = [0x55u8; 160];
            let mut buf = [0u8; 512];
            let n = rtp(&mut sender, &payload, &mut buf);
            let clear = buf[..n].to_vec();
            let sealed = us.protect(&mut buf, n).unwrap();
            assert_eq!(
                sealed,
                n + if suite == Suite::AeadAes128Gcm {
                    16
                } else {
                    10
                }
            );
            assert_eq!(buf[..12], clear[..12], "the header stays readable");
            assert_ne!(
                buf[12..n],
                clear[12..],
                "{suite:?}: the payload is encrypted"
            );
            let back = phone.unprotect(&mut buf, sealed, t0).unwrap();
            assert_eq!(buf[..back], clear[..], "{suite:?}");
        }
    }

    #[test]
    fn a_replayed_or_tampered_packet_is_refused() {
        let t0 = Instant::now();
        let k = keys(Suite::AesCm128HmacSha1_80);
        let mut phone = SrtpLeg::new(&mirrored(&k), t0).unwrap();
        let mut us = SrtpLeg::new(&k, t0).unwrap();
        let mut sender = RtpSender::with_state(9, 1, 0);
        let mut buf = [0u8; 512];
        let n = rtp(&mut sender, &[1; 160], &mut buf);
        let len = phone.protect(&mut buf, n).unwrap();
        let sealed = buf[..len].to_vec();
        let mut copy = [0u8; 512];
        copy[..len].copy_from_slice(&sealed);
        assert!(us.unprotect(&mut copy, len, t0).is_ok());
        copy[..len].copy_from_slice(&sealed);
        assert_eq!(us.unprotect(&mut copy, len, t0), Err(Refused::Replay));
        // One flipped bit in the payload of the next packet.
        let n = rtp(&mut sender, &[1; 160], &mut buf);
        let len = phone.protect(&mut buf, n).unwrap();
        buf[40] ^= 1;
        assert_eq!(
            us.unprotect(&mut buf, len, t0),
            Err(Refused::Authentication)
        );
        // A stranger's key.
        let mut stranger = SrtpLeg::new(&keys(Suite::AesCm128HmacSha1_80), t0).unwrap();
        let n = rtp(&mut sender, &[1; 160], &mut buf);
        let len = stranger.protect(&mut buf, n).unwrap();
        assert_eq!(
            us.unprotect(&mut buf, len, t0),
            Err(Refused::Authentication)
        );
        assert_eq!(us.unprotect(&mut buf, 5, t0), Err(Refused::Malformed));
        // A multiplexed SRTCP receiver report: set aside, not taken for forged RTP.
        let mut rr = [0u8; 40];
        rr[..4].copy_from_slice(&[0x80, 201, 0, 7]);
        assert_eq!(us.unprotect(&mut rr, 40, t0), Err(Refused::Rtcp));
    }

    #[test]
    fn the_rollover_counter_carries_the_stream_past_sequence_65535() {
        let t0 = Instant::now();
        let k = keys(Suite::AesCm128HmacSha1_80);
        let mut us = SrtpLeg::new(&k, t0).unwrap();
        let mut phone = SrtpLeg::new(&mirrored(&k), t0).unwrap();
        let mut sender = RtpSender::with_state(3, 65_530, 0);
        let mut buf = [0u8; 512];
        for i in 0..12u8 {
            let n = rtp(&mut sender, &[i; 160], &mut buf);
            let len = phone.protect(&mut buf, n).unwrap();
            let back = us
                .unprotect(&mut buf, len, t0)
                .unwrap_or_else(|e| panic!("packet {i}: {e:?}"));
            assert_eq!(buf[12..back], [i; 160]);
        }
        assert!(sender.sequence() < 10, "the sequence wrapped");
    }

    #[test]
    fn forged_packets_with_new_ssrcs_are_checked_at_a_bounded_rate() {
        let t0 = Instant::now();
        let k = keys(Suite::AesCm128HmacSha1_80);
        let mut us = SrtpLeg::new(&k, t0).unwrap();
        let mut phone = SrtpLeg::new(&mirrored(&k), t0).unwrap();
        let mut real = RtpSender::with_state(1, 1, 0);
        let mut buf = [0u8; 512];
        let n = rtp(&mut real, &[2; 160], &mut buf);
        let len = phone.protect(&mut buf, n).unwrap();
        us.unprotect(&mut buf, len, t0).unwrap();
        // A second later (a fresh allowance), a flood of forgeries with new SSRCs.
        let t1 = t0 + Duration::from_secs(1);
        let mut outcomes = Vec::new();
        for ssrc in 1000..1100u32 {
            let mut forged = RtpSender::with_state(ssrc, 1, 0);
            let n = rtp(&mut forged, &[0; 160], &mut buf);
            outcomes.push(us.unprotect(&mut buf, n + 10, t1).unwrap_err());
        }
        let checked = outcomes
            .iter()
            .filter(|r| **r == Refused::Authentication)
            .count();
        assert_eq!(checked, NEW_SSRC_PER_SECOND as usize);
        assert!(outcomes[NEW_SSRC_PER_SECOND as usize..]
            .iter()
            .all(|r| *r == Refused::Throttled));
        // The real stream, whose SSRC authenticated, is never throttled.
        let n = rtp(&mut real, &[3; 160], &mut buf);
        let len = phone.protect(&mut buf, n).unwrap();
        assert!(us.unprotect(&mut buf, len, t1).is_ok());
        // A second later new SSRCs are checked again.
        let mut forged = RtpSender::with_state(5000, 1, 0);
        let n = rtp(&mut forged, &[0; 160], &mut buf);
        assert_eq!(
            us.unprotect(&mut buf, n + 10, t1 + Duration::from_secs(1)),
            Err(Refused::Authentication)
        );
    }

    #[test]
    fn rekeying_keeps_the_direction_whose_key_did_not_change() {
        let t0 = Instant::now();
        let k = keys(Suite::AesCm128HmacSha1_80);
        let mut us = SrtpLeg::new(&k, t0).unwrap();
        let mut phone = SrtpLeg::new(&mirrored(&k), t0).unwrap();
        let mut ours = RtpSender::with_state(1, 1, 0);
        let mut buf = [0u8; 512];
        let n = rtp(&mut ours, &[4; 160], &mut buf);
        let len = us.protect(&mut buf, n).unwrap();
        phone.unprotect(&mut buf, len, t0).unwrap();
        // The phone re-keys its direction; ours stays.
        let rekeyed = Keys {
            theirs: new_key(k.suite),
            ..k.clone()
        };
        us.rekey(&rekeyed).unwrap();
        let mut phone = SrtpLeg::new(&mirrored(&rekeyed), t0).unwrap();
        let mut theirs = RtpSender::with_state(2, 1, 0);
        let n = rtp(&mut theirs, &[5; 160], &mut buf);
        let len = phone.protect(&mut buf, n).unwrap();
        assert!(us.unprotect(&mut buf, len, t0).is_ok(), "their new key");
        assert_eq!(us.keys(), &rekeyed);
        assert!(SrtpLeg::new(
            &Keys {
                ours: vec![0; 5],
                ..k
            },
            t0
        )
        .is_err());
    }
}
