//! Bad input never panics the server and gets 400 (or 505/501) where a response can be
//! routed; TCP framing copes with partial and coalesced segments; scanners hit the rate limit.

mod support;

use std::time::Duration;
use support::*;

const SHORT: Duration = Duration::from_millis(300);

fn options(peer: std::net::SocketAddr, transport: &str) -> String {
    let mut r = Req::new("OPTIONS", peer, "probe@test");
    r.transport = transport;
    r.branch = "z9hG4bK-probe";
    r.build()
}

/// The server still answers after whatever came before.
async fn still_alive(peer: &UdpPeer) {
    peer.send(&options(peer.addr(), "UDP")).await;
    peer.expect("SIP/2.0 200").await;
}

#[tokio::test]
async fn malformed_udp_messages_get_400_or_are_dropped() {
    let (hotline, _dir) = start().await;
    let peer = UdpPeer::new(hotline.sip_addr).await;
    let good = options(peer.addr(), "UDP");
    let without = |name: &str| -> String {
        good.split("\r\n")
            .filter(|l| !l.starts_with(&format!("{name}:")))
            .collect::<Vec<_>>()
            .join("\r\n")
    };
    let cases: Vec<(&str, Vec<u8>, Option<&str>)> = vec![
        (
            "truncated",
            good.as_bytes()[..good.len() / 2].to_vec(),
            Some("SIP/2.0 400"),
        ),
        (
            "Content-Length too large",
            good.replace("Content-Length: 0", "Content-Length: 50")
                .into_bytes(),
            Some("SIP/2.0 400"),
        ),
        (
            "Content-Length not a number",
            good.replace("Content-Length: 0", "Content-Length: lots")
                .into_bytes(),
            Some("SIP/2.0 400"),
        ),
        ("missing Via", without("Via").into_bytes(), None),
        (
            "NUL byte",
            good.replace("Call-ID: probe@test", "Call-ID: pro\0be")
                .into_bytes(),
            Some("SIP/2.0 400"),
        ),
        (
            "64 KB header",
            good.replace(
                "Max-Forwards: 70",
                &format!("Max-Forwards: 70\r\nX-Huge: {}", "x".repeat(60_000)),
            )
            .into_bytes(),
            Some("SIP/2.0 400"),
        ),
        (
            "SIP/3.0",
            good.replacen("SIP/2.0\r\n", "SIP/3.0\r\n", 1).into_bytes(),
            Some("SIP/2.0 505"),
        ),
        (
            "CSeq method mismatch",
            good.replace("1 OPTIONS", "1 INVITE").into_bytes(),
            Some("SIP/2.0 400"),
        ),
        (
            "garbage",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage".to_vec(),
            None,
        ),
        ("a lone NUL byte", b"\0".to_vec(), None),
        ("only CRLF", b"\r\n\r\n".to_vec(), None),
        (
            "bad request line",
            good.replacen(
                "OPTIONS sip:8800@hotline.test SIP/2.0",
                "OPTIONS  SIP/2.0",
                1,
            )
            .into_bytes(),
            Some("SIP/2.0 400"),
        ),
        (
            "unparseable URI",
            good.replacen("sip:8800@hotline.test", "sip:@@@:::", 1)
                .into_bytes(),
            Some("SIP/2.0 400"),
        ),
    ];
    let missing = ["From", "To", "Call-ID", "CSeq"]
        .map(|h| (h, without(h).into_bytes(), Some("SIP/2.0 400")));
    for (name, bytes, expected) in cases.into_iter().chain(missing) {
        peer.send_bytes(&bytes).await;
        let got = peer.recv(SHORT).await;
        match expected {
            Some(prefix) => {
                let got = got.unwrap_or_else(|| panic!("{name}: no response"));
                assert!(got.starts_with(prefix), "{name}: {got}");
                if got.starts_with("SIP/2.0 400") || got.starts_with("SIP/2.0 505") {
                    assert!(
                        got.contains("rport="),
                        "{name}: response routed per Via: {got}"
                    );
                }
            }
            None => assert_eq!(got, None, "{name}: expected no response"),
        }
        still_alive(&peer).await;
    }
    // A malformed ACK is never answered.
    let ack = good
        .replacen("OPTIONS sip", "ACK sip", 1)
        .replace("1 OPTIONS", "1 ACK")
        .replace("Content-Length: 0", "Content-Length: 99");
    peer.send(&ack).await;
    assert_eq!(peer.recv(SHORT).await, None);
    still_alive(&peer).await;
    hotline.shutdown().await;
}

