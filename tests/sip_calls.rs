//! End-to-end call handling over real loopback sockets, UDP and TCP: the hotline runs
//! in-process on ephemeral ports and raw SIP text goes over the wire.

mod support;

use hotline::sip::ua::{EndReason, Event};
use std::time::Duration;
use support::*;

const SHORT: Duration = Duration::from_millis(300);

async fn next_event(rx: &mut SipEvents) -> Event {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("event within 5 s")
        .expect("event channel open")
}

/// INVITE -> 100 Trying -> 200 OK with an SDP answer -> ACK -> BYE -> 200, on one transport.
async fn basic_call(transport: &str) {
    let (hotline, _dir) = start().await;
    let mut events = sip_events(&hotline);
    let mut peer = Peer::new(transport, hotline.sip_addr).await;
    let call_id = format!("basic-{transport}@test");
    let mut invite = peer.req("INVITE", &call_id);
    invite.body = SDP_PCMU;
    peer.send(&invite.build()).await;

    let trying = peer.recv(Duration::from_secs(2)).await.expect("a response");
    assert!(trying.starts_with("SIP/2.0 100 Trying"), "{trying}");
    let ok = peer.expect("SIP/2.0 200 OK").await;
    assert_eq!(header(&ok, "CSeq"), Some("1 INVITE"));
    assert_eq!(header(&ok, "Call-ID"), Some(call_id.as_str()));
    assert_eq!(header(&ok, "Content-Type"), Some("application/sdp"));
    let via = header(&ok, "Via").unwrap();
    assert!(
        via.contains(&format!("rport={}", peer.addr().port())),
        "{via}"
    );
    let answer = body(&ok);
    assert!(answer.contains("m=audio "), "{answer}");
    assert!(answer.contains("RTP/AVP 0"), "{answer}");
    assert!(answer.contains("a=rtpmap:0 PCMU/8000"), "{answer}");
    let contact = header(&ok, "Contact").unwrap();
    assert!(
        contact.starts_with(&format!("<sip:8800@127.0.0.1:{}", hotline.sip_addr.port())),
        "{contact}"
    );
    assert_eq!(
        contact.contains(";transport=tcp"),
        transport == "TCP",
        "{contact}"
    );
    let to_tag = tag(header(&ok, "To").unwrap());
    assert!(!to_tag.is_empty());

    let mut ack = peer.req("ACK", &call_id);
    ack.branch = "z9hG4bK-ack-1";
    ack.to_tag = Some(&to_tag);
    peer.send(&ack.build()).await;

    let mut bye = peer.req("BYE", &call_id);
    bye.branch = "z9hG4bK-bye-1";
    bye.to_tag = Some(&to_tag);
    bye.cseq = 2;
    peer.send(&bye.build()).await;
    let bye_ok = peer.expect("SIP/2.0 200").await;
    assert_eq!(header(&bye_ok, "CSeq"), Some("2 BYE"));

    assert!(
        matches!(next_event(&mut events).await, Event::CallOffered { ref number, .. } if number == "8800")
    );
    assert!(matches!(
        next_event(&mut events).await,
        Event::CallAnswered { .. }
    ));
    assert!(matches!(
        next_event(&mut events).await,
        Event::CallConfirmed { .. }
    ));
    assert!(matches!(
        next_event(&mut events).await,
        Event::CallEnded {
            reason: EndReason::RemoteBye,
            ..
        }
    ));
    // The ACK stopped the 2xx retransmissions: nothing more arrives.
    assert_eq!(peer.recv(Duration::from_millis(700)).await, None);
    hotline.shutdown().await;
}

#[tokio::test]
async fn call_over_udp() {
    basic_call("UDP").await;
}

#[tokio::test]
async fn call_over_tcp() {
    basic_call("TCP").await;
}

async fn options(transport: &str) {
    let (hotline, _dir) = start().await;
    let mut peer = Peer::new(transport, hotline.sip_addr).await;
    peer.send(&peer.req("OPTIONS", "opt@test").build()).await;
    let ok = peer.expect("SIP/2.0 200 OK").await;
    let allow = header(&ok, "Allow").unwrap();
    for m in ["INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "REGISTER"] {
        assert!(allow.contains(m), "{allow}");
    }
    let mut other = peer.req("OPTIONS", "opt2@test");
    other.uri = "sip:9999@hotline.test";
    other.branch = "z9hG4bK-opt-2";
    peer.send(&other.build()).await;
    peer.expect("SIP/2.0 404").await;
    hotline.shutdown().await;
}

#[tokio::test]
async fn options_over_udp_and_tcp() {
    options("UDP").await;
    options("TCP").await;
}

