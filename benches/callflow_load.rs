//! End-to-end load of the call flow (issue 5, "Performance"): SIPp callers and
//! auto-answering operator phones against a release `hotline serve`, then a count of the
//! journal: every call SIPp placed must have exactly one complete entry.
//!
//!     cargo bench --bench callflow_load -- [OPERATORS] [RATE] [SECONDS] [CALL_MS] \
//!         [--database-url postgres://…] [--consoles N]   (defaults: 100 10 60 20000, 0)
//!
//! * the **hotline** is `target/release/hotline serve` (a separate process, so its CPU and
//!   RSS are its own, read from `/proc`), with a temporary config: loopback, every day open
//!   (a time zone where it is now daytime), `[queue] wrap_up_s = 0`, `[media]
//!   rtp_timeout_s = 0`, OPERATORS `[[operators]]` (2000, 2001, … with inline passwords),
//!   SQLite under a temporary data dir unless `--database-url` is given;
//! * **operators**: OPERATORS phones inside this process (tokio, one SIP and one RTP UDP
//!   socket each): digest REGISTER (as tests/support/phone.rs), signed in through
//!   `POST /api/v1/operators/{ext}/sign-in` with their own operator token; every INVITE is
//!   answered at once with 200 + SDP (PCMU), retransmitted until the ACK; while a call is
//!   up the phone sends 20 ms PCMU packets to the hotline's media address (and drains what
//!   comes back); BYE → 200;
//! * **callers**: SIPp's built-in `uac` at RATE calls/s for SECONDS (RATE×SECONDS calls),
//!   each hanging up CALL_MS after the answer (`-d`); `-rtp_echo` sends the hotline's own
//!   audio back, so the caller leg has RTP both ways;
//! * the phones' packets carry their send instant; SIPp echoes them back through the hotline
//!   and the phone takes the kernel's arrival stamp, so the bench reports the media's added
//!   jitter (round trip minus its stream's least, p50/p99/p99.9/max) for the run;
//! * every second the bench reads `GET /api/v1/live` (calls in progress, `connected`
//!   ones) and the hotline's CPU/RSS;
//! * afterwards the journal is read through the API (`GET /api/v1/journal`, all pages) and
//!   matched with the Call-IDs of SIPp's `-trace_msg` log.
//!
//! * with `--consoles N`, N supervisors in the web console beside the calls (a second
//!   process, this binary as `--console-clients N BASE`, at nice 10), as their browsers are: each logged in (a `supervisor` user made with `hotline user create`),
//!   on the wallboard's event stream (`/supervisor/events`), fetching the wallboard's part
//!   (`/supervisor/board`) 50 ms after an event and every 10 s, as `console.js` does;
//!
//! Exit status: 0 when every call SIPp placed has exactly one entry with a final
//! disposition and `ended_at`, 3 otherwise, 1 on a harness error. `KEEP=1` keeps the
//! temporary directory (config, hotline log, SIPp files); `CALLFLOW_LOAD_WRAP="heaptrack
//! -o /tmp/ht"` starts the hotline under that command (a profiler);
//! `CALLFLOW_LOAD_PRIORITY=0` sets `[media] realtime_priority` (0: normal-class media
//! threads, for comparison); `CALLFLOW_LOAD_HOTLINE=path` runs that hotline binary.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{SocketAddr, UdpSocket as StdUdp};
use std::path::{Path, PathBuf};
use std::process::{Command as Process, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

#[path = "support/console.rs"]
mod console_user;
use chrono::Timelike;
use serde_json::Value;
use tokio::net::UdpSocket;

const FIRST_EXTENSION: usize = 2000;
const SIPP_BUFF: &str = "1048576";
/// The supervisors' password (`--consoles`): a lab's, made for the run.
const HEAD_PASSWORD: &str = "Нагрузка-пароль-2026";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--console-clients") {
        return console_clients(&args[1..]);
    }
    let mut numbers = Vec::new();
    let mut database_url = None;
    let mut consoles = 0usize;
    let mut i = 0;
    while i < args.len() {
        if args[i] == "--database-url" {
            database_url = args.get(i + 1).cloned();
            i += 2;
            continue;
        }
        if args[i] == "--consoles" {
            consoles = args.get(i + 1).and_then(|n| n.parse().ok()).unwrap_or(0);
            i += 2;
            continue;
        }
        if !args[i].starts_with('-') {
            numbers.push(args[i].clone());
        }
        i += 1;
    }
    let parse = |i: usize, default: u64| -> Result<u64> {
        match numbers.get(i) {
            Some(s) => s.parse().with_context(|| format!("not a number: {s:?}")),
            None => Ok(default),
        }
    };
    let run = || -> Result<bool> {
        let p = Params {
            operators: parse(0, 100)? as usize,
            rate: parse(1, 10)?,
            seconds: parse(2, 60)?,
            call_ms: parse(3, 20_000)?,
            database_url,
            consoles,
        };
        if p.operators == 0 || p.operators > 2000 || p.rate == 0 || p.seconds == 0 {
            bail!("OPERATORS must be 1..2000, RATE and SECONDS positive");
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        rt.block_on(bench(p))
    };
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(3),
        Err(e) => {
            eprintln!("callflow_load: {e:#}");
            ExitCode::FAILURE
        }
    }
}

struct Params {
    operators: usize,
    rate: u64,
    seconds: u64,
    call_ms: u64,
    database_url: Option<String>,
    /// Supervisors watching the wallboard live.
    consoles: usize,
}

/// A loopback port free for both UDP and TCP (the hotline binds both on its SIP port).
fn free_port() -> Result<u16> {
    for _ in 0..50 {
        let u = StdUdp::bind("127.0.0.1:0")?;
        let port = u.local_addr()?.port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free port")
}

fn password(ext: usize) -> String {
    format!("pw-{ext}-load")
}

/// user+system CPU seconds of `pid`.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which is in parentheses).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat; `rest` starts at field 3.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz
}

