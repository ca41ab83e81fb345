//! Load benchmark of the media path: N concurrent calls, bridged and recorded, with RTP
//! both ways.
//!
//!     cargo bench --bench media_load -- [CALLS] [SECONDS]      (defaults: 1000 20)
//!
//! Two processes, so that the figures of the server are its own:
//!
//! * the **server** (this binary re-executed as `media_load --server N DIR CALLERS OPS`)
//!   runs N [`Session`]s on the hotline's media runtime with 2 threads, as production
//!   starts on these 2-core machines (`SCHED_RR` priority 10; `MEDIA_LOAD_PRIORITY=0`
//!   runs them in the normal class, for comparison). The caller leg is PCMU; the
//!   operator leg is PCMU for 3 calls in 4 and PCMA for every 4th (so transcoding is
//!   exercised); each call records to `DIR/<n>.wav`.
//!   It prints its port pairs, waits for "stop" (or end of stdin), stops every session so
//!   the recordings are finalised, prints a summary line and exits;
//! * the **generator** (the parent) sends a 20 ms RTP packet (12 + 160 bytes) on both legs
//!   of every call, paced from one start instant (`start + k·20 ms + phase`, no drift), the
//!   streams' phases spread evenly over the 20 ms period. It uses 4 sockets for callers
//!   and 4 for operators, `sendmmsg` / `recvmmsg`, and tells streams apart by the source
//!   port of what comes back (the server leg's port). It measures the server's CPU
//!   (`/proc/<pid>/stat`) and RSS (`/proc/<pid>/status`) over the measured window.
//!
//! Phases: warm-up 3 s (not measured), the window of SECONDS, then sending stops, the
//! generator drains for 300 ms, tells the server to stop and checks the N recordings.
//!
//! Latency is measured on pass-through calls (PCMU both sides, where the relay leaves the
//! payload untouched): the payload starts with the send instant (CLOCK_REALTIME nanoseconds
//! since the run's origin, taken just before the `sendmmsg` of its batch), the stream id and
//! the packet counter. The receive instant is the kernel's `SO_TIMESTAMPNS` stamp (same
//! clock), which on loopback is taken when the server's `sendto` hands the packet to the
//! loopback device: the figure is the server's delay, not the generator's wake-up (the
//! receiver only drains its sockets every 2 ms, so the server's `sendto` never has to wake
//! it, as a NIC would not). Added jitter of a packet is its latency minus the minimum
//! latency of its stream. Transcoded calls carry the counter and stream id as 16 "nibble"
//! bytes chosen so that the µ-law ↔ A-law mapping keeps them apart; they are counted, not
//! timed.
//!
//! The sender runs SCHED_FIFO when it may (root): phones and the network do not slow down
//! when the server is busy, so the load stays open-loop and on time. `MEDIA_LOAD_RT=0`
//! leaves it at normal priority. Other knobs: `MEDIA_LOAD_DUMP=file.csv` (every timed
//! packet), `MEDIA_LOAD_RECORD=0` (no recording, diagnosis only), `KEEP=1` (keep the WAVs),
//! `MEDIA_LOAD_SRTP=1` (issue 20: both legs of every call SRTP, AES_CM_128_HMAC_SHA1_80
//! with a key per leg and direction; the generator encrypts what it sends after stamping
//! it and decrypts what comes back before reading it, so the server decrypts every packet
//! and re-encrypts it for the other leg).
//!
//! Exit status: 0 when every target is met, 3 when one is missed, 1 on a harness error.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufRead, Write as _};
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command as Process, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use hotline::media::g711;
use hotline::media::ports;
use hotline::media::runtime::MediaRuntime;
use hotline::media::session::{Command, LegConfig, Session, SessionConfig, SessionEvent};
use hotline::sip::sdes::{Keys, Suite};
use hotline::sip::sdp::{Codec, Direction, Negotiated};
use webrtc_srtp::context::Context as SrtpContext;

#[path = "support/procfs.rs"]
mod procfs;
use procfs::{
    clock_ticks_per_s, lines_of, machine_ticks, proc_ticks, raise_nofile, rss_kb, thread_ticks,
};

/// Packet interval of every stream.
const PTIME_NS: u64 = 20_000_000;
/// Ticks per second.
const TICKS_PER_S: u64 = 1_000_000_000 / PTIME_NS;
/// Not measured: sessions latch, queues and caches settle.
const WARMUP_TICKS: u64 = 3 * TICKS_PER_S;
/// Wait after the last send before counting what came back.
const DRAIN: Duration = Duration::from_millis(300);
/// How long the server may take to exit once told to stop.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long the server may take to set its calls up.
const START_GRACE: Duration = Duration::from_secs(60);
const MAX_CALLS: usize = 5000;
const MAX_SECONDS: u64 = 120;
/// Generator sockets per side (callers, operators).
const GEN_SOCKETS: usize = 4;
/// Datagrams per `sendmmsg` / `recvmmsg`.
const BATCH: usize = 64;
const HEADER: usize = 12;
const PAYLOAD: usize = 160;
const PACKET: usize = HEADER + PAYLOAD;
/// The sender wakes at most this often: the packets that fell due meanwhile go out in one
/// batch per socket (about 20 per wake-up at 1,000 calls).
const SEND_GRANULARITY_NS: u64 = 200_000;
/// How often the receiver drains its sockets.
const RECV_INTERVAL: Duration = Duration::from_millis(2);
/// Receive buffer asked for on generator sockets (forced as root, else capped by rmem_max).
const GEN_RCVBUF: libc::c_int = 16 << 20;
/// Payload bytes carrying the counter (and stream id) of a transcoded call, one nibble each.
const NIBBLES: usize = 16;
/// Room after a packet for its SRTP tag.
const TAG_ROOM: usize = 16;

/// `MEDIA_LOAD_SRTP=1`: every leg SRTP (the server inherits it from the generator).
fn srtp_on() -> bool {
    std::env::var("MEDIA_LOAD_SRTP").is_ok_and(|v| v == "1")
}

/// The bench's key ‖ salt of `call`'s `leg` (0 caller, 1 operator), for what is sent to
/// the server (`inbound`) or by it: derived from the numbers, so both processes agree
/// without exchanging SDP.
fn bench_key(call: usize, leg: usize, inbound: bool) -> Vec<u8> {
    let mut x = (call as u64) << 2 | (leg as u64) << 1 | u64::from(inbound);
    (0..30)
        .map(|_| {
            // splitmix64
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (z ^ (z >> 31)) as u8
        })
        .collect()
}

