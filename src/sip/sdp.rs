//! SDP offer/answer (RFC 3264) for the Hotline media plane: G.711 audio
//! (PCMU/PCMA, the static payload types 0 and 8 of RFC 3551 §6) plus RFC 4733
//! `telephone-event` for DTMF, which the IVR and the operator legs rely on.
//!
//! The peer's SDP is parsed with Mozilla's `webrtc-sdp`; ours is written by hand
//! because we only ever produce one small, fixed shape of description.
//!
//! `webrtc-sdp` is a WebRTC parser and is stricter than the SIP world in places:
//! it fails a whole description over `e=`/`p=`/`u=`/`r=`/`z=`/`k=` fields or an
//! attribute it cannot read (ICE candidates, odd `a=rtcp`), and it silently drops
//! an `m=` line whose transport it does not know (`m=image 0 udptl t38`), which
//! would shift every following stream and glue that stream's attributes onto the
//! previous one. So [`prepare`] first cuts the text into streams and hands the
//! parser only what this module interprets: `v= o= s= c= t=`, the RTP audio
//! sections, and their `rtpmap`, `ptime` and direction attributes. Every other
//! stream is still answered (rejected) from the `m=` tokens we recorded.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use webrtc_sdp::address::ExplicitlyTypedAddress;
use webrtc_sdp::attribute_type::{SdpAttribute, SdpAttributeRtpmap};
use webrtc_sdp::media_type::{SdpFormatList, SdpMedia};
use webrtc_sdp::SdpSession;

use super::sdes::{self, Keys, Policy, SdesError, Security};

/// Payload type we use for telephone-event in our own offers (the de-facto
/// default; RFC 4733 §7.1.1 leaves it dynamic).
pub const TELEPHONE_EVENT_PT: u8 = 101;
/// Packetisation time we ask for (RFC 4566 §6 `a=ptime`); 20 ms is the G.711 norm.
pub const PTIME_MS: u32 = 20;
/// Largest SDP body we parse. Real SIP phones send well under 4 KiB; the cap keeps
/// the parser (quadratic in its line count) cheap on hostile input.
pub const MAX_SDP_LEN: usize = 16 * 1024;
/// RFC 4733 events we support: DTMF 0-9, *, #, A-D (0-15) and flash (16).
const DTMF_EVENTS: &str = "0-16";

/// An audio codec we can send and receive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    Pcmu,
    Pcma,
}

impl Codec {
    /// In our order of preference for offers (PCMU first, as most phones do).
    pub const ALL: [Codec; 2] = [Codec::Pcmu, Codec::Pcma];

    /// Static payload type from RFC 3551 §6, table 4.
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    /// Encoding name as registered for `a=rtpmap` (RFC 3551 §4.5.14).
    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    /// Static payload types need no `a=rtpmap` (RFC 3264 §5.1), so 0 and 8 count alone.
    pub fn from_static(pt: u8) -> Option<Codec> {
        Codec::ALL.into_iter().find(|c| c.payload_type() == pt)
    }

    /// Encoding names are case-insensitive (RFC 4855 §3); G.711 is 8 kHz mono.
    fn from_rtpmap(map: &SdpAttributeRtpmap) -> Option<Codec> {
        let mono = matches!(map.channels, None | Some(1));
        Codec::ALL.into_iter().find(|c| {
            map.codec_name.eq_ignore_ascii_case(c.name()) && map.frequency == 8000 && mono
        })
    }
}

/// Media direction of a stream (RFC 3264 §5.1, §6.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    /// The direction an answerer uses for a stream offered with `self`
    /// (RFC 3264 §6.1: sendonly is answered recvonly and vice versa).
    pub fn reverse(self) -> Direction {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            other => other,
        }
    }

    /// The SDP attribute name (`a=sendrecv` etc.).
    pub fn attribute(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// The peer's direction once it has said it cannot receive (RFC 3264 §8.4:
    /// a `c=` address of 0.0.0.0 is the RFC 2543 way of putting a call on hold).
    fn without_recv(self) -> Direction {
        match self {
            Direction::SendRecv => Direction::SendOnly,
            Direction::RecvOnly => Direction::Inactive,
            other => other,
        }
    }

    fn from_attributes(attrs: &[SdpAttribute]) -> Option<Direction> {
        attrs.iter().find_map(|a| match a {
            SdpAttribute::Sendrecv => Some(Direction::SendRecv),
            SdpAttribute::Sendonly => Some(Direction::SendOnly),
            SdpAttribute::Recvonly => Some(Direction::RecvOnly),
            SdpAttribute::Inactive => Some(Direction::Inactive),
            _ => None,
        })
    }
}

/// Our side of the media: where we receive RTP, and the `o=` identifiers
/// (RFC 4566 §5.2; bump `session_version` for every changed re-offer, RFC 3264 §8).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalMedia {
    pub address: IpAddr,
    pub port: u16,
    pub session_id: u64,
    pub session_version: u64,
}

/// What was agreed for the (first usable) audio stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    /// Common codecs in the offerer's order, with the offerer's payload numbers
    /// (RFC 3264 §6.1: both sides use the offerer's numbering). Never empty.
    pub codecs: Vec<(u8, Codec)>,
    /// Payload type of telephone-event/8000 if both sides support it.
    pub telephone_event: Option<u8>,
    /// Where to send RTP (media-level `c=` overrides session-level, RFC 4566 §5.7);
    /// `None` when the peer gave 0.0.0.0 / `::` (old-style hold) or port 0.
    pub remote_rtp: Option<SocketAddr>,
    /// The direction WE use for this stream.
    pub direction: Direction,
    /// The peer's `a=ptime` (how it wants to receive packets), if it gave one.
    pub ptime: Option<u32>,
    /// SRTP keys when SDES keyed the stream (RFC 4568: `RTP/SAVP`, or best-effort
    /// `RTP/AVP` with `a=crypto`); `None` is plain RTP.
    pub srtp: Option<Keys>,
}

/// Our answer text plus what it agreed to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub sdp: String,
    pub negotiated: Negotiated,
}