/// (VmRSS, VmHWM) of `pid`, MiB.
fn rss_mb(pid: u32) -> (f64, f64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let get = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (get("VmRSS:"), get("VmHWM:"))
}

fn config_text(p: &Params, dir: &Path, sip: u16, http: u16) -> Result<String> {
    let cal_dir = dir.join("no-calendar");
    std::fs::create_dir_all(&cal_dir)?;
    // Every day open 00:00-23:59 in a zone where it is daytime now (23:59-24:00 is closed).
    let zone = if (2..20).contains(&chrono::Utc::now().hour()) {
        "UTC"
    } else {
        "Asia/Tokyo"
    };
    let days: String = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .iter()
        .map(|d| format!("{d} = \"00:00-23:59\"\n"))
        .collect();
    let operators: String = (0..p.operators)
        .map(|i| {
            let ext = FIRST_EXTENSION + i;
            format!(
                "[[operators]]\nextension = \"{ext}\"\nname = \"Оператор {ext}\"\npassword = \"{}\"\n\n",
                password(ext)
            )
        })
        .collect();
    let prompts = concat!(env!("CARGO_MANIFEST_DIR"), "/ivr-prompts");
    let database = match &p.database_url {
        Some(u) => format!("database_url = \"{u}\"\n"),
        None => String::new(),
    };
    let priority = match std::env::var("CALLFLOW_LOAD_PRIORITY") {
        Ok(n) => format!("realtime_priority = {n}\n"),
        Err(_) => String::new(),
    };
    Ok(format!(
        r#"[sip]
listen = "127.0.0.1:{sip}"
domain = "hotline.test"
public_address = "127.0.0.1"
hotline_numbers = ["8800", "hotline"]

[http]
listen = "127.0.0.1:{http}"

[storage]
data_dir = "{data}"
{database}
[media]
rtp_port_min = 20000
rtp_port_max = 39999
rtp_timeout_s = 0
prompts_dir = "{prompts}"
{priority}
[limits]
max_calls = 4000
trusted_sources = ["127.0.0.0/8"]

[queue]
wrap_up_s = 0

[console]
totp_roles = []

[calendar]
time_zone = "{zone}"
dir = "{cal}"
shortened_by_minutes = 0

[calendar.hours]
{days}
{operators}"#,
        data = dir.join("data").display(),
        cal = cal_dir.display(),
    ))
}

// ---------------------------------------------------------------------------------------
// SIP text helpers (from tests/support).

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    headers(msg, name).into_iter().next()
}

fn headers<'a>(msg: &'a str, name: &str) -> Vec<&'a str> {
    let head = msg.split("\r\n\r\n").next().unwrap_or("");
    head.split("\r\n")
        .skip(1)
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
        .collect()
}

fn body(msg: &str) -> &str {
    msg.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("")
}

/// The `c=` address and `m=audio` port of an SDP body.
fn media_addr(sdp: &str) -> Option<SocketAddr> {
    let ip = sdp
        .lines()
        .find_map(|l| l.strip_prefix("c=IN IP4 "))?
        .trim()
        .to_string();
    let port: u16 = sdp
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    format!("{ip}:{port}").parse().ok()
}

fn offer(port: u16) -> String {
    format!(
        "v=0\r\no=op 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n"
    )
}

fn response(req: &str, code: u16, reason: &str, to_tag: &str, extra: &str, sdp: &str) -> String {
    let to = header(req, "To").unwrap_or_default();
    let to = if to.contains(";tag=") {
        to.to_string()
    } else {
        format!("{to};tag={to_tag}")
    };
    let vias: String = headers(req, "Via")
        .iter()
        .map(|v| format!("Via: {v}\r\n"))
        .collect();
    let ctype = if sdp.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "SIP/2.0 {code} {reason}\r\n{vias}From: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\n\
         {extra}{ctype}Content-Length: {}\r\n\r\n{sdp}",
        header(req, "From").unwrap_or_default(),
        header(req, "Call-ID").unwrap_or_default(),
        header(req, "CSeq").unwrap_or_default(),
        sdp.len(),
    )
}

/// The SIP Call-ID of a journal entry: the journal keys a call by its Call-ID and the
/// caller's From tag (`<call-id>;from-tag=<tag>`), SIPp's log has the Call-ID alone.
fn sip_call_id(e: &Value) -> &str {
    let id = e["call_id"].as_str().unwrap_or("");
    id.split_once(";from-tag=").map_or(id, |(c, _)| c)
}

// ---------------------------------------------------------------------------------------
// Supervisors in the console.

#[derive(Default)]
struct ConsoleStats {
    events: AtomicU64,
    errors: AtomicU64,
    board_ms: std::sync::Mutex<Vec<f64>>,
}

