//! SDES (RFC 4568): the `a=crypto` attributes that carry SRTP master keys inside SDP, read
//! from an offer and written into our answer.
//!
//! The keys travel in the signalling, so they are only as secret as the SIP hop: the
//! caller of [`choose`] must refuse them over cleartext SIP (issue 20). This module only
//! reads and writes the attribute; the SRTP transform itself is the media layer's.
//!
//! [`super::sdp`] applies the [`Policy`] to each offer and answer and puts the agreed
//! [`Keys`] into the negotiated media; `media::srtp` keys the transform with them.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand::RngCore;

/// An SRTP protection profile we can key (RFC 4568 §6.2, RFC 7714 §14.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Suite {
    /// AES-128 in counter mode, HMAC-SHA1 with an 80-bit tag: what every SIP phone offers.
    AesCm128HmacSha1_80,
    /// AES-128-GCM (RFC 7714).
    AeadAes128Gcm,
}

impl Suite {
    /// In our order of preference when an offer has several we take.
    pub const ALL: [Suite; 2] = [Suite::AesCm128HmacSha1_80, Suite::AeadAes128Gcm];

    pub fn name(self) -> &'static str {
        match self {
            Suite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Suite::AeadAes128Gcm => "AEAD_AES_128_GCM",
        }
    }

    fn parse(name: &str) -> Option<Suite> {
        Suite::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Bytes of master key plus master salt in the `inline:` key (16 + 14, or 16 + 12).
    pub fn key_len(self) -> usize {
        match self {
            Suite::AesCm128HmacSha1_80 => 30,
            Suite::AeadAes128Gcm => 28,
        }
    }
}

/// `[media] srtp`: whether calls may, or must, use SRTP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Plain RTP only: an `RTP/SAVP` offer is refused (488).
    Off,
    /// SRTP where the peer offers it over TLS (`RTP/SAVP`, or `RTP/AVP` with `a=crypto`),
    /// plain RTP where it offers that. Operators registered over TLS are offered SRTP as
    /// `RTP/AVP` with `a=crypto` (best effort): a phone without SRTP answers plain RTP.
    #[default]
    Optional,
    /// SRTP on every leg: a plain offer is refused (488), operators are offered `RTP/SAVP`
    /// and must register over TLS to be rung.
    Required,
}

/// What the signalling of one dialog allows: the policy, and whether the hop the keys
/// travel over is TLS (SDES keys in cleartext SIP are as good as published).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Security {
    pub policy: Policy,
    pub signalling_encrypted: bool,
}

/// The agreed SRTP keys of one audio stream: each direction has its own master key
/// (RFC 4568 §6.1).
#[derive(Clone, PartialEq, Eq)]
pub struct Keys {
    pub suite: Suite,
    /// The peer's key ‖ salt: what it sends is decrypted with it.
    pub theirs: Vec<u8>,
    /// Our key ‖ salt: what we send is encrypted with it.
    pub ours: Vec<u8>,
    /// The stream is `RTP/SAVP`; else it is "best-effort" SDES: `RTP/AVP` with `a=crypto`,
    /// which phones that lack SRTP answer with plain RTP. A re-offer keeps the profile.
    pub savp: bool,
}

impl std::fmt::Debug for Keys {
    /// Never the keys: negotiated media is logged.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

impl Keys {
    /// What a re-offer of ours in this stream carries: the same key (our stream goes on)
    /// and profile.
    pub fn reoffer(&self) -> Offered {
        Offered {
            key: self.ours.clone(),
            savp: self.savp,
        }
    }
}

/// SRTP in an offer of ours: our key ‖ salt for [`OFFER_SUITE`], and the profile.
#[derive(Clone, PartialEq, Eq)]
pub struct Offered {
    pub key: Vec<u8>,
    /// `RTP/SAVP`: only an SRTP answer will do. Else `RTP/AVP` with `a=crypto`
    /// (best effort): a plain answer is plain RTP.
    pub savp: bool,
}

impl Offered {
    /// A fresh key for our offer.
    pub fn new(savp: bool) -> Offered {
        Offered {
            key: new_key(OFFER_SUITE),
            savp,
        }
    }
}

impl std::fmt::Debug for Offered {
    /// Never the key: it sits in dialogs, which are logged.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Offered")
            .field("savp", &self.savp)
            .finish_non_exhaustive()
    }
}

