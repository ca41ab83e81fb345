//! The B2BUA's leg to an operator, end to end over loopback UDP: a test UA registers as
//! operator 1001, the hotline rings it through `SipControl::originate`, and the test UA
//! answers, hangs up, is hung up on, or is cancelled while ringing.

mod support;

use hotline::sip::transport::SipControl;
use hotline::sip::ua::{EndReason, Event, Originate, OriginateError};
use std::time::Duration;
use support::*;

/// The operator phone's SDP answer: PCMA and telephone-event.
const ANSWER: &str = "v=0\r\no=- 7 7 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
    m=audio 7100 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n";

/// The next SIP event `want` accepts (others are skipped); panics after 5 s.
async fn wait_for(events: &mut SipEvents, want: impl Fn(&Event) -> bool) -> Event {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Ok(ev)) if want(&ev) => return ev,
            Ok(Ok(_)) => continue,
            other => panic!("no matching SIP event within 5 s: {other:?}"),
        }
    }
}

fn leg(number: &str, name: Option<&str>) -> Originate {
    Originate {
        extension: OPERATOR.into(),
        caller_number: number.into(),
        caller_name: name.map(str::to_string),
        for_call: None,
        via: None,
    }
}

/// A registered operator phone: (peer, its Contact URI).
async fn operator(hotline: &hotline::app::Hotline) -> (UdpPeer, String) {
    let phone = UdpPeer::new(hotline.sip_addr).await;
    let contact = format!("sip:{OPERATOR}@{}", phone.addr());
    let ok = register_operator(&phone, OPERATOR, PASSWORD, &contact).await;
    assert!(ok.contains(&contact), "{ok}");
    (phone, contact)
}

/// Rings the operator and answers with 200 + SDP; returns the INVITE and checks the ACK.
async fn ring_and_answer(
    control: &SipControl,
    events: &mut SipEvents,
    phone: &UdpPeer,
    contact: &str,
    number: &str,
) -> (u64, String) {
    let call = control.originate(leg(number, None)).await.unwrap();
    let invite = phone.expect("INVITE ").await;
    assert!(
        invite.starts_with(&format!("INVITE {contact} SIP/2.0\r\n")),
        "{invite}"
    );
    let ok_extra = format!("Contact: <{contact}>\r\n");
    phone
        .send(&response_to(&invite, "200 OK", "op-tag", &ok_extra, ANSWER))
        .await;
    let ack = phone.expect("ACK ").await;
    assert!(
        ack.starts_with(&format!("ACK {contact} SIP/2.0\r\n")),
        "{ack}"
    );
    assert_eq!(header(&ack, "CSeq"), Some("1 ACK"));
    assert_eq!(tag(header(&ack, "To").unwrap()), "op-tag");
    assert_eq!(header(&ack, "Call-ID"), header(&invite, "Call-ID"));
    let ev = wait_for(events, |e| matches!(e, Event::OperatorAnswered { .. })).await;
    let Event::OperatorAnswered {
        call: answered,
        rtp_port,
        media,
    } = ev
    else {
        unreachable!()
    };
    assert_eq!(answered, call);
    assert!(
        body(&invite).contains(&format!("m=audio {rtp_port} RTP/AVP 0 8 101\r\n")),
        "{invite}"
    );
    assert_eq!(media.remote_rtp, Some("127.0.0.1:7100".parse().unwrap()));
    assert_eq!(media.codecs[0].0, 8);
    (call, invite)
}