#[tokio::test]
async fn random_bytes_never_stop_the_server() {
    let (hotline, _dir) = start().await;
    let peer = UdpPeer::new(hotline.sip_addr).await;
    let good = options(peer.addr(), "UDP").into_bytes();
    // Deterministic pseudo-random mutations of a valid message (bounded: 400 datagrams).
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..400 {
        let mut m = good.clone();
        for _ in 0..(next() % 8 + 1) {
            let i = (next() as usize) % m.len();
            match next() % 3 {
                0 => m[i] = next() as u8,
                1 => {
                    m.truncate(i.max(1));
                }
                _ => m.insert(i, b"\r\n:;<>\"\0,"[(next() % 9) as usize]),
            }
        }
        peer.send_bytes(&m).await;
    }
    // Drain whatever was answered, then prove the server is alive.
    while peer.recv(Duration::from_millis(200)).await.is_some() {}
    still_alive(&peer).await;
    hotline.shutdown().await;
}

#[tokio::test]
async fn tcp_partial_and_coalesced_segments() {
    let (hotline, _dir) = start().await;
    let mut peer = TcpPeer::connect(hotline.sip_addr).await;
    let a = options(peer.addr(), "TCP");
    let mut second = Req::new("OPTIONS", peer.addr(), "second@test");
    second.transport = "TCP";
    second.branch = "z9hG4bK-second";
    let b = second.build();
    // Byte by byte, with pauses.
    for chunk in a.as_bytes().chunks(7) {
        peer.send_bytes(chunk).await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let r = peer.expect("SIP/2.0 200").await;
    assert_eq!(header(&r, "Call-ID"), Some("probe@test"));
    // Two messages and a keep-alive in one segment.
    let mut branch3 = Req::new("OPTIONS", peer.addr(), "third@test");
    branch3.transport = "TCP";
    branch3.branch = "z9hG4bK-third";
    peer.send(&format!("{b}\r\n\r\n{}", branch3.build())).await;
    let r1 = peer.expect("SIP/2.0 200").await;
    let r2 = peer.expect("SIP/2.0 200").await;
    assert_eq!(header(&r1, "Call-ID"), Some("second@test"));
    assert_eq!(header(&r2, "Call-ID"), Some("third@test"));
    hotline.shutdown().await;
}

#[tokio::test]
async fn tcp_garbage_and_oversize_close_the_connection() {
    let (hotline, _dir) = start_trusted("", "max_message_size = 4096").await;
    // Oversize: the framer cannot resynchronise; a 400 is sent if routable, then close.
    let mut peer = TcpPeer::connect(hotline.sip_addr).await;
    let big = options(peer.addr(), "TCP").replace(
        "Max-Forwards: 70",
        &format!("Max-Forwards: 70\r\nX-Huge: {}", "x".repeat(8000)),
    );
    peer.send(&big).await;
    let r = peer
        .recv(Duration::from_secs(2))
        .await
        .expect("400 before close");
    assert!(r.starts_with("SIP/2.0 400"), "{r}");
    assert!(peer.closed_within(Duration::from_secs(2)).await);

    // A bad Content-Length on TCP cannot be framed either.
    let mut peer = TcpPeer::connect(hotline.sip_addr).await;
    let bad = options(peer.addr(), "TCP").replace("Content-Length: 0", "Content-Length: x");
    peer.send(&bad).await;
    assert!(peer.closed_within(Duration::from_secs(2)).await);

    // A malformed but framable message gets its 400 and the connection stays usable.
    let mut peer = TcpPeer::connect(hotline.sip_addr).await;
    let no_from: String = options(peer.addr(), "TCP")
        .split("\r\n")
        .filter(|l| !l.starts_with("From:"))
        .collect::<Vec<_>>()
        .join("\r\n");
    peer.send(&no_from).await;
    peer.expect("SIP/2.0 400").await;
    peer.send(&options(peer.addr(), "TCP")).await;
    peer.expect("SIP/2.0 200").await;

    // And the server still works for everybody.
    let udp = UdpPeer::new(hotline.sip_addr).await;
    still_alive(&udp).await;
    hotline.shutdown().await;
}

#[tokio::test]
async fn per_source_rate_limit_drops_floods() {
    // Loopback is NOT trusted here: 5 requests/s with a burst of 10.
    let (hotline, _dir) = start_with("", "[limits]\nsource_rate = 5\nsource_burst = 10").await;
    let peer = UdpPeer::new(hotline.sip_addr).await;
    for i in 0..40 {
        let call_id = format!("flood-{i}@scanner");
        let branch = format!("z9hG4bK-flood-{i}");
        let mut r = Req::new("OPTIONS", peer.addr(), &call_id);
        r.branch = &branch;
        peer.send(&r.build()).await;
    }
    let mut answered = 0;
    while peer.recv(Duration::from_millis(300)).await.is_some() {
        answered += 1;
    }
    assert!(
        (10..=12).contains(&answered),
        "burst of 10 (+ refill) answered, got {answered}"
    );
    // After a pause the bucket refills: the source is limited, not banned.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut r = Req::new("OPTIONS", peer.addr(), "after@scanner");
    r.branch = "z9hG4bK-after";
    peer.send(&r.build()).await;
    peer.expect("SIP/2.0 200").await;

    // Over TCP the flooding connection is closed.
    let mut tcp = TcpPeer::connect(hotline.sip_addr).await;
    let mut flood = String::new();
    for i in 0..40 {
        let call_id = format!("tflood-{i}@scanner");
        let branch = format!("z9hG4bK-tflood-{i}");
        let mut r = Req::new("OPTIONS", tcp.addr(), &call_id);
        r.transport = "TCP";
        r.branch = &branch;
        flood.push_str(&r.build());
    }
    tcp.send(&flood).await;
    assert!(tcp.closed_within(Duration::from_secs(3)).await);
    hotline.shutdown().await;
}

/// One address cannot take every TCP slot: past `tcp_max_connections_per_source` its new
/// connections are closed at once, while another address still gets in and is answered.
#[tokio::test]
async fn one_source_cannot_take_every_tcp_slot() {
    use tokio::io::AsyncReadExt;
    let (hotline, _dir) = start_with(
        "",
        "[limits]\ntcp_max_connections = 16\ntcp_max_connections_per_source = 4\n",
    )
    .await;
    let connect_from = |ip: &'static str| async move {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind(format!("{ip}:0").parse().unwrap()).unwrap();
        s.connect(hotline.sip_addr).await.unwrap()
    };
    // Open for the attacker: read blocks (the server keeps it); closed: read gives EOF.
    async fn is_open(s: &mut tokio::net::TcpStream) -> bool {
        let mut b = [0u8; 16];
        tokio::time::timeout(Duration::from_millis(300), s.read(&mut b))
            .await
            .is_err()
    }
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(connect_from("127.0.0.2").await);
    }
    let mut open = 0;
    for s in &mut held {
        if is_open(s).await {
            open += 1;
        }
    }
    assert_eq!(open, 4, "one source holds at most 4 connections");
    // Another address is served.
    let s = connect_from("127.0.0.3").await;
    let mut peer = TcpPeer::from_stream(s);
    peer.send(&options(peer.addr(), "TCP")).await;
    peer.expect("SIP/2.0 200").await;
    // A freed slot can be used again.
    held.clear();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut again = connect_from("127.0.0.2").await;
    assert!(is_open(&mut again).await);
    hotline.shutdown().await;
}
