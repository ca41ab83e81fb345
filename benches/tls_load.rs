//! The cost of SIP over TLS (issue 20), measured on a release `hotline serve` in its own
//! process (its CPU read from `/proc`):
//!
//!     cargo bench --bench tls_load -- [SECONDS] [RATE]      (defaults: 10 100)
//!
//! 1. **Handshakes.** 8 clients each connect to the TLS port, finish the handshake and close,
//!    over and over for SECONDS: handshakes per second, and the hotline's CPU per handshake.
//!    The clients share the 2 cores with the hotline, so the rate is a floor.
//! 2. **Calls, UDP against TCP and TLS, in one run.** RATE calls a second for SECONDS over
//!    UDP, then the same over TCP, then over TLS, from 16 callers that each keep one connection (as a carrier's SBC
//!    or a phone does), each call from a number of its own. Each call is INVITE, 200, ACK, BYE, 200: the hotline answers at once
//!    and starts its greeting, and the caller hangs up right after the ACK, so the call is
//!    mostly signalling. Reported: the hotline's CPU per call for each, and the ratio.
//!
//! The certificate is a lab's (`hotline::tls::self_signed`, ECDSA P-256). Exit status: 0,
//! or 1 on a harness error (a call not answered, a handshake refused).

use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hotline::sip::framing::{Frame, Framer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

const CALLERS: usize = 16;
/// The callers' numbers, one per call.
static NEXT_NUMBER: AtomicU64 = AtomicU64::new(0);
const HANDSHAKERS: usize = 8;

fn main() -> Result<()> {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .filter_map(|a| a.parse().ok())
        .collect();
    let seconds = args.first().copied().unwrap_or(10);
    let rate = args.get(1).copied().unwrap_or(100);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(bench(seconds, rate))
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = l.local_addr()?.port();
    std::net::UdpSocket::bind(("127.0.0.1", port))?;
    Ok(port)
}

/// user+system CPU seconds of `pid`.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf reads a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz
}

fn config_text(
    dir: &Path,
    sip: u16,
    tls: u16,
    http: u16,
    certs: &hotline::tls::SelfSigned,
) -> String {
    let cal = dir.join("no-calendar");
    std::fs::create_dir_all(&cal).expect("calendar dir");
    let days: String = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .iter()
        .map(|d| format!("{d} = \"00:00-23:59\"\n"))
        .collect();
    // A zone where it is daytime now (23:59-24:00 is closed).
    let zone = if (2..20).contains(&chrono::Timelike::hour(&chrono::Utc::now())) {
        "UTC"
    } else {
        "Asia/Tokyo"
    };
    format!(
        r#"[sip]
listen = "127.0.0.1:{sip}"
domain = "hotline.test"
hotline_numbers = ["8800"]

[sip.tls]
listen = "127.0.0.1:{tls}"
cert = "{cert}"
key = "{key}"

[http]
listen = "127.0.0.1:{http}"

[storage]
data_dir = "{data}"

[media]
rtp_port_min = 20000
rtp_port_max = 39999
rtp_timeout_s = 0
prompts_dir = "{prompts}"

[limits]
max_calls = 4000
trusted_sources = ["127.0.0.0/8"]

[calendar]
time_zone = "{zone}"
dir = "{cal}"
shortened_by_minutes = 0

[calendar.hours]
{days}"#,
        cert = certs.cert.display(),
        key = certs.key.display(),
        data = dir.join("data").display(),
        prompts = concat!(env!("CARGO_MANIFEST_DIR"), "/ivr-prompts"),
        cal = cal.display(),
    )
}