/// Why a description could not be used. The SIP layer answers an offer that
/// fails with any of these with 488 Not Acceptable Here (RFC 3261 §13.3.1.1).
#[derive(Debug, thiserror::Error)]
pub enum SdpError {
    #[error("malformed SDP: {0}")]
    Parse(String),
    #[error("SDP body is not UTF-8")]
    NotUtf8,
    #[error("SDP body of {0} bytes exceeds the {MAX_SDP_LEN}-byte limit")]
    TooLarge(usize),
    #[error("no active audio stream in SDP")]
    NoAudio,
    #[error("no common audio codec (we support PCMU and PCMA)")]
    NoCommonCodec,
    #[error("audio offered only over unsupported transport {0} (we do plain RTP/AVP)")]
    UnsupportedProfile(String),
    #[error("connection address {0:?} is a host name; only IP addresses are supported")]
    UnsupportedAddress(String),
    /// Multicast or broadcast: one call's RTP would flood a whole group or network.
    #[error("connection address {0} is not a unicast address")]
    NotUnicast(IpAddr),
    /// SRTP keys offered in cleartext SIP: anyone on the path has read them.
    #[error("SRTP keys (a=crypto) are refused over cleartext SIP; use TLS (sips:)")]
    SdesOverCleartext,
    #[error("{0}")]
    Crypto(#[from] SdesError),
    /// `[media] srtp = "required"` and the peer offered or answered plain RTP.
    #[error("SRTP is required here; plain RTP/AVP is refused")]
    SrtpRequired,
}

/// One `m=` line of the peer's SDP as written, so every stream can be answered
/// even if the parser never saw it (RFC 3264 §6: one answer line per offer line).
#[derive(Debug)]
struct RawStream {
    media: String,
    proto: String,
    /// First format, echoed in a rejected stream (RFC 4566 needs at least one).
    fmt: String,
    /// Index into `SdpSession::media` if the section was handed to the parser.
    parsed: Option<usize>,
    /// The values of the section's `a=crypto` attributes (SDES), in order.
    crypto: Vec<String>,
}

impl RawStream {
    fn is_audio(&self) -> bool {
        self.media.eq_ignore_ascii_case("audio")
    }
}

/// Transports we can answer, and whether each is SRTP: plain RTP, and SRTP keyed by SDES
/// (`RTP/SAVP`); the F variants (RFC 4585) add optional feedback we simply never send.
fn rtp_profile(proto: &str) -> Option<bool> {
    let is = |p: &str| proto.eq_ignore_ascii_case(p);
    if is("RTP/AVP") || is("RTP/AVPF") {
        Some(false)
    } else if is("RTP/SAVP") || is("RTP/SAVPF") {
        Some(true)
    } else {
        None
    }
}

/// Split the peer's SDP into streams and build the reduced text for `webrtc-sdp`
/// (see the module docs for why). Malformed `m=` lines are passed through so the
/// parser reports them.
fn prepare(text: &str) -> (String, Vec<RawStream>) {
    let mut out = String::with_capacity(text.len());
    let mut streams: Vec<RawStream> = Vec::new();
    let (mut in_session, mut keep, mut has_timing, mut fed) = (true, true, false, 0);
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (kind, value) = match line.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), v.trim()),
            None => (String::new(), line),
        };
        let emit: Option<Cow<'_, str>> = match kind.as_str() {
            "m" => {
                if in_session && !has_timing {
                    // RFC 4566 makes t= mandatory but SIP ignores it; don't fail over it.
                    out.push_str("t=0 0\r\n");
                }
                in_session = false;
                let tokens: Vec<&str> = value.split_whitespace().collect();
                let (media, proto) = (tokens.first(), tokens.get(2));
                let audio = media.is_some_and(|m| m.eq_ignore_ascii_case("audio"));
                keep =
                    proto.is_none() || (audio && proto.is_some_and(|p| rtp_profile(p).is_some()));
                streams.push(RawStream {
                    media: media.unwrap_or(&"").to_string(),
                    proto: proto.unwrap_or(&"").to_string(),
                    fmt: tokens.get(3).unwrap_or(&"0").to_string(),
                    parsed: keep.then_some(fed),
                    crypto: Vec::new(),
                });
                fed += usize::from(keep);
                Some(Cow::Borrowed(line))
            }
            // We never use the offerer's origin, and phones fill it creatively
            // (session ids over 64 bits, host names, mismatched IP4/IP6).
            "o" if in_session => Some(Cow::Borrowed("o=- 0 0 IN IP4 0.0.0.0")),
            "t" => {
                has_timing = true;
                Some(Cow::Borrowed(line))
            }
            "a" => {
                let (name, arg) = value.split_once(':').unwrap_or((value, ""));
                let name = name.trim().to_ascii_lowercase();
                if name == "crypto" {
                    // Read by `sdes`, never by the parser; bounded like the body itself.
                    if let Some(stream) = streams.last_mut().filter(|s| s.crypto.len() < 16) {
                        stream.crypto.push(arg.trim().to_string());
                    }
                }
                match name.as_str() {
                    "sendrecv" | "sendonly" | "recvonly" | "inactive" => Some(Cow::Borrowed(line)),
                    "rtpmap" if !in_session => Some(Cow::Borrowed(line)),
                    // RFC 8866 §6.4 allows a fractional ptime; webrtc-sdp wants an integer.
                    "ptime" if !in_session => arg
                        .trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|ms| (1.0..=1000.0).contains(ms))
                        .map(|ms| Cow::Owned(format!("a=ptime:{}", ms.round() as u32))),
                    _ => None,
                }
                // An attribute we cannot read is treated as absent (RFC 4566 §5.13
                // lets receivers ignore what they do not understand).
                .filter(|l| webrtc_sdp::parse_sdp_line(l, 0).is_ok())
            }
            "b" | "i" | "e" | "p" | "u" | "r" | "z" | "k" => None,
            _ => Some(Cow::Borrowed(line)),
        };
        if let Some(l) = emit.filter(|_| keep) {
            out.push_str(&l);
            out.push_str("\r\n");
        }
    }
    if in_session && !has_timing {
        out.push_str("t=0 0\r\n");
    }
    (out, streams)
}

/// Decode, bound and parse a peer's SDP (`fail_on_warning = false`: unknown
/// attributes are ignored, as RFC 4566 §5.13 requires).
fn parse(body: &[u8]) -> Result<(SdpSession, Vec<RawStream>), SdpError> {
    if body.len() > MAX_SDP_LEN {
        return Err(SdpError::TooLarge(body.len()));
    }
    let text = std::str::from_utf8(body).map_err(|_| SdpError::NotUtf8)?;
    if text.trim().is_empty() {
        return Err(SdpError::Parse("empty SDP body".into()));
    }
    let (reduced, streams) = prepare(text);
    let session =
        webrtc_sdp::parse_sdp(&reduced, false).map_err(|e| SdpError::Parse(e.to_string()))?;
    if streams.iter().filter(|s| s.parsed.is_some()).count() != session.media.len() {
        return Err(SdpError::Parse("m= lines do not match parsed media".into()));
    }
    Ok((session, streams))
}