#[tokio::test]
async fn operator_leg_answered_then_bye_from_each_side() {
    let (hotline, _dir) = start().await;
    let mut events = sip_events(&hotline);
    let control = hotline.sip_control();
    assert_eq!(
        control.originate(leg("+79780000001", None)).await,
        Err(OriginateError::NotRegistered(OPERATOR.into()))
    );
    let (phone, contact) = operator(&hotline).await;
    let unknown = Originate {
        extension: "9999".into(),
        ..leg("1", None)
    };
    assert_eq!(
        control.originate(unknown).await,
        Err(OriginateError::UnknownExtension("9999".into()))
    );
    assert!(
        phone.recv(Duration::from_millis(200)).await.is_none(),
        "nothing sent"
    );

    // Ring, 180, answer, ACK.
    let call = control
        .originate(leg("+79780000001", Some("Клиент")))
        .await
        .unwrap();
    let invite = phone.expect("INVITE ").await;
    assert!(
        invite.starts_with(&format!("INVITE {contact} SIP/2.0\r\n")),
        "{invite}"
    );
    assert_eq!(
        header(&invite, "P-Asserted-Identity"),
        Some("\"Клиент\" <sip:+79780000001@hotline.test>")
    );
    assert!(header(&invite, "From")
        .unwrap()
        .starts_with("\"Клиент\" <sip:+79780000001@hotline.test>;tag="));
    assert_eq!(header(&invite, "To"), Some("<sip:1001@hotline.test>"));
    phone
        .send(&response_to(&invite, "180 Ringing", "op-tag", "", ""))
        .await;
    let ev = wait_for(&mut events, |e| matches!(e, Event::OperatorRinging { .. })).await;
    assert_eq!(ev, Event::OperatorRinging { call });
    let ok_extra = format!("Contact: <{contact}>\r\n");
    let ok = response_to(&invite, "200 OK", "op-tag", &ok_extra, ANSWER);
    phone.send(&ok).await;
    let ack = phone.expect("ACK ").await;
    assert!(
        ack.starts_with(&format!("ACK {contact} SIP/2.0\r\n")),
        "{ack}"
    );
    assert_eq!(header(&ack, "CSeq"), Some("1 ACK"));
    let ev = wait_for(&mut events, |e| matches!(e, Event::OperatorAnswered { .. })).await;
    assert!(matches!(ev, Event::OperatorAnswered { call: c, .. } if c == call));
    // A retransmitted 200 gets the ACK again.
    phone.send(&ok).await;
    let again = phone.expect("ACK ").await;
    assert_eq!(again, ack);

    // The operator hangs up.
    let bye = format!(
        "BYE sip:hotline@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {addr};branch=z9hG4bK-op-bye;rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:1001@hotline.test>;tag=op-tag\r\nTo: {to}\r\nCall-ID: {cid}\r\n\
         CSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
        server = hotline.sip_addr,
        addr = phone.addr(),
        to = header(&invite, "From").unwrap(),
        cid = header(&invite, "Call-ID").unwrap(),
    );
    phone.send(&bye).await;
    phone.expect("SIP/2.0 200").await;
    let ev = wait_for(&mut events, |e| matches!(e, Event::CallEnded { .. })).await;
    assert_eq!(
        ev,
        Event::CallEnded {
            call,
            reason: EndReason::RemoteBye
        }
    );

    // A second leg; this time the hotline hangs up.
    let (call, invite) =
        ring_and_answer(&control, &mut events, &phone, &contact, "84950000000").await;
    control.hangup(call, EndReason::Hangup).await;
    let bye = phone.expect("BYE ").await;
    assert!(
        bye.starts_with(&format!("BYE {contact} SIP/2.0\r\n")),
        "{bye}"
    );
    assert_eq!(header(&bye, "Call-ID"), header(&invite, "Call-ID"));
    assert_eq!(tag(header(&bye, "To").unwrap()), "op-tag");
    assert_eq!(header(&bye, "CSeq"), Some("2 BYE"));
    phone
        .send(&response_to(&bye, "200 OK", "op-tag", "", ""))
        .await;
    let ev = wait_for(&mut events, |e| matches!(e, Event::CallEnded { .. })).await;
    assert_eq!(
        ev,
        Event::CallEnded {
            call,
            reason: EndReason::Hangup
        }
    );
    hotline.shutdown().await;
}

#[tokio::test]
async fn operator_leg_cancelled_while_ringing() {
    let (hotline, _dir) = start().await;
    let mut events = sip_events(&hotline);
    let control = hotline.sip_control();
    let (phone, contact) = operator(&hotline).await;
    let call = control.originate(leg("+79780000002", None)).await.unwrap();
    let invite = phone.expect("INVITE ").await;
    phone
        .send(&response_to(&invite, "180 Ringing", "op-tag", "", ""))
        .await;
    wait_for(&mut events, |e| matches!(e, Event::OperatorRinging { .. })).await;
    control.cancel(call).await;
    let cancel = phone.expect("CANCEL ").await;
    assert!(
        cancel.starts_with(&format!("CANCEL {contact} SIP/2.0\r\n")),
        "{cancel}"
    );
    assert_eq!(
        header(&cancel, "Via"),
        header(&invite, "Via"),
        "the INVITE's branch"
    );
    assert_eq!(header(&cancel, "CSeq"), Some("1 CANCEL"));
    phone
        .send(&response_to(&cancel, "200 OK", "op-tag", "", ""))
        .await;
    phone
        .send(&response_to(
            &invite,
            "487 Request Terminated",
            "op-tag",
            "",
            "",
        ))
        .await;
    let ack = phone.expect("ACK ").await;
    assert_eq!(header(&ack, "CSeq"), Some("1 ACK"));
    assert_eq!(header(&ack, "Via"), header(&invite, "Via"));
    let ev = wait_for(&mut events, |e| {
        matches!(e, Event::CallEnded { .. } | Event::OperatorFailed { .. })
    })
    .await;
    assert_eq!(
        ev,
        Event::CallEnded {
            call,
            reason: EndReason::Cancelled
        }
    );
    hotline.shutdown().await;
}
