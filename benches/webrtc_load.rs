//! Load benchmark of the browser phone (issue 21): the CPU a bridged, recorded call costs
//! when its operator leg is a browser (WebRTC: ICE, DTLS-SRTP, str0m, the hub's relay)
//! against a SIP phone's plain RTP leg, at several numbers of concurrent calls, in one run.
//!
//!     cargo bench --bench webrtc_load -- [CALLS,CALLS,…] [SECONDS]   (defaults: 200,500 15)
//!
//! For each number of calls, the SIP run and then the WebRTC run, each with its own server:
//!
//! * the **server** (this binary re-executed as `webrtc_load --server MODE N DIR CALLER OP`)
//!   runs N media sessions on the hotline's media runtime (2 real-time threads, as
//!   production starts), each recording to `DIR/<n>.wav`. The caller leg is PCMU RTP to
//!   the generator. The operator leg is
//!   - `sip`: PCMU RTP to the generator, as a SIP phone's;
//!   - `webrtc`: the production path of a browser phone. Each browser's SDP offer goes to
//!     the hub (`BrowserPhones::connect`, what `POST /operator/phone/offer` calls); once
//!     every browser is connected, each operator is rung (`ring`) and answers (`answer`),
//!     and the session is bridged to the leg the hub hands the call flow, as the call
//!     flow bridges it. The HTTP signalling and the call flow are left out: they cost
//!     nothing while calls are up, which is what is measured.
//! * the **generator** (the parent) plays the callers (20 ms PCMU RTP) and the operators:
//!   raw RTP for `sip`; for `webrtc`, one str0m `Rtc` per browser (full ICE, DTLS-SRTP;
//!   `hotline::phone::loopback::Offering`), all on one UDP socket and told apart by the
//!   server's port. Every stream sends 50 frames a second, paced from one start instant
//!   with the calls' phases spread over the 20 ms.
//!
//! Measured over the window (after a 3 s warm-up): the server's CPU (`/proc/<pid>/stat`,
//! every thread of it, relays included), its RSS, the machine's busy share, the generator's
//! own CPU, and the frames that arrived each way against those sent. The server's
//! recordings are checked at the end (every call ended and recorded).
//!
//! The generator shares the 2 cores with the server; its own CPU is printed beside.
//! Exit status: 0 when every run delivered at least 99 % of its frames both ways, 3 when
//! one did not, 1 on a harness error.

use anyhow::{anyhow, bail, Context, Result};
use hotline::media::ports::{self, PortPool};
use hotline::media::runtime::MediaRuntime;
use hotline::media::session::{Command, LegConfig, Session, SessionConfig, SessionEvent};
use hotline::phone::hub::{BrowserPhones, PhoneAddresses};
use hotline::phone::loopback::{Answered, Offering};
use hotline::sip::sdp::{Codec, Direction, Negotiated};
use hotline::sip::ua::{Event as UaEvent, Originate};
use std::io::{BufRead, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::{Child, ChildStdin, Command as Process, ExitCode, Stdio};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};
use str0m::media::{Frequency, MediaTime};
use str0m::net::{Protocol, Receive};
use str0m::{Event as RtcEvent, Input, Output};

#[path = "support/procfs.rs"]
mod procfs;
use procfs::{clock_ticks_per_s, lines_of, machine_ticks, proc_ticks, raise_nofile, rss_kb};

