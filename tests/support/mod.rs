//! Shared helpers for the end-to-end tests: a hotline started in-process on ephemeral
//! loopback ports, and tiny SIP peers over UDP and TCP that send raw text and read raw text.
#![allow(dead_code)]

use hotline::app::Hotline;
use hotline::config::Config;
use hotline::sip::framing::{Frame, Framer};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

pub mod api;
pub mod child;
pub mod notify;
pub mod pgproxy;
pub mod phone;
pub mod rtp;

/// The prompts shipped in the repository.
pub const PROMPTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/ivr-prompts");

pub const OPERATOR: &str = "1001";
pub const PASSWORD: &str = "secret-1001";

/// A config for tests: loopback, ephemeral ports, a temporary data dir, one operator.
/// `extra` is TOML appended to the `[sip]` table first, then whole tables after it.
pub fn config(sip_extra: &str, tables: &str) -> (Config, tempfile::TempDir) {
    // Unless a test sets its own hours, the hotline is open around the clock, with no
    // holidays (an empty calendar directory), so that a test means the same at any hour.
    config_hours(sip_extra, tables, "00:00-24:00")
}

/// [`config`] with the hotline open `hours` (`HH:MM-HH:MM`) every day, without holidays
/// (ignored when `tables` has its own `[calendar]`).
pub fn config_hours(sip_extra: &str, tables: &str, hours: &str) -> (Config, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = config_text(dir.path(), sip_extra, tables, hours);
    let mut config = Config::from_toml(&text).expect("test config parses");
    config.media.prompts_dir = PROMPTS.into();
    config.validate().expect("test config is valid");
    (config, dir)
}

/// The TOML of [`config_hours`] with data under `dir` (for a test that runs the binary).
pub fn config_text(dir: &std::path::Path, sip_extra: &str, tables: &str, hours: &str) -> String {
    let calendar = if tables.contains("[calendar") {
        String::new()
    } else {
        calendar_tables(dir, hours)
    };
    format!(
        r#"
[sip]
listen = "127.0.0.1:0"
domain = "hotline.test"
hotline_numbers = ["8800", "hotline"]
{sip_extra}

[http]
listen = "127.0.0.1:0"

[storage]
data_dir = "{}"

{tables}
{calendar}

[[operators]]
extension = "{OPERATOR}"
name = "Иванова Анна"
password = "{PASSWORD}"
"#,
        dir.display()
    )
}

/// `[calendar]` tables with `hours` on every day of the week and no holidays (an empty
/// calendar directory under `data_dir`).
pub fn calendar_tables(data_dir: &std::path::Path, hours: &str) -> String {
    let cal_dir = data_dir.join("no-calendar");
    std::fs::create_dir_all(&cal_dir).expect("calendar dir");
    let days: String = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .iter()
        .map(|d| format!("{d} = \"{hours}\"\n"))
        .collect();
    format!(
        "[calendar]\ntime_zone = \"Europe/Moscow\"\ndir = \"{}\"\nshortened_by_minutes = 0\n\
         [calendar.hours]\n{days}",
        cal_dir.display()
    )
}

/// Two hours that do not include now (Moscow time): the hotline is closed.
pub fn closed_hours() -> &'static str {
    use chrono::Timelike;
    let msk = chrono::Utc::now() + chrono::Duration::hours(3);
    if (12..14).contains(&msk.hour()) {
        "03:00-05:00"
    } else {
        "12:00-14:00"
    }
}

/// The `[limits]` line that exempts loopback from the per-source rate limit.
pub const TRUSTED_LOOPBACK: &str = "trusted_sources = [\"127.0.0.0/8\"]";

/// A SIP peer over TLS that trusts the CA in `ca` (a lab's, from `hotline cert`): the phone
/// of the TLS tests. A task reads the stream and frames its messages as TCP does.
pub struct TlsPeer {
    write: tokio::sync::Mutex<tokio::io::WriteHalf<tokio_rustls::client::TlsStream<TcpStream>>>,
    incoming: tokio::sync::Mutex<tokio::sync::mpsc::Receiver<String>>,
    local: SocketAddr,
    pub server: SocketAddr,
    /// The leaf certificate the server showed (DER).
    pub server_cert: Vec<u8>,
}