#[tokio::test]
async fn bye_outside_a_dialog_is_481() {
    let (hotline, _dir) = start().await;
    for transport in ["UDP", "TCP"] {
        let mut peer = Peer::new(transport, hotline.sip_addr).await;
        let mut bye = peer.req("BYE", "nodialog@test");
        bye.to_tag = Some("nosuchtag");
        peer.send(&bye.build()).await;
        peer.expect("SIP/2.0 481").await;
    }
    hotline.shutdown().await;
}

#[tokio::test]
async fn request_uri_not_the_hotline_is_404() {
    let (hotline, _dir) = start().await;
    let mut peer = Peer::new("UDP", hotline.sip_addr).await;
    let mut invite = peer.req("INVITE", "404@test");
    invite.uri = "sip:+74951234567@hotline.test";
    invite.body = SDP_PCMU;
    peer.send(&invite.build()).await;
    peer.expect("SIP/2.0 100").await;
    let r = peer.expect("SIP/2.0 404").await;
    // Non-2xx final: the ACK goes in the INVITE transaction and gets no answer.
    let mut ack = peer.req("ACK", "404@test");
    ack.uri = "sip:+74951234567@hotline.test";
    ack.to_tag = Some(Box::leak(tag(header(&r, "To").unwrap()).into_boxed_str()));
    peer.send(&ack.build()).await;
    assert_eq!(peer.recv(SHORT).await, None);
    hotline.shutdown().await;
}

#[tokio::test]
async fn invite_without_sdp_or_common_codec_is_488() {
    let (hotline, _dir) = start().await;
    let mut peer = Peer::new("UDP", hotline.sip_addr).await;
    peer.send(&peer.req("INVITE", "nosdp@test").build()).await;
    let r = peer.expect("SIP/2.0 488").await;
    assert!(header(&r, "Warning").is_some());

    let g729 = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 7000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n";
    let mut invite = peer.req("INVITE", "g729@test");
    invite.branch = "z9hG4bK-g729";
    invite.body = g729;
    peer.send(&invite.build()).await;
    let r = peer.expect("SIP/2.0 488").await;
    assert!(header(&r, "Warning").unwrap().starts_with("305"), "{r}");
    hotline.shutdown().await;
}

#[tokio::test]
async fn answer_prefers_the_offerers_codec_order() {
    let (hotline, _dir) = start().await;
    let mut peer = Peer::new("UDP", hotline.sip_addr).await;
    let offer = sdp("sendrecv");
    let mut invite = peer.req("INVITE", "order@test");
    invite.body = &offer;
    peer.send(&invite.build()).await;
    let ok = peer.expect("SIP/2.0 200").await;
    let m = body(&ok)
        .lines()
        .find(|l| l.starts_with("m=audio"))
        .unwrap();
    assert!(m.ends_with("RTP/AVP 8 0 101"), "{m}");
    assert!(body(&ok).contains("a=rtpmap:101 telephone-event/8000"));
    hotline.shutdown().await;
}

#[tokio::test]
async fn cancel_of_a_pending_invite() {
    let (hotline, _dir) = start_trusted("answer_delay_ms = 3000", "").await;
    let mut events = sip_events(&hotline);
    for transport in ["UDP", "TCP"] {
        let mut peer = Peer::new(transport, hotline.sip_addr).await;
        let call_id = format!("cancel-{transport}@test");
        let mut invite = peer.req("INVITE", &call_id);
        invite.body = SDP_PCMU;
        invite.branch = "z9hG4bK-cancel-me";
        peer.send(&invite.build()).await;
        peer.expect("SIP/2.0 100").await;
        let ringing = peer.expect("SIP/2.0 180 Ringing").await;
        assert!(!tag(header(&ringing, "To").unwrap()).is_empty());

        let mut cancel = peer.req("CANCEL", &call_id);
        cancel.branch = "z9hG4bK-cancel-me";
        peer.send(&cancel.build()).await;
        let mut got = Vec::new();
        for _ in 0..2 {
            got.push(peer.recv(Duration::from_secs(2)).await.expect("response"));
        }
        let cancel_ok = got
            .iter()
            .find(|m| m.contains("CSeq: 1 CANCEL"))
            .expect("200 to CANCEL");
        assert!(cancel_ok.starts_with("SIP/2.0 200"), "{cancel_ok}");
        let terminated = got
            .iter()
            .find(|m| m.contains("CSeq: 1 INVITE"))
            .expect("487");
        assert!(terminated.starts_with("SIP/2.0 487"), "{terminated}");

        let mut ack = peer.req("ACK", &call_id);
        ack.branch = "z9hG4bK-cancel-me";
        let t = tag(header(terminated, "To").unwrap());
        ack.to_tag = Some(&t);
        peer.send(&ack.build()).await;
        // The call is gone and never answered.
        assert_eq!(peer.recv(Duration::from_millis(3500)).await, None);

        // A CANCEL for nothing gets 481.
        let mut stray = peer.req("CANCEL", "nothing@test");
        stray.branch = "z9hG4bK-nothing";
        peer.send(&stray.build()).await;
        peer.expect("SIP/2.0 481").await;
    }
    let mut ended = 0;
    while let Ok(Ok(ev)) = tokio::time::timeout(SHORT, events.recv()).await {
        if let Event::CallEnded { reason, .. } = ev {
            assert_eq!(reason, EndReason::Cancelled);
            ended += 1;
        }
        assert!(!matches!(ev, Event::CallAnswered { .. }));
    }
    assert_eq!(ended, 2);
    hotline.shutdown().await;
}