const PTIME: Duration = Duration::from_millis(20);
const WARMUP: Duration = Duration::from_secs(3);
/// After the last frame, before counting what came back.
const DRAIN: Duration = Duration::from_millis(300);
/// Setting up: the server's sessions, and for WebRTC every browser's ICE and DTLS.
const START_GRACE: Duration = Duration::from_secs(90);
const STOP_GRACE: Duration = Duration::from_secs(20);
const MAX_CALLS: usize = 2000;
const MAX_SECONDS: u64 = 120;
/// The loop wakes at least this often to receive, send what fell due and run timers.
const TICK: Duration = Duration::from_millis(1);
const PAYLOAD: usize = 160;
/// The browsers' ICE candidates and DTLS ports, for the WebRTC server's port pool.
const PORT_MIN: u16 = 21000;
const PORT_MAX: u16 = 28999;
/// Every run must bring back this share of what was sent, each way.
const DELIVERY_TARGET: f64 = 0.99;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Sip,
    Webrtc,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Sip => "sip",
            Mode::Webrtc => "webrtc",
        }
    }

    fn parse(s: &str) -> Result<Mode> {
        match s {
            "sip" => Ok(Mode::Sip),
            "webrtc" => Ok(Mode::Webrtc),
            _ => bail!("mode must be sip or webrtc, not {s:?}"),
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--server") {
        return match server(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("webrtc_load server: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    match generator_main(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(3),
        Err(e) => {
            eprintln!("webrtc_load: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn ext(call: usize) -> String {
    format!("op{call}")
}

fn pcmu(remote: SocketAddr) -> Negotiated {
    Negotiated {
        codecs: vec![(Codec::Pcmu.payload_type(), Codec::Pcmu)],
        telephone_event: Some(101),
        remote_rtp: Some(remote),
        direction: Direction::SendRecv,
        ptime: Some(20),
        srtp: None,
    }
}

// ---------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------

fn server(args: &[String]) -> Result<()> {
    let [mode, n, dir, caller, op] = args else {
        bail!("usage: webrtc_load --server sip|webrtc N DIR CALLER_ADDR OPERATOR_ADDR");
    };
    let mode = Mode::parse(mode)?;
    let n: usize = n.parse().context("N")?;
    let dir = std::path::PathBuf::from(dir);
    let caller: SocketAddr = caller.parse().context("CALLER_ADDR")?;
    let op: SocketAddr = op.parse().context("OPERATOR_ADDR")?;
    raise_nofile();
    let media = MediaRuntime::start(2, 10)?;
    if let Some(w) = &media.scheduling().warning {
        eprintln!("server: {w}");
    }
    let rt = media.handle().clone();

    // Stdin: the browsers' offers (webrtc), then "stop" (or its end: the generator died).
    let (lines_tx, lines) = std_mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });

    let control = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    control.block_on(async move {
        let operators = match mode {
            Mode::Sip => (0..n)
                .map(|_| {
                    Ok(LegConfig {
                        socket: ports::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?,
                        media: pcmu(op),
                    })
                })
                .collect::<Result<Vec<_>>>()?,
            Mode::Webrtc => browser_legs(n, &rt, &lines).await?,
        };
        let (events, mut ended) = tokio::sync::mpsc::unbounded_channel();
        let mut sessions = Vec::with_capacity(n);
        let mut out = String::new();
        for (i, operator) in operators.into_iter().enumerate() {
            let socket = ports::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
            let port = socket.local_addr()?.port();
            let op_port = operator.socket.local_addr()?.port();
            let session = Session::spawn_on(
                &rt,
                SessionConfig {
                    call: i as u64,
                    caller: LegConfig {
                        socket,
                        media: pcmu(caller),
                    },
                    recording: Some(dir.join(format!("{i}.wav"))),
                    rtp_timeout: None,
                },
                events.clone(),
            )
            .map_err(|e| anyhow!("session {i}: {e}"))?;
            session.command(Command::Bridge(operator));
            sessions.push(session);
            out.push_str(&format!("{port} {op_port}\n"));
        }
        out.push_str("ready\n");
        say(&out)?;

        tokio::task::spawn_blocking(move || {
            while let Ok(line) = lines.recv() {
                if line.trim() == "stop" {
                    break;
                }
            }
        })
        .await?;
        let mut stopping = tokio::task::JoinSet::new();
        for s in sessions {
            stopping.spawn(s.stop());
        }
        while stopping.join_next().await.is_some() {}
        drop(events);
        let (mut done, mut recorded) = (0, 0);
        while let Some((_, event)) = ended.recv().await {
            if let SessionEvent::Ended(s) = event {
                done += 1;
                recorded += u32::from(s.recording.is_some_and(|r| r.duration >= WARMUP));
            }
        }
        say(&format!("ended {done} recorded {recorded}\n"))?;
        Ok::<(), anyhow::Error>(())
    })?;
    drop(media);
    Ok(())
}

fn say(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

/// Every operator's browser connected through the hub, rung and answered: the operator
/// legs the call flow would bridge, in call order.
async fn browser_legs(
    n: usize,
    rt: &tokio::runtime::Handle,
    lines: &std_mpsc::Receiver<String>,
) -> Result<Vec<LegConfig>> {
    let loopback = IpAddr::from(Ipv4Addr::LOCALHOST);
    let pool = PortPool::new(loopback, PORT_MIN, PORT_MAX);
    let (calls_tx, mut calls) = tokio::sync::mpsc::unbounded_channel();
    let (reach_tx, _reach) = tokio::sync::mpsc::unbounded_channel();
    let hub = BrowserPhones::new(
        pool.clone(),
        PhoneAddresses {
            public_ip: loopback,
            inner_ip: loopback,
        },
        rt.clone(),
        calls_tx,
        reach_tx,
    );
    let mut answers = String::new();
    for i in 0..n {
        let line = lines
            .recv_timeout(START_GRACE)
            .context("waiting for an offer")?;
        let offer: String = serde_json::from_str(&line).context("an offer")?;
        let answer = hub
            .connect(&ext(i), &offer)
            .map_err(|e| anyhow!("browser {i}: {e}"))?
            .answer;
        answers.push_str(&serde_json::to_string(&answer)?);
        answers.push('\n');
    }
    say(&answers)?;

    let deadline = Instant::now() + START_GRACE;
    while !(0..n).all(|i| hub.is_connected(&ext(i))) {
        if Instant::now() > deadline {
            let up = (0..n).filter(|i| hub.is_connected(&ext(*i))).count();
            bail!("{up} of {n} browsers connected");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut legs = Vec::with_capacity(n);
    for i in 0..n {
        let leg = hub
            .ring(Originate {
                via: None,
                extension: ext(i),
                caller_number: format!("7900{i:07}"),
                caller_name: None,
                for_call: None,
            })
            .map_err(|e| anyhow!("ringing browser {i}: {e}"))?;
        hub.answer(&ext(i), leg)
            .map_err(|e| anyhow!("answering on browser {i}: {e}"))?;
        loop {
            match calls.recv().await {
                Some(UaEvent::OperatorAnswered {
                    call,
                    rtp_port,
                    media,
                }) if call == leg => {
                    let socket = pool.take(rtp_port).context("the answered leg's port")?;
                    legs.push(LegConfig { socket, media });
                    break;
                }
                Some(_) => {}
                None => bail!("the hub's call events ended"),
            }
        }
    }
    Ok(legs)
}

// ---------------------------------------------------------------------------------------
// Generator
// ---------------------------------------------------------------------------------------

fn generator_main(args: &[String]) -> Result<bool> {
    // `cargo bench` adds `--bench`; the rest are CALLS,CALLS and SECONDS.
    let plain: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let counts: Vec<usize> = match plain.first() {
        Some(list) => list
            .split(',')
            .map(|c| c.parse().with_context(|| format!("not a number: {c:?}")))
            .collect::<Result<_>>()?,
        None => vec![200, 500],
    };
    let seconds: u64 = match plain.get(1) {
        Some(s) => s.parse().with_context(|| format!("not a number: {s:?}"))?,
        None => 15,
    };
    if counts.iter().any(|c| !(1..=MAX_CALLS).contains(c)) {
        bail!("CALLS must be 1..={MAX_CALLS}");
    }
    if !(1..=MAX_SECONDS).contains(&seconds) {
        bail!("SECONDS must be 1..={MAX_SECONDS}");
    }
    raise_nofile();
    let realtime = go_realtime();
    println!(
        "webrtc_load: {} s windows after {} s warm-up; generator {}",
        seconds,
        WARMUP.as_secs(),
        if realtime {
            "SCHED_FIFO"
        } else {
            "normal priority"
        }
    );
    let mut all = Vec::new();
    for &calls in &counts {
        for mode in [Mode::Sip, Mode::Webrtc] {
            let f = run(mode, calls, Duration::from_secs(seconds))?;
            println!("{}", f.line());
            all.push(f);
        }
    }
    println!();
    println!("| calls | operator leg | server CPU (cores) | per call (% of a core) | WebRTC / SIP | server RSS | machine busy | generator CPU | frames back (caller / operator) |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut ok = true;
    for f in &all {
        let sip = all
            .iter()
            .find(|g| g.calls == f.calls && g.mode == Mode::Sip)
            .map(|g| g.per_call())
            .unwrap_or(f64::NAN);
        let ratio = if f.mode == Mode::Webrtc {
            format!("{:.2}×", f.per_call() / sip)
        } else {
            "1".into()
        };
        println!(
            "| {} | {} | {:.3} | {:.3} % | {} | {:.1} MiB | {:.0} % | {:.3} cores | {:.2} % / {:.2} % |",
            f.calls,
            f.mode.name(),
            f.server_cores,
            f.per_call(),
            ratio,
            f.rss_kb as f64 / 1024.0,
            f.machine_busy * 100.0,
            f.generator_cores,
            f.caller_back * 100.0,
            f.operator_back * 100.0,
        );
        ok &= f.caller_back >= DELIVERY_TARGET && f.operator_back >= DELIVERY_TARGET;
    }
    if !ok {
        println!(
            "a run brought back less than {:.0} % of its frames",
            DELIVERY_TARGET * 100.0
        );
    }
    Ok(ok)
}

/// SCHED_FIFO for the generator when allowed (root): phones do not slow down when the
/// server is busy, so the load stays on time.
fn go_realtime() -> bool {
    if std::env::var("WEBRTC_LOAD_RT").is_ok_and(|v| v == "0") {
        return false;
    }
    let param = libc::sched_param { sched_priority: 10 };
    // SAFETY: sets this process's own policy.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) == 0 }
}

/// What one run measured.
struct Figures {
    mode: Mode,
    calls: usize,
    server_cores: f64,
    generator_cores: f64,
    machine_busy: f64,
    rss_kb: u64,
    /// Frames the callers got back over the window, against what the operators sent.
    caller_back: f64,
    /// Frames the operators got back, against what the callers sent.
    operator_back: f64,
}

impl Figures {
    fn per_call(&self) -> f64 {
        self.server_cores * 100.0 / self.calls as f64
    }

    fn line(&self) -> String {
        format!(
            "{} calls, {}: server {:.3} cores ({:.3} % per call), RSS {:.1} MiB, machine {:.0} % busy, generator {:.3} cores, frames back {:.2} % / {:.2} %",
            self.calls,
            self.mode.name(),
            self.server_cores,
            self.per_call(),
            self.rss_kb as f64 / 1024.0,
            self.machine_busy * 100.0,
            self.generator_cores,
            self.caller_back * 100.0,
            self.operator_back * 100.0
        )
    }
}

fn socket() -> Result<UdpSocket> {
    let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    s.set_nonblocking(true)?;
    let size: libc::c_int = 16 << 20;
    for option in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: setsockopt on our own socket with a c_int value.
        let done = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        } == 0;
        if done {
            break;
        }
    }
    Ok(s)
}

/// The server process: its stdin, and its stdout's lines on a channel.
struct Server {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: std_mpsc::Receiver<String>,
}

impl Server {
    fn start(
        mode: Mode,
        calls: usize,
        dir: &std::path::Path,
        caller: SocketAddr,
        op: SocketAddr,
    ) -> Result<Server> {
        let mut child = Process::new(std::env::current_exe()?)
            .args([
                "--server",
                mode.name(),
                &calls.to_string(),
                &dir.display().to_string(),
                &caller.to_string(),
                &op.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the server")?;
        let stdout = child.stdout.take().context("server stdout")?;
        let lines = lines_of(stdout);
        Ok(Server {
            stdin: child.stdin.take(),
            child,
            lines,
        })
    }

    fn tell(&mut self, line: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().context("server stdin closed")?;
        stdin.write_all(line.as_bytes())?;
        stdin.write_all(b"\n")?;
        stdin.flush()?;
        Ok(())
    }

    fn line(&self, deadline: Instant) -> Result<String> {
        let left = deadline.saturating_duration_since(Instant::now());
        self.lines
            .recv_timeout(left)
            .map_err(|_| anyhow!("the server said nothing in time (or exited)"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stdin.take();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser of the generator: a str0m `Rtc` on the shared operator socket.
struct Browser {
    a: Answered,
    next_timeout: Instant,
}

/// One call as the generator plays it.
struct Call {
    /// The server's caller-leg port, and where the operator's frames go.
    caller_to: SocketAddr,
    op_to: SocketAddr,
    browser: Option<Browser>,
    due: Instant,
    seq: u16,
    ts: u32,
}

/// Frames counted over the measured window.
#[derive(Default)]
struct Counts {
    /// Frames each side sent (one per call and 20 ms).
    sent: u64,
    callers_got: u64,
    operators_got: u64,
}

struct Generator {
    callers: UdpSocket,
    operators: UdpSocket,
    op_addr: SocketAddr,
    calls: Vec<Call>,
    /// Server port → call, for what comes back on each socket.
    caller_of: Vec<u32>,
    operator_of: Vec<u32>,
    counting: bool,
    counts: Counts,
    buf: Vec<u8>,
    packet: Vec<u8>,
}

fn run(mode: Mode, calls: usize, window: Duration) -> Result<Figures> {
    let callers = socket()?;
    let operators = socket()?;
    let caller_addr = callers.local_addr()?;
    let op_addr = operators.local_addr()?;
    let tmp = tempfile::Builder::new().prefix("webrtc_load.").tempdir()?;
    let mut server = Server::start(mode, calls, tmp.path(), caller_addr, op_addr)?;
    let pid = server.child.id();
    let deadline = Instant::now() + START_GRACE;
    let mut g = Generator {
        callers,
        operators,
        op_addr,
        calls: Vec::with_capacity(calls),
        caller_of: vec![u32::MAX; 65536],
        operator_of: vec![u32::MAX; 65536],
        counting: false,
        counts: Counts::default(),
        buf: vec![0; 2048],
        packet: vec![0; 12 + PAYLOAD],
    };

    // WebRTC: every browser offers and the hub answers each; they connect while the
    // server waits for all of them (until then, no call has a caller port).
    if mode == Mode::Webrtc {
        let mut offerings = Vec::with_capacity(calls);
        let mut offers = String::new();
        for _ in 0..calls {
            let o = Offering::new(op_addr, Instant::now()).context("a browser's offer")?;
            offers.push_str(&serde_json::to_string(&o.sdp)?);
            offers.push('\n');
            offerings.push(o);
        }
        server.tell(offers.trim_end())?;
        for (i, o) in offerings.into_iter().enumerate() {
            let answer: String = serde_json::from_str(&server.line(deadline)?)?;
            let port = candidate_port(&answer).context("no host candidate in the answer")?;
            let a = o.accept(&answer).context("the answer was refused")?;
            g.operator_of[usize::from(port)] = i as u32;
            g.calls.push(Call {
                caller_to: loopback(0),
                op_to: loopback(port),
                browser: Some(Browser {
                    a,
                    next_timeout: Instant::now(),
                }),
                due: Instant::now(),
                seq: 0,
                ts: 0,
            });
        }
    }

    // The server's ports, then "ready".
    let mut pairs = Vec::with_capacity(calls);
    loop {
        g.service(Instant::now(), false);
        match server.lines.try_recv() {
            Ok(line) if line == "ready" => break,
            Ok(line) => {
                let mut it = line.split_whitespace().map(str::parse::<u16>);
                match (it.next(), it.next()) {
                    (Some(Ok(c)), Some(Ok(o))) => pairs.push((c, o)),
                    _ => bail!("unexpected line from the server: {line:?}"),
                }
            }
            Err(std_mpsc::TryRecvError::Empty) => {}
            Err(std_mpsc::TryRecvError::Disconnected) => bail!("the server exited"),
        }
        if Instant::now() > deadline {
            bail!("the server did not set its {calls} calls up in time");
        }
        std::thread::sleep(TICK);
    }
    if pairs.len() != calls {
        bail!("the server set up {} calls, not {calls}", pairs.len());
    }
    let begin = Instant::now() + Duration::from_millis(10);
    for (i, &(cp, op)) in pairs.iter().enumerate() {
        let phase = PTIME * i as u32 / calls as u32;
        g.caller_of[usize::from(cp)] = i as u32;
        if mode == Mode::Sip {
            g.operator_of[usize::from(op)] = i as u32;
            g.calls.push(Call {
                caller_to: loopback(cp),
                op_to: loopback(op),
                browser: None,
                due: begin + phase,
                seq: 0,
                ts: 0,
            });
        } else {
            let c = &mut g.calls[i];
            c.caller_to = loopback(cp);
            c.due = begin + phase;
        }
    }

    // Warm-up, then the window.
    let window_start = begin + WARMUP;
    let window_end = window_start + window;
    let mut before = None;
    let after = loop {
        let now = Instant::now();
        if before.is_none() && now >= window_start {
            g.counting = true;
            before = Some(snapshot(pid));
        }
        if now >= window_end {
            g.counting = false;
            break snapshot(pid);
        }
        g.service(now, true);
        std::thread::sleep(TICK);
    };
    let before = before.context("no window measured")?;
    let rss = rss_kb(pid).0;
    let drain_end = Instant::now() + DRAIN;
    while Instant::now() < drain_end {
        g.service(Instant::now(), false);
        std::thread::sleep(TICK);
    }

    // The server ends its calls; every one of them must have been recorded.
    server.tell("stop")?;
    let stop_deadline = Instant::now() + STOP_GRACE;
    let summary = loop {
        g.service(Instant::now(), false);
        match server.lines.try_recv() {
            Ok(line) if line.starts_with("ended ") => break line,
            Ok(_) | Err(std_mpsc::TryRecvError::Empty) => {}
            Err(std_mpsc::TryRecvError::Disconnected) => bail!("the server exited"),
        }
        if Instant::now() > stop_deadline {
            bail!("the server did not stop in time");
        }
        std::thread::sleep(TICK);
    };
    let expected = format!("ended {calls} recorded {calls}");
    if summary != expected {
        bail!("server: {summary:?}, expected {expected:?}");
    }
    let _ = server.child.wait();

    let secs = after.at.duration_since(before.at).as_secs_f64();
    let hz = clock_ticks_per_s();
    let cores = |a: (u64, u64), b: (u64, u64)| (b.0 + b.1 - a.0 - a.1) as f64 / hz / secs;
    let sent = g.counts.sent.max(1) as f64;
    Ok(Figures {
        mode,
        calls,
        server_cores: cores(before.server, after.server),
        generator_cores: cores(before.generator, after.generator),
        machine_busy: (after.machine.0 - before.machine.0) as f64
            / (after.machine.1 - before.machine.1).max(1) as f64,
        rss_kb: rss,
        caller_back: g.counts.callers_got as f64 / sent,
        operator_back: g.counts.operators_got as f64 / sent,
    })
}

struct Snapshot {
    at: Instant,
    server: (u64, u64),
    generator: (u64, u64),
    machine: (u64, u64, u64, u64),
}

fn snapshot(pid: u32) -> Snapshot {
    Snapshot {
        at: Instant::now(),
        server: proc_ticks(&format!("/proc/{pid}/stat")).unwrap_or_default(),
        generator: proc_ticks("/proc/self/stat").unwrap_or_default(),
        machine: machine_ticks(),
    }
}

impl Generator {
    /// Receives what came back, sends the frames that fell due (when `send`), and runs
    /// the browsers' timers.
    fn service(&mut self, now: Instant, send: bool) {
        while let Ok((_, from)) = self.callers.recv_from(&mut self.buf) {
            if self.counting && self.caller_of[usize::from(from.port())] != u32::MAX {
                self.counts.callers_got += 1;
            }
        }
        while let Ok((n, from)) = self.operators.recv_from(&mut self.buf) {
            let i = self.operator_of[usize::from(from.port())];
            let Some(call) = self.calls.get_mut(i as usize) else {
                continue;
            };
            match &mut call.browser {
                None => self.counts.operators_got += u64::from(self.counting),
                Some(b) => {
                    if let Ok(r) = Receive::new(Protocol::Udp, from, self.op_addr, &self.buf[..n]) {
                        let _ = b.a.rtc.handle_input(Input::Receive(now, r));
                    }
                    let got = b.drain(&self.operators, now);
                    self.counts.operators_got += got * u64::from(self.counting);
                }
            }
        }
        for call in &mut self.calls {
            if send {
                while call.due <= now {
                    self.counts.sent += u64::from(self.counting);
                    call.send(&self.callers, &self.operators, &mut self.packet, now);
                    call.due += PTIME;
                }
            }
            if let Some(b) = &mut call.browser {
                if b.next_timeout <= now {
                    let _ = b.a.rtc.handle_input(Input::Timeout(now));
                    let got = b.drain(&self.operators, now);
                    self.counts.operators_got += got * u64::from(self.counting);
                }
            }
        }
    }
}

impl Call {
    /// One 20 ms frame each way: the caller's as RTP, the operator's as RTP or through
    /// the browser's str0m.
    fn send(
        &mut self,
        callers: &UdpSocket,
        operators: &UdpSocket,
        packet: &mut [u8],
        now: Instant,
    ) {
        rtp(packet, self.seq, self.ts, 0xCA11_0000);
        let _ = callers.send_to(packet, self.caller_to);
        match &mut self.browser {
            None => {
                rtp(packet, self.seq, self.ts, 0x0BE2_0000);
                let _ = operators.send_to(packet, self.op_to);
            }
            Some(b) => {
                let time = MediaTime::new(u64::from(self.ts), Frequency::EIGHT_KHZ);
                if let Some(w) = b.a.rtc.writer(b.a.mid) {
                    let _ = w.write(b.a.pt, now, time, packet[12..].to_vec());
                }
                let _ = b.a.rtc.handle_input(Input::Timeout(now));
                b.drain(operators, now);
            }
        }
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(PAYLOAD as u32);
    }
}

impl Browser {
    /// Sends what the `Rtc` has to send; the audio frames it received.
    fn drain(&mut self, socket: &UdpSocket, now: Instant) -> u64 {
        let mut frames = 0;
        loop {
            match self.a.rtc.poll_output() {
                Ok(Output::Transmit(t)) => {
                    let _ = socket.send_to(&t.contents, t.destination);
                }
                Ok(Output::Timeout(at)) => {
                    self.next_timeout = at;
                    return frames;
                }
                Ok(Output::Event(RtcEvent::MediaData(_))) => frames += 1,
                Ok(Output::Event(_)) => {}
                Err(_) => {
                    self.next_timeout = now + Duration::from_secs(1);
                    return frames;
                }
            }
        }
    }
}

/// A PCMU RTP packet: header, then a frame of a constant non-silent byte.
fn rtp(packet: &mut [u8], seq: u16, ts: u32, ssrc: u32) {
    packet[0] = 0x80;
    packet[1] = 0;
    packet[2..4].copy_from_slice(&seq.to_be_bytes());
    packet[4..8].copy_from_slice(&ts.to_be_bytes());
    packet[8..12].copy_from_slice(&ssrc.to_be_bytes());
    packet[12..].fill(0x3C);
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// The port of the first host candidate of an SDP.
fn candidate_port(sdp: &str) -> Option<u16> {
    sdp.lines()
        .filter_map(|l| l.strip_prefix("a=candidate:"))
        .find(|l| l.contains(" typ host"))
        .and_then(|l| l.split_whitespace().nth(5))
        .and_then(|p| p.parse().ok())
}