/// Supported codecs and telephone-event in the order of the `m=` line.
fn codecs_of(media: &SdpMedia) -> (Vec<(u8, Codec)>, Option<u8>) {
    let formats: &[u32] = match media.get_formats() {
        SdpFormatList::Integers(f) => f,
        _ => &[],
    };
    let (mut codecs, mut te) = (Vec::new(), None);
    for pt in formats.iter().filter_map(|&f| u8::try_from(f).ok()) {
        let rtpmap = media.get_attributes().iter().find_map(|a| match a {
            SdpAttribute::Rtpmap(m) if m.payload_type == pt => Some(m),
            _ => None,
        });
        let codec = match rtpmap {
            Some(m) if m.codec_name.eq_ignore_ascii_case("telephone-event") => {
                if m.frequency == 8000 && te.is_none() {
                    te = Some(pt);
                }
                None
            }
            Some(m) => Codec::from_rtpmap(m),
            None => Codec::from_static(pt),
        };
        if let Some(c) = codec.filter(|_| !codecs.iter().any(|&(p, _)| p == pt)) {
            codecs.push((pt, c));
        }
    }
    (codecs, te)
}

/// What the peer's description of `media` means for us: RFC 3264 §6.1 for an
/// offer, §7 for an answer (the rules are symmetric).
fn negotiate(session: &SdpSession, media: &SdpMedia) -> Result<Negotiated, SdpError> {
    let (codecs, telephone_event) = codecs_of(media);
    if codecs.is_empty() {
        return Err(SdpError::NoCommonCodec);
    }
    let conn = media
        .get_connection()
        .as_ref()
        .or(session.get_connection().as_ref())
        .ok_or_else(|| SdpError::Parse("no c= line for the audio stream".into()))?;
    let ip = match &conn.address {
        ExplicitlyTypedAddress::Ip(ip) => *ip,
        ExplicitlyTypedAddress::Fqdn { domain, .. } => {
            return Err(SdpError::UnsupportedAddress(domain.clone()))
        }
    };
    if !is_unicast(ip) {
        return Err(SdpError::NotUnicast(ip));
    }
    // RFC 4566 §6: a media-level direction attribute overrides the session-level one;
    // sendrecv is the default.
    let mut peer = Direction::from_attributes(media.get_attributes())
        .or_else(|| Direction::from_attributes(&session.attribute))
        .unwrap_or(Direction::SendRecv);
    let port = u16::try_from(media.get_port()).unwrap_or(0);
    let remote_rtp = if ip.is_unspecified() {
        peer = peer.without_recv();
        None
    } else {
        (port != 0).then(|| SocketAddr::new(ip, port))
    };
    let ptime = media.get_attributes().iter().find_map(|a| match a {
        SdpAttribute::Ptime(p) => u32::try_from(*p).ok(),
        _ => None,
    });
    Ok(Negotiated {
        codecs,
        telephone_event,
        remote_rtp,
        direction: peer.reverse(),
        ptime,
        srtp: None,
    })
}

/// Whether RTP may be sent to `ip`: not multicast, not the IPv4 limited broadcast. The
/// unspecified address (hold, RFC 3264 §8.4) counts as unicast; it is never sent to.
fn is_unicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !v4.is_multicast() && !v4.is_broadcast(),
        IpAddr::V6(v6) => !v6.is_multicast(),
    }
}

/// `v=` through `t=` of our descriptions (RFC 4566 §5).
fn session_header(local: &LocalMedia) -> String {
    let ip = if local.address.is_ipv4() {
        "IP4"
    } else {
        "IP6"
    };
    let addr = local.address;
    format!(
        "v=0\r\no=hotline {} {} IN {ip} {addr}\r\ns=Hotline\r\nc=IN {ip} {addr}\r\nt=0 0\r\n",
        local.session_id, local.session_version
    )
}

/// An active audio section with one `a=rtpmap` per format (static ones too, which
/// RFC 3264 §5.1 recommends), `a=fmtp` for the DTMF events we handle, our ptime,
/// an explicit direction and, for SRTP, our `a=crypto`.
fn write_audio(
    out: &mut String,
    port: u16,
    proto: &str,
    codecs: &[(u8, Codec)],
    te: Option<u8>,
    dir: Direction,
    crypto: Option<&str>,
) {
    let mut fmts: Vec<String> = codecs.iter().map(|(pt, _)| pt.to_string()).collect();
    fmts.extend(te.map(|pt| pt.to_string()));
    let _ = write!(out, "m=audio {port} {proto} {}\r\n", fmts.join(" "));
    for (pt, codec) in codecs {
        let _ = write!(out, "a=rtpmap:{pt} {}/8000\r\n", codec.name());
    }
    if let Some(pt) = te {
        let _ = write!(out, "a=rtpmap:{pt} telephone-event/8000\r\n");
        let _ = write!(out, "a=fmtp:{pt} {DTMF_EVENTS}\r\n");
    }
    let _ = write!(out, "a=ptime:{PTIME_MS}\r\na={}\r\n", dir.attribute());
    if let Some(c) = crypto {
        let _ = write!(out, "a=crypto:{c}\r\n");
    }
}

/// Answer a peer's offer (RFC 3264 §6) with plain RTP only (`[media] srtp = "off"`).
pub fn answer(offer: &[u8], local: &LocalMedia) -> Result<Answer, SdpError> {
    let plain = Security {
        policy: Policy::Off,
        signalling_encrypted: false,
    };
    answer_with(offer, local, plain, None)
}