/// The server's keys of `call`'s `leg`.
fn leg_keys(call: usize, leg: usize) -> Keys {
    Keys {
        suite: Suite::AesCm128HmacSha1_80,
        theirs: bench_key(call, leg, true),
        ours: bench_key(call, leg, false),
        savp: true,
    }
}

/// A generator context for one direction of a leg.
fn bench_context(call: usize, leg: usize, inbound: bool, replay: bool) -> SrtpContext {
    let k = bench_key(call, leg, inbound);
    SrtpContext::new(
        &k[..16],
        &k[16..],
        webrtc_srtp::protection_profile::ProtectionProfile::Aes128CmHmacSha1_80,
        replay.then(|| webrtc_srtp::option::srtp_replay_protection(128)),
        None,
    )
    .expect("an SRTP context")
}

// The targets.
const TARGET_CPU_PCT_PER_CALL: f64 = 0.12;
const TARGET_P99_JITTER_MS: f64 = 5.0;
const TARGET_RSS_MB: f64 = 150.0;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--server") {
        return match server(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("media_load server: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    // `cargo bench` adds `--bench`; anything that is not a number is ignored.
    let numbers: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let parse = |i: usize, default: u64| -> Result<u64> {
        match numbers.get(i) {
            Some(s) => s
                .parse::<u64>()
                .with_context(|| format!("not a number: {s:?}")),
            None => Ok(default),
        }
    };
    let run = || -> Result<bool> {
        let calls = parse(0, 1000)? as usize;
        let seconds = parse(1, 20)?;
        if !(1..=MAX_CALLS).contains(&calls) {
            bail!("CALLS must be 1..={MAX_CALLS}");
        }
        if !(1..=MAX_SECONDS).contains(&seconds) {
            bail!("SECONDS must be 1..={MAX_SECONDS}");
        }
        generator(calls, seconds)
    };
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(3),
        Err(e) => {
            eprintln!("media_load: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_transcoded(call: usize) -> bool {
    call % 4 == 3
}

// ---------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------

fn server(args: &[String]) -> Result<()> {
    let [n, dir, callers, ops] = args else {
        bail!("usage: media_load --server N DIR CALLER_ADDRS OPERATOR_ADDRS");
    };
    let n: usize = n.parse().context("N")?;
    if !(1..=MAX_CALLS).contains(&n) {
        bail!("N must be 1..={MAX_CALLS}");
    }
    // "-": no recording (a diagnostic run, MEDIA_LOAD_RECORD=0).
    let dir = (dir != "-").then(|| PathBuf::from(dir));
    let addrs = |s: &str| -> Result<Vec<SocketAddr>> {
        s.split(',')
            .map(|a| a.parse().with_context(|| format!("address {a:?}")))
            .collect()
    };
    let (callers, ops) = (addrs(callers)?, addrs(ops)?);
    if callers.is_empty() || ops.is_empty() {
        bail!("no generator addresses");
    }
    raise_nofile();
    // The sessions run on the hotline's media runtime (2 real-time threads, as production
    // starts on these 2-core machines); this process's control on a thread of its own.
    let priority = std::env::var("MEDIA_LOAD_PRIORITY")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(10u8);
    let media_runtime = MediaRuntime::start(2, priority)?;
    if let Some(w) = &media_runtime.scheduling().warning {
        eprintln!("server: {w}");
    }
    let rt = media_runtime.handle().clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let (events, mut ended) = tokio::sync::mpsc::unbounded_channel();
        let srtp = srtp_on();
        let media = |codec: Codec, remote: SocketAddr, call: usize, leg: usize| Negotiated {
            codecs: vec![(codec.payload_type(), codec)],
            telephone_event: Some(101),
            remote_rtp: Some(remote),
            direction: Direction::SendRecv,
            ptime: Some(20),
            srtp: srtp.then(|| leg_keys(call, leg)),
        };
        let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let mut sessions = Vec::with_capacity(n);
        let mut out = String::with_capacity(n * 12 + 16);
        for i in 0..n {
            let caller = ports::bind(loopback).context("binding a caller leg")?;
            let operator = ports::bind(loopback).context("binding an operator leg")?;
            let (cp, op) = (caller.local_addr()?.port(), operator.local_addr()?.port());
            let session = Session::spawn_on(
                &rt,
                SessionConfig {
                    call: i as u64,
                    caller: LegConfig {
                        socket: caller,
                        media: media(Codec::Pcmu, callers[i % callers.len()], i, 0),
                    },
                    recording: dir.as_ref().map(|d| d.join(format!("{i}.wav"))),
                    rtp_timeout: None,
                },
                events.clone(),
            )
            .map_err(|e| anyhow!("session {i}: {e}"))?;
            let codec = if is_transcoded(i) {
                Codec::Pcma
            } else {
                Codec::Pcmu
            };
            session.command(Command::Bridge(LegConfig {
                socket: operator,
                media: media(codec, ops[i % ops.len()], i, 1),
            }));
            sessions.push(session);
            let _ = writeln!(out, "{cp} {op}");
        }
        out.push_str("ready\n");
        {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(out.as_bytes())?;
            stdout.flush()?;
        }

        // Run until "stop" or the end of stdin (the generator died).
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                match line {
                    Ok(l) if l.trim() == "stop" => break,
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            let _ = stop_tx.send(());
        });
        let _ = stop_rx.await;

        let mut stopping = tokio::task::JoinSet::new();
        for s in sessions {
            stopping.spawn(s.stop());
        }
        while stopping.join_next().await.is_some() {}
        drop(events);
        let mut sum = ServerSummary::default();
        while let Some((_, event)) = ended.recv().await {
            if let SessionEvent::Ended(s) = event {
                sum.ended += 1;
                if let Some(r) = &s.recording {
                    sum.recorded += 1;
                    let ms = r.duration.as_millis() as u64;
                    sum.min_recording_ms = Some(sum.min_recording_ms.map_or(ms, |m| m.min(ms)));
                }
                sum.caller_rx += s.caller.received;
                sum.caller_lost += s.caller.lost;
                sum.caller_sent += s.caller.sent;
                if let Some(o) = s.operator {
                    sum.op_rx += o.received;
                    sum.op_lost += o.lost;
                    sum.op_sent += o.sent;
                }
            }
        }
        println!("{}", sum.to_line());
        Ok::<(), anyhow::Error>(())
    })
}

/// What the server's sessions reported when they ended (whole run, warm-up included).
#[derive(Default, Debug)]
struct ServerSummary {
    ended: u64,
    recorded: u64,
    min_recording_ms: Option<u64>,
    caller_rx: u64,
    caller_lost: u64,
    caller_sent: u64,
    op_rx: u64,
    op_lost: u64,
    op_sent: u64,
}