/// A TLS client configuration trusting only the CA in `ca`.
pub fn tls_client(ca: &std::path::Path) -> std::sync::Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(ca).expect("CA file") {
        roots.add(c.expect("CA certificate")).expect("CA added");
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    std::sync::Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

impl TlsPeer {
    /// Connects and finishes the handshake (the server's name: 127.0.0.1).
    pub async fn connect(server: SocketAddr, ca: &std::path::Path) -> std::io::Result<TlsPeer> {
        let tcp = TcpStream::connect(server).await?;
        let local = tcp.local_addr()?;
        let name = rustls::pki_types::ServerName::IpAddress(server.ip().into());
        let stream = tokio_rustls::TlsConnector::from(tls_client(ca))
            .connect(name, tcp)
            .await?;
        let server_cert = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
            .unwrap_or_default();
        let (mut read, write) = tokio::io::split(stream);
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            let mut framer = Framer::new(65_535);
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = match read.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                framer.push(&buf[..n]);
                while let Ok(Some(frame)) = framer.next_frame() {
                    if let Frame::Message(m) = frame {
                        let text = String::from_utf8_lossy(&m).into_owned();
                        if tx.send(text).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Ok(TlsPeer {
            write: tokio::sync::Mutex::new(write),
            incoming: tokio::sync::Mutex::new(rx),
            local,
            server,
            server_cert,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.local
    }

    pub async fn send(&self, msg: &str) {
        let mut w = self.write.lock().await;
        w.write_all(msg.as_bytes()).await.expect("TLS write");
        w.flush().await.expect("TLS flush");
    }

    /// The next message, or None after `wait` or once the server has closed the connection.
    pub async fn recv(&self, wait: Duration) -> Option<String> {
        let mut rx = self.incoming.lock().await;
        tokio::time::timeout(wait, rx.recv()).await.ok().flatten()
    }
}

/// How a test phone reaches the hotline: a UDP socket, or a TLS connection.
pub enum SipLink {
    Udp(UdpPeer),
    Tls(TlsPeer),
}

impl SipLink {
    pub fn addr(&self) -> SocketAddr {
        match self {
            SipLink::Udp(p) => p.addr(),
            SipLink::Tls(p) => p.addr(),
        }
    }

    pub async fn send(&self, msg: &str) {
        match self {
            SipLink::Udp(p) => p.send(msg).await,
            SipLink::Tls(p) => p.send(msg).await,
        }
    }

    pub async fn recv(&self, wait: Duration) -> Option<String> {
        match self {
            SipLink::Udp(p) => p.recv(wait).await,
            SipLink::Tls(p) => p.recv(wait).await,
        }
    }

    /// The transport in our Via.
    pub fn via(&self) -> &'static str {
        match self {
            SipLink::Udp(_) => "UDP",
            SipLink::Tls(_) => "TLS",
        }
    }

    /// The parameters of our Contact URI.
    pub fn contact_params(&self) -> &'static str {
        match self {
            SipLink::Udp(_) => "",
            SipLink::Tls(_) => ";transport=tls",
        }
    }
}

/// Starts a hotline with the default test config.
pub async fn start() -> (Hotline, tempfile::TempDir) {
    start_trusted("", "").await
}

/// Starts a hotline with loopback trusted, `sip_extra` in `[sip]` and `limits` lines in
/// `[limits]`.
pub async fn start_trusted(sip_extra: &str, limits: &str) -> (Hotline, tempfile::TempDir) {
    start_with(
        sip_extra,
        &format!("[limits]\n{limits}\n{TRUSTED_LOOPBACK}"),
    )
    .await
}

pub async fn start_with(sip_extra: &str, tables: &str) -> (Hotline, tempfile::TempDir) {
    let (config, dir) = config(sip_extra, tables);
    let hotline = Hotline::start(config).await.expect("hotline starts");
    (hotline, dir)
}

/// A SIP peer over UDP.
pub struct UdpPeer {
    pub socket: UdpSocket,
    pub server: SocketAddr,
}

impl UdpPeer {
    pub async fn new(server: SocketAddr) -> Self {
        UdpPeer {
            socket: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            server,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    pub async fn send(&self, msg: &str) {
        self.send_bytes(msg.as_bytes()).await;
    }

    pub async fn send_bytes(&self, msg: &[u8]) {
        self.socket.send_to(msg, self.server).await.unwrap();
    }

    /// The next message, or None after `wait`.
    pub async fn recv(&self, wait: Duration) -> Option<String> {
        let mut buf = vec![0u8; 65536];
        match tokio::time::timeout(wait, self.socket.recv_from(&mut buf)).await {
            Ok(Ok((n, _))) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            _ => None,
        }
    }

    /// Reads messages until one starts with `prefix` (e.g. "SIP/2.0 200"); panics after 5 s.
    pub async fn expect(&self, prefix: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let mut skipped = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv(left).await {
                Some(m) if m.starts_with(prefix) => return m,
                Some(m) => skipped.push(m.lines().next().unwrap_or_default().to_string()),
                None => panic!(
                    "no message starting with {prefix:?} within 5 s on {} (got {skipped:?})",
                    self.socket.local_addr().unwrap()
                ),
            }
        }
    }
}

/// A SIP peer over TCP, reading with the hotline's own framer.
pub struct TcpPeer {
    pub stream: TcpStream,
    framer: Framer,
}

impl TcpPeer {
    pub async fn connect(server: SocketAddr) -> Self {
        TcpPeer::from_stream(TcpStream::connect(server).await.unwrap())
    }

    /// A peer on a connection made elsewhere (from a chosen source address, say).
    pub fn from_stream(stream: TcpStream) -> Self {
        TcpPeer {
            stream,
            framer: Framer::new(65535),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.stream.local_addr().unwrap()
    }

    pub async fn send(&mut self, msg: &str) {
        self.stream.write_all(msg.as_bytes()).await.unwrap();
    }

    pub async fn send_bytes(&mut self, msg: &[u8]) {
        self.stream.write_all(msg).await.unwrap();
    }

    /// The next message; None on timeout or when the server closed the connection.
    pub async fn recv(&mut self, wait: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Ok(Some(Frame::Message(m))) = self.framer.next_frame() {
                return Some(String::from_utf8_lossy(&m).into_owned());
            }
            let mut buf = vec![0u8; 65536];
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
                Ok(Ok(n)) => self.framer.push(&buf[..n]),
            }
        }
    }

    pub async fn expect(&mut self, prefix: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let mut skipped = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv(left).await {
                Some(m) if m.starts_with(prefix) => return m,
                Some(m) => skipped.push(m.lines().next().unwrap_or_default().to_string()),
                None => panic!(
                    "no message starting with {prefix:?} within 5 s on {} (got {skipped:?})",
                    self.stream.local_addr().unwrap()
                ),
            }
        }
    }

    /// True if the server closes the connection within `wait`.
    pub async fn closed_within(&mut self, wait: Duration) -> bool {
        let mut buf = [0u8; 4096];
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }
}

/// SIPp's default offer: PCMU only.
pub const SDP_PCMU: &str = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

/// A softphone-like offer with a direction attribute.
pub fn sdp(direction: &str) -> String {
    format!(
        "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio 7000 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na={direction}\r\n"
    )
}

/// What a request needs to be built.
pub struct Req<'a> {
    pub method: &'a str,
    pub uri: &'a str,
    pub transport: &'a str,
    pub via_addr: SocketAddr,
    pub branch: &'a str,
    pub call_id: &'a str,
    pub from_tag: &'a str,
    pub to_tag: Option<&'a str>,
    pub cseq: u32,
    pub extra: &'a str,
    pub body: &'a str,
    /// Content-Type of a non-empty body.
    pub content_type: &'a str,
}

impl<'a> Req<'a> {
    pub fn new(method: &'a str, via_addr: SocketAddr, call_id: &'a str) -> Self {
        Req {
            method,
            uri: "sip:8800@hotline.test",
            transport: "UDP",
            via_addr,
            branch: "z9hG4bK-test-1",
            call_id,
            from_tag: "caller-tag",
            to_tag: None,
            cseq: 1,
            extra: "",
            body: "",
            content_type: "application/sdp",
        }
    }

    pub fn build(&self) -> String {
        let to_tag = self.to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
        let ctype = if self.body.is_empty() {
            String::new()
        } else {
            format!("Content-Type: {}\r\n", self.content_type)
        };
        format!(
            "{m} {uri} SIP/2.0\r\nVia: SIP/2.0/{tr} {via};branch={br};rport\r\nMax-Forwards: 70\r\n\
             From: \"Клиент\" <sip:+79780000001@carrier.test>;tag={ft}\r\nTo: <{uri}>{to_tag}\r\n\
             Call-ID: {cid}\r\nCSeq: {cseq} {m}\r\nContact: <sip:caller@{via};transport={trl}>\r\n\
             {extra}{ctype}Content-Length: {len}\r\n\r\n{body}",
            m = self.method,
            uri = self.uri,
            tr = self.transport,
            trl = self.transport.to_ascii_lowercase(),
            via = self.via_addr,
            br = self.branch,
            ft = self.from_tag,
            cid = self.call_id,
            cseq = self.cseq,
            extra = self.extra,
            len = self.body.len(),
            body = self.body,
        )
    }
}

/// The value of a header in a raw message (first occurrence).
pub fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.split("\r\n").find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// All values of a header.
pub fn headers<'a>(msg: &'a str, name: &str) -> Vec<&'a str> {
    msg.split("\r\n")
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
        .collect()
}