/// `callflow_load --console-clients N BASE`: N supervisors' browsers on the wallboard, in a
/// process of their own at a lower priority (their browsers would be on other machines;
/// here they must not take the phones' time, whose timing the bench measures). Prints
/// `ready` once all are on the feed, runs until its standard input ends, then prints one
/// line of figures.
fn console_clients(args: &[String]) -> ExitCode {
    let run = || -> Result<String> {
        let n: usize = args.first().context("N")?.parse()?;
        let base = args.get(1).context("BASE")?.clone();
        // SAFETY: setpriority on this process.
        unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 10) };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let stats = Arc::new(ConsoleStats::default());
            let quit = Arc::new(AtomicBool::new(false));
            let mut loops = Vec::new();
            for _ in 0..n {
                let client = reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .build()?;
                let session = console_user::log_in(&client, &base, "head", HEAD_PASSWORD).await?;
                loops.push(tokio::spawn(console_loop(
                    client,
                    base.clone(),
                    session,
                    stats.clone(),
                    quit.clone(),
                )));
            }
            println!("ready");
            tokio::task::spawn_blocking(|| std::io::copy(&mut std::io::stdin(), &mut std::io::sink()))
                .await??;
            quit.store(true, Ordering::Relaxed);
            for l in loops {
                let _ = l.await;
            }
            let mut t = stats.board_ms.lock().unwrap().clone();
            t.sort_by(f64::total_cmp);
            let q = |q: f64| {
                if t.is_empty() {
                    return f64::NAN;
                }
                t[((q * t.len() as f64).ceil() as usize).clamp(1, t.len()) - 1]
            };
            Ok(format!(
                "{} events received, {} wallboard fetches (p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms), {} errors",
                stats.events.load(Ordering::Relaxed),
                t.len(),
                q(0.5),
                q(0.99),
                q(1.0),
                stats.errors.load(Ordering::Relaxed)
            ))
        })
    };
    match run() {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("callflow_load --console-clients: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The supervisors' process, seen from the bench.
struct ConsoleClients {
    child: std::process::Child,
    out: std::io::BufReader<std::process::ChildStdout>,
}

impl ConsoleClients {
    /// Starts `n` supervisors on `base`'s wallboard; returns once they are all on it.
    fn start(n: usize, base: &str) -> Result<ConsoleClients> {
        use std::io::BufRead;
        let mut child = Process::new(std::env::current_exe()?)
            .args(["--console-clients", &n.to_string(), base])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let mut out = std::io::BufReader::new(child.stdout.take().context("stdout")?);
        let mut line = String::new();
        out.read_line(&mut line)?;
        if line.trim() != "ready" {
            bail!("the console clients did not start: {line:?}");
        }
        Ok(ConsoleClients { child, out })
    }

    /// Stops them; returns their figures.
    fn stop(mut self) -> Result<String> {
        use std::io::BufRead;
        drop(self.child.stdin.take());
        let mut line = String::new();
        self.out.read_line(&mut line)?;
        self.child.wait()?;
        Ok(line.trim().to_string())
    }
}

/// One supervisor's browser on the wallboard: the event stream open, the board's part
/// fetched 50 ms after an event (events in between join that fetch) and every 10 s.
async fn console_loop(
    client: reqwest::Client,
    base: String,
    session: String,
    stats: Arc<ConsoleStats>,
    quit: Arc<AtomicBool>,
) {
    let cookie = format!("hotline_session={session}");
    let Ok(mut feed) = client
        .get(format!("{base}/supervisor/events"))
        .header("Cookie", &cookie)
        .send()
        .await
    else {
        stats.errors.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let mut due: Option<Instant> = None;
    let mut timer = Instant::now();
    while !quit.load(Ordering::Relaxed) {
        let wait = due.map_or(Duration::from_millis(100), |d| {
            d.saturating_duration_since(Instant::now())
        });
        match tokio::time::timeout(wait, feed.chunk()).await {
            Ok(Ok(Some(bytes))) => {
                let n = bytes.windows(6).filter(|w| w == b"event:").count() as u64;
                stats.events.fetch_add(n, Ordering::Relaxed);
                if n > 0 && due.is_none() {
                    due = Some(Instant::now() + Duration::from_millis(50));
                }
            }
            Ok(_) => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(_) => {}
        }
        let now = Instant::now();
        if due.is_some_and(|d| now >= d) || timer.elapsed() >= Duration::from_secs(10) {
            due = None;
            timer = now;
            let fetched = client
                .get(format!("{base}/supervisor/board"))
                .header("Cookie", &cookie)
                .send()
                .await;
            let ok = match fetched {
                Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                _ => false,
            };
            if ok {
                let ms = now.elapsed().as_secs_f64() * 1000.0;
                stats.board_ms.lock().unwrap().push(ms);
            } else {
                stats.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Operator phones.

#[derive(Default)]
struct OpStats {
    active: AtomicUsize,
    max_active: AtomicUsize,
    answered: AtomicU64,
    byes: AtomicU64,
    rtp_sent: AtomicU64,
    rtp_received: AtomicU64,
    retransmitted_200: AtomicU64,
    errors: AtomicU64,
    /// Each timed packet's added jitter, µs: its round trip minus the least of its stream.
    added_jitter_us: std::sync::Mutex<Vec<u32>>,
}

async fn recv_text(sock: &UdpSocket, buf: &mut [u8], wait: Duration) -> Option<String> {
    match tokio::time::timeout(wait, sock.recv(buf)).await {
        Ok(Ok(n)) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        _ => None,
    }
}

/// Digest REGISTER of `ext` from `sock` (connected to the hotline).
async fn register(sock: &UdpSocket, ext: usize) -> Result<()> {
    let a = sock.local_addr()?;
    let call_id = format!("reg-{ext}-{}", a.port());
    let mut auth: Option<String> = None;
    let mut buf = vec![0u8; 65536];
    for cseq in 1..=2u32 {
        let mut msg = format!(
            "REGISTER sip:hotline.test SIP/2.0\r\nVia: SIP/2.0/UDP {a};branch=z9hG4bK-reg-{ext}-{cseq};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{ext}@hotline.test>;tag=r{cseq}\r\n\
             To: <sip:{ext}@hotline.test>\r\nCall-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\n\
             Contact: <sip:{ext}@{a}>\r\nExpires: 3600\r\n"
        );
        if let Some(x) = &auth {
            msg.push_str(&format!("Authorization: {x}\r\n"));
        }
        msg.push_str("Content-Length: 0\r\n\r\n");
        let mut resp = None;
        'tries: for _ in 0..5 {
            sock.send(msg.as_bytes()).await?;
            let deadline = Instant::now() + Duration::from_secs(2);
            while let Some(m) = recv_text(
                sock,
                &mut buf,
                deadline.saturating_duration_since(Instant::now()),
            )
            .await
            {
                let is_reg = header(&m, "CSeq").is_some_and(|c| c.ends_with("REGISTER"));
                if m.starts_with("SIP/2.0") && is_reg && !m.starts_with("SIP/2.0 1") {
                    resp = Some(m);
                    break 'tries;
                }
            }
        }
        let resp = resp.ok_or_else(|| anyhow!("{ext}: REGISTER not answered"))?;
        if resp.starts_with("SIP/2.0 200") {
            return Ok(());
        }
        if !resp.starts_with("SIP/2.0 401") || cseq == 2 {
            bail!(
                "{ext}: REGISTER refused: {}",
                resp.lines().next().unwrap_or("")
            );
        }
        let www = header(&resp, "WWW-Authenticate").ok_or_else(|| anyhow!("no challenge"))?;
        auth = Some(
            hotline::sip::digest::client_authorization(
                www,
                "REGISTER",
                "sip:hotline.test",
                &ext.to_string(),
                &password(ext),
                "0a4f113b",
                1,
            )
            .map_err(|e| anyhow!("digest: {e:?}"))?,
        );
    }
    bail!("{ext}: not registered")
}

/// Marks the phones' timed packets (the caller leg also carries the hotline's own audio).
const TIMED: [u8; 4] = *b"HLJT";

fn realtime_ns() -> u64 {
    // SAFETY: clock_gettime on a local struct.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Asks the kernel to stamp each datagram `sock` receives (`SO_TIMESTAMPNS`), so that a
/// packet's arrival is not the phone's wake-up, which the consoles' load would delay.
fn stamp_arrivals(sock: &UdpSocket) -> Result<()> {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: the option value is a local int of the size given.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        bail!("SO_TIMESTAMPNS: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// One datagram from `sock` without blocking, with the kernel's arrival stamp
/// (CLOCK_REALTIME ns).
fn recv_stamped(sock: &UdpSocket, buf: &mut [u8]) -> std::io::Result<(usize, Option<u64>)> {
    use std::os::fd::AsRawFd;
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = [0u64; 8];
    // SAFETY: the header points at the local iovec and control buffer, which outlive the
    // call; the cmsg walk reads only what the kernel wrote, with libc's macros.
    unsafe {
        let mut h: libc::msghdr = std::mem::zeroed();
        h.msg_iov = &mut iov;
        h.msg_iovlen = 1;
        h.msg_control = control.as_mut_ptr().cast();
        h.msg_controllen = std::mem::size_of_val(&control) as _;
        let n = libc::recvmsg(sock.as_raw_fd(), &mut h, libc::MSG_DONTWAIT);
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut stamp = None;
        let mut c = libc::CMSG_FIRSTHDR(&h);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                stamp = Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
            }
            c = libc::CMSG_NXTHDR(&h, c);
        }
        Ok((n as usize, stamp))
    }
}

/// One answered call's RTP: 20 ms PCMU packets to `to` until `stop`, draining what arrives.
///
/// Each packet carries [`TIMED`], its stream and its send instant. SIPp's `-rtp_echo` sends
/// it back on the caller leg and the hotline relays it (PCMU both sides: the payload is
/// untouched) back to this phone, so its round trip is two passes through the hotline's
/// media plus SIPp's echo. A packet's added jitter is its round trip minus the least of its
/// stream's, as `media_load` reckons it.
async fn talk(rtp: Arc<UdpSocket>, to: SocketAddr, stop: Arc<AtomicBool>, stats: Arc<OpStats>) {
    let ssrc: u32 = rand::random();
    let mut seq: u16 = rand::random();
    let mut ts: u32 = rand::random();
    let mut pkt = [0xFFu8; 172];
    let mut buf = [0u8; 2048];
    // Round trips of this phone's timed packets, by stream, in µs.
    let mut trips: HashMap<u32, Vec<u32>> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while !stop.load(Ordering::Relaxed) {
        tokio::select! {
            _ = tick.tick() => {
                pkt[0] = 0x80;
                pkt[1] = 0;
                pkt[2..4].copy_from_slice(&seq.to_be_bytes());
                pkt[4..8].copy_from_slice(&ts.to_be_bytes());
                pkt[8..12].copy_from_slice(&ssrc.to_be_bytes());
                pkt[12..16].copy_from_slice(&TIMED);
                pkt[16..20].copy_from_slice(&ssrc.to_le_bytes());
                seq = seq.wrapping_add(1);
                ts = ts.wrapping_add(160);
                pkt[20..28].copy_from_slice(&realtime_ns().to_le_bytes());
                if rtp.send_to(&pkt, to).await.is_ok() {
                    stats.rtp_sent.fetch_add(1, Ordering::Relaxed);
                }
            }
            r = rtp.readable() => {
                if r.is_err() {
                    continue;
                }
                while let Ok((n, stamp)) =
                    rtp.try_io(tokio::io::Interest::READABLE, || recv_stamped(&rtp, &mut buf))
                {
                    stats.rtp_received.fetch_add(1, Ordering::Relaxed);
                    if let (Some(arrived), true) = (stamp, n >= 28 && buf[12..16] == TIMED) {
                        let stream = u32::from_le_bytes(buf[16..20].try_into().unwrap());
                        let sent = u64::from_le_bytes(buf[20..28].try_into().unwrap());
                        let trip = (arrived.saturating_sub(sent) / 1000).min(u64::from(u32::MAX));
                        trips.entry(stream).or_default().push(trip as u32);
                    }
                }
            }
        }
    }
    let mut added = Vec::new();
    for t in trips.values() {
        let least = t.iter().copied().min().unwrap_or(0);
        added.extend(t.iter().map(|v| v - least));
    }
    stats.added_jitter_us.lock().unwrap().extend(added);
}

struct OpCall {
    ok: String,
    acked: bool,
    sent_at: Instant,
    resends: u32,
    stop: Arc<AtomicBool>,
    ended: bool,
}

/// An operator phone: answers every INVITE, hangs up on nothing, answers BYE.
async fn operator_loop(
    sock: UdpSocket,
    rtp: Arc<UdpSocket>,
    ext: usize,
    stats: Arc<OpStats>,
    quit: Arc<AtomicBool>,
) {
    let me = sock.local_addr().expect("local addr");
    let mut calls: HashMap<String, OpCall> = HashMap::new();
    let mut buf = vec![0u8; 65536];
    while !quit.load(Ordering::Relaxed) {
        let msg = recv_text(&sock, &mut buf, Duration::from_millis(250)).await;
        // Retransmit unacknowledged 200s (T1 doubling).
        for c in calls.values_mut() {
            if !c.acked && !c.ended {
                let due = Duration::from_millis(500u64 << c.resends.min(3));
                if c.sent_at.elapsed() >= due {
                    if c.resends >= 7 {
                        c.ended = true;
                        c.stop.store(true, Ordering::Relaxed);
                        stats.errors.fetch_add(1, Ordering::Relaxed);
                        stats.active.fetch_sub(1, Ordering::Relaxed);
                        continue;
                    }
                    let _ = sock.send(c.ok.as_bytes()).await;
                    c.resends += 1;
                    c.sent_at = Instant::now();
                    stats.retransmitted_200.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let Some(msg) = msg else { continue };
        if msg.starts_with("SIP/2.0") {
            continue;
        }
        let method = msg.split(' ').next().unwrap_or("").to_string();
        let call_id = header(&msg, "Call-ID").unwrap_or_default().to_string();
        match method.as_str() {
            "INVITE" => {
                if let Some(c) = calls.get(&call_id) {
                    // A retransmission (or a re-INVITE in the dialog: answer it the same way).
                    let in_dialog = header(&msg, "To").is_some_and(|t| t.contains(";tag="));
                    if in_dialog {
                        let sdp = offer(rtp.local_addr().unwrap().port());
                        let contact = format!("Contact: <sip:{ext}@{me}>\r\n");
                        let ok = response(&msg, 200, "OK", "x", &contact, &sdp);
                        let _ = sock.send(ok.as_bytes()).await;
                    } else {
                        let _ = sock.send(c.ok.as_bytes()).await;
                    }
                    continue;
                }
                let Some(to) = media_addr(body(&msg)) else {
                    let r = response(&msg, 488, "Not Acceptable Here", "x", "", "");
                    let _ = sock.send(r.as_bytes()).await;
                    stats.errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let tag = format!("op{ext}-{}", rand::random::<u32>());
                let sdp = offer(rtp.local_addr().unwrap().port());
                let contact = format!("Contact: <sip:{ext}@{me}>\r\n");
                let ok = response(&msg, 200, "OK", &tag, &contact, &sdp);
                let _ = sock.send(ok.as_bytes()).await;
                let stop = Arc::new(AtomicBool::new(false));
                tokio::spawn(talk(rtp.clone(), to, stop.clone(), stats.clone()));
                let now = stats.active.fetch_add(1, Ordering::Relaxed) + 1;
                stats.max_active.fetch_max(now, Ordering::Relaxed);
                stats.answered.fetch_add(1, Ordering::Relaxed);
                // Forget finished calls, keep this one.
                calls.retain(|_, c| !c.ended || c.sent_at.elapsed() < Duration::from_secs(32));
                calls.insert(
                    call_id,
                    OpCall {
                        ok,
                        acked: false,
                        sent_at: Instant::now(),
                        resends: 0,
                        stop,
                        ended: false,
                    },
                );
            }
            "ACK" => {
                if let Some(c) = calls.get_mut(&call_id) {
                    c.acked = true;
                }
            }
            "BYE" => {
                let r = response(&msg, 200, "OK", "x", "", "");
                let _ = sock.send(r.as_bytes()).await;
                if let Some(c) = calls.get_mut(&call_id) {
                    if !c.ended {
                        c.ended = true;
                        c.acked = true;
                        c.sent_at = Instant::now();
                        c.stop.store(true, Ordering::Relaxed);
                        stats.active.fetch_sub(1, Ordering::Relaxed);
                        stats.byes.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            "CANCEL" => {
                // We answer at once, so a CANCEL crosses our 200: 200 to the CANCEL only.
                let r = response(&msg, 200, "OK", "x", "", "");
                let _ = sock.send(r.as_bytes()).await;
            }
            _ => {
                let r = response(&msg, 200, "OK", "x", "", "");
                let _ = sock.send(r.as_bytes()).await;
            }
        }
    }
    for c in calls.values() {
        c.stop.store(true, Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------------------------------

struct Server {
    child: std::process::Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Default)]
struct Samples {
    max_calls: usize,
    max_connected: usize,
    max_waiting: usize,
    max_backlog: u64,
    max_rss: f64,
}

async fn bench(p: Params) -> Result<bool> {
    let dir = tempfile::Builder::new()
        .prefix("hotline-callflow.")
        .tempdir()?;
    let work = dir.path().to_path_buf();
    let sip_port = free_port()?;
    let http_port = loop {
        let port = free_port()?;
        if port != sip_port {
            break port;
        }
    };
    let cfg_path = work.join("hotline.toml");
    std::fs::write(&cfg_path, config_text(&p, &work, sip_port, http_port)?)?;
    // CALLFLOW_LOAD_HOTLINE: a copy of the binary, so that the tree can change while it runs.
    let bin = std::env::var_os("CALLFLOW_LOAD_HOTLINE").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_hotline")),
        PathBuf::from,
    );

    // Tokens first, in the database the server will use, made as an administrator makes
    // them: with the binary's own `token create`.
    let token = |name: &str, role: &str, operator: Option<&str>| -> Result<String> {
        let mut cmd = Process::new(&bin);
        cmd.args(["token", "create", "--config"])
            .arg(&cfg_path)
            .args(["--name", name, "--role", role]);
        if let Some(ext) = operator {
            cmd.args(["--operator", ext]);
        }
        let out = cmd.stderr(Stdio::inherit()).output()?;
        if !out.status.success() {
            bail!("token create {name}: {}", out.status);
        }
        Ok(String::from_utf8(out.stdout)?.trim().to_string())
    };
    let mut op_tokens = Vec::new();
    for i in 0..p.operators {
        let ext = (FIRST_EXTENSION + i).to_string();
        op_tokens.push(token(&format!("load {ext}"), "operator", Some(&ext))?);
    }
    let supervisor = token("load supervisor", "supervisor", None)?;
    if p.consoles > 0 {
        use std::io::Write;
        let mut cmd = Process::new(&bin)
            .args(["user", "create", "--config"])
            .arg(&cfg_path)
            .args([
                "--login",
                "head",
                "--name",
                "Руководитель",
                "--role",
                "supervisor",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        cmd.stdin
            .take()
            .context("stdin")?
            .write_all(format!("{HEAD_PASSWORD}\n").as_bytes())?;
        if !cmd.wait()?.success() {
            bail!("user create head failed");
        }
    }

    let log = std::fs::File::create(work.join("hotline.log"))?;
    // CALLFLOW_LOAD_WRAP="heaptrack -o /tmp/ht" runs the hotline under a profiler (the
    // CPU and RSS printed are then the wrapper's, not the hotline's).
    let wrap = std::env::var("CALLFLOW_LOAD_WRAP").unwrap_or_default();
    let mut wrap = wrap.split_whitespace();
    let mut cmd = match wrap.next() {
        Some(prog) => {
            let mut c = Process::new(prog);
            c.args(wrap).arg(&bin);
            c
        }
        None => Process::new(&bin),
    };
    let child = cmd
        .args(["serve", "--config"])
        .arg(&cfg_path)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let pid = child.id();
    let mut server = Server { child };
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{http_port}");
    let started = Instant::now();
    loop {
        if let Ok(Some(st)) = server.child.try_wait() {
            let log = std::fs::read_to_string(work.join("hotline.log")).unwrap_or_default();
            bail!("hotline exited at start-up ({st}):\n{log}");
        }
        if let Ok(r) = http.get(format!("{base}/healthz")).send().await {
            if r.status().as_u16() == 200 {
                break;
            }
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("/healthz not 200 within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "== hotline pid {pid}: SIP 127.0.0.1:{sip_port}, HTTP {base}, {} operators, data {}",
        p.operators,
        work.display()
    );
    let server_addr: SocketAddr = format!("127.0.0.1:{sip_port}").parse()?;

    // Operators: register, sign in, answer.
    let stats = Arc::new(OpStats::default());
    let quit = Arc::new(AtomicBool::new(false));
    let mut phones = Vec::new();
    let reg_started = Instant::now();
    let mut regs = Vec::new();
    // The thousand sign-ins at once would leave a thousand idle keep-alive connections
    // (hyper holds ~15 KB for each) in the hotline's RSS for the whole run: a harness
    // artefact, not a call's cost. Their client keeps only a few.
    let sign_in = reqwest::Client::builder()
        .pool_max_idle_per_host(8)
        .build()?;
    for (i, token) in op_tokens.iter().enumerate() {
        let ext = FIRST_EXTENSION + i;
        let token = token.clone();
        let http = sign_in.clone();
        let base = base.clone();
        regs.push(tokio::spawn(async move {
            let sock = UdpSocket::bind("127.0.0.1:0").await?;
            sock.connect(server_addr).await?;
            let rtp = UdpSocket::bind("127.0.0.1:0").await?;
            stamp_arrivals(&rtp)?;
            let rtp = Arc::new(rtp);
            register(&sock, ext).await?;
            for _ in 0..250 {
                let r = http
                    .post(format!("{base}/api/v1/operators/{ext}/sign-in"))
                    .bearer_auth(&token)
                    .send()
                    .await?;
                match r.status().as_u16() {
                    204 => return Ok::<_, anyhow::Error>((sock, rtp, ext)),
                    409 => tokio::time::sleep(Duration::from_millis(20)).await,
                    s => bail!("{ext}: sign-in {s}: {}", r.text().await.unwrap_or_default()),
                }
            }
            bail!("{ext}: could not sign in")
        }));
    }
    for r in regs {
        let (sock, rtp, ext) = r.await??;
        phones.push(tokio::spawn(operator_loop(
            sock,
            rtp,
            ext,
            stats.clone(),
            quit.clone(),
        )));
    }
    eprintln!(
        "== {} operators registered and signed in in {:.1} s",
        p.operators,
        reg_started.elapsed().as_secs_f64()
    );

    // Supervisors on the wallboard, live, in a process of their own.
    let consoles = match p.consoles {
        0 => None,
        n => Some(ConsoleClients::start(n, &base)?),
    };
    if p.consoles > 0 {
        eprintln!("== {} supervisors on the wallboard", p.consoles);
    }

    // The sampler: /live and /proc every second.
    let samples = Arc::new(std::sync::Mutex::new(Samples::default()));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (samples, sampling, http, base, sup) = (
            samples.clone(),
            sampling.clone(),
            http.clone(),
            base.clone(),
            supervisor.clone(),
        );
        tokio::spawn(async move {
            while sampling.load(Ordering::Relaxed) {
                if let Ok(r) = http
                    .get(format!("{base}/api/v1/live"))
                    .bearer_auth(&sup)
                    .send()
                    .await
                {
                    if let Ok(v) = r.json::<Value>().await {
                        let calls = v["calls"].as_array().map(Vec::as_slice).unwrap_or(&[]);
                        let connected = calls.iter().filter(|c| c["stage"] == "connected").count();
                        let waiting = v["waiting"].as_array().map_or(0, Vec::len);
                        let backlog = v["journal_backlog"].as_u64().unwrap_or(0);
                        let mut s = samples.lock().unwrap();
                        s.max_calls = s.max_calls.max(calls.len());
                        s.max_connected = s.max_connected.max(connected);
                        s.max_waiting = s.max_waiting.max(waiting);
                        s.max_backlog = s.max_backlog.max(backlog);
                    }
                }
                let (rss, _) = rss_mb(pid);
                {
                    let mut s = samples.lock().unwrap();
                    s.max_rss = s.max_rss.max(rss);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };

    // Callers: SIPp.
    let calls = p.rate * p.seconds;
    let bound = p.seconds + p.call_ms / 1000 + 90;
    let sipp_port = free_port()?;
    // SIPp's audio (and video, +2) ports, outside the hotline's RTP range (20000-39999):
    // an ephemeral port could be taken by a call's leg before SIPp binds it.
    let media_port = loop {
        let m = rand::random_range(20_000u16..30_000) * 2;
        let free = (m..m + 4).all(|p| StdUdp::bind(("127.0.0.1", p)).is_ok());
        if free
            && ![sipp_port, sip_port, http_port]
                .iter()
                .any(|p| (m..m + 4).contains(p))
        {
            break m;
        }
    };
    let limit = (p.rate * (p.call_ms / 1000 + 30)).max(10);
    eprintln!(
        "== sipp -sn uac: {} calls/s for {} s ({calls} calls), {} ms each after the answer",
        p.rate, p.seconds, p.call_ms
    );
    let cpu0 = cpu_seconds(pid);
    let load_started = Instant::now();
    let sipp_dir = work.join("sipp");
    std::fs::create_dir_all(&sipp_dir)?;
    let sipp = tokio::process::Command::new("timeout")
        .args([
            "-k",
            "5",
            &bound.to_string(),
            "sipp",
            "-sn",
            "uac",
            "-s",
            "8800",
        ])
        .args([
            "-i",
            "127.0.0.1",
            "-p",
            &sipp_port.to_string(),
            "-bind_local",
        ])
        .args(["-mp", &media_port.to_string(), "-rtp_echo"])
        .args([
            "-r",
            &p.rate.to_string(),
            "-m",
            &calls.to_string(),
            "-l",
            &limit.to_string(),
        ])
        .args(["-d", &p.call_ms.to_string(), "-buff_size", SIPP_BUFF])
        .args([
            "-trace_stat",
            "-stf",
            "stat.csv",
            "-fd",
            "1",
            "-trace_err",
            "-trace_msg",
        ])
        .args(["-timeout", &format!("{}s", bound - 5), "-nostdin"])
        .arg(server_addr.to_string())
        .current_dir(&sipp_dir)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(sipp_dir.join("sipp.out"))?)
        .stderr(std::fs::File::create(sipp_dir.join("sipp.err"))?)
        .kill_on_drop(true)
        .status()
        .await
        .context("running sipp")?;
    let load_s = load_started.elapsed().as_secs_f64();
    let cpu1 = cpu_seconds(pid);
    eprintln!("== sipp finished ({sipp}) after {load_s:.1} s");

    // Let the last calls' outcomes reach the journal, then read it all.
    let placed = sipp_call_ids(&sipp_dir)?;
    let mut entries: Vec<Value>;
    let settle = Instant::now();
    loop {
        entries = journal(&http, &base, &supervisor).await?;
        let done = entries.iter().filter(|e| complete(e)).count();
        let live_calls = http
            .get(format!("{base}/api/v1/live"))
            .bearer_auth(&supervisor)
            .send()
            .await?
            .json::<Value>()
            .await?["calls"]
            .as_array()
            .map_or(0, Vec::len);
        if (done >= placed.len() && live_calls == 0) || settle.elapsed() > Duration::from_secs(40) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.await;
    let (rss_now, rss_hwm) = rss_mb(pid);
    quit.store(true, Ordering::Relaxed);
    for ph in phones {
        let _ = ph.await;
    }
    let console_summary = match consoles {
        Some(c) => Some(c.stop()?),
        None => None,
    };
    drop(server);

    // SIPp's figures.
    let stat = sipp_stat(&sipp_dir.join("stat.csv"));
    let num = |k: &str| {
        stat.get(k)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0) as u64
    };

    // Match entries with SIPp's calls.
    let mut by_call: HashMap<String, Vec<&Value>> = HashMap::new();
    for e in &entries {
        let id = sip_call_id(e).to_string();
        by_call.entry(id).or_default().push(e);
    }
    let mut missing = Vec::new();
    let mut duplicated = Vec::new();
    let mut incomplete = Vec::new();
    let mut dispositions: BTreeMap<String, u64> = BTreeMap::new();
    let mut answered_by_op = 0;
    let mut recorded = 0;
    let mut waits = Vec::new();
    for id in &placed {
        match by_call.get(id).map(Vec::as_slice) {
            None | Some([]) => missing.push(id.clone()),
            Some(es) => {
                if es.len() > 1 {
                    duplicated.push(id.clone());
                }
                let e = es[0];
                if !complete(e) {
                    incomplete.push(format!("{id} ({})", e["disposition"]));
                }
                let d = e["disposition"].as_str().unwrap_or("?").to_string();
                if d == "answered" && e["operator"].is_string() {
                    answered_by_op += 1;
                }
                if e["recording"].is_string() {
                    recorded += 1;
                }
                if let Some(w) = e["wait_s"].as_f64() {
                    waits.push(w);
                }
                *dispositions.entry(d).or_default() += 1;
            }
        }
    }
    let foreign = entries
        .iter()
        .filter(|e| !placed.contains(sip_call_id(e)))
        .count();
    waits.sort_by(f64::total_cmp);
    let pct = |q: f64| -> f64 {
        if waits.is_empty() {
            return f64::NAN;
        }
        waits[((q * waits.len() as f64).ceil() as usize).clamp(1, waits.len()) - 1]
    };

    let s = samples.lock().unwrap();
    let cpu = cpu1 - cpu0;
    println!(
        "callers            sipp uac {} calls/s × {} s, -d {} ms, -rtp_echo",
        p.rate, p.seconds, p.call_ms
    );
    println!(
        "operators          {} (wrap_up_s = 0), {}",
        p.operators,
        p.database_url
            .as_deref()
            .map_or("SQLite".to_string(), hotline::store::redact)
    );
    println!(
        "SIPp               created {}, successful {}, failed {}, retransmissions {}, exit {}",
        num("TotalCallCreated"),
        num("SuccessfulCall(C)"),
        num("FailedCall(C)"),
        num("Retransmissions(C)"),
        sipp.code().map_or("signal".into(), |c| c.to_string())
    );
    for (k, _) in stat.iter().filter(|(k, v)| {
        k.starts_with("Failed")
            && k.ends_with("(C)")
            && *k != "FailedCall(C)"
            && v.parse::<f64>().unwrap_or(0.0) > 0.0
    }) {
        println!("  {:<26} {}", &k[..k.len() - 3], num(k));
    }
    println!(
        "calls placed       {} Call-IDs in SIPp's message log",
        placed.len()
    );
    println!(
        "journal            {} entries; for SIPp's calls: {} missing, {} duplicated, {} incomplete; {} other entries",
        entries.len(),
        missing.len(),
        duplicated.len(),
        incomplete.len(),
        foreign
    );
    println!("dispositions       {dispositions:?}; answered by an operator {answered_by_op}");
    println!(
        "recordings         {recorded} entries name one; {} WAV files under data/recordings",
        count_wavs(&work.join("data").join("recordings"))
    );
    println!(
        "queue wait (s)     p50 {:.2}  p90 {:.2}  max {:.2}",
        pct(0.5),
        pct(0.9),
        pct(1.0)
    );
    println!(
        "concurrency        max {} calls in /live, {} connected, {} waiting; phones: max {} answered at once",
        s.max_calls,
        s.max_connected,
        s.max_waiting,
        stats.max_active.load(Ordering::Relaxed)
    );
    println!(
        "operator phones    answered {}, BYEs {}, 200 retransmitted {}, errors {}, RTP sent {} received {}",
        stats.answered.load(Ordering::Relaxed),
        stats.byes.load(Ordering::Relaxed),
        stats.retransmitted_200.load(Ordering::Relaxed),
        stats.errors.load(Ordering::Relaxed),
        stats.rtp_sent.load(Ordering::Relaxed),
        stats.rtp_received.load(Ordering::Relaxed)
    );
    {
        let mut j = stats.added_jitter_us.lock().unwrap().clone();
        j.sort_unstable();
        let q = |q: f64| {
            if j.is_empty() {
                return f64::NAN;
            }
            f64::from(j[((q * j.len() as f64).ceil() as usize).clamp(1, j.len()) - 1]) / 1000.0
        };
        println!(
            "media              added jitter of the phones' echoed RTP (2 passes + SIPp's echo): p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.1} ms over {} packets",
            q(0.5),
            q(0.99),
            q(0.999),
            q(1.0),
            j.len()
        );
    }
    println!(
        "hotline            CPU {cpu:.1} s over {load_s:.1} s of load ({:.0}% of a core), RSS max sampled {:.0} MiB, VmHWM {rss_hwm:.0} MiB (end {rss_now:.0}); journal backlog max {}",
        100.0 * cpu / load_s,
        s.max_rss,
        s.max_backlog
    );
    if let Some(summary) = console_summary {
        println!("consoles           {} supervisors: {summary}", p.consoles);
    }
    let log = std::fs::read_to_string(work.join("hotline.log")).unwrap_or_default();
    let warn: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    if !warn.is_empty() {
        println!(
            "hotline log        {} WARN/ERROR lines, last 5:",
            warn.len()
        );
        for l in warn.iter().rev().take(5).rev() {
            println!("  {}", l.chars().take(300).collect::<String>());
        }
    }
    for (what, ids) in [
        ("missing", &missing),
        ("duplicated", &duplicated),
        ("incomplete", &incomplete),
    ] {
        if !ids.is_empty() {
            println!(
                "{what} ({}): {}",
                ids.len(),
                ids.iter().take(20).cloned().collect::<Vec<_>>().join(", ")
            );
        }
    }
    let ok =
        !placed.is_empty() && missing.is_empty() && duplicated.is_empty() && incomplete.is_empty();
    println!(
        "result             {}",
        if ok {
            "every call has one complete journal entry"
        } else {
            "JOURNAL INCOMPLETE"
        }
    );
    if std::env::var("KEEP").as_deref() == Ok("1") {
        let kept = dir.keep();
        eprintln!("== files kept in {}", kept.display());
    }
    Ok(ok)
}

/// WAV files under `dir`, recursively.
fn count_wavs(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                count_wavs(&p)
            } else {
                usize::from(p.extension().is_some_and(|x| x == "wav"))
            }
        })
        .sum()
}

fn complete(e: &Value) -> bool {
    e["disposition"].is_string() && e["disposition"] != "in_progress" && !e["ended_at"].is_null()
}

/// Every journal entry, through the API's pages.
async fn journal(http: &reqwest::Client, base: &str, token: &str) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut req = http
            .get(format!("{base}/api/v1/journal"))
            .bearer_auth(token)
            .query(&[("limit", "500")]);
        if let Some(c) = &cursor {
            req = req.query(&[("cursor", c.as_str())]);
        }
        let r = req.send().await?;
        let status = r.status().as_u16();
        let v: Value = r.json().await?;
        if status != 200 {
            bail!("GET /journal: {status} {v}");
        }
        out.extend(v["entries"].as_array().cloned().unwrap_or_default());
        match v["next"].as_str() {
            Some(n) => cursor = Some(n.to_string()),
            None => return Ok(out),
        }
    }
}

/// The Call-IDs of the INVITEs SIPp sent, from its `-trace_msg` log.
fn sipp_call_ids(dir: &Path) -> Result<HashSet<String>> {
    let mut ids = HashSet::new();
    for e in std::fs::read_dir(dir)?.flatten() {
        if !e.file_name().to_string_lossy().ends_with("_messages.log") {
            continue;
        }
        let text = String::from_utf8_lossy(&std::fs::read(e.path())?).into_owned();
        for l in text.lines() {
            if let Some((name, value)) = l.split_once(':') {
                if name.trim().eq_ignore_ascii_case("Call-ID") || name.trim() == "i" {
                    ids.insert(value.trim().to_string());
                }
            }
        }
    }
    Ok(ids)
}

/// The last row of SIPp's statistics CSV, by column name.
fn sipp_stat(path: &Path) -> HashMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let rows: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let (Some(head), Some(last)) = (rows.first(), rows.last()) else {
        return HashMap::new();
    };
    head.split(';')
        .zip(last.split(';'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