impl ServerSummary {
    fn to_line(&self) -> String {
        format!(
            "summary {} {} {} {} {} {} {} {} {}",
            self.ended,
            self.recorded,
            self.min_recording_ms.unwrap_or(0),
            self.caller_rx,
            self.caller_lost,
            self.caller_sent,
            self.op_rx,
            self.op_lost,
            self.op_sent
        )
    }

    fn from_line(line: &str) -> Option<ServerSummary> {
        let v: Vec<u64> = line
            .strip_prefix("summary ")?
            .split_whitespace()
            .map(|x| x.parse().ok())
            .collect::<Option<_>>()?;
        let [ended, recorded, min_ms, caller_rx, caller_lost, caller_sent, op_rx, op_lost, op_sent] =
            v[..]
        else {
            return None;
        };
        Some(ServerSummary {
            ended,
            recorded,
            min_recording_ms: Some(min_ms),
            caller_rx,
            caller_lost,
            caller_sent,
            op_rx,
            op_lost,
            op_sent,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Generator
// ---------------------------------------------------------------------------------------

/// One direction of one call, as the generator sees it.
#[derive(Clone, Copy)]
struct Stream {
    /// Generator socket it is sent from (0..4 callers, 4..8 operators).
    socket: usize,
    /// Server port it is sent to.
    to: u16,
    payload_type: u8,
    ssrc: u32,
    /// Offset of its sends within the 20 ms period.
    phase_ns: u64,
    /// Pass-through (timed) or transcoded (counted only).
    timed: bool,
    /// The codec it is sent in (the relayed packets come back in the other one when
    /// transcoded).
    codec: Codec,
}

/// Stream `2·call + dir`: dir 0 is caller → operator, dir 1 operator → caller.
fn stream_id(call: usize, dir: usize) -> usize {
    2 * call + dir
}

/// Nibble bytes for a transcoded direction: 16 source codes whose transcoded images are
/// distinct, and the reverse map from the image back to the nibble.
struct NibbleCode {
    encode: [u8; 16],
    decode: [Option<u8>; 256],
}

impl NibbleCode {
    fn new(from: Codec, to: Codec) -> NibbleCode {
        let mut encode = [0u8; 16];
        let mut decode = [None; 256];
        let mut k = 0;
        // Loud codes first (µ-law and A-law alike put large magnitudes at small codes
        // after their bit inversions); any 16 with distinct images will do.
        for src in 0u8..=255 {
            if k == 16 {
                break;
            }
            let mut img = [0u8];
            g711::transcode(from, to, &[src], &mut img);
            if decode[usize::from(img[0])].is_none() {
                decode[usize::from(img[0])] = Some(k as u8);
                encode[k] = src;
                k += 1;
            }
        }
        assert_eq!(k, 16, "16 distinct transcoded codes");
        NibbleCode { encode, decode }
    }

    fn put(&self, value: u64, out: &mut [u8]) {
        for (i, b) in out[..NIBBLES].iter_mut().enumerate() {
            *b = self.encode[((value >> (4 * i)) & 0xF) as usize];
        }
    }

    fn get(&self, bytes: &[u8]) -> Option<u64> {
        let mut v = 0u64;
        for (i, b) in bytes[..NIBBLES].iter().enumerate() {
            v |= u64::from(self.decode[usize::from(*b)]?) << (4 * i);
        }
        Some(v)
    }
}

fn realtime_ns() -> u64 {
    // SAFETY: clock_gettime on a local struct.
    let mut ts: libc::timespec = unsafe { zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn setsockopt_int(fd: RawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> bool {
    // SAFETY: the option value is a local int of the size given.
    unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
    }
}

fn generator_socket() -> Result<UdpSocket> {
    let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    s.set_nonblocking(true)?;
    let fd = s.as_raw_fd();
    for (force, plain) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        if !setsockopt_int(fd, libc::SOL_SOCKET, force, GEN_RCVBUF) {
            setsockopt_int(fd, libc::SOL_SOCKET, plain, GEN_RCVBUF);
        }
    }
    if !setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1) {
        bail!("SO_TIMESTAMPNS: {}", std::io::Error::last_os_error());
    }
    Ok(s)
}

/// Packets a direction sent and got back inside the window.
#[derive(Default, Clone, Copy)]
struct Counts {
    sent: u64,
}

struct SendReport {
    /// Per direction (0 caller → operator, 1 operator → caller), inside the window.
    counts: [Counts; 2],
    /// Datagrams `sendmmsg` refused (any time).
    send_errors: u64,
    /// How late each packet of the window left behind its due time, µs.
    late_us: Vec<u32>,
    /// The sender ran SCHED_FIFO (open loop: the server's load cannot delay it).
    realtime: bool,
}

struct RecvReport {
    /// Per direction, inside the window (by the counter carried in the payload).
    received: [u64; 2],
    /// Latencies (ns) inside the window, per timed stream.
    /// (send instant in µs since the origin, latency in ns).
    latencies: Vec<Vec<(u32, u32)>>,
    /// From an unknown port, or whose payload did not decode.
    unknown: u64,
    /// Counters outside the window (warm-up).
    outside: u64,
    /// Packets without a kernel timestamp (timed with the clock at receive instead).
    unstamped: u64,
}

/// Snapshot of the CPU figures at one instant.
struct CpuSnapshot {
    at: Instant,
    server: (u64, u64),
    generator: (u64, u64),
    threads: HashMap<u32, (String, u64)>,
    /// /proc/stat "cpu" line: (busy, total, softirq, steal) jiffies.
    machine: (u64, u64, u64, u64),
}

fn snapshot(pid: u32) -> CpuSnapshot {
    CpuSnapshot {
        at: Instant::now(),
        server: proc_ticks(&format!("/proc/{pid}/stat")).unwrap_or_default(),
        generator: proc_ticks("/proc/self/stat").unwrap_or_default(),
        threads: thread_ticks(pid),
        machine: machine_ticks(),
    }
}

/// Udp counters of /proc/net/snmp by name.
fn udp_snmp() -> HashMap<String, u64> {
    let s = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let lines: Vec<&str> = s.lines().filter(|l| l.starts_with("Udp:")).collect();
    let mut out = HashMap::new();
    if let [names, values, ..] = lines[..] {
        for (n, v) in names
            .split_whitespace()
            .zip(values.split_whitespace())
            .skip(1)
        {
            out.insert(n.to_string(), v.parse().unwrap_or(0));
        }
    }
    out
}

/// Socket drops of /proc/net/udp by local port.
fn udp_drops_by_port() -> HashMap<u16, u64> {
    let s = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    let mut out = HashMap::new();
    for line in s.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(drops)) = (f.get(1), f.last()) else {
            continue;
        };
        let Some(port) = local
            .split(':')
            .nth(1)
            .and_then(|p| u16::from_str_radix(p, 16).ok())
        else {
            continue;
        };
        *out.entry(port).or_insert(0) += drops.parse::<u64>().unwrap_or(0);
    }
    out
}

/// The server child: killed if still running when dropped.
struct Server {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: std_mpsc::Receiver<String>,
}

impl Server {
    fn start(calls: usize, dir: &Path, callers: &str, ops: &str) -> Result<Server> {
        let exe = std::env::current_exe().context("current_exe")?;
        let mut child = Process::new(exe)
            .arg("--server")
            .arg(calls.to_string())
            .arg(dir)
            .arg(callers)
            .arg(ops)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the server process")?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("server stdout")?;
        let lines = lines_of(stdout);
        Ok(Server {
            child,
            stdin,
            lines,
        })
    }

    fn line(&self, deadline: Instant) -> Result<String> {
        let left = deadline.saturating_duration_since(Instant::now());
        self.lines.recv_timeout(left).map_err(|e| match e {
            std_mpsc::RecvTimeoutError::Timeout => anyhow!("server did not answer in time"),
            std_mpsc::RecvTimeoutError::Disconnected => anyhow!("server exited early"),
        })
    }

    /// Tells the server to stop; waits up to [`STOP_GRACE`] for it, else kills it.
    fn stop(&mut self) -> Result<Option<ServerSummary>> {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"stop\n");
        }
        let deadline = Instant::now() + STOP_GRACE;
        let mut summary = None;
        loop {
            while let Ok(line) = self.lines.try_recv() {
                if let Some(s) = ServerSummary::from_line(&line) {
                    summary = Some(s);
                }
            }
            if let Some(status) = self.child.try_wait()? {
                while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    if let Some(s) = ServerSummary::from_line(&line) {
                        summary = Some(s);
                    }
                }
                if !status.success() {
                    bail!("server exited with {status}");
                }
                return Ok(summary);
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!("server did not exit within {STOP_GRACE:?} of being told to stop; killed");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One socket's outgoing batch for `sendmmsg`.
struct SendBatch {
    bufs: Vec<[u8; PACKET + TAG_ROOM]>,
    addrs: Vec<libc::sockaddr_in>,
    iovs: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
    /// Stream, counter and "carries a send stamp" of each queued packet.
    meta: Vec<(usize, u64, bool)>,
}

// SAFETY: the raw pointers in `iovs` and `msgs` only ever point into this batch's own
// heap buffers (which do not move) and are rewritten before each `sendmmsg`.
unsafe impl Send for SendBatch {}

impl SendBatch {
    fn new() -> SendBatch {
        SendBatch {
            bufs: vec![[0u8; PACKET + TAG_ROOM]; BATCH],
            // SAFETY: all-zero is a valid sockaddr_in / iovec / mmsghdr.
            addrs: vec![unsafe { zeroed() }; BATCH],
            iovs: vec![unsafe { zeroed() }; BATCH],
            msgs: vec![unsafe { zeroed() }; BATCH],
            meta: Vec::with_capacity(BATCH),
        }
    }
}

struct Sender {
    streams: Vec<Stream>,
    /// Each stream's SRTP context (`MEDIA_LOAD_SRTP=1`).
    srtp: Vec<SrtpContext>,
    fds: Vec<RawFd>,
    batches: Vec<SendBatch>,
    codes: [NibbleCode; 2],
    origin_rt: u64,
    window: (u64, u64),
    report: SendReport,
}

impl Sender {
    fn queue(&mut self, s: usize, k: u64) {
        let st = self.streams[s];
        if self.batches[st.socket].meta.len() == BATCH {
            self.flush(st.socket);
        }
        let b = &mut self.batches[st.socket];
        let i = b.meta.len();
        let buf = &mut b.bufs[i];
        buf[0] = 0x80;
        buf[1] = st.payload_type;
        buf[2..4].copy_from_slice(&(k as u16).to_be_bytes());
        buf[4..8].copy_from_slice(&((k as u32).wrapping_mul(PAYLOAD as u32)).to_be_bytes());
        buf[8..12].copy_from_slice(&st.ssrc.to_be_bytes());
        let payload = &mut buf[HEADER..];
        payload.fill(g711::silence(st.codec));
        if st.timed {
            // [0..8] send stamp (filled at flush), [8..12] stream, [12..16] counter.
            payload[8..12].copy_from_slice(&(s as u32).to_be_bytes());
            payload[12..16].copy_from_slice(&(k as u32).to_be_bytes());
        } else {
            let dir = s % 2;
            self.codes[dir].put(k | ((s as u64) << 32), payload);
        }
        b.addrs[i] = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: st.to.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(Ipv4Addr::LOCALHOST).to_be(),
            },
            sin_zero: [0; 8],
        };
        b.meta.push((s, k, st.timed));
    }

    fn flush(&mut self, socket: usize) {
        let fd = self.fds[socket];
        let b = &mut self.batches[socket];
        let n = b.meta.len();
        if n == 0 {
            return;
        }
        let stamp = realtime_ns() - self.origin_rt;
        for i in 0..n {
            if b.meta[i].2 {
                b.bufs[i][HEADER..HEADER + 8].copy_from_slice(&stamp.to_be_bytes());
            }
            let mut len = PACKET;
            if let Some(ctx) = self.srtp.get_mut(b.meta[i].0) {
                let sealed = ctx.encrypt_rtp(&b.bufs[i][..PACKET]).expect("SRTP protect");
                len = sealed.len();
                b.bufs[i][..len].copy_from_slice(&sealed);
            }
            b.iovs[i] = libc::iovec {
                iov_base: b.bufs[i].as_mut_ptr().cast(),
                iov_len: len,
            };
            let hdr = &mut b.msgs[i].msg_hdr;
            hdr.msg_name = (&mut b.addrs[i] as *mut libc::sockaddr_in).cast();
            hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            hdr.msg_iov = &mut b.iovs[i];
            hdr.msg_iovlen = 1;
            hdr.msg_control = std::ptr::null_mut();
            hdr.msg_controllen = 0;
            hdr.msg_flags = 0;
        }
        let mut done = 0usize;
        while done < n {
            // SAFETY: msgs[done..n] point into buffers owned by `b`, alive for the call.
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    b.msgs[done..].as_mut_ptr(),
                    (n - done) as libc::c_uint,
                    0,
                )
            };
            if r <= 0 {
                // EAGAIN / ENOBUFS: this datagram is lost for good; go on with the next.
                self.report.send_errors += 1;
                done += 1;
                continue;
            }
            for &(s, k, _) in &b.meta[done..done + r as usize] {
                if (self.window.0..self.window.1).contains(&k) {
                    self.report.counts[s % 2].sent += 1;
                }
            }
            done += r as usize;
        }
        b.meta.clear();
    }

    fn flush_all(&mut self) {
        for socket in 0..self.batches.len() {
            self.flush(socket);
        }
    }

    /// Sends ticks `0..end` of every stream, each at `start + k·20 ms + phase`.
    fn run(mut self, start: Instant, end: u64, realtime: bool) -> SendReport {
        // The phones and the network do not slow down when the server is busy: with a
        // real-time sender the load stays open-loop and on time even when the two cores
        // are saturated (it sleeps between batches, so it cannot starve the server).
        if realtime {
            let param = libc::sched_param { sched_priority: 10 };
            // SAFETY: sets this thread's own policy.
            self.report.realtime =
                unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } == 0;
        }
        let mut order: Vec<(u64, usize)> = self
            .streams
            .iter()
            .enumerate()
            .map(|(s, st)| (st.phase_ns, s))
            .collect();
        order.sort_unstable();
        let (mut k, mut idx) = (0u64, 0usize);
        while k < end {
            let now = start.elapsed().as_nanos() as u64;
            loop {
                let due = k * PTIME_NS + order[idx].0;
                if due > now {
                    break;
                }
                if (self.window.0..self.window.1).contains(&k) {
                    let late = ((now - due) / 1000).min(u64::from(u32::MAX)) as u32;
                    self.report.late_us.push(late);
                }
                self.queue(order[idx].1, k);
                idx += 1;
                if idx == order.len() {
                    idx = 0;
                    k += 1;
                    if k == end {
                        break;
                    }
                }
            }
            self.flush_all();
            if k == end {
                break;
            }
            let due = k * PTIME_NS + order[idx].0;
            let wake = due.max(now + SEND_GRANULARITY_NS);
            let now = start.elapsed().as_nanos() as u64;
            if wake > now {
                std::thread::sleep(Duration::from_nanos(wake - now));
            }
        }
        self.report
    }
}