/// The tag of the one `a=crypto` line in our own offers.
pub const OFFER_TAG: u32 = 1;
/// The suite of our own offers: the one every SIP phone with SRTP has.
pub const OFFER_SUITE: Suite = Suite::AesCm128HmacSha1_80;

/// One usable `a=crypto` attribute: its tag, suite and master key ‖ salt.
#[derive(Clone, PartialEq, Eq)]
pub struct Crypto {
    pub tag: u32,
    pub suite: Suite,
    /// Master key then master salt, [`Suite::key_len`] bytes.
    pub key: Vec<u8>,
}

impl std::fmt::Debug for Crypto {
    /// Never the key: these end up in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Crypto")
            .field("tag", &self.tag)
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdesError {
    #[error("a=crypto: not `tag suite inline:key`")]
    Syntax,
    #[error("a=crypto: suite {0} is not supported")]
    UnknownSuite(String),
    #[error("a=crypto: the key is not base64")]
    NotBase64,
    #[error("a=crypto: {suite} needs {expected} bytes of key and salt, not {got}")]
    KeyLength {
        suite: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("a=crypto: several keys, or an MKI, are not supported")]
    Mki,
    #[error("a=crypto: session parameters ({0}) are not supported")]
    SessionParams(String),
    #[error("no a=crypto attribute with a supported suite and a valid key")]
    NoneUsable,
}

/// Reads one attribute's value (what follows `a=crypto:`).
///
/// `tag suite inline:KEY[|lifetime][|MKI:length]`; a lifetime is accepted and ignored
/// (calls are far shorter than 2^31 packets), an MKI is refused (phones offer one key), and
/// so are session parameters (`UNENCRYPTED_SRTP` and the like weaken the transform).
pub fn parse(value: &str) -> Result<Crypto, SdesError> {
    let mut fields = value.split_ascii_whitespace();
    let (Some(tag), Some(suite), Some(key_params)) = (fields.next(), fields.next(), fields.next())
    else {
        return Err(SdesError::Syntax);
    };
    if let Some(extra) = fields.next() {
        return Err(SdesError::SessionParams(extra.to_string()));
    }
    let tag: u32 = tag.parse().map_err(|_| SdesError::Syntax)?;
    if tag > 999_999_999 {
        return Err(SdesError::Syntax);
    }
    let suite = Suite::parse(suite).ok_or_else(|| SdesError::UnknownSuite(suite.to_string()))?;
    // Several key-params (`;`-separated) mean several master keys: MKI territory.
    if key_params.contains(';') {
        return Err(SdesError::Mki);
    }
    let inline = key_params
        .strip_prefix("inline:")
        .ok_or(SdesError::Syntax)?;
    let mut parts = inline.split('|');
    let key = parts.next().unwrap_or_default();
    for p in parts {
        if p.contains(':') {
            return Err(SdesError::Mki);
        }
    }
    let key = STANDARD.decode(key).map_err(|_| SdesError::NotBase64)?;
    if key.len() != suite.key_len() {
        return Err(SdesError::KeyLength {
            suite: suite.name(),
            expected: suite.key_len(),
            got: key.len(),
        });
    }
    Ok(Crypto { tag, suite, key })
}

/// The attribute an offer's media section carries that we take: the first one (the
/// offerer's preference, RFC 4568 §7.1.1) that parses with a suite we support. When none
/// does, the error of the first one, so that the 488 says why.
pub fn choose<'a>(offered: impl IntoIterator<Item = &'a str>) -> Result<Crypto, SdesError> {
    let mut first_error = None;
    for value in offered {
        match parse(value) {
            Ok(c) => return Ok(c),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.unwrap_or(SdesError::NoneUsable))
}

/// A fresh master key ‖ salt for `suite`, from the thread's cryptographically secure
/// generator (seeded from the OS, as the API's secrets are): the key we send in our answer
/// (each direction has its own, RFC 4568 §6.1).
pub fn new_key(suite: Suite) -> Vec<u8> {
    let mut key = vec![0u8; suite.key_len()];
    rand::rng().fill_bytes(&mut key);
    key
}

/// An `a=crypto` attribute value: `tag suite inline:KEY` (ours, in an answer to the tag
/// and suite chosen, or in our own offer).
pub fn attribute(tag: u32, suite: Suite, key: &[u8]) -> String {
    format!("{tag} {} inline:{}", suite.name(), STANDARD.encode(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4568 §4's example key (30 bytes).
    const KEY: &str = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";

    #[test]
    fn a_phones_offer_is_read() {
        let c = parse(&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}")).unwrap();
        assert_eq!(c.tag, 1);
        assert_eq!(c.suite, Suite::AesCm128HmacSha1_80);
        assert_eq!(c.key.len(), 30);
        // A lifetime is accepted and ignored.
        let c = parse(&format!("7 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^20")).unwrap();
        assert_eq!(c.tag, 7);
        // GCM takes 28 bytes.
        let gcm = STANDARD.encode([7u8; 28]);
        let c = parse(&format!("2 AEAD_AES_128_GCM inline:{gcm}")).unwrap();
        assert_eq!(c.suite, Suite::AeadAes128Gcm);
    }

    #[test]
    fn bad_attributes_say_what_is_wrong() {
        let cases = [
            ("1 AES_CM_128_HMAC_SHA1_80".to_string(), SdesError::Syntax),
            (
                format!("x AES_CM_128_HMAC_SHA1_80 inline:{KEY}"),
                SdesError::Syntax,
            ),
            (
                format!("1 AES_CM_128_HMAC_SHA1_80 key:{KEY}"),
                SdesError::Syntax,
            ),
            (
                format!("1 F8_128_HMAC_SHA1_80 inline:{KEY}"),
                SdesError::UnknownSuite("F8_128_HMAC_SHA1_80".into()),
            ),
            (
                "1 AES_CM_128_HMAC_SHA1_80 inline:not*base64".to_string(),
                SdesError::NotBase64,
            ),
            (
                format!(
                    "1 AES_CM_128_HMAC_SHA1_80 inline:{}",
                    STANDARD.encode([1u8; 29])
                ),
                SdesError::KeyLength {
                    suite: "AES_CM_128_HMAC_SHA1_80",
                    expected: 30,
                    got: 29,
                },
            ),
            (
                format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^20|1:4"),
                SdesError::Mki,
            ),
            (
                format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY};inline:{KEY}"),
                SdesError::Mki,
            ),
            (
                format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY} UNENCRYPTED_SRTP"),
                SdesError::SessionParams("UNENCRYPTED_SRTP".into()),
            ),
        ];
        for (value, want) in cases {
            assert_eq!(parse(&value).unwrap_err(), want, "{value}");
        }
    }

    #[test]
    fn the_first_usable_offer_is_taken_and_answered_with_a_key_of_our_own() {
        let offered = [
            format!("1 AES_256_CM_HMAC_SHA1_80 inline:{KEY}"),
            format!("2 AES_CM_128_HMAC_SHA1_80 inline:{KEY}"),
            format!("3 AEAD_AES_128_GCM inline:{}", STANDARD.encode([7u8; 28])),
        ];
        let chosen = choose(offered.iter().map(String::as_str)).unwrap();
        assert_eq!((chosen.tag, chosen.suite), (2, Suite::AesCm128HmacSha1_80));
        let ours = new_key(chosen.suite);
        assert_eq!(ours.len(), 30);
        assert_ne!(ours, chosen.key);
        assert_ne!(ours, new_key(chosen.suite), "fresh each time");
        let value = attribute(chosen.tag, chosen.suite, &ours);
        let back = parse(&value).unwrap();
        assert_eq!((back.tag, back.suite, back.key), (2, chosen.suite, ours));
        // None usable: the first one's reason.
        let bad = [
            "1 NULL_HMAC_SHA1_80 inline:x",
            "2 AES_CM_128_HMAC_SHA1_80 inline:AAAA",
        ];
        assert_eq!(
            choose(bad),
            Err(SdesError::UnknownSuite("NULL_HMAC_SHA1_80".into()))
        );
        assert_eq!(choose([]), Err(SdesError::NoneUsable));
    }

    #[test]
    fn the_key_never_shows_in_debug_output() {
        let c = parse(&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}")).unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains(&format!("{:?}", c.key)), "{shown}");
        assert!(!shown.contains(KEY), "{shown}");
    }
}
