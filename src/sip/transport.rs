//! Sockets: the UDP, TCP and TLS listeners and the task that runs the [`UserAgent`].
//!
//! Three kinds of task, each owning its state:
//! * the UDP receive loop owns the per-source [`RateLimiter`], decodes datagrams and answers
//!   undecodable-but-routable ones itself;
//! * one task per TCP or TLS connection owns its [`Framer`] (and a writer task owns the
//!   stream's write half). TLS is TCP's framing and guards under a handshake that has a time
//!   limit, with a bound on handshakes in progress, so that connections that never finish
//!   theirs cannot hold the listener;
//! * the core task owns the [`UserAgent`] and the table of TCP connections' writers, and
//!   is the only one that sends on behalf of the SIP logic; the call flow reaches it through
//!   [`SipControl`] (hang up, ring an operator, cancel an operator leg). A request to a peer
//!   whose connection is open (an operator's phone registered over TCP or TLS) reuses it;
//!   over TLS nothing else can reach a phone (RFC 5923), so none is ever opened to one.
//!
//! Messages are parsed before they reach the core, so parsing runs beside the core on the
//! second CPU.

use super::framing::{Frame, Framer};
use super::guard::{is_trusted, RateLimiter, TokenBucket};
use super::message::{decode, DecodeContext, Decoded};
use super::registrar::RegistrarSettings;
use super::ua::{EndReason, Event, Originate, OriginateError, RtpPorts, UaSettings, UserAgent};
use super::{Peer, Transmit, Transport};
use bytes::Bytes;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio::task::JoinHandle;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot bind SIP {transport} on {addr}: {source}")]
    Bind {
        transport: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// What the receive tasks hand to the core.
// Messages are by far the most common input; boxing them would add an allocation each.
#[allow(clippy::large_enum_variant)]
enum Input {
    Message {
        msg: rsip::SipMessage,
        source: SocketAddr,
        transport: Transport,
    },
    /// A TCP or TLS connection is up: what to send on it goes to `writer`.
    Opened {
        peer: Peer,
        writer: mpsc::Sender<Bytes>,
    },
    Closed {
        peer: Peer,
    },
    /// From the call flow.
    Hangup {
        call: u64,
        reason: EndReason,
    },
    /// From the call flow: ring an operator.
    Originate {
        o: Originate,
        reply: oneshot::Sender<Result<u64, OriginateError>>,
    },
    /// From the call flow: withdraw an operator leg.
    Cancel {
        call: u64,
    },
    /// Take no new calls ([`UserAgent::drain`]).
    Drain,
    /// How many calls the core holds (inbound and operator legs).
    ActiveCalls {
        reply: oneshot::Sender<usize>,
    },
}

/// Lets the call flow act on calls in the SIP core.
#[derive(Clone)]
pub struct SipControl {
    core: mpsc::Sender<Input>,
}

impl SipControl {
    /// Ends a call from our side (BYE). Does nothing if it has already ended.
    pub async fn hangup(&self, call: u64, reason: EndReason) {
        let _ = self.core.send(Input::Hangup { call, reason }).await;
    }

    /// Rings an operator ([`UserAgent::originate`]): the leg's call number, whose progress
    /// arrives as events; [`OriginateError::Unavailable`] when the SIP core has stopped.
    pub async fn originate(&self, o: Originate) -> Result<u64, OriginateError> {
        let (reply, rx) = oneshot::channel();
        if self.core.send(Input::Originate { o, reply }).await.is_err() {
            return Err(OriginateError::Unavailable);
        }
        rx.await.unwrap_or(Err(OriginateError::Unavailable))
    }

    /// Withdraws an operator leg ([`UserAgent::cancel`]): CANCEL before the answer, BYE
    /// after. Does nothing if it has already ended.
    pub async fn cancel(&self, call: u64) {
        let _ = self.core.send(Input::Cancel { call }).await;
    }

    /// Stops taking new calls ([`UserAgent::drain`]); the calls in progress go on.
    pub async fn drain(&self) {
        let _ = self.core.send(Input::Drain).await;
    }

    /// The calls the SIP core holds now; 0 once it has stopped.
    pub async fn active_calls(&self) -> usize {
        let (reply, rx) = oneshot::channel();
        if self.core.send(Input::ActiveCalls { reply }).await.is_err() {
            return 0;
        }
        rx.await.unwrap_or(0)
    }
}

/// A running SIP side.
pub struct SipService {
    /// UDP and TCP listen here.
    pub local_addr: SocketAddr,
    /// TLS listens here, when configured.
    pub tls_addr: Option<SocketAddr>,
    pub control: SipControl,
    /// False once the core task has stopped (health checks report it).
    pub alive: Arc<AtomicBool>,
    pub tasks: Vec<JoinHandle<()>>,
}

/// Limits the receive tasks apply.
#[derive(Clone)]
struct Limits {
    max_size: usize,
    server: Arc<str>,
    source_rate: u32,
    source_burst: u32,
    tcp_idle: Duration,
    tcp_max: usize,
    /// Connections one address may hold (trusted sources exempt).
    tcp_max_per_source: usize,
    /// Exempt from the rate limit (the carrier's SBC), on TCP as on UDP.
    trusted: Arc<[ipnet::IpNet]>,
}

/// Binds UDP and TCP on the same port. With port 0 the OS picks the UDP port and TCP
/// follows it (retrying if that TCP port happens to be taken).
pub async fn bind(addr: SocketAddr) -> Result<(UdpSocket, TcpListener), TransportError> {
    let mut last_err = None;
    for _ in 0..20 {
        let udp = bind_udp(addr).map_err(|source| TransportError::Bind {
            transport: "UDP",
            addr,
            source,
        })?;
        let bound = udp.local_addr().map_err(|source| TransportError::Bind {
            transport: "UDP",
            addr,
            source,
        })?;
        match TcpListener::bind(bound).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(source) if addr.port() == 0 => last_err = Some(source),
            Err(source) => {
                return Err(TransportError::Bind {
                    transport: "TCP",
                    addr: bound,
                    source,
                })
            }
        }
    }
    Err(TransportError::Bind {
        transport: "TCP",
        addr,
        source: last_err.unwrap_or_else(|| std::io::Error::other("no free port")),
    })
}