/// Where a received datagram came from: stream by server port.
struct Receiver {
    fds: Vec<RawFd>,
    /// Each stream's SRTP context for what comes back (`MEDIA_LOAD_SRTP=1`).
    srtp: Vec<SrtpContext>,
    /// SRTP packets as they arrived (stream, stamps, bytes), decrypted after the run: the
    /// receiver thread runs in the normal class beside the real-time server and sender, and
    /// decrypting 100,000 packets a second there made its sockets overflow.
    deferred: Vec<(usize, Option<u64>, u64, Vec<u8>)>,
    /// Server port → stream id + 1 (0: unknown).
    by_port: Vec<u32>,
    streams: Vec<Stream>,
    codes: [NibbleCode; 2],
    origin_rt: u64,
    window: (u64, u64),
    /// Index into `report.latencies` of each timed stream.
    timed_index: Vec<u32>,
    report: RecvReport,
}

impl Receiver {
    fn run(mut self, stop: Arc<AtomicBool>) -> RecvReport {
        const CONTROL: usize = 64;
        let mut bufs = vec![[0u8; 512]; BATCH];
        let mut controls = vec![[0u64; CONTROL / 8]; BATCH];
        // SAFETY: all-zero is valid for these C structs.
        let mut addrs: Vec<libc::sockaddr_in> = vec![unsafe { zeroed() }; BATCH];
        let mut iovs: Vec<libc::iovec> = vec![unsafe { zeroed() }; BATCH];
        let mut msgs: Vec<libc::mmsghdr> = vec![unsafe { zeroed() }; BATCH];
        // No poll(): the receive instant is the kernel's stamp, so reading late costs no
        // accuracy, and a socket nobody waits on costs the server's sendto no wake-up (as
        // a NIC would not). The buffers hold far more than one interval of packets.
        loop {
            let last = stop.load(Ordering::Acquire);
            for f in 0..self.fds.len() {
                let fd = self.fds[f];
                loop {
                    for i in 0..BATCH {
                        iovs[i] = libc::iovec {
                            iov_base: bufs[i].as_mut_ptr().cast(),
                            iov_len: bufs[i].len(),
                        };
                        let h = &mut msgs[i].msg_hdr;
                        h.msg_name = (&mut addrs[i] as *mut libc::sockaddr_in).cast();
                        h.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
                        h.msg_iov = &mut iovs[i];
                        h.msg_iovlen = 1;
                        h.msg_control = controls[i].as_mut_ptr().cast();
                        h.msg_controllen = CONTROL as _;
                        h.msg_flags = 0;
                    }
                    // SAFETY: every header points into the buffers above.
                    let n = unsafe {
                        libc::recvmmsg(
                            fd,
                            msgs.as_mut_ptr(),
                            BATCH as libc::c_uint,
                            libc::MSG_DONTWAIT,
                            std::ptr::null_mut(),
                        )
                    };
                    if n <= 0 {
                        break;
                    }
                    let fallback = realtime_ns().saturating_sub(self.origin_rt);
                    for i in 0..n as usize {
                        let len = msgs[i].msg_len as usize;
                        let port = u16::from_be(addrs[i].sin_port);
                        let stamp = kernel_stamp(&msgs[i].msg_hdr);
                        self.on_packet(&bufs[i][..len], port, stamp, fallback);
                    }
                    if (n as usize) < BATCH {
                        break;
                    }
                }
            }
            if last {
                break;
            }
            std::thread::sleep(RECV_INTERVAL);
        }
        self.decrypt_deferred();
        self.report
    }

