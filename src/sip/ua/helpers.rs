//! Small pieces the handlers share: our Contact, the 420/415/406 answers, reading an SDP
//! body, and what hostile input is reduced to before it goes anywhere (sanitising, media
//! destinations).

use crate::sip::message::{first_header, ResponseBuilder};
use crate::sip::sdp::{Negotiated, SdpError};
use crate::sip::Transport;
use bytes::Bytes;
use rand::RngCore;
use std::net::{IpAddr, SocketAddr};

/// Our Contact: the dialled number at our address for `transport` ([`UaSettings::host_for`]),
/// with `transport=tcp` or `transport=tls` so that in-dialog requests come back over the
/// same transport.
///
/// [`UaSettings::host_for`]: super::UaSettings::host_for
pub(super) fn contact_header(number: &str, host: &str, transport: Transport) -> String {
    match transport {
        Transport::Udp => format!("<sip:{number}@{host}>"),
        Transport::Tcp => format!("<sip:{number}@{host};transport=tcp>"),
        Transport::Tls => format!("<sip:{number}@{host};transport=tls>"),
    }
}

/// 420 Bad Extension when the request's `Require` asks for anything: we support no
/// extension (RFC 3261 §8.2.2.3), and say which in `Unsupported`.
pub(super) fn bad_extension(
    req: &rsip::Request,
    source: SocketAddr,
    rng: &mut impl RngCore,
) -> Option<Bytes> {
    let required = first_header(&req.headers, "Require")
        .map(str::trim)
        .filter(|r| !r.is_empty())?;
    Some(
        ResponseBuilder::new(req, source, 420, "Bad Extension")
            .to_tag(&random_tag(rng))
            .header("Unsupported", required)
            .build(),
    )
}

/// 415 Unsupported Media Type for a body we cannot read, 406 Not Acceptable when the caller
/// cannot read an SDP answer (RFC 3261 §21.4.16, §21.4.7); both say what we do take.
pub(super) fn unacceptable_content(
    req: &rsip::Request,
    source: SocketAddr,
    server: &str,
    rng: &mut impl RngCore,
) -> Option<(u16, Bytes)> {
    let ctype = first_header(&req.headers, "Content-Type").unwrap_or_default();
    let (status, reason) = if !req.body.is_empty() && !is_sdp_or_multipart(ctype) {
        (415, "Unsupported Media Type")
    } else if !accepts_sdp(first_header(&req.headers, "Accept")) {
        (406, "Not Acceptable")
    } else {
        return None;
    };
    let response = ResponseBuilder::new(req, source, status, reason)
        .to_tag(&random_tag(rng))
        .header("Accept", "application/sdp")
        .header("Server", server)
        .build();
    Some((status, response))
}

/// `application/sdp`, or a multipart body (SIP-I carriers wrap the SDP with ISUP); the
/// latter is then read by [`sdp_of`] like any other body and refused with 488 if no SDP.
pub(super) fn is_sdp_or_multipart(ctype: &str) -> bool {
    let t = ctype.split(';').next().unwrap_or_default().trim();
    t.eq_ignore_ascii_case("application/sdp") || t.to_ascii_lowercase().starts_with("multipart/")
}

/// Whether an `Accept` header (absent: SDP, RFC 3261 §20.1) takes `application/sdp`.
pub(super) fn accepts_sdp(accept: Option<&str>) -> bool {
    let Some(accept) = accept.map(str::trim).filter(|a| !a.is_empty()) else {
        return true;
    };
    accept.split(',').any(|range| {
        let t = range.split(';').next().unwrap_or_default().trim();
        ["application/sdp", "application/*", "*/*"]
            .iter()
            .any(|ok| t.eq_ignore_ascii_case(ok))
    })
}

/// The SDP offer of an INVITE, if it carries one.
pub(super) fn sdp_offer(req: &rsip::Request) -> Result<&[u8], SdpError> {
    sdp_of(&req.headers, &req.body)
}

/// The SDP body of a message, if it carries one.
pub(super) fn sdp_of<'a>(headers: &rsip::Headers, body: &'a [u8]) -> Result<&'a [u8], SdpError> {
    let ctype = first_header(headers, "Content-Type").unwrap_or_default();
    if body.is_empty()
        || !ctype
            .trim()
            .to_ascii_lowercase()
            .starts_with("application/sdp")
    {
        return Err(SdpError::Parse("an SDP body is required".into()));
    }
    Ok(body)
}

/// A registered Contact we can put on a request line as it is: no spaces, controls, angle
/// brackets or quotes (it is parsed again with the whole INVITE before anything is sent).
pub(super) fn is_plain_uri(uri: &str) -> bool {
    (uri.starts_with("sip:") || uri.starts_with("sips:"))
        && !uri
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"'))
}