/// The tag parameter of a To/From value.
pub fn tag(value: &str) -> String {
    value
        .rsplit(";tag=")
        .next()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The body of a raw message.
pub fn body(msg: &str) -> &str {
    msg.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("")
}

/// A minimal HTTP/1.1 GET over a raw socket: returns (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Either peer, so that one scenario runs over UDP and over TCP.
pub enum Peer {
    Udp(UdpPeer),
    Tcp(TcpPeer),
}

impl Peer {
    pub async fn new(transport: &str, server: SocketAddr) -> Self {
        match transport {
            "UDP" => Peer::Udp(UdpPeer::new(server).await),
            _ => Peer::Tcp(TcpPeer::connect(server).await),
        }
    }

    pub fn transport(&self) -> &'static str {
        match self {
            Peer::Udp(_) => "UDP",
            Peer::Tcp(_) => "TCP",
        }
    }

    pub fn addr(&self) -> SocketAddr {
        match self {
            Peer::Udp(p) => p.addr(),
            Peer::Tcp(p) => p.addr(),
        }
    }

    pub async fn send(&mut self, msg: &str) {
        match self {
            Peer::Udp(p) => p.send(msg).await,
            Peer::Tcp(p) => p.send(msg).await,
        }
    }

    pub async fn recv(&mut self, wait: Duration) -> Option<String> {
        match self {
            Peer::Udp(p) => p.recv(wait).await,
            Peer::Tcp(p) => p.recv(wait).await,
        }
    }

    pub async fn expect(&mut self, prefix: &str) -> String {
        match self {
            Peer::Udp(p) => p.expect(prefix).await,
            Peer::Tcp(p) => p.expect(prefix).await,
        }
    }

    /// A request template addressed from this peer.
    pub fn req<'a>(&self, method: &'a str, call_id: &'a str) -> Req<'a> {
        let mut r = Req::new(method, self.addr(), call_id);
        r.transport = self.transport();
        r
    }
}