    fn on_packet(&mut self, buf: &[u8], port: u16, stamp: Option<u64>, fallback: u64) {
        let s = self.by_port[usize::from(port)];
        if s == 0 || buf.len() < HEADER + NIBBLES {
            self.report.unknown += 1;
            return;
        }
        let s = (s - 1) as usize;
        if !self.srtp.is_empty() {
            self.deferred.push((s, stamp, fallback, buf.to_vec()));
            return;
        }
        self.account(s, buf, stamp, fallback);
    }

    /// Decrypts the deferred SRTP packets, each stream's in their order of arrival, and
    /// counts them.
    fn decrypt_deferred(&mut self) {
        for (s, stamp, fallback, packet) in std::mem::take(&mut self.deferred) {
            match self.srtp[s].decrypt_rtp(&packet) {
                Ok(clear) => self.account(s, &clear, stamp, fallback),
                Err(_) => self.report.unknown += 1,
            }
        }
    }

    /// Counts (and times) the clear packet `buf` of stream `s`.
    fn account(&mut self, s: usize, buf: &[u8], stamp: Option<u64>, fallback: u64) {
        let st = self.streams[s];
        let off = HEADER + 4 * usize::from(buf[0] & 0x0F);
        let Some(payload) = buf.get(off..).filter(|p| p.len() >= NIBBLES) else {
            self.report.unknown += 1;
            return;
        };
        let k = if st.timed {
            let id = u32::from_be_bytes(payload[8..12].try_into().unwrap());
            if id as usize != s {
                self.report.unknown += 1;
                return;
            }
            u64::from(u32::from_be_bytes(payload[12..16].try_into().unwrap()))
        } else {
            match self.codes[s % 2].get(payload) {
                Some(v) if (v >> 32) as usize == s => v & 0xFFFF_FFFF,
                _ => {
                    self.report.unknown += 1;
                    return;
                }
            }
        };
        if !(self.window.0..self.window.1).contains(&k) {
            self.report.outside += 1;
            return;
        }
        self.report.received[s % 2] += 1;
        if st.timed {
            let sent = u64::from_be_bytes(payload[0..8].try_into().unwrap());
            let recv = match stamp {
                Some(t) => t.saturating_sub(self.origin_rt),
                None => {
                    self.report.unstamped += 1;
                    fallback
                }
            };
            let latency = recv.saturating_sub(sent).min(u64::from(u32::MAX)) as u32;
            self.report.latencies[self.timed_index[s] as usize]
                .push(((sent / 1000) as u32, latency));
        }
    }
}