#[tokio::test]
async fn reinvite_hold_and_unhold() {
    let (hotline, _dir) = start().await;
    let mut peer = Peer::new("UDP", hotline.sip_addr).await;
    let offer = sdp("sendrecv");
    let mut invite = peer.req("INVITE", "hold@test");
    invite.body = &offer;
    peer.send(&invite.build()).await;
    let ok = peer.expect("SIP/2.0 200").await;
    let to_tag = tag(header(&ok, "To").unwrap());
    let version = |m: &str| {
        body(m)
            .lines()
            .find(|l| l.starts_with("o="))
            .unwrap()
            .split(' ')
            .nth(2)
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    let v1 = version(&ok);
    let mut ack = peer.req("ACK", "hold@test");
    ack.branch = "z9hG4bK-a1";
    ack.to_tag = Some(&to_tag);
    peer.send(&ack.build()).await;

    let mut last_version = v1;
    for (cseq, (offered, answered)) in (2..).zip([
        ("sendonly", "a=recvonly"),
        ("inactive", "a=inactive"),
        ("sendrecv", "a=sendrecv"),
    ]) {
        let offer = sdp(offered);
        let branch = format!("z9hG4bK-re-{cseq}");
        let mut re = peer.req("INVITE", "hold@test");
        re.branch = &branch;
        re.to_tag = Some(&to_tag);
        re.cseq = cseq;
        re.body = &offer;
        peer.send(&re.build()).await;
        let ok = peer.expect("SIP/2.0 200").await;
        assert!(body(&ok).contains(answered), "{offered}: {ok}");
        let v = version(&ok);
        assert_eq!(v, last_version + 1, "o= version must grow");
        last_version = v;
        let ack_branch = format!("z9hG4bK-ack-{cseq}");
        let mut ack = peer.req("ACK", "hold@test");
        ack.branch = &ack_branch;
        ack.to_tag = Some(&to_tag);
        ack.cseq = cseq;
        peer.send(&ack.build()).await;
    }
    // A re-INVITE with an old CSeq is refused (§12.2.2).
    let mut old = peer.req("INVITE", "hold@test");
    old.branch = "z9hG4bK-old";
    old.to_tag = Some(&to_tag);
    old.cseq = 2;
    old.body = SDP_PCMU;
    peer.send(&old.build()).await;
    peer.expect("SIP/2.0 500").await;
    hotline.shutdown().await;
}

#[tokio::test]
async fn methods_not_served() {
    let (hotline, _dir) = start().await;
    let peer = UdpPeer::new(hotline.sip_addr).await;
    let mut r = Req::new("SUBSCRIBE", peer.addr(), "sub@test");
    r.extra = "Event: presence\r\n";
    peer.send(&r.build()).await;
    let resp = peer.expect("SIP/2.0 405").await;
    assert!(header(&resp, "Allow").unwrap().contains("INVITE"));

    let mut r = Req::new("FOO", peer.addr(), "foo@test");
    r.branch = "z9hG4bK-foo";
    peer.send(&r.build()).await;
    peer.expect("SIP/2.0 501").await;
    hotline.shutdown().await;
}

#[tokio::test]
async fn retransmitted_invite_is_absorbed() {
    let (hotline, _dir) = start().await;
    let mut events = sip_events(&hotline);
    let peer = UdpPeer::new(hotline.sip_addr).await;
    let mut invite = Req::new("INVITE", peer.addr(), "retrans@test");
    invite.body = SDP_PCMU;
    let text = invite.build();
    peer.send(&text).await;
    peer.expect("SIP/2.0 100").await;
    let ok = peer.expect("SIP/2.0 200").await;
    // The same INVITE again (a retransmission): no new call, no new transaction.
    peer.send(&text).await;
    peer.send(&text).await;
    let mut offered = 0;
    while let Ok(Ok(ev)) = tokio::time::timeout(SHORT, events.recv()).await {
        if matches!(ev, Event::CallOffered { .. }) {
            offered += 1;
        }
    }
    assert_eq!(offered, 1);
    let to_tag = tag(header(&ok, "To").unwrap());
    let mut ack = Req::new("ACK", peer.addr(), "retrans@test");
    ack.branch = "z9hG4bK-ack";
    ack.to_tag = Some(&to_tag);
    peer.send(&ack.build()).await;
    hotline.shutdown().await;
}

#[tokio::test]
async fn unacknowledged_2xx_is_retransmitted_then_bye() {
    // T1 = 50 ms: 2xx at 0, 50, 150, 350, 750 … ms, BYE after 64·T1 = 3.2 s.
    let (hotline, _dir) =
        start_trusted("[sip.timers]\nt1_ms = 50\nt2_ms = 400\nt4_ms = 500", "").await;
    let mut events = sip_events(&hotline);
    let peer = UdpPeer::new(hotline.sip_addr).await;
    let mut invite = Req::new("INVITE", peer.addr(), "noack@test");
    invite.body = SDP_PCMU;
    peer.send(&invite.build()).await;
    let mut oks = 0;
    let bye = loop {
        let m = peer.recv(Duration::from_secs(5)).await.expect("message");
        if m.starts_with("SIP/2.0 200") {
            oks += 1;
        } else if m.starts_with("BYE ") {
            break m;
        }
    };
    assert!(oks >= 5, "2xx sent {oks} times");
    assert!(bye.starts_with("BYE sip:caller@"), "{bye}");
    assert!(header(&bye, "To").unwrap().contains(";tag=caller-tag"));
    assert_eq!(header(&bye, "CSeq"), Some("1 BYE"));
    // Answer the BYE so the client transaction completes.
    let via = header(&bye, "Via").unwrap();
    let reply = format!(
        "SIP/2.0 200 OK\r\nVia: {via}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: noack@test\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
        header(&bye, "From").unwrap(),
        header(&bye, "To").unwrap()
    );
    peer.send(&reply).await;
    let mut reason = None;
    while let Ok(Ok(ev)) = tokio::time::timeout(Duration::from_secs(1), events.recv()).await {
        if let Event::CallEnded { reason: r, .. } = ev {
            reason = Some(r);
        }
    }
    assert_eq!(reason, Some(EndReason::AckTimeout));
    // The answered BYE is not retransmitted.
    assert_eq!(peer.recv(Duration::from_millis(400)).await, None);
    hotline.shutdown().await;
}

#[tokio::test]
async fn call_limit_gives_503() {
    let (hotline, _dir) = start_trusted("", "max_calls = 1").await;
    let peer = UdpPeer::new(hotline.sip_addr).await;
    let mut first = Req::new("INVITE", peer.addr(), "one@test");
    first.body = SDP_PCMU;
    peer.send(&first.build()).await;
    peer.expect("SIP/2.0 200").await;
    let mut second = Req::new("INVITE", peer.addr(), "two@test");
    second.body = SDP_PCMU;
    second.branch = "z9hG4bK-two";
    peer.send(&second.build()).await;
    let r = peer.expect("SIP/2.0 503").await;
    assert!(header(&r, "Retry-After").is_some());
    hotline.shutdown().await;
}

#[tokio::test]
async fn healthz_reports_sip() {
    let (hotline, _dir) = start().await;
    let (status, body) = http_get(hotline.http_addr, "/healthz").await;
    assert_eq!(status, 200);
    assert!(body.contains("\"status\":\"ok\""), "{body}");
    assert!(body.contains(&hotline.sip_addr.to_string()), "{body}");
    // The media threads' class: real-time where the process may (root, as here and in
    // CI), else a warning that says how to allow it.
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    // The test config has no [notify]: the notices that go nowhere are listed.
    let undeliverable = health["notifications"]["undeliverable"].as_array().unwrap();
    assert!(
        undeliverable
            .iter()
            .any(|w| w.as_str().unwrap().contains("head of the call centre")),
        "{body}"
    );
    let media = &health["media"];
    assert!(media["threads"].as_u64().unwrap() >= 1, "{body}");
    // SAFETY: no arguments, no memory.
    if unsafe { libc::geteuid() } == 0 {
        assert_eq!(media["realtime_priority"], 10, "{body}");
        assert!(media["warning"].is_null(), "{body}");
    } else {
        assert!(media["realtime_priority"].is_null(), "{body}");
        assert!(media["warning"].as_str().unwrap().contains("CAP_SYS_NICE"));
    }
    hotline.shutdown().await;
}