/// Answer a peer's offer (RFC 3264 §6). The first active audio stream we can take is
/// accepted on `local.port`; every other stream is rejected with port 0 in the same
/// position, keeping its media type, transport and one format (RFC 3264 §6: the answer
/// has exactly as many `m=` lines).
///
/// Which streams we can take is `security`'s: `RTP/SAVP` with a usable `a=crypto` when the
/// policy allows SRTP and the signalling is TLS; `RTP/AVP` with `a=crypto` (best effort)
/// as SRTP in the same case, else as plain RTP unless SRTP is required; plain `RTP/AVP`
/// unless SRTP is required. Our answer's key is `previous.ours` when the stream keeps its
/// suite (a re-INVITE: our outgoing stream goes on under the same key), else a fresh one.
pub fn answer_with(
    offer: &[u8],
    local: &LocalMedia,
    security: Security,
    previous: Option<&Keys>,
) -> Result<Answer, SdpError> {
    let (session, streams) = parse(offer)?;
    let (mut accepted, mut no_codec, mut bad_profile) = (None, false, None);
    let mut refused: Option<SdpError> = None;
    for (i, stream) in streams.iter().enumerate() {
        if accepted.is_some() || !stream.is_audio() {
            continue;
        }
        let Some(media) = stream.parsed.and_then(|p| session.media.get(p)) else {
            bad_profile.get_or_insert(stream.proto.clone());
            continue;
        };
        if media.get_port() == 0 {
            continue; // disabled by the offerer (RFC 3264 §5.1)
        }
        let savp = rtp_profile(&stream.proto) == Some(true);
        // `RTP/AVP` with `a=crypto` is best-effort SDES: SRTP when we can take it, plain
        // RTP when we cannot (unless SRTP is required).
        let best_effort = !savp && !stream.crypto.is_empty();
        let keys = match (savp, security.policy) {
            (true, Policy::Off) => {
                bad_profile.get_or_insert(stream.proto.clone());
                continue;
            }
            (false, Policy::Off) => None,
            (false, Policy::Optional) if !best_effort || !security.signalling_encrypted => None,
            (false, Policy::Required) if !best_effort => {
                refused.get_or_insert(SdpError::SrtpRequired);
                continue;
            }
            _ if !security.signalling_encrypted => {
                refused.get_or_insert(SdpError::SdesOverCleartext);
                continue;
            }
            _ => match sdes::choose(stream.crypto.iter().map(String::as_str)) {
                Ok(chosen) => Some(chosen),
                Err(_) if best_effort && security.policy == Policy::Optional => None,
                Err(e) => {
                    refused.get_or_insert(SdpError::Crypto(e));
                    continue;
                }
            },
        };
        match negotiate(&session, media) {
            Ok(mut n) => {
                let crypto = keys.map(|chosen| {
                    let ours = previous
                        .filter(|p| p.suite == chosen.suite)
                        .map(|p| p.ours.clone())
                        .unwrap_or_else(|| sdes::new_key(chosen.suite));
                    let line = sdes::attribute(chosen.tag, chosen.suite, &ours);
                    n.srtp = Some(Keys {
                        suite: chosen.suite,
                        theirs: chosen.key,
                        ours,
                        savp,
                    });
                    line
                });
                accepted = Some((i, media.get_proto().to_string(), n, crypto));
            }
            Err(SdpError::NoCommonCodec) => no_codec = true,
            Err(e) => return Err(e),
        }
    }
    let Some((index, proto, negotiated, crypto)) = accepted else {
        return Err(match (no_codec, refused, bad_profile) {
            (true, _, _) => SdpError::NoCommonCodec,
            (false, Some(e), _) => e,
            (false, None, Some(proto)) => SdpError::UnsupportedProfile(proto),
            (false, None, None) => SdpError::NoAudio,
        });
    };
    let mut sdp = session_header(local);
    for (i, s) in streams.iter().enumerate() {
        if i == index {
            let n = &negotiated;
            write_audio(
                &mut sdp,
                local.port,
                &proto,
                &n.codecs,
                n.telephone_event,
                n.direction,
                crypto.as_deref(),
            );
        } else {
            let _ = write!(sdp, "m={} 0 {} {}\r\n", s.media, s.proto, s.fmt);
        }
    }
    Ok(Answer { sdp, negotiated })
}

/// Our own offer (e.g. for the leg to an operator): PCMU, PCMA and
/// telephone-event/8000 on payload type 101, ptime 20, plain RTP.
pub fn offer(local: &LocalMedia, direction: Direction) -> String {
    offer_with(local, direction, None)
}

/// [`offer`] with SRTP when `srtp` is given: our key in `a=crypto:1`
/// ([`sdes::OFFER_SUITE`]) on `RTP/SAVP`, or on `RTP/AVP` for best effort.
pub fn offer_with(
    local: &LocalMedia,
    direction: Direction,
    srtp: Option<&sdes::Offered>,
) -> String {
    let codecs: Vec<(u8, Codec)> = Codec::ALL.map(|c| (c.payload_type(), c)).to_vec();
    let mut sdp = session_header(local);
    let te = Some(TELEPHONE_EVENT_PT);
    let crypto = srtp.map(|o| sdes::attribute(sdes::OFFER_TAG, sdes::OFFER_SUITE, &o.key));
    let proto = if srtp.is_some_and(|o| o.savp) {
        "RTP/SAVP"
    } else {
        "RTP/AVP"
    };
    write_audio(
        &mut sdp,
        local.port,
        proto,
        &codecs,
        te,
        direction,
        crypto.as_deref(),
    );
    sdp
}

/// Read the answer to a plain [`offer`] (RFC 3264 §7).
pub fn parse_answer(answer: &[u8]) -> Result<Negotiated, SdpError> {
    parse_answer_with(answer, None)
}