/// The SO_TIMESTAMPNS stamp of a received datagram, CLOCK_REALTIME ns.
fn kernel_stamp(h: &libc::msghdr) -> Option<u64> {
    // SAFETY: walking the control buffer the kernel filled, with libc's macros.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                return Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    None
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1e6
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn generator(calls: usize, seconds: u64) -> Result<bool> {
    raise_nofile();
    let sockets: Vec<UdpSocket> = (0..2 * GEN_SOCKETS)
        .map(|_| generator_socket())
        .collect::<Result<_>>()
        .context("generator sockets")?;
    let addr_list = |range: std::ops::Range<usize>| -> Result<String> {
        Ok(sockets[range]
            .iter()
            .map(|s| s.local_addr().map(|a| a.to_string()))
            .collect::<std::io::Result<Vec<_>>>()?
            .join(","))
    };
    let callers = addr_list(0..GEN_SOCKETS)?;
    let ops = addr_list(GEN_SOCKETS..2 * GEN_SOCKETS)?;
    let gen_ports: Vec<u16> = sockets
        .iter()
        .map(|s| s.local_addr().map(|a| a.port()))
        .collect::<std::io::Result<_>>()?;

    let tmp = tempfile::Builder::new().prefix("media_load.").tempdir()?;
    let dir = tmp.path().to_path_buf();
    let record = std::env::var("MEDIA_LOAD_RECORD").map_or(true, |v| v != "0");
    let snmp_before = udp_snmp();
    let server_dir = if record {
        dir.clone()
    } else {
        PathBuf::from("-")
    };
    let mut server = Server::start(calls, &server_dir, &callers, &ops)?;
    let pid = server.child.id();

    // Port pairs, then "ready".
    let deadline = Instant::now() + START_GRACE;
    let mut pairs = Vec::with_capacity(calls);
    loop {
        let line = server.line(deadline)?;
        if line == "ready" {
            break;
        }
        let mut it = line.split_whitespace().map(|p| p.parse::<u16>());
        match (it.next(), it.next()) {
            (Some(Ok(c)), Some(Ok(o))) => pairs.push((c, o)),
            _ => bail!("unexpected line from the server: {line:?}"),
        }
    }
    if pairs.len() != calls {
        bail!("server set up {} calls, not {calls}", pairs.len());
    }

    // Streams: caller phase i/N of the period, the operator's half a period later.
    let period = PTIME_NS as u128;
    let mut streams = Vec::with_capacity(2 * calls);
    let mut by_port = vec![0u32; 65536];
    let mut timed_index = vec![u32::MAX; 2 * calls];
    let mut timed = 0u32;
    for (i, &(cp, op)) in pairs.iter().enumerate() {
        let phase = (i as u128 * period / calls as u128) as u64;
        let transcoded = is_transcoded(i);
        for dir in 0..2 {
            let s = stream_id(i, dir);
            let (socket, to, codec, phase_ns) = if dir == 0 {
                (i % GEN_SOCKETS, cp, Codec::Pcmu, phase)
            } else {
                let codec = if transcoded { Codec::Pcma } else { Codec::Pcmu };
                (
                    GEN_SOCKETS + i % GEN_SOCKETS,
                    op,
                    codec,
                    (phase + PTIME_NS / 2) % PTIME_NS,
                )
            };
            streams.push(Stream {
                socket,
                to,
                payload_type: codec.payload_type(),
                ssrc: 0x4d4c_0000 ^ (s as u32).wrapping_mul(2_654_435_761),
                phase_ns,
                timed: !transcoded,
                codec,
            });
            if !transcoded {
                timed_index[s] = timed;
                timed += 1;
            }
        }
        // What comes back from the server's operator port is the caller's stream, and
        // the other way round.
        by_port[usize::from(op)] = stream_id(i, 0) as u32 + 1;
        by_port[usize::from(cp)] = stream_id(i, 1) as u32 + 1;
    }
    let window = (WARMUP_TICKS, WARMUP_TICKS + seconds * TICKS_PER_S);
    let codes = || {
        [
            // Caller → operator of a transcoded call: sent µ-law, comes back A-law.
            NibbleCode::new(Codec::Pcmu, Codec::Pcma),
            NibbleCode::new(Codec::Pcma, Codec::Pcmu),
        ]
    };
    let fds: Vec<RawFd> = sockets.iter().map(|s| s.as_raw_fd()).collect();
    let origin_rt = realtime_ns();
    // Stream 2·call + dir: dir 0 is sent into the caller leg and comes back out of the
    // operator leg; dir 1 the other way.
    let (send_srtp, recv_srtp): (Vec<SrtpContext>, Vec<SrtpContext>) = if srtp_on() {
        (0..2 * calls)
            .map(|s| {
                let (call, dir) = (s / 2, s % 2);
                (
                    bench_context(call, dir, true, false),
                    bench_context(call, 1 - dir, false, true),
                )
            })
            .unzip()
    } else {
        (Vec::new(), Vec::new())
    };

    let stop = Arc::new(AtomicBool::new(false));
    let receiver = Receiver {
        fds: fds.clone(),
        deferred: Vec::with_capacity(if recv_srtp.is_empty() {
            0
        } else {
            2 * calls * ((WARMUP_TICKS + seconds * TICKS_PER_S) as usize + 50)
        }),
        srtp: recv_srtp,
        by_port,
        streams: streams.clone(),
        codes: codes(),
        origin_rt,
        window,
        timed_index,
        report: RecvReport {
            received: [0; 2],
            latencies: (0..timed)
                .map(|_| Vec::with_capacity((seconds * TICKS_PER_S) as usize))
                .collect(),
            unknown: 0,
            outside: 0,
            unstamped: 0,
        },
    };
    let receiving = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("receiver".into())
            .spawn(move || receiver.run(stop))?
    };
    let sender = Sender {
        streams,
        srtp: send_srtp,
        fds,
        batches: (0..2 * GEN_SOCKETS).map(|_| SendBatch::new()).collect(),
        codes: codes(),
        origin_rt,
        window,
        report: SendReport {
            counts: [Counts::default(); 2],
            send_errors: 0,
            late_us: Vec::with_capacity((2 * calls) * (seconds * TICKS_PER_S) as usize),
            realtime: false,
        },
    };
    let realtime = std::env::var("MEDIA_LOAD_RT").map_or(true, |v| v != "0");
    let start = Instant::now();
    let sending = std::thread::Builder::new()
        .name("sender".into())
        .spawn(move || sender.run(start, window.1, realtime))?;

    let sleep_until = |t: Instant| {
        let now = Instant::now();
        if t > now {
            std::thread::sleep(t - now);
        }
    };
    let tick = |k: u64| start + Duration::from_nanos(k * PTIME_NS);
    eprintln!(
        "media_load: {calls} calls up (server pid {pid}){}; warm-up {} s, then {seconds} s measured",
        if srtp_on() { ", SRTP on both legs" } else { "" },
        WARMUP_TICKS / TICKS_PER_S
    );
    sleep_until(tick(window.0));
    let before = snapshot(pid);
    sleep_until(tick(window.1));
    let after = snapshot(pid);
    let (rss, hwm) = rss_kb(pid);

    let send = sending
        .join()
        .map_err(|_| anyhow!("sender thread panicked"))?;
    std::thread::sleep(DRAIN);
    stop.store(true, Ordering::Relaxed);
    let recv = receiving
        .join()
        .map_err(|_| anyhow!("receiver thread panicked"))?;
    let drops = udp_drops_by_port();
    let snmp_after = udp_snmp();
    let server_drops: u64 = pairs
        .iter()
        .flat_map(|&(c, o)| [c, o])
        .map(|p| drops.get(&p).copied().unwrap_or(0))
        .sum();
    let gen_drops: u64 = gen_ports
        .iter()
        .map(|p| drops.get(p).copied().unwrap_or(0))
        .sum();
    let summary = server.stop()?;
    drop(sockets);

    // Recordings.
    let mut files = 0usize;
    let mut bad = Vec::new();
    let mut min_dur = f64::INFINITY;
    let mut max_dur = 0f64;
    for i in (0..calls).filter(|_| record) {
        let path = dir.join(format!("{i}.wav"));
        match hound::WavReader::open(&path) {
            Ok(r) => {
                files += 1;
                let spec = r.spec();
                let d = f64::from(r.duration()) / f64::from(spec.sample_rate);
                if spec.channels != 2 {
                    bad.push(format!("{}: {} channels", path.display(), spec.channels));
                }
                min_dur = min_dur.min(d);
                max_dur = max_dur.max(d);
            }
            Err(e) => bad.push(format!("{}: {e}", path.display())),
        }
    }
    if std::env::var_os("KEEP").is_some() {
        eprintln!("media_load: recordings kept in {}", tmp.keep().display());
    }

    // Figures.
    let secs = after.at.duration_since(before.at).as_secs_f64();
    let hz = clock_ticks_per_s();
    let cores = |a: (u64, u64), b: (u64, u64)| {
        (
            (b.0 - a.0) as f64 / hz / secs,
            (b.1 - a.1) as f64 / hz / secs,
        )
    };
    let (su, ss) = cores(before.server, after.server);
    let server_cores = su + ss;
    let per_call = server_cores * 100.0 / calls as f64;
    let (gu, gs) = cores(before.generator, after.generator);
    let machine_total = (after.machine.1 - before.machine.1) as f64;
    let machine_busy = (after.machine.0 - before.machine.0) as f64 / machine_total.max(1.0);
    let machine_softirq = (after.machine.2 - before.machine.2) as f64 / machine_total.max(1.0);
    let machine_steal = (after.machine.3 - before.machine.3) as f64 / machine_total.max(1.0);
    let ncpu = std::thread::available_parallelism().map_or(2, |n| n.get()) as f64;
    let mut threads: Vec<(String, f64)> = after
        .threads
        .iter()
        .map(|(tid, (name, t))| {
            let t0 = before.threads.get(tid).map_or(0, |x| x.1);
            (name.clone(), (t - t0) as f64 / hz / secs)
        })
        .filter(|(_, c)| *c >= 0.005)
        .collect();
    threads.sort_by(|a, b| b.1.total_cmp(&a.1));

    let sent: u64 = send.counts.iter().map(|c| c.sent).sum();
    let received: u64 = recv.received.iter().sum();
    let lost = sent.saturating_sub(received);
    let loss_pct = if sent > 0 {
        lost as f64 * 100.0 / sent as f64
    } else {
        0.0
    };
    let mut all_latency: Vec<u32> = Vec::new();
    let mut added: Vec<u32> = Vec::new();
    let mut dump = match std::env::var_os("MEDIA_LOAD_DUMP") {
        Some(p) => Some(std::io::BufWriter::new(
            std::fs::File::create(&p).with_context(|| format!("{p:?}"))?,
        )),
        None => None,
    };
    if let Some(d) = dump.as_mut() {
        writeln!(d, "# origin CLOCK_REALTIME ns {origin_rt}")?;
        writeln!(d, "stream,send_us,latency_ns,added_ns")?;
    }
    for (stream, l) in recv.latencies.iter().enumerate() {
        let Some(min) = l.iter().map(|x| x.1).min() else {
            continue;
        };
        added.extend(l.iter().map(|&(_, x)| x - min));
        all_latency.extend(l.iter().map(|x| x.1));
        if let Some(d) = dump.as_mut() {
            for &(t, x) in l {
                writeln!(d, "{stream},{t},{x},{}", x - min)?;
            }
        }
    }
    if let Some(mut d) = dump {
        d.flush()?;
    }
    added.sort_unstable();
    all_latency.sort_unstable();
    let (j50, j99, jmax) = (
        percentile(&added, 0.5),
        percentile(&added, 0.99),
        percentile(&added, 1.0),
    );
    let (l50, l99) = (
        percentile(&all_latency, 0.5),
        percentile(&all_latency, 0.99),
    );
    let transcoded = (0..calls).filter(|&i| is_transcoded(i)).count();
    let snmp = |k: &str| {
        snmp_after
            .get(k)
            .copied()
            .unwrap_or(0)
            .saturating_sub(snmp_before.get(k).copied().unwrap_or(0))
    };

    let mut out = String::new();
    let _ = writeln!(
        out,
        "calls={calls} window={seconds}s codec_mix={} PCMU<->PCMU + {transcoded} PCMU<->PCMA",
        calls - transcoded
    );
    let _ = writeln!(
        out,
        "server CPU: {server_cores:.2} cores total (user {su:.2}, sys {ss:.2}) = {per_call:.3} % of a core per call"
    );
    let _ = writeln!(
        out,
        "server RSS: {:.0} MB (peak {:.0} MB)",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    let _ = writeln!(
        out,
        "packets: sent {} received {} lost {} ({loss_pct:.3} %)",
        thousands(sent),
        thousands(received),
        thousands(lost)
    );
    let _ = writeln!(
        out,
        "added jitter (pass-through): p50 {j50:.2} ms p99 {j99:.2} ms max {jmax:.2} ms; latency p50 {l50:.2} ms p99 {l99:.2} ms"
    );
    let _ = writeln!(
        out,
        "recordings: {files} files, min duration {:.1} s (max {max_dur:.1} s)",
        if files > 0 { min_dur } else { 0.0 }
    );
    out.push_str("-- details\n");
    for (d, name) in [(0, "caller->operator"), (1, "operator->caller")] {
        let c = send.counts[d];
        let _ = writeln!(
            out,
            "  {name}: sent {} received {} lost {}",
            thousands(c.sent),
            thousands(recv.received[d]),
            thousands(c.sent.saturating_sub(recv.received[d]))
        );
    }
    let _ = writeln!(
        out,
        "  generator CPU: {:.2} cores (user {gu:.2}, sys {gs:.2}); machine busy {:.0} % of {ncpu:.0} cores (softirq {:.1} %), steal {:.1} %",
        gu + gs,
        machine_busy * 100.0,
        machine_softirq * 100.0,
        machine_steal * 100.0
    );
    let list: Vec<String> = threads
        .iter()
        .take(6)
        .map(|(n, c)| format!("{n} {:.1} %", c * 100.0))
        .collect();
    let _ = writeln!(out, "  server threads: {}", list.join(", "));
    let mut late = send.late_us.clone();
    late.sort_unstable();
    let late_ms = |p: f64| percentile(&late, p) * 1000.0;
    let _ = writeln!(
        out,
        "  sender ({}): lateness p99 {:.2} ms max {:.2} ms, send errors {}; receiver: unknown {}, warm-up {}, unstamped {}",
        if send.realtime { "SCHED_FIFO" } else { "normal priority" },
        late_ms(0.99),
        late_ms(1.0),
        send.send_errors,
        recv.unknown,
        recv.outside,
        recv.unstamped
    );
    let _ = writeln!(
        out,
        "  kernel UDP (whole run): RcvbufErrors {} SndbufErrors {} InErrors {}; socket drops: server {} generator {}",
        snmp("RcvbufErrors"),
        snmp("SndbufErrors"),
        snmp("InErrors"),
        server_drops,
        gen_drops
    );
    match &summary {
        Some(s) => {
            let _ = writeln!(
                out,
                "  server sessions (whole run): ended {} recorded {}; caller leg rx {} lost {} sent {}; operator leg rx {} lost {} sent {}",
                s.ended,
                s.recorded,
                thousands(s.caller_rx),
                s.caller_lost,
                thousands(s.caller_sent),
                thousands(s.op_rx),
                s.op_lost,
                thousands(s.op_sent)
            );
        }
        None => out.push_str("  server sessions: no summary\n"),
    }
    for b in bad.iter().take(5) {
        let _ = writeln!(out, "  bad recording: {b}");
    }

    // The generator shares the cores: say so when the figures are not the server's alone.
    if machine_busy >= 0.85 {
        let _ = writeln!(
            out,
            "  note: the machine was {:.0} % busy (server + generator): added jitter is mostly queueing for CPU, and a server short of CPU shows a CPU per call that is a lower bound",
            machine_busy * 100.0
        );
    }
    if machine_steal >= 0.05 {
        let _ = writeln!(
            out,
            "  note: {:.0} % of the window was stolen by the hypervisor: latency figures are unreliable, run again",
            machine_steal * 100.0
        );
    }

    // Verdict against the targets.
    let mut missed = Vec::new();
    if per_call > TARGET_CPU_PCT_PER_CALL {
        missed.push(format!(
            "CPU {per_call:.3} % > {TARGET_CPU_PCT_PER_CALL} % per call"
        ));
    }
    if lost > 0 {
        missed.push(format!("{lost} packets lost"));
    }
    // NaN (nothing timed) counts as missed.
    if j99.is_nan() || j99 >= TARGET_P99_JITTER_MS {
        missed.push(format!(
            "p99 added jitter {j99:.2} ms >= {TARGET_P99_JITTER_MS} ms"
        ));
    }
    let rss_mb = rss.max(hwm) as f64 / 1024.0;
    if rss_mb > TARGET_RSS_MB {
        missed.push(format!("RSS {rss_mb:.0} MB > {TARGET_RSS_MB} MB"));
    }
    if !record {
        missed.push("recording disabled (MEDIA_LOAD_RECORD=0)".to_string());
    } else if files != calls || !bad.is_empty() || min_dur < seconds as f64 {
        missed.push(format!(
            "recordings: {files}/{calls} readable, min {min_dur:.1} s"
        ));
    }
    if missed.is_empty() {
        out.push_str(
            "verdict: PASS (0 loss, p99 jitter < 5 ms, <= 0.12 % core/call, RSS <= 150 MB)\n",
        );
    } else {
        let _ = writeln!(out, "verdict: MISSED: {}", missed.join("; "));
    }
    print!("{out}");
    Ok(missed.is_empty())
}