/// The SIP core's events only (the tests of SIP behaviour ignore media events).
pub struct SipEvents(tokio::sync::broadcast::Receiver<hotline::callflow::Event>);

impl SipEvents {
    pub async fn recv(
        &mut self,
    ) -> Result<hotline::sip::ua::Event, tokio::sync::broadcast::error::RecvError> {
        loop {
            if let hotline::callflow::Event::Sip(ev) = self.0.recv().await? {
                return Ok(ev);
            }
        }
    }
}

pub fn sip_events(hotline: &Hotline) -> SipEvents {
    SipEvents(hotline.subscribe())
}

/// A port free on both UDP and TCP right now.
pub fn free_port() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Waits up to 10 s for `/healthz` to answer 200.
pub async fn wait_healthy(http: SocketAddr) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(http).await.is_ok() {
            let (status, body) = http_get(http, "/healthz").await;
            assert_eq!(status, 200, "{body}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no /healthz on {http} within 10 s");
}

/// A test phone in an answered call with the hotline: SIP over `sip`, RTP on `rtp`.
pub struct Phone {
    pub sip: Peer,
    pub rtp: rtp::RtpPeer,
    pub call_id: String,
    pub to_tag: String,
    /// Where the hotline's SDP answer says to send RTP.
    pub media: SocketAddr,
    /// The SDP offer the call was made with.
    pub offer: String,
    cseq: u32,
}