/// A caller's number reduced to a SIP URI user part that needs no escaping and cannot end
/// the URI or the header: letters, digits and `+-._~*!`, at most 32 of them; `anonymous`
/// when nothing is left.
pub fn sanitize_user(raw: &str) -> String {
    let user: String = raw
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "+-._~*!".contains(*c))
        .take(32)
        .collect();
    if user.is_empty() {
        "anonymous".to_string()
    } else {
        user
    }
}

/// A caller's display name reduced to what a quoted string may hold unescaped (RFC 3261
/// `qdtext`): no quotes, backslashes or control characters (CR and LF among them), and no
/// angle brackets either (legal there, but they mislead parsers that look for `<` to find the
/// URI); runs of white space become one space; at most 64 characters.
pub fn sanitize_display(raw: &str) -> String {
    let cleaned: String = raw
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .filter(|c| !matches!(c, '"' | '\\' | '<' | '>'))
        .collect();
    cleaned
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(64)
        .collect()
}

/// Where a caller's RTP may go before any has arrived from it. An SDP address other than
/// the signalling source's is believed only for trusted peers (the carrier's SBC, whose
/// media gateway has another address). Anyone else's is dropped, so the media plane sends
/// nothing until RTP arrives and then answers where it came from (symmetric RTP, see
/// [`crate::media::rtp::Latch`]). Otherwise one INVITE naming a third party's address would
/// make the hotline stream a greeting at it: a reflector.
pub fn vet_media_destination(n: &mut Negotiated, signalling: IpAddr, trusted: &[ipnet::IpNet]) {
    if let Some(dest) = n.remote_rtp {
        if dest.ip().to_canonical() != signalling.to_canonical()
            && !crate::sip::guard::is_trusted(trusted, signalling)
        {
            tracing::debug!(%dest, %signalling, "SDP address is not the caller's: latching");
            n.remote_rtp = None;
        }
    }
}

/// RFC 3261 §20.43 warning codes: 305 incompatible media format, 304 media type not available.
pub(super) fn warning_code(e: &SdpError) -> u16 {
    match e {
        SdpError::NoCommonCodec => 305,
        SdpError::NoAudio => 304,
        _ => 399,
    }
}

pub(super) fn status_of(resp: &Bytes) -> u16 {
    resp.get(8..11)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(500)
}

/// Tag, branch and Call-ID material: 64 bits from `rng`, hex. The core passes its own
/// generator, seeded from the operating system in production: tags, branches and Call-IDs
/// must not be guessable, or an off-path attacker could forge requests into our dialogs
/// and transactions.
pub fn random_tag<R: RngCore + ?Sized>(rng: &mut R) -> String {
    format!("{:016x}", rng.next_u64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn invite(extra: &str, body: &str) -> rsip::Request {
        let text = format!(
            "INVITE sip:8800@hotline.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK1\r\n\
             From: <sip:caller@x>;tag=ft\r\nTo: <sip:8800@hotline.test>\r\nCall-ID: u1\r\n\
             CSeq: 1 INVITE\r\n{extra}Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        rsip::Request::try_from(text.as_bytes()).unwrap()
    }

    #[test]
    fn unreadable_bodies_get_415_and_unreadable_answers_406() {
        let source: SocketAddr = "192.0.2.10:5062".parse().unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut answer = |req: &rsip::Request| {
            unacceptable_content(req, source, "Hotline-test", &mut rng)
                .map(|(status, r)| (status, String::from_utf8(r.to_vec()).unwrap()))
        };
        let sdp = "Content-Type: application/sdp\r\n";
        assert_eq!(answer(&invite(sdp, "v=0\r\n")), None);
        assert_eq!(answer(&invite("", "")), None);
        let multipart = "Content-Type: multipart/mixed;boundary=b\r\n";
        assert_eq!(answer(&invite(multipart, "--b--")), None);
        let (status, text) = answer(&invite("Content-Type: text/plain\r\n", "hi")).unwrap();
        assert_eq!(status, 415);
        assert!(
            text.starts_with("SIP/2.0 415 Unsupported Media Type\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nAccept: application/sdp\r\nServer: Hotline-test\r\n"));
        let (status, text) = answer(&invite("Accept: text/html\r\n", "")).unwrap();
        assert_eq!(status, 406);
        assert!(text.starts_with("SIP/2.0 406 Not Acceptable\r\n"), "{text}");
        assert!(text.contains("\r\nAccept: application/sdp\r\nServer: Hotline-test\r\n"));
        assert!(text.contains("To: <sip:8800@hotline.test>;tag="));
        // The body is judged first: both wrong is 415.
        let both = invite("Content-Type: text/plain\r\nAccept: text/html\r\n", "hi");
        assert_eq!(answer(&both).unwrap().0, 415);
    }
}