/// Receive buffer asked of the kernel for the SIP UDP socket. The default (~200 KB, about
/// 30 ms of datagrams at 2000 calls/s) turns any short stall of the core into drops and
/// retransmissions; the kernel may cap the value at `net.core.rmem_max`.
const UDP_RECEIVE_BUFFER: usize = 8 << 20;

fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if let Err(e) = socket.set_recv_buffer_size(UDP_RECEIVE_BUFFER) {
        tracing::warn!(error = %e, "cannot enlarge the SIP UDP receive buffer");
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// What the SIP side is configured with. The application builds it from its
/// configuration; the SIP stack reads none.
#[derive(Clone)]
pub struct TransportSettings {
    /// UDP and TCP listen on this address and port (port 0: the OS picks one).
    pub listen: SocketAddr,
    /// The address others reach us at, for Contact, Via and SDP, when it is not the bound
    /// one ([`UaSettings::set_address`]).
    pub public_address: Option<IpAddr>,
    /// Largest SIP message accepted, in bytes.
    pub max_message_size: usize,
    /// Requests per second one source address may send, and the burst.
    pub source_rate: u32,
    pub source_burst: u32,
    /// A TCP connection with no traffic for this long is closed.
    pub tcp_idle: Duration,
    pub tcp_max_connections: usize,
    /// Connections one address may hold at once (trusted sources exempt).
    pub tcp_max_connections_per_source: usize,
    /// Exempt from the rate limit and the per-source cap: the carrier's SBC.
    pub trusted_sources: Vec<ipnet::IpNet>,
    /// The core's settings; its address is set here once the sockets are bound.
    pub ua: UaSettings,
    pub registrar: RegistrarSettings,
    /// SIP over TLS beside UDP and TCP; none: no TLS listener.
    pub tls: Option<SipTls>,
}

/// SIP over TLS: where it listens, its certificate (reloadable), and its handshake bounds.
#[derive(Clone)]
pub struct SipTls {
    pub listen: SocketAddr,
    pub server: crate::tls::Reloadable,
    pub limits: crate::tls::HandshakeLimits,
}

/// Binds and starts the SIP tasks. Every event of the core goes to `calls`, the call flow,
/// which must see each one (so the channel is unbounded; its volume is bounded by the call
/// rate).
pub async fn start(
    settings: TransportSettings,
    ports: Box<dyn RtpPorts>,
    calls: mpsc::UnboundedSender<Event>,
    shutdown: watch::Receiver<bool>,
) -> Result<SipService, TransportError> {
    let (udp, tcp) = bind(settings.listen).await?;
    let local_addr = udp.local_addr().expect("bound socket has an address");
    let tls = match settings.tls {
        Some(t) => {
            let bind_err = |source| TransportError::Bind {
                transport: "TLS",
                addr: t.listen,
                source,
            };
            let listener = TcpListener::bind(t.listen).await.map_err(bind_err)?;
            let addr = listener.local_addr().map_err(bind_err)?;
            Some((listener, addr, t))
        }
        None => None,
    };
    let tls_addr = tls.as_ref().map(|(_, addr, _)| *addr);
    let udp = Arc::new(udp);
    let limits = Limits {
        max_size: settings.max_message_size,
        server: settings.ua.server.clone().into(),
        source_rate: settings.source_rate,
        source_burst: settings.source_burst,
        tcp_idle: settings.tcp_idle,
        tcp_max: settings.tcp_max_connections,
        tcp_max_per_source: settings.tcp_max_connections_per_source,
        trusted: settings.trusted_sources.clone().into(),
    };
    let limiter = RateLimiter::new(
        settings.source_rate,
        settings.source_burst,
        settings.trusted_sources,
    );
    let mut ua_settings = settings.ua;
    ua_settings.set_address(settings.public_address, local_addr);
    if let Some(addr) = tls_addr {
        ua_settings.set_tls_port(addr.port());
    }
    let ua = UserAgent::new(ua_settings, settings.registrar, Instant::now()).with_ports(ports);
    let (core_tx, core_rx) = mpsc::channel::<Input>(8192);
    let alive = Arc::new(AtomicBool::new(true));
    let control = SipControl {
        core: core_tx.clone(),
    };
    // TCP and TLS share the caps on connections, so that TLS is no way around them.
    let caps = ConnectionCaps::default();
    let mut tasks = vec![
        tokio::spawn(udp_receive(
            udp.clone(),
            core_tx.clone(),
            limiter,
            limits.clone(),
            shutdown.clone(),
        )),
        tokio::spawn(tcp_accept(
            tcp,
            core_tx.clone(),
            limits.clone(),
            caps.clone(),
            shutdown.clone(),
        )),
        tokio::spawn(core(
            ua,
            udp,
            core_rx,
            core_tx.clone(),
            calls,
            alive.clone(),
            limits.clone(),
            shutdown.clone(),
        )),
    ];
    if let Some((listener, addr, t)) = tls {
        tasks.push(tokio::spawn(tls_accept(
            listener, t, core_tx, limits, caps, shutdown,
        )));
        tracing::info!(%addr, "SIP listening on TLS");
    }
    tracing::info!(%local_addr, "SIP listening on UDP and TCP");
    Ok(SipService {
        local_addr,
        tls_addr,
        control,
        alive,
        tasks,
    })
}

/// At most `per_second` log lines a second for one noisy cause (floods must not fill disks).
struct LogThrottle {
    window: Instant,
    count: u32,
    suppressed: u64,
}

impl LogThrottle {
    fn new() -> Self {
        LogThrottle {
            window: Instant::now(),
            count: 0,
            suppressed: 0,
        }
    }

    fn allow(&mut self, per_second: u32) -> bool {
        let now = Instant::now();
        if now.duration_since(self.window) >= Duration::from_secs(1) {
            if self.suppressed > 0 {
                tracing::warn!(suppressed = self.suppressed, "log lines suppressed");
            }
            self.window = now;
            self.count = 0;
            self.suppressed = 0;
        }
        self.count += 1;
        if self.count > per_second {
            self.suppressed += 1;
            false
        } else {
            true
        }
    }
}

async fn udp_receive(
    udp: Arc<UdpSocket>,
    core_tx: mpsc::Sender<Input>,
    mut limiter: RateLimiter,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 65_536];
    let mut throttle = LogThrottle::new();
    let mut last_sweep = Instant::now();
    loop {
        let (n, source) = tokio::select! {
            r = udp.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    // ICMP errors surface here on some systems; they are not fatal.
                    tracing::debug!(error = %e, "UDP receive error");
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let now = Instant::now();
        if now.duration_since(last_sweep) > Duration::from_secs(10) {
            limiter.sweep(now);
            last_sweep = now;
        }
        if !limiter.allow(source.ip(), now) {
            if throttle.allow(5) {
                tracing::warn!(%source, "rate limit: datagram dropped");
            }
            continue;
        }
        let ctx = DecodeContext {
            transport: Transport::Udp,
            source,
            max_size: limits.max_size,
            server: &limits.server,
        };
        match decode(&buf[..n], &ctx) {
            Decoded::Message(msg) => {
                let input = Input::Message {
                    msg,
                    source,
                    transport: Transport::Udp,
                };
                if core_tx.send(input).await.is_err() {
                    return;
                }
            }
            Decoded::Rejected { reason, reply } => {
                if throttle.allow(20) {
                    tracing::warn!(%source, %reason, answered = reply.is_some(), "bad SIP message");
                }
                if let Some((dest, bytes)) = reply {
                    let _ = udp.send_to(&bytes, dest).await;
                }
            }
        }
    }
}

/// Open TCP connections per source address, so that one address cannot take every slot
/// of `limits.tcp_max_connections` and lock every other phone out.
#[derive(Clone, Default)]
struct SourceCounts(Arc<std::sync::Mutex<HashMap<IpAddr, usize>>>);

/// One connection's place in [`SourceCounts`], given back when dropped.
struct SourceSlot {
    counts: SourceCounts,
    ip: IpAddr,
}

impl SourceCounts {
    fn claim(&self, ip: IpAddr, max: usize) -> Option<SourceSlot> {
        let mut counts = self.0.lock().expect("source counts lock");
        let n = counts.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(SourceSlot {
            counts: self.clone(),
            ip,
        })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.0.lock().expect("source counts lock");
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// What TCP and TLS connections count against: all open, and each address's.
#[derive(Clone, Default)]
struct ConnectionCaps {
    open: Arc<AtomicUsize>,
    per_source: SourceCounts,
}

impl ConnectionCaps {
    /// Room for a connection from `addr`: `None` (logged) when the listener is full or the
    /// address holds its share; `Some(slot)` otherwise, the slot (none for a trusted source)
    /// held as long as the connection.
    fn admit(&self, addr: SocketAddr, limits: &Limits, kind: &str) -> Option<Option<SourceSlot>> {
        if self.open.load(Ordering::Relaxed) >= limits.tcp_max {
            tracing::warn!(%addr, "too many {kind} connections; refused");
            return None;
        }
        if is_trusted(&limits.trusted, addr.ip()) {
            return Some(None);
        }
        match self.per_source.claim(addr.ip(), limits.tcp_max_per_source) {
            Some(slot) => Some(Some(slot)),
            None => {
                tracing::warn!(%addr, "too many {kind} connections from one address; refused");
                None
            }
        }
    }
}

async fn tcp_accept(
    listener: TcpListener,
    core_tx: mpsc::Sender<Input>,
    limits: Limits,
    caps: ConnectionCaps,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (stream, addr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "TCP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let Some(slot) = caps.admit(addr, &limits, "TCP") else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (wtx, wrx) = mpsc::channel(256);
        let connection = run_connection(
            stream,
            Peer {
                transport: Transport::Tcp,
                addr,
            },
            wtx,
            wrx,
            core_tx.clone(),
            limits.clone(),
            caps.open.clone(),
            shutdown.clone(),
        );
        tokio::spawn(async move {
            connection.await;
            drop(slot);
        });
    }
}

/// Accepts TLS connections: the caps of TCP, then the handshake in a task of its own under
/// [`crate::tls::HandshakeLimits`] (beyond the bound, a connection is closed at once), then
/// the connection as TCP runs it.
async fn tls_accept(
    listener: TcpListener,
    tls: SipTls,
    core_tx: mpsc::Sender<Input>,
    limits: Limits,
    caps: ConnectionCaps,
    mut shutdown: watch::Receiver<bool>,
) {
    let handshakes = Arc::new(Semaphore::new(tls.limits.in_progress));
    let mut throttle = LogThrottle::new();
    loop {
        let (stream, addr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "TLS accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let Ok(permit) = handshakes.clone().try_acquire_owned() else {
            if throttle.allow(5) {
                tracing::warn!(%addr, "too many TLS handshakes in progress; refused");
            }
            continue;
        };
        let Some(slot) = caps.admit(addr, &limits, "TLS") else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (tls, core_tx, limits, open, shutdown) = (
            tls.clone(),
            core_tx.clone(),
            limits.clone(),
            caps.open.clone(),
            shutdown.clone(),
        );
        tokio::spawn(async move {
            let done = crate::tls::handshake(&tls.server, stream, addr, tls.limits.timeout).await;
            drop(permit);
            if let Some(stream) = done {
                let (wtx, wrx) = mpsc::channel(256);
                let peer = Peer {
                    transport: Transport::Tls,
                    addr,
                };
                run_connection(stream, peer, wtx, wrx, core_tx, limits, open, shutdown).await;
            }
            drop(slot);
        });
    }
}

/// Connects to a peer we must send to over TCP (no connection from it is open).
async fn tcp_connect(
    peer: Peer,
    wtx: mpsc::Sender<Bytes>,
    wrx: mpsc::Receiver<Bytes>,
    core_tx: mpsc::Sender<Input>,
    limits: Limits,
    shutdown: watch::Receiver<bool>,
) {
    match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(peer.addr)).await {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            run_connection(
                stream,
                peer,
                wtx,
                wrx,
                core_tx,
                limits,
                Arc::new(AtomicUsize::new(0)),
                shutdown,
            )
            .await
        }
        _ => {
            tracing::info!(addr = %peer.addr, "TCP connect failed");
            let _ = core_tx.send(Input::Closed { peer }).await;
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_connection<S>(
    stream: S,
    peer: Peer,
    wtx: mpsc::Sender<Bytes>,
    mut wrx: mpsc::Receiver<Bytes>,
    core_tx: mpsc::Sender<Input>,
    limits: Limits,
    open: Arc<AtomicUsize>,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let addr = peer.addr;
    open.fetch_add(1, Ordering::Relaxed);
    let (mut rd, mut wr) = tokio::io::split(stream);
    let writer = tokio::spawn(async move {
        while let Some(bytes) = wrx.recv().await {
            if wr.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    if core_tx
        .send(Input::Opened {
            peer,
            writer: wtx.clone(),
        })
        .await
        .is_err()
    {
        return;
    }
    let mut framer = Framer::new(limits.max_size);
    let mut bucket = TokenBucket::new(limits.source_burst, Instant::now());
    let trusted = is_trusted(&limits.trusted, addr.ip());
    let mut throttle = LogThrottle::new();
    let mut buf = vec![0u8; 16 * 1024];
    'conn: loop {
        let n = tokio::select! {
            r = tokio::time::timeout(limits.tcp_idle, rd.read(&mut buf)) => match r {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => n,
                Err(_) => {
                    tracing::debug!(%addr, "idle TCP connection closed");
                    break;
                }
            },
            _ = shutdown.changed() => break,
        };
        framer.push(&buf[..n]);
        loop {
            match framer.next_frame() {
                Ok(None) => break,
                Ok(Some(Frame::Ping)) => {
                    let _ = wtx.send(Bytes::from_static(b"\r\n")).await;
                }
                Ok(Some(Frame::Message(bytes))) => {
                    if !trusted
                        && !bucket.take(limits.source_rate, limits.source_burst, Instant::now())
                    {
                        tracing::warn!(%addr, "rate limit exceeded on TCP; closing");
                        break 'conn;
                    }
                    let ctx = DecodeContext {
                        transport: peer.transport,
                        source: addr,
                        max_size: limits.max_size,
                        server: &limits.server,
                    };
                    match decode(&bytes, &ctx) {
                        Decoded::Message(msg) => {
                            let input = Input::Message {
                                msg,
                                source: addr,
                                transport: peer.transport,
                            };
                            if core_tx.send(input).await.is_err() {
                                break 'conn;
                            }
                        }
                        Decoded::Rejected { reason, reply } => {
                            if throttle.allow(20) {
                                tracing::warn!(%addr, %reason, "bad SIP message on TCP");
                            }
                            if let Some((_, bytes)) = reply {
                                let _ = wtx.send(bytes).await;
                            }
                        }
                    }
                }
                Err(e) => {
                    // The stream cannot be resynchronised: answer if we can, then close.
                    tracing::warn!(%addr, error = %e, "TCP framing error; closing");
                    let ctx = DecodeContext {
                        transport: peer.transport,
                        source: addr,
                        max_size: limits.max_size,
                        server: &limits.server,
                    };
                    if let Decoded::Rejected {
                        reply: Some((_, bytes)),
                        ..
                    } = decode(framer.pending(), &ctx)
                    {
                        let _ = wtx.send(bytes).await;
                    }
                    break 'conn;
                }
            }
        }
    }
    let _ = core_tx.send(Input::Closed { peer }).await;
    drop(wtx);
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    open.fetch_sub(1, Ordering::Relaxed);
}

#[allow(clippy::too_many_arguments)]
async fn core(
    mut ua: UserAgent,
    udp: Arc<UdpSocket>,
    mut rx: mpsc::Receiver<Input>,
    core_tx: mpsc::Sender<Input>,
    calls: mpsc::UnboundedSender<Event>,
    alive: Arc<AtomicBool>,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tcp: HashMap<Peer, mpsc::Sender<Bytes>> = HashMap::new();
    loop {
        let deadline = ua.poll_timeout();
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            input = rx.recv() => {
                let Some(input) = input else { break };
                handle_input(&mut ua, &mut tcp, input);
                // Take what else is queued before flushing: fewer wake-ups under load.
                for _ in 0..64 {
                    match rx.try_recv() {
                        Ok(input) => handle_input(&mut ua, &mut tcp, input),
                        Err(_) => break,
                    }
                }
            }
            _ = sleep => ua.handle_timeout(Instant::now()),
            _ = shutdown.changed() => break,
        }
        while let Some(t) = ua.poll_transmit() {
            send(&udp, &mut tcp, t, &core_tx, &limits, &shutdown).await;
        }
        while let Some(ev) = ua.poll_event() {
            tracing::debug!(?ev, "SIP event");
            let _ = calls.send(ev);
        }
    }
    alive.store(false, Ordering::SeqCst);
}

fn handle_input(ua: &mut UserAgent, tcp: &mut HashMap<Peer, mpsc::Sender<Bytes>>, input: Input) {
    match input {
        Input::Message {
            msg,
            source,
            transport,
        } => ua.handle_message(msg, source, transport, Instant::now()),
        Input::Opened { peer, writer } => {
            tcp.insert(peer, writer);
        }
        Input::Closed { peer } => {
            tcp.remove(&peer);
        }
        Input::Hangup { call, reason } => ua.hangup(call, reason, Instant::now()),
        Input::Originate { o, reply } => {
            let _ = reply.send(ua.originate(o, Instant::now()));
        }
        Input::Cancel { call } => ua.cancel(call, Instant::now()),
        Input::Drain => {
            tracing::warn!(calls = ua.active_calls(), "draining: new calls get 503");
            ua.drain();
        }
        Input::ActiveCalls { reply } => {
            let _ = reply.send(ua.active_calls());
        }
    }
}

async fn send(
    udp: &UdpSocket,
    tcp: &mut HashMap<Peer, mpsc::Sender<Bytes>>,
    t: Transmit,
    core_tx: &mpsc::Sender<Input>,
    limits: &Limits,
    shutdown: &watch::Receiver<bool>,
) {
    match t.peer.transport {
        Transport::Udp => match udp.try_send_to(&t.bytes, t.peer.addr) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let _ = udp.send_to(&t.bytes, t.peer.addr).await;
            }
            Err(e) => tracing::debug!(peer = %t.peer.addr, error = %e, "UDP send failed"),
        },
        Transport::Tls => {
            if let Some(w) = tcp.get(&t.peer) {
                if w.try_send(t.bytes).is_ok() {
                    return;
                }
                tcp.remove(&t.peer);
            }
            // Only the phone's own connection reaches it (RFC 5923): it is gone, and the
            // transaction will time out as for a phone that does not answer.
            tracing::info!(peer = %t.peer.addr, "no TLS connection open to the peer; not sent");
        }
        Transport::Tcp => {
            if let Some(w) = tcp.get(&t.peer) {
                if w.try_send(t.bytes.clone()).is_ok() {
                    return;
                }
                tcp.remove(&t.peer);
            }
            // No connection (it closed, or we never had one): open one (RFC 3261 §18.2.2).
            let (wtx, wrx) = mpsc::channel(256);
            let _ = wtx.try_send(t.bytes);
            tcp.insert(t.peer, wtx.clone());
            tokio::spawn(tcp_connect(
                t.peer,
                wtx,
                wrx,
                core_tx.clone(),
                limits.clone(),
                shutdown.clone(),
            ));
        }
    }
}