/// The hotline, killed when dropped.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn bench(seconds: u64, rate: u64) -> Result<()> {
    let work = tempfile::tempdir()?;
    let certs = hotline::tls::self_signed(&work.path().join("tls"), &["127.0.0.1".into()], 30)?;
    let (sip, tls, http) = (free_port()?, free_port()?, free_port()?);
    let cfg = work.path().join("hotline.toml");
    std::fs::write(&cfg, config_text(work.path(), sip, tls, http, &certs))?;
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_hotline"));
    let child = Process::new(&bin)
        .args(["serve", "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(work.path().join("hotline.log"))?)
        .spawn()?;
    let server = Server(child);
    let pid = server.0.id();
    let tls_addr: std::net::SocketAddr = format!("127.0.0.1:{tls}").parse()?;
    let sip_addr: std::net::SocketAddr = format!("127.0.0.1:{sip}").parse()?;
    for _ in 0..200 {
        if TcpStream::connect(tls_addr).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let client = tls_client(&certs.ca)?;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // 1. Handshakes.
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let cpu0 = cpu_seconds(pid);
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..HANDSHAKERS {
        let (stop, done, failed, client) =
            (stop.clone(), done.clone(), failed.clone(), client.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match handshake(&client, tls_addr).await {
                    Ok(()) => done.fetch_add(1, Ordering::Relaxed),
                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await?;
    }
    let (elapsed, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds(pid) - cpu0);
    let n = done.load(Ordering::Relaxed);
    println!(
        "handshakes         {n} in {elapsed:.1} s = {:.0}/s from {HANDSHAKERS} clients ({} failed); hotline CPU {:.0}% of a core, {:.3} ms per handshake",
        n as f64 / elapsed,
        failed.load(Ordering::Relaxed),
        100.0 * cpu / elapsed,
        1000.0 * cpu / n.max(1) as f64
    );
    if failed.load(Ordering::Relaxed) > 0 {
        bail!("handshakes failed");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    // 2. Calls over UDP, then over TLS.
    let calls = seconds * rate;
    let mut per_call = Vec::new();
    for transport in ["UDP", "TCP", "TLS"] {
        let cpu0 = cpu_seconds(pid);
        let t0 = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..CALLERS {
            let client = client.clone();
            let n = calls / CALLERS as u64 + u64::from((i as u64) < calls % CALLERS as u64);
            let every = Duration::from_secs_f64(CALLERS as f64 / rate as f64);
            tasks.push(tokio::spawn(async move {
                let mut link = match transport {
                    "UDP" => Link::udp(sip_addr).await?,
                    "TCP" => Link::tcp(sip_addr).await?,
                    _ => Link::tls(&client, tls_addr).await?,
                };
                // Spread the callers over the first interval.
                tokio::time::sleep(every.mul_f64(i as f64 / CALLERS as f64)).await;
                let mut tick = tokio::time::interval(every);
                for k in 0..n {
                    tick.tick().await;
                    link.call(&format!("{transport}-{i}-{k}")).await?;
                }
                Ok::<_, anyhow::Error>(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        let elapsed = t0.elapsed().as_secs_f64();
        // The greetings of the last calls stop within a moment of their BYEs.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let cpu = cpu_seconds(pid) - cpu0;
        let ms = 1000.0 * cpu / calls as f64;
        println!(
            "calls over {transport}      {calls} in {elapsed:.1} s ({rate}/s, {CALLERS} callers); hotline CPU {:.0}% of a core, {ms:.3} ms per call",
            100.0 * cpu / elapsed
        );
        per_call.push(ms);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    println!(
        "against UDP        TCP {:+.0}%, TLS {:+.0}% CPU per call",
        100.0 * (per_call[1] / per_call[0] - 1.0),
        100.0 * (per_call[2] / per_call[0] - 1.0)
    );
    drop(server);
    Ok(())
}

fn tls_client(ca: &Path) -> Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(ca).context("CA")? {
        roots.add(c?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

async fn tls_connect(
    client: &Arc<rustls::ClientConfig>,
    addr: std::net::SocketAddr,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    Ok(tokio_rustls::TlsConnector::from(client.clone())
        .connect(name, tcp)
        .await?)
}

/// One full handshake, then a clean close.
async fn handshake(client: &Arc<rustls::ClientConfig>, addr: std::net::SocketAddr) -> Result<()> {
    let mut s = tls_connect(client, addr).await?;
    s.shutdown().await?;
    Ok(())
}

/// A caller's way to the hotline.
enum Link {
    Udp(UdpSocket, std::net::SocketAddr),
    Tcp(TcpStream, Framer),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>, Framer),
}

impl Link {
    async fn udp(to: std::net::SocketAddr) -> Result<Link> {
        let s = UdpSocket::bind("127.0.0.1:0").await?;
        Ok(Link::Udp(s, to))
    }

    async fn tcp(to: std::net::SocketAddr) -> Result<Link> {
        let s = TcpStream::connect(to).await?;
        s.set_nodelay(true)?;
        Ok(Link::Tcp(s, Framer::new(65_535)))
    }

    async fn tls(client: &Arc<rustls::ClientConfig>, to: std::net::SocketAddr) -> Result<Link> {
        Ok(Link::Tls(
            Box::new(tls_connect(client, to).await?),
            Framer::new(65_535),
        ))
    }

    fn local(&self) -> std::net::SocketAddr {
        match self {
            Link::Udp(s, _) => s.local_addr().expect("bound"),
            Link::Tcp(s, _) => s.local_addr().expect("connected"),
            Link::Tls(s, _) => s.get_ref().0.local_addr().expect("connected"),
        }
    }

    fn via(&self) -> &'static str {
        match self {
            Link::Udp(..) => "UDP",
            Link::Tcp(..) => "TCP",
            Link::Tls(..) => "TLS",
        }
    }

    async fn send(&mut self, msg: &str) -> Result<()> {
        match self {
            Link::Udp(s, to) => {
                s.send_to(msg.as_bytes(), *to).await?;
            }
            Link::Tcp(s, _) => {
                s.write_all(msg.as_bytes()).await?;
            }
            Link::Tls(s, _) => {
                s.write_all(msg.as_bytes()).await?;
            }
        }
        Ok(())
    }

    /// The next final response to `method`, within 5 s (others are skipped).
    async fn final_response(&mut self, method: &str) -> Result<String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let msg = tokio::time::timeout_at(deadline, self.recv())
                .await
                .with_context(|| format!("no answer to {method}"))??;
            let cseq_method = header(&msg, "CSeq").and_then(|c| c.split_whitespace().nth(1));
            let code: u16 = msg.get(8..11).and_then(|c| c.parse().ok()).unwrap_or(0);
            if msg.starts_with("SIP/2.0 ") && code >= 200 && cseq_method == Some(method) {
                return Ok(msg);
            }
        }
    }

    async fn recv(&mut self) -> Result<String> {
        match self {
            Link::Udp(s, _) => {
                let mut buf = vec![0u8; 65_536];
                let n = s.recv(&mut buf).await?;
                Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
            }
            Link::Tcp(s, framer) => read_framed(s, framer).await,
            Link::Tls(s, framer) => read_framed(s.as_mut(), framer).await,
        }
    }

    /// One call: INVITE, 200, ACK, BYE, 200.
    async fn call(&mut self, id: &str) -> Result<()> {
        let (via, me) = (self.via(), self.local());
        let params = match via {
            "TLS" => ";transport=tls",
            "TCP" => ";transport=tcp",
            _ => "",
        };
        let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                   m=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
        // A number of its own per call, as customers have: calls from one number are
        // linked to its earlier ones, and that look-up grows with them (RESULTS, "TLS").
        let number = NEXT_NUMBER.fetch_add(1, Ordering::Relaxed);
        let from = format!("<sip:+7978{number:07}@carrier.test>;tag=f{id}");
        let invite = format!(
            "INVITE sip:8800@hotline.test SIP/2.0\r\nVia: SIP/2.0/{via} {me};branch=z9hG4bK-i{id};rport\r\n\
             Max-Forwards: 70\r\nFrom: {from}\r\nTo: <sip:8800@hotline.test>\r\nCall-ID: {id}\r\n\
             CSeq: 1 INVITE\r\nContact: <sip:caller@{me}{params}>\r\nContent-Type: application/sdp\r\n\
             Content-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        );
        self.send(&invite).await?;
        let ok = self.final_response("INVITE").await?;
        if !ok.starts_with("SIP/2.0 200") {
            bail!("INVITE {id}: {}", ok.lines().next().unwrap_or_default());
        }
        let to = header(&ok, "To").context("To")?.to_string();
        let target = header(&ok, "Contact")
            .and_then(|c| c.split_once('<'))
            .and_then(|(_, r)| r.split_once('>'))
            .map(|(u, _)| u.to_string())
            .context("Contact")?;
        for (method, cseq, branch) in [("ACK", 1, "a"), ("BYE", 2, "b")] {
            let msg = format!(
                "{method} {target} SIP/2.0\r\nVia: SIP/2.0/{via} {me};branch=z9hG4bK-{branch}{id};rport\r\n\
                 Max-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {id}\r\nCSeq: {cseq} {method}\r\n\
                 Content-Length: 0\r\n\r\n"
            );
            self.send(&msg).await?;
        }
        let ok = self.final_response("BYE").await?;
        if !ok.starts_with("SIP/2.0 200") {
            bail!("BYE {id}: {}", ok.lines().next().unwrap_or_default());
        }
        Ok(())
    }
}

/// The next SIP message on a stream.
async fn read_framed<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
    framer: &mut Framer,
) -> Result<String> {
    loop {
        if let Some(Frame::Message(m)) = framer.next_frame()? {
            return Ok(String::from_utf8_lossy(&m).into_owned());
        }
        let mut buf = [0u8; 16 * 1024];
        let n = s.read(&mut buf).await?;
        if n == 0 {
            bail!("connection closed");
        }
        framer.push(&buf[..n]);
    }
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.split("\r\n")
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
}