impl Phone {
    /// Calls the hotline number offering `codecs` (e.g. `&[(0, "PCMU")]`) and
    /// telephone-event: INVITE, 200 OK, ACK.
    pub async fn call(
        server: SocketAddr,
        transport: &str,
        call_id: &str,
        codecs: &[(u8, &str)],
    ) -> Phone {
        let rtp = rtp::RtpPeer::bind().await;
        let offer = rtp::offer(rtp.port(), codecs);
        Phone::call_with(server, transport, call_id, rtp, offer).await
    }

    /// Calls with a given offer (for offers a test has edited).
    pub async fn call_with(
        server: SocketAddr,
        transport: &str,
        call_id: &str,
        rtp: rtp::RtpPeer,
        offer: String,
    ) -> Phone {
        let mut sip = Peer::new(transport, server).await;
        let mut invite = sip.req("INVITE", call_id);
        invite.body = &offer;
        sip.send(&invite.build()).await;
        let ok = sip.expect("SIP/2.0 200").await;
        let to_tag = tag(header(&ok, "To").unwrap());
        let mut ack = sip.req("ACK", call_id);
        ack.branch = "z9hG4bK-ack-1";
        ack.to_tag = Some(&to_tag);
        sip.send(&ack.build()).await;
        Phone {
            sip,
            rtp,
            call_id: call_id.to_string(),
            to_tag,
            media: rtp::media_addr(body(&ok)),
            offer,
            cseq: 1,
        }
    }

    /// The CSeq for our next request in the dialog.
    pub fn next_cseq(&mut self) -> u32 {
        self.cseq += 1;
        self.cseq
    }

    /// A re-INVITE with `sdp`, its 200 and the ACK.
    pub async fn reinvite(&mut self, sdp: &str) {
        let cseq = self.next_cseq();
        let (branch, ack_branch) = (
            format!("z9hG4bK-reinvite-{cseq}"),
            format!("z9hG4bK-ack-{cseq}"),
        );
        let mut invite = self.sip.req("INVITE", &self.call_id);
        invite.branch = &branch;
        invite.to_tag = Some(&self.to_tag);
        invite.cseq = cseq;
        invite.body = sdp;
        let text = invite.build();
        self.sip.send(&text).await;
        self.sip.expect("SIP/2.0 200").await;
        let mut ack = self.sip.req("ACK", &self.call_id);
        ack.branch = &ack_branch;
        ack.to_tag = Some(&self.to_tag);
        ack.cseq = cseq;
        let text = ack.build();
        self.sip.send(&text).await;
    }

    /// Hangs up: BYE and its 200.
    pub async fn bye(&mut self) {
        let cseq = self.next_cseq();
        let mut bye = self.sip.req("BYE", &self.call_id);
        bye.branch = "z9hG4bK-bye";
        bye.to_tag = Some(&self.to_tag);
        bye.cseq = cseq;
        let text = bye.build();
        self.sip.send(&text).await;
        self.sip.expect("SIP/2.0 200").await;
    }
}

