//! SIP torture (RFC 4475, the cases that apply to a UAS, and the ones a probe of the server
//! found), table-driven, over UDP and over TCP. Valid messages get their proper answer;
//! invalid ones get the stated 4xx/5xx or are dropped; the server answers afterwards.

mod support;

use std::time::Duration;
use support::*;

/// What a case must get back.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// A response starting with this (`"SIP/2.0 400"`).
    Status(&'static str),
    /// Nothing at all (an ACK, or garbage with no usable Via).
    Nothing,
    /// A 400 over UDP; over TCP nothing, since the stream may still bring the rest of the
    /// body that Content-Length announced (the connection's idle timeout ends it).
    BadUdpWaitTcp,
}

struct Case {
    name: &'static str,
    /// The message, with `{via}` for our address and `{tr}` for the transport.
    text: String,
    expect: Expect,
}

const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 7000 RTP/AVP 0\r\n";

/// A request from parts: start line, the headers between Via and Content-Length, a body.
fn msg(start: &str, headers: &str, body: &str) -> String {
    format!(
        "{start}\r\nVia: SIP/2.0/{{tr}} {{via}};branch=z9hG4bK-tort-{{n}};rport\r\nMax-Forwards: 70\r\n\
         {headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn std_headers(method: &str, call_id: &str) -> String {
    format!(
        "From: <sip:+79780000001@carrier.test>;tag=t1\r\nTo: <sip:8800@hotline.test>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 {method}\r\n"
    )
}

fn cases() -> Vec<Case> {
    let options = |name, start: &str, headers: String, expect| Case {
        name,
        text: msg(start, &headers, ""),
        expect,
    };
    let ok = Expect::Status("SIP/2.0 200");
    let bad = Expect::Status("SIP/2.0 400");
    vec![
        // --- valid -------------------------------------------------------------------
        options("plain OPTIONS", "OPTIONS sip:8800@hotline.test SIP/2.0", std_headers("OPTIONS", "t-plain"), ok),
        Case {
            name: "wsinv: white space around the Via's slashes",
            text: msg("OPTIONS sip:8800@hotline.test SIP/2.0", &std_headers("OPTIONS", "t-ws"), "")
                .replace("Via: SIP/2.0/{tr}", "Via: SIP  /  2.0  /  {tr}"),
            expect: ok,
        },
        options("lower-case version", "OPTIONS sip:8800@hotline.test sip/2.0", std_headers("OPTIONS", "t-lc"), ok),
        Case {
            name: "compact and folded headers",
            text: "OPTIONS sip:8800@hotline.test SIP/2.0\r\nv: SIP/2.0/{tr} {via};branch=z9hG4bK-tort-{n};rport\r\n\
                   f: <sip:a@x>\r\n ;tag=9\r\nt: <sip:8800@hotline.test>\r\ni: t-compact\r\nCSeq: 2 OPTIONS\r\nl: 0\r\n\r\n"
                .to_string(),
            expect: ok,
        },
        options(
            "unknown header with odd content is ignored",
            "OPTIONS sip:8800@hotline.test SIP/2.0",
            std_headers("OPTIONS", "t-unk") + "X-Odd: <>;;\"\";,,=\r\n",
            ok,
        ),
        options(
            "quoted display name with escapes",
            "OPTIONS sip:8800@hotline.test SIP/2.0",
            std_headers("OPTIONS", "t-esc").replace("From: <", "From: \"a \\\"b\\\" c\" <"),
            ok,
        ),
        options(
            "tel: URI in From",
            "OPTIONS sip:8800@hotline.test SIP/2.0",
            std_headers("OPTIONS", "t-tel").replace("<sip:+79780000001@carrier.test>", "<tel:+79780000001>"),
            ok,
        ),
        // Documented deviations (README, "What the SIP side does"): rsip's URI grammar
        // reads neither a user part with `.` in a parameter nor an IPv6 reference in the
        // Request-URI; they get a clean 400, never a crash.
        options(
            "esc: escaped @ in a user parameter (deviation: 400)",
            "OPTIONS sip:8800;par=u%40example.net@hotline.test SIP/2.0",
            std_headers("OPTIONS", "t-escuser"),
            bad,
        ),
        options(
            "IPv6 reference in the Request-URI (deviation: 400)",
            "OPTIONS sip:8800@[::1]:5060 SIP/2.0",
            std_headers("OPTIONS", "t-v6"),
            bad,
        ),
        options("unknown method", "NEWMETHOD sip:8800@hotline.test SIP/2.0", std_headers("NEWMETHOD", "t-new"), Expect::Status("SIP/2.0 501")),
        options(
            "OPTIONS with an unsupported Require",
            "OPTIONS sip:8800@hotline.test SIP/2.0",
            std_headers("OPTIONS", "t-req") + "Require: nothingSupportsThis\r\n",
            Expect::Status("SIP/2.0 420"),
        ),
        Case {
            name: "INVITE accepting no SDP",
            text: msg(
                "INVITE sip:8800@hotline.test SIP/2.0",
                &(std_headers("INVITE", "t-accept") + "Accept: text/nobodyKnowsThis\r\nContent-Type: application/sdp\r\n"),
                OFFER,
            ),
            expect: Expect::Status("SIP/2.0 406"),
        },
        Case {
            name: "INVITE with a body of an unknown type",
            text: msg(
                "INVITE sip:8800@hotline.test SIP/2.0",
                &(std_headers("INVITE", "t-ctype") + "Content-Type: application/unknownformat\r\n"),
                "junk",
            ),
            expect: Expect::Status("SIP/2.0 415"),
        },
        Case {
            name: "INVITE with a multicast media address",
            text: msg(
                "INVITE sip:8800@hotline.test SIP/2.0",
                &(std_headers("INVITE", "t-mcast") + "Content-Type: application/sdp\r\n"),
                &OFFER.replace("c=IN IP4 127.0.0.1", "c=IN IP4 224.2.1.1/127"),
            ),
            expect: Expect::Status("SIP/2.0 488"),
        },
        options("SIP/7.0", "OPTIONS sip:8800@hotline.test SIP/7.0", std_headers("OPTIONS", "t-ver"), Expect::Status("SIP/2.0 505")),
        // --- invalid -----------------------------------------------------------------
        options("empty Call-ID", "OPTIONS sip:8800@hotline.test SIP/2.0", std_headers("OPTIONS", ""), bad),
        options("Call-ID with a space", "OPTIONS sip:8800@hotline.test SIP/2.0", std_headers("OPTIONS", "a b"), bad),
        options(
            "two Call-IDs",
            "OPTIONS sip:8800@hotline.test SIP/2.0",
            std_headers("OPTIONS", "t-two") + "Call-ID: other\r\n",
            bad,
        ),
        options(
            "unterminated quote in From",
            "OPTIONS sip:8800@hotline.test SIP/2.0",
            std_headers("OPTIONS", "t-quote").replace("From: <", "From: \"unterminated <"),
            bad,
        ),
        options(
            "To: garbage",
            "OPTIONS sip:8800@hotline.test SIP/2.0",
            std_headers("OPTIONS", "t-garbage").replace("To: <sip:8800@hotline.test>", "To: garbage"),
            bad,
        ),
        options(
            "empty From",
            "OPTIONS sip:8800@hotline.test SIP/2.0",
            std_headers("OPTIONS", "t-nofrom").replace("From: <sip:+79780000001@carrier.test>;tag=t1", "From:"),
            bad,
        ),
        options(
            "unclosed < in To",
            "OPTIONS sip:8800@hotline.test SIP/2.0",
            std_headers("OPTIONS", "t-angle").replace("To: <sip:8800@hotline.test>", "To: <sip:8800@hotline.test"),
            bad,
        ),
        options(
            "CSeq number of 2^32",
            "OPTIONS sip:8800@hotline.test SIP/2.0",
            std_headers("OPTIONS", "t-cseq").replace("CSeq: 1 OPTIONS", "CSeq: 4294967296 OPTIONS"),
            bad,
        ),
        options(
            "CSeq method differs from the request's",
            "OPTIONS sip:8800@hotline.test SIP/2.0",
            std_headers("OPTIONS", "t-cseqm").replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE"),
            bad,
        ),
        Case {
            name: "Content-Length beyond the body",
            text: msg("OPTIONS sip:8800@hotline.test SIP/2.0", &std_headers("OPTIONS", "t-cl"), "")
                .replace("Content-Length: 0", "Content-Length: 500"),
            expect: Expect::BadUdpWaitTcp,
        },
        Case {
            name: "negative Content-Length",
            text: msg("OPTIONS sip:8800@hotline.test SIP/2.0", &std_headers("OPTIONS", "t-ncl"), "")
                .replace("Content-Length: 0", "Content-Length: -999"),
            expect: bad,
        },
        options(
            "NUL in a header",
            "OPTIONS sip:8800@hotline.test SIP/2.0",
            std_headers("OPTIONS", "t-nul") + "Subject: a\0b\r\n",
            bad,
        ),
        options(
            "ACK with a broken CSeq is never answered",
            "ACK sip:8800@hotline.test SIP/2.0",
            std_headers("ACK", "t-ack").replace("CSeq: 1 ACK", "CSeq: x ACK"),
            Expect::Nothing,
        ),
        Case {
            name: "garbage without a Via",
            text: "HELLO there\r\n\r\n".to_string(),
            expect: Expect::Nothing,
        },
    ]
}

async fn run(transport: &str) {
    let (hotline, _dir) = start().await;
    let mut failures = Vec::new();
    let cases = cases();
    let total = cases.len();
    for (n, case) in cases.into_iter().enumerate() {
        // A fresh peer per case: a TCP server may close a connection after garbage.
        let mut peer = Peer::new(transport, hotline.sip_addr).await;
        let text = case
            .text
            .replace("{tr}", transport)
            .replace("{via}", &peer.addr().to_string())
            .replace("{n}", &n.to_string());
        peer.send(&text).await;
        let got = peer.recv(Duration::from_millis(700)).await;
        // Skip provisional responses.
        let got = match got {
            Some(r) if r.starts_with("SIP/2.0 1") => peer.recv(Duration::from_millis(700)).await,
            other => other,
        };
        let ok = match (case.expect, &got) {
            (Expect::Status(p), Some(r)) => r.starts_with(p),
            (Expect::Nothing, None) => true,
            (Expect::BadUdpWaitTcp, Some(r)) => transport == "UDP" && r.starts_with("SIP/2.0 400"),
            (Expect::BadUdpWaitTcp, None) => transport == "TCP",
            _ => false,
        };
        if !ok {
            failures.push(format!(
                "{transport} {}: expected {:?}, got {:?}",
                case.name,
                case.expect,
                got.map(|r| r.lines().next().unwrap_or_default().to_string())
            ));
        }
        // The server still answers.
        let mut probe = Peer::new(transport, hotline.sip_addr).await;
        let mut r = probe.req("OPTIONS", "alive@test");
        let alive_branch = format!("z9hG4bK-alive-{n}");
        r.branch = &alive_branch;
        let text = r.build();
        probe.send(&text).await;
        probe.expect("SIP/2.0 200").await;
    }
    eprintln!(
        "torture over {transport}: {total} cases, {} passed",
        total - failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    hotline.shutdown().await;
}

#[tokio::test]
async fn torture_over_udp() {
    run("UDP").await;
}

#[tokio::test]
async fn torture_over_tcp() {
    run("TCP").await;
}