/// Read the answer to an [`offer_with`] (RFC 3264 §7). We offer a single audio stream,
/// so the answer's first `m=` line is ours; port 0 there means it was rejected. When we
/// offered SRTP, an answer with a key for the one suite and tag we offered (RFC 4568
/// §7.1.3) is SRTP; a plain answer is plain RTP after a best-effort offer, and refused
/// after an `RTP/SAVP` one.
pub fn parse_answer_with(
    answer: &[u8],
    srtp: Option<&sdes::Offered>,
) -> Result<Negotiated, SdpError> {
    let (session, streams) = parse(answer)?;
    let stream = streams
        .first()
        .filter(|s| s.is_audio())
        .ok_or(SdpError::NoAudio)?;
    let Some(media) = stream.parsed.and_then(|p| session.media.get(p)) else {
        return Err(SdpError::UnsupportedProfile(stream.proto.clone()));
    };
    if media.get_port() == 0 {
        return Err(SdpError::NoAudio);
    }
    let savp = rtp_profile(&stream.proto) == Some(true);
    let keyed = savp || !stream.crypto.is_empty();
    let srtp = match (srtp, keyed) {
        (None, _) if savp => return Err(SdpError::UnsupportedProfile(stream.proto.clone())),
        (None, _) => None,
        (Some(offered), false) if offered.savp => return Err(SdpError::SrtpRequired),
        (Some(_), false) => None,
        (Some(offered), true) => {
            let theirs = sdes::choose(stream.crypto.iter().map(String::as_str))?;
            if theirs.tag != sdes::OFFER_TAG || theirs.suite != sdes::OFFER_SUITE {
                return Err(SdpError::Crypto(SdesError::NoneUsable));
            }
            Some(Keys {
                suite: theirs.suite,
                theirs: theirs.key,
                ours: offered.key.clone(),
                savp,
            })
        }
    };
    let mut n = negotiate(&session, media)?;
    n.srtp = srtp;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> LocalMedia {
        LocalMedia {
            address: "192.0.2.10".parse().unwrap(),
            port: 20000,
            session_id: 42,
            session_version: 1,
        }
    }

    fn sdp(media: &str) -> String {
        let head =
            "v=0\r\no=- 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\n";
        format!("{head}{}", media.replace('\n', "\r\n"))
    }

    fn ans(media: &str) -> Answer {
        answer(sdp(media).as_bytes(), &local()).unwrap()
    }

    fn m_lines(sdp: &str) -> Vec<&str> {
        sdp.split("\r\n").filter(|l| l.starts_with("m=")).collect()
    }

    fn reparse(text: &str) -> SdpSession {
        webrtc_sdp::parse_sdp(text, true).unwrap()
    }

    const SOFTPHONE: &str = "m=audio 4000 RTP/AVP 8 0 9 101\na=rtpmap:8 PCMA/8000\n\
        a=rtpmap:0 PCMU/8000\na=rtpmap:9 G722/8000\na=rtpmap:101 telephone-event/8000\n\
        a=fmtp:101 0-15\na=ptime:30\na=sendrecv\n";

    #[test]
    fn multicast_and_broadcast_connections_are_refused() {
        for c in ["224.2.1.1/127", "255.255.255.255", "239.1.1.1/1"] {
            let offer = sdp("m=audio 4000 RTP/AVP 0\n")
                .replace("c=IN IP4 198.51.100.7", &format!("c=IN IP4 {c}"));
            match answer(offer.as_bytes(), &local()) {
                Err(SdpError::NotUnicast(_)) => {}
                other => panic!("{c}: {other:?}"),
            }
        }
        let v6 = sdp("m=audio 4000 RTP/AVP 0\nc=IN IP6 ff0e::101\n");
        assert!(matches!(
            answer(v6.as_bytes(), &local()),
            Err(SdpError::NotUnicast(_))
        ));
    }

    /// RFC 4568 §4's example key (30 bytes).
    const SDES_KEY: &str = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";

    fn security(policy: Policy, tls: bool) -> Security {
        Security {
            policy,
            signalling_encrypted: tls,
        }
    }

    fn srtp_offer(extra: &str) -> String {
        sdp(&format!(
            "m=audio 4000 RTP/SAVP 0 101\na=rtpmap:101 telephone-event/8000\n\
             a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{SDES_KEY}|2^31\n{extra}"
        ))
    }

    /// The value of the `a=crypto` line in `sdp`.
    fn crypto_line(sdp: &str) -> &str {
        sdp.split("\r\n")
            .find_map(|l| l.strip_prefix("a=crypto:"))
            .expect("an a=crypto line")
    }

    #[test]
    fn an_srtp_offer_over_tls_is_answered_with_a_key_of_our_own() {
        let a = answer_with(
            srtp_offer("").as_bytes(),
            &local(),
            security(Policy::Optional, true),
            None,
        )
        .unwrap();
        assert_eq!(m_lines(&a.sdp), ["m=audio 20000 RTP/SAVP 0 101"]);
        let keys = a.negotiated.srtp.clone().expect("SRTP agreed");
        assert_eq!(keys.suite, sdes::Suite::AesCm128HmacSha1_80);
        assert_eq!(
            keys.theirs,
            sdes::parse(&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{SDES_KEY}"))
                .unwrap()
                .key
        );
        let ours = sdes::parse(crypto_line(&a.sdp)).unwrap();
        assert_eq!((ours.tag, ours.key.clone()), (1, keys.ours.clone()));
        assert_ne!(keys.ours, keys.theirs, "each direction its own key");
        // (webrtc-sdp reads a=crypto only as an unknown attribute: not in strict mode.)
        assert_eq!(webrtc_sdp::parse_sdp(&a.sdp, false).unwrap().media.len(), 1);
        // A re-INVITE with the same stream: our key stays, so our stream goes on.
        let again = answer_with(
            srtp_offer("a=sendonly\n").as_bytes(),
            &local(),
            security(Policy::Required, true),
            Some(&keys),
        )
        .unwrap();
        assert_eq!(again.negotiated.srtp.unwrap().ours, keys.ours);
        assert_eq!(again.negotiated.direction, Direction::RecvOnly);
        // Keys never reach the logs through the negotiated media.
        let shown = format!("{:?}", a.negotiated);
        assert!(!shown.contains(&format!("{:?}", keys.ours)), "{shown}");
    }

    #[test]
    fn the_srtp_policy_decides_which_offers_are_taken() {
        let refused = |offer: &str, sec: Security| {
            answer_with(offer.as_bytes(), &local(), sec, None).unwrap_err()
        };
        // Keys in cleartext SIP are refused, whatever the policy.
        for policy in [Policy::Optional, Policy::Required] {
            let e = refused(&srtp_offer(""), security(policy, false));
            assert!(matches!(e, SdpError::SdesOverCleartext), "{e:?}");
        }
        // "off": SRTP is a transport we do not do.
        let e = refused(&srtp_offer(""), security(Policy::Off, true));
        assert!(matches!(e, SdpError::UnsupportedProfile(ref p) if p == "RTP/SAVP"));
        // "required": plain RTP is refused, even over TLS.
        let e = refused(
            &sdp("m=audio 4000 RTP/AVP 0\n"),
            security(Policy::Required, true),
        );
        assert!(matches!(e, SdpError::SrtpRequired), "{e:?}");
        // A bad or missing key says why.
        let short =
            sdp("m=audio 4000 RTP/SAVP 0\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAAA\n");
        let e = refused(&short, security(Policy::Optional, true));
        assert!(
            matches!(e, SdpError::Crypto(SdesError::KeyLength { got: 3, .. })),
            "{e:?}"
        );
        let none = sdp("m=audio 4000 RTP/SAVP 0\n");
        let e = refused(&none, security(Policy::Optional, true));
        assert!(
            matches!(e, SdpError::Crypto(SdesError::NoneUsable)),
            "{e:?}"
        );
        // Best effort (an SRTP stream, then the same as plain RTP) over cleartext SIP under
        // "optional": the plain one is taken, the SRTP one refused in place.
        let both = srtp_offer("m=audio 4002 RTP/AVP 0\n");
        let a = answer_with(
            both.as_bytes(),
            &local(),
            security(Policy::Optional, false),
            None,
        )
        .unwrap();
        assert_eq!(
            m_lines(&a.sdp),
            ["m=audio 0 RTP/SAVP 0", "m=audio 20000 RTP/AVP 0"]
        );
        assert!(a.negotiated.srtp.is_none() && !a.sdp.contains("a=crypto"));
        // A plain offer under "optional" is plain RTP.
        let a = answer_with(
            sdp("m=audio 4000 RTP/AVP 0\n").as_bytes(),
            &local(),
            security(Policy::Optional, true),
            None,
        )
        .unwrap();
        assert!(a.negotiated.srtp.is_none());
    }

    #[test]
    fn our_srtp_offer_and_the_answer_to_it() {
        let savp = sdes::Offered::new(true);
        let ours = offer_with(&local(), Direction::SendRecv, Some(&savp));
        assert_eq!(m_lines(&ours), ["m=audio 20000 RTP/SAVP 0 8 101"]);
        let offered = sdes::parse(crypto_line(&ours)).unwrap();
        assert_eq!(
            (offered.tag, offered.suite, &offered.key),
            (1, sdes::OFFER_SUITE, &savp.key)
        );
        // The phone answers as we would.
        let phone = LocalMedia {
            address: "198.51.100.7".parse().unwrap(),
            port: 4000,
            ..local()
        };
        let tls = security(Policy::Optional, true);
        let answered = answer_with(ours.as_bytes(), &phone, tls, None).unwrap();
        let n = parse_answer_with(answered.sdp.as_bytes(), Some(&savp)).unwrap();
        let keys = n.srtp.unwrap();
        assert_eq!((keys.ours.clone(), keys.savp), (savp.key.clone(), true));
        assert_eq!(keys.theirs, answered.negotiated.srtp.unwrap().ours);
        assert_eq!(keys.reoffer(), savp, "a re-offer keeps key and profile");
        // A plain answer to our RTP/SAVP offer, and an SRTP answer to a plain one, are
        // refused.
        let plain = answer(offer(&local(), Direction::SendRecv).as_bytes(), &phone).unwrap();
        assert!(matches!(
            parse_answer_with(plain.sdp.as_bytes(), Some(&savp)),
            Err(SdpError::SrtpRequired)
        ));
        assert!(matches!(
            parse_answer(answered.sdp.as_bytes()),
            Err(SdpError::UnsupportedProfile(_))
        ));
        // An answer keyed for another tag than the one we offered.
        let other_tag = answered.sdp.replace("a=crypto:1 ", "a=crypto:2 ");
        assert!(matches!(
            parse_answer_with(other_tag.as_bytes(), Some(&savp)),
            Err(SdpError::Crypto(_))
        ));
    }

    /// `RTP/AVP` with `a=crypto`: SRTP with a phone that has it, plain RTP with one that
    /// has not, in both directions.
    #[test]
    fn best_effort_srtp_falls_back_to_plain_rtp() {
        let tls = security(Policy::Optional, true);
        let best = sdes::Offered::new(false);
        let ours = offer_with(&local(), Direction::SendRecv, Some(&best));
        assert_eq!(m_lines(&ours), ["m=audio 20000 RTP/AVP 0 8 101"]);
        assert!(ours.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"));
        let phone = LocalMedia {
            address: "198.51.100.7".parse().unwrap(),
            port: 4000,
            ..local()
        };
        // A phone with SRTP answers on RTP/AVP with its key: SRTP.
        let with = answer_with(ours.as_bytes(), &phone, tls, None).unwrap();
        assert_eq!(m_lines(&with.sdp), ["m=audio 4000 RTP/AVP 0 8 101"]);
        let keys = parse_answer_with(with.sdp.as_bytes(), Some(&best))
            .unwrap()
            .srtp
            .expect("SRTP");
        assert!(!keys.savp);
        // A phone without it ignores the attribute: plain RTP.
        let without = answer(ours.as_bytes(), &phone).unwrap();
        assert!(!without.sdp.contains("a=crypto"));
        let n = parse_answer_with(without.sdp.as_bytes(), Some(&best)).unwrap();
        assert!(n.srtp.is_none());
        // Offered to us: SRTP over TLS; plain RTP over cleartext SIP (the keys are not
        // used, nor answered); a bad key is plain RTP under "optional", 488 under
        // "required".
        let offer = sdp(&format!(
            "m=audio 4000 RTP/AVP 0\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{SDES_KEY}\n"
        ));
        let a = answer_with(offer.as_bytes(), &local(), tls, None).unwrap();
        assert!(a.negotiated.srtp.is_some() && a.sdp.contains("a=crypto:1 "));
        let clear = security(Policy::Optional, false);
        let a = answer_with(offer.as_bytes(), &local(), clear, None).unwrap();
        assert!(a.negotiated.srtp.is_none() && !a.sdp.contains("a=crypto"));
        let required = security(Policy::Required, true);
        assert!(answer_with(offer.as_bytes(), &local(), required, None)
            .unwrap()
            .negotiated
            .srtp
            .is_some());
        let bad = offer.replace(SDES_KEY, "AAAA");
        assert!(answer_with(bad.as_bytes(), &local(), tls, None)
            .unwrap()
            .negotiated
            .srtp
            .is_none());
        assert!(matches!(
            answer_with(bad.as_bytes(), &local(), required, None),
            Err(SdpError::Crypto(_))
        ));
        let cleartext_required = security(Policy::Required, false);
        assert!(matches!(
            answer_with(offer.as_bytes(), &local(), cleartext_required, None),
            Err(SdpError::SdesOverCleartext)
        ));
    }

    #[test]
    fn sipp_default_offer() {
        let offer = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\n\
            c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
        let a = answer(offer.as_bytes(), &local()).unwrap();
        let n = &a.negotiated;
        assert_eq!(n.codecs, vec![(0, Codec::Pcmu)]);
        assert_eq!(n.remote_rtp, Some("127.0.0.1:6000".parse().unwrap()));
        assert_eq!(
            (n.telephone_event, n.direction, n.ptime),
            (None, Direction::SendRecv, None)
        );
        assert_eq!(
            a.sdp,
            "v=0\r\no=hotline 42 1 IN IP4 192.0.2.10\r\ns=Hotline\r\nc=IN IP4 192.0.2.10\r\n\
             t=0 0\r\nm=audio 20000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\n\
             a=sendrecv\r\n"
        );
    }

    #[test]
    fn softphone_offer_keeps_offerer_order_and_drops_g722() {
        let a = ans(SOFTPHONE);
        assert_eq!(
            a.negotiated.codecs,
            vec![(8, Codec::Pcma), (0, Codec::Pcmu)]
        );
        assert_eq!(a.negotiated.telephone_event, Some(101));
        assert_eq!(a.negotiated.ptime, Some(30));
        assert_eq!(m_lines(&a.sdp), ["m=audio 20000 RTP/AVP 8 0 101"]);
        assert!(a
            .sdp
            .contains("a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"));
        assert!(a.sdp.contains("a=ptime:20\r\n") && !a.sdp.contains("G722"));
    }

    #[test]
    fn unusable_offers_are_refused() {
        let g729 = sdp("m=audio 4000 RTP/AVP 18\na=rtpmap:18 G729/8000\n");
        assert!(matches!(
            answer(g729.as_bytes(), &local()),
            Err(SdpError::NoCommonCodec)
        ));
        let video = sdp("m=video 5000 RTP/AVP 96\na=rtpmap:96 H264/90000\n");
        assert!(matches!(
            answer(video.as_bytes(), &local()),
            Err(SdpError::NoAudio)
        ));
        let disabled = sdp("m=audio 0 RTP/AVP 0\n");
        assert!(matches!(
            answer(disabled.as_bytes(), &local()),
            Err(SdpError::NoAudio)
        ));
        let srtp = sdp("m=audio 4000 RTP/SAVP 0\n");
        let err = answer(srtp.as_bytes(), &local()).unwrap_err();
        assert!(matches!(err, SdpError::UnsupportedProfile(ref p) if p == "RTP/SAVP"));
    }

    #[test]
    fn every_offered_stream_gets_an_answer_line() {
        let a = ans("m=audio 4000 RTP/AVP 0\nm=video 5000 RTP/AVP 96\na=rtpmap:96 H264/90000\n");
        assert_eq!(
            m_lines(&a.sdp),
            ["m=audio 20000 RTP/AVP 0", "m=video 0 RTP/AVP 96"]
        );
        assert_eq!(reparse(&a.sdp).media.len(), 2);

        // SRTP and a disabled stream are rejected in place; a T.38 stream the parser
        // does not know must not swallow or shift anything; the second audio is refused.
        let a = ans(
            "m=audio 4002 RTP/SAVP 0\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:x\n\
            m=image 0 udptl t38\na=T38FaxVersion:0\na=sendonly\nm=audio 0 RTP/AVP 8\n\
            m=audio 4000 RTP/AVP 8\na=rtpmap:8 PCMA/8000\nm=audio 4004 RTP/AVP 0\n",
        );
        let expected = [
            "m=audio 0 RTP/SAVP 0",
            "m=image 0 udptl t38",
            "m=audio 0 RTP/AVP 8",
            "m=audio 20000 RTP/AVP 8",
            "m=audio 0 RTP/AVP 0",
        ];
        assert_eq!(m_lines(&a.sdp), expected);
        assert_eq!(a.negotiated.direction, Direction::SendRecv);
        assert_eq!(
            a.negotiated.remote_rtp,
            Some("198.51.100.7:4000".parse().unwrap())
        );
    }

    #[test]
    fn hold_and_direction() {
        let dir = |media: &str| ans(media).negotiated.direction;
        assert_eq!(
            dir("m=audio 4000 RTP/AVP 0\na=sendonly\n"),
            Direction::RecvOnly
        );
        assert_eq!(
            dir("m=audio 4000 RTP/AVP 0\na=recvonly\n"),
            Direction::SendOnly
        );
        assert_eq!(
            dir("m=audio 4000 RTP/AVP 0\na=inactive\n"),
            Direction::Inactive
        );
        assert!(ans("m=audio 4000 RTP/AVP 0\na=sendonly\n")
            .sdp
            .ends_with("a=recvonly\r\n"));
        // Media-level direction overrides the session level.
        let text =
            sdp("m=audio 4000 RTP/AVP 0\na=sendrecv\n").replace("t=0 0", "t=0 0\r\na=sendonly");
        let a = answer(text.as_bytes(), &local()).unwrap();
        assert_eq!(a.negotiated.direction, Direction::SendRecv);
        // RFC 2543 hold: c=0.0.0.0.
        let text =
            sdp("m=audio 4000 RTP/AVP 0\n").replace("c=IN IP4 198.51.100.7", "c=IN IP4 0.0.0.0");
        let a = answer(text.as_bytes(), &local()).unwrap();
        assert_eq!(a.negotiated.direction, Direction::RecvOnly);
        assert_eq!(a.negotiated.remote_rtp, None);
        assert!(a.sdp.ends_with("a=recvonly\r\n"));
    }

    #[test]
    fn media_connection_overrides_session_connection() {
        let a = ans("m=audio 4000 RTP/AVP 0\nc=IN IP4 203.0.113.9\n");
        assert_eq!(
            a.negotiated.remote_rtp,
            Some("203.0.113.9:4000".parse().unwrap())
        );
    }

    #[test]
    fn ipv6_offer_and_answer() {
        let offer = "v=0\r\no=- 7 7 IN IP6 2001:db8::1\r\ns=-\r\nc=IN IP6 2001:db8::1\r\n\
            t=0 0\r\nm=audio 5004 RTP/AVP 0\r\n";
        let me = LocalMedia {
            address: "2001:db8::10".parse().unwrap(),
            ..local()
        };
        let a = answer(offer.as_bytes(), &me).unwrap();
        assert_eq!(
            a.negotiated.remote_rtp,
            Some("[2001:db8::1]:5004".parse().unwrap())
        );
        assert!(a.sdp.contains("o=hotline 42 1 IN IP6 2001:db8::10\r\n"));
        assert!(a.sdp.contains("c=IN IP6 2001:db8::10\r\n"));
        assert_eq!(reparse(&a.sdp).media.len(), 1);
    }

    #[test]
    fn static_types_dynamic_dtmf_and_case_insensitive_names() {
        let a = ans("m=audio 4000 RTP/AVP 0 8\n");
        assert_eq!(
            a.negotiated.codecs,
            vec![(0, Codec::Pcmu), (8, Codec::Pcma)]
        );
        let a = ans("m=audio 4000 RTP/AVP 8 96 97\na=rtpmap:8 pcma/8000\n\
            a=rtpmap:96 Telephone-Event/8000\na=rtpmap:97 pcmu/8000\n");
        assert_eq!(
            a.negotiated.codecs,
            vec![(8, Codec::Pcma), (97, Codec::Pcmu)]
        );
        assert_eq!(a.negotiated.telephone_event, Some(96));
        assert_eq!(m_lines(&a.sdp), ["m=audio 20000 RTP/AVP 8 97 96"]);
        assert!(a.sdp.contains("a=rtpmap:97 PCMU/8000\r\n"));
        assert!(a.sdp.contains("a=fmtp:96 0-16\r\n"));
        // Wideband telephone-event and PCMU at the wrong rate are not ours.
        let a = ans("m=audio 4000 RTP/AVP 0 96 98\na=rtpmap:96 PCMU/16000\n\
            a=rtpmap:98 telephone-event/16000\n");
        assert_eq!(
            (a.negotiated.codecs.len(), a.negotiated.telephone_event),
            (1, None)
        );
    }

    #[test]
    fn generated_sdp_parses_back() {
        let a = ans(SOFTPHONE);
        let s = reparse(&a.sdp);
        assert_eq!(s.media.len(), 1);
        assert_eq!(s.media[0].get_port(), 20000);
        let o = offer(&local(), Direction::SendOnly);
        assert_eq!(m_lines(&o), ["m=audio 20000 RTP/AVP 0 8 101"]);
        assert!(o.contains("a=fmtp:101 0-16\r\na=ptime:20\r\na=sendonly\r\n"));
        let s = reparse(&o);
        assert_eq!(s.media.len(), 1);
        assert_eq!(s.origin.session_id, 42);
        assert!(o.split("\r\n").all(|l| !l.contains('\n')));
    }

    #[test]
    fn answer_to_our_own_offer_negotiates_everything() {
        let n = answer(offer(&local(), Direction::SendRecv).as_bytes(), &local()).unwrap();
        let expected = vec![(0, Codec::Pcmu), (8, Codec::Pcma)];
        assert_eq!(n.negotiated.codecs, expected);
        assert_eq!(n.negotiated.telephone_event, Some(TELEPHONE_EVENT_PT));
    }

    #[test]
    fn parse_answer_pcma() {
        let text = sdp("m=audio 7078 RTP/AVP 8 101\na=rtpmap:8 PCMA/8000\n\
            a=rtpmap:101 telephone-event/8000\na=fmtp:101 0-15\na=ptime:20\na=recvonly\n");
        let n = parse_answer(text.as_bytes()).unwrap();
        assert_eq!(n.codecs, vec![(8, Codec::Pcma)]);
        assert_eq!(n.telephone_event, Some(101));
        assert_eq!(n.remote_rtp, Some("198.51.100.7:7078".parse().unwrap()));
        assert_eq!((n.direction, n.ptime), (Direction::SendOnly, Some(20)));
        let rejected = sdp("m=audio 0 RTP/AVP 0\n");
        assert!(matches!(
            parse_answer(rejected.as_bytes()),
            Err(SdpError::NoAudio)
        ));
    }

    #[test]
    fn lenient_with_real_world_quirks() {
        // Over-long session id, e= / b= / ICE / rtcp-fb lines, no t=: all ignored.
        let text = "v=0\r\no=Z 123456789012345678901234 1 IN IP4 phone.example\r\ns=Z\r\n\
            e=ops@example.com\r\nc=IN IP4 198.51.100.7\r\nb=AS:84\r\nm=audio 8000 RTP/AVP 0 101\r\n\
            a=candidate:1 1 UDP 2130706431 198.51.100.7 8000 typ host\r\na=rtcp-fb:* nack\r\n\
            a=rtcp:8001\r\na=x-unknown:1\r\na=ptime:20.0\r\na=rtpmap:101 telephone-event\r\n";
        let a = answer(text.as_bytes(), &local()).unwrap();
        assert_eq!(
            a.negotiated.remote_rtp,
            Some("198.51.100.7:8000".parse().unwrap())
        );
        assert_eq!(
            (a.negotiated.ptime, a.negotiated.telephone_event),
            (Some(20), None)
        );
        // A host name where an address belongs is refused clearly, not mangled.
        let text = sdp("m=audio 4000 RTP/AVP 0\n")
            .replace("IN IP4 198.51.100.7\r\nt", "IN IP4 pbx.example\r\nt");
        let err = answer(text.as_bytes(), &local()).unwrap_err();
        assert!(matches!(err, SdpError::UnsupportedAddress(ref h) if h == "pbx.example"));
    }

    #[test]
    fn malformed_input_is_an_error() {
        let bad: [&[u8]; 7] = [
            b"",
            b"   \r\n",
            b"hello, this is certainly not a session description at all",
            b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\n\xff\xfe\r\nt=0 0\r\nm=audio 1 RTP/AVP 0\r\n",
            b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=audio\r\n",
            b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=audio 9 RTP/AVP x\r\n",
            b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=video 5 RTP/AVP",
        ];
        for body in bad {
            assert!(
                answer(body, &local()).is_err(),
                "{:?}",
                String::from_utf8_lossy(body)
            );
            assert!(parse_answer(body).is_err());
        }
        assert!(matches!(
            answer(b"\xc3\x28v=0", &local()),
            Err(SdpError::NotUtf8)
        ));
        let port = sdp("m=audio 99999 RTP/AVP 0\n");
        let err = answer(port.as_bytes(), &local()).unwrap_err();
        assert!(
            matches!(err, SdpError::Parse(ref m) if m.contains("too big")),
            "{err}"
        );
        let no_m = sdp("");
        assert!(matches!(
            answer(no_m.as_bytes(), &local()),
            Err(SdpError::NoAudio)
        ));
        let huge = vec![b'a'; MAX_SDP_LEN + 1];
        assert!(matches!(
            answer(&huge, &local()),
            Err(SdpError::TooLarge(_))
        ));
    }

    #[test]
    fn mutated_offers_never_panic() {
        let seeds = [
            sdp(SOFTPHONE),
            sdp("m=audio 1 RTP/AVP 0\nm=video 0 RTP/AVP 96\n"),
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet = b"0123456789 =:/\r\nmacotv.-AUDIOaudio";
        for i in 0..4000 {
            let mut body = seeds[i % seeds.len()].clone().into_bytes();
            for _ in 0..1 + next() % 4 {
                let at = (next() as usize) % body.len();
                match next() % 3 {
                    0 => body[at] = alphabet[(next() as usize) % alphabet.len()],
                    1 => drop(body.remove(at)),
                    _ => body.insert(at, alphabet[(next() as usize) % alphabet.len()]),
                }
            }
            let _ = answer(&body, &local());
            let _ = parse_answer(&body);
        }
    }
}