/// Registers `user` with `password` from `peer` (REGISTER, the digest challenge, REGISTER
/// with the answer), with `contact` as its Contact URI; returns the final response (200).
pub async fn register_operator(
    peer: &UdpPeer,
    user: &str,
    password: &str,
    contact: &str,
) -> String {
    let register = |cseq: u32, auth: &str| {
        format!(
            "REGISTER sip:hotline.test SIP/2.0\r\nVia: SIP/2.0/UDP {addr};branch=z9hG4bK-opreg-{cseq};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{user}@hotline.test>;tag=opreg\r\nTo: <sip:{user}@hotline.test>\r\n\
             Call-ID: opreg-{user}-{addr}\r\nCSeq: {cseq} REGISTER\r\nContact: <{contact}>\r\nExpires: 300\r\n\
             {auth}Content-Length: 0\r\n\r\n",
            addr = peer.addr(),
        )
    };
    peer.send(&register(1, "")).await;
    let challenge = peer.expect("SIP/2.0 401").await;
    let www = header(&challenge, "WWW-Authenticate").expect("a challenge");
    let auth = hotline::sip::digest::client_authorization(
        www,
        "REGISTER",
        "sip:hotline.test",
        user,
        password,
        "0a4f113b",
        1,
    )
    .expect("client computes the response");
    peer.send(&register(2, &format!("Authorization: {auth}\r\n")))
        .await;
    peer.expect("SIP/2.0 200").await
}

/// A response from a test UA to `request` (its raw text): Via, From, To (with `to_tag` added
/// unless it has one), Call-ID and CSeq copied, then `extra` header lines and an SDP `body`.
pub fn response_to(request: &str, status: &str, to_tag: &str, extra: &str, body: &str) -> String {
    let mut out = format!("SIP/2.0 {status}\r\n");
    for via in headers(request, "Via") {
        out.push_str(&format!("Via: {via}\r\n"));
    }
    let to = header(request, "To").unwrap_or_default();
    let to = if to.contains(";tag=") {
        to.to_string()
    } else {
        format!("{to};tag={to_tag}")
    };
    out.push_str(&format!(
        "From: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\n{extra}",
        header(request, "From").unwrap_or_default(),
        header(request, "Call-ID").unwrap_or_default(),
        header(request, "CSeq").unwrap_or_default(),
    ));
    if !body.is_empty() {
        out.push_str("Content-Type: application/sdp\r\n");
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    out
}

/// How many times each of this process's media runtime threads (named `hotline-media`)
/// has gone to sleep and been woken (`voluntary_ctxt_switches`), by thread id: it grows
/// with every packet a session handles there, and stays put if sessions ran elsewhere.
#[allow(dead_code)]
pub fn media_thread_wakeups() -> std::collections::HashMap<String, u64> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Default::default();
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|c| c.trim() == "hotline-media")
        })
        .filter_map(|t| {
            let status = std::fs::read_to_string(t.path().join("status")).ok()?;
            let n = status
                .lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))?
                .trim()
                .parse()
                .ok()?;
            Some((t.file_name().to_string_lossy().into_owned(), n))
        })
        .collect()
}

/// Wake-ups of media threads since `before` (threads started since count from 0; threads
/// that have ended, of other tests' hotlines, count nothing).
#[allow(dead_code)]
pub fn media_thread_wakeups_since(before: &std::collections::HashMap<String, u64>) -> u64 {
    media_thread_wakeups()
        .iter()
        .map(|(tid, n)| n.saturating_sub(before.get(tid).copied().unwrap_or(0)))
        .sum()
}

/// Whether a journal entry (API JSON) is the call with SIP `call_id`: the journal keys a
/// call by its Call-ID and the caller's From tag (`CALLID;from-tag=TAG`).
pub fn is_call(entry: &serde_json::Value, call_id: &str) -> bool {
    entry["call_id"].as_str().is_some_and(|k| {
        k == call_id
            || k.strip_prefix(call_id)
                .is_some_and(|rest| rest.starts_with(";from-tag="))
    })
}

/// Waits for the next recording to be finalised.
pub async fn recording_saved(
    events: &mut tokio::sync::broadcast::Receiver<hotline::callflow::Event>,
) -> std::path::PathBuf {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(hotline::callflow::Event::RecordingSaved { recording, .. })) => {
                return recording.expect("a recording").path;
            }
            Ok(Ok(_)) => {}
            other => panic!("no recording: {other:?}"),
        }
    }
}
