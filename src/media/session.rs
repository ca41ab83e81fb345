//! A call's media: one tokio task owning the caller's RTP socket, the operator's once the
//! call is bridged, the prompt player and the recorder.
//!
//! One task per call (not per leg) so that relaying caller ↔ operator and feeding both
//! channels of the recording never crosses a channel or a lock. The task only moves
//! datagrams; what a packet means is decided by [`LegState`], what goes out next by the
//! [`Player`], and the recording's layout by the [`Recorder`].
//!
//! Timing: prompts and silence are paced by a 20 ms `tokio::time::Interval`, whose ticks are
//! computed from the start instant (`start + n·20 ms`), so a long call does not drift; a
//! tick a little late sends the missed frames at once (`MissedTickBehavior::Burst`) so the
//! stream stays true to wall-clock time, but after more than 100 ms without pacing (a
//! stall, a hold, a bridge that ended) the pacing restarts rather than flood the phone. Relayed packets go out as soon as they arrive:
//! the bridge adds no buffering and so no jitter of its own.
//!
//! A voicemail ([`Command::RecordVoicemail`]) is a second, mono file of the caller's
//! decoded audio, written beside the call recording by a [`Voicemail`] that also decides
//! when the message ends (length, silence; see [`super::voicemail`]). It is reported by
//! exactly one [`SessionEvent::VoicemailDone`]: when it decides, on
//! [`Command::StopVoicemail`], or when the session stops (the caller hung up), before
//! [`SessionEvent::Ended`] and with what was said finalised on disk.
//!
//! The recorder writes to a buffered file from this task. Those writes land in the page
//! cache (32 kB a second per call) and the flush once a second is one `write` plus a header
//! update, cheap enough not to need a thread of their own.

use super::bridge;
use super::g711;
use super::leg::{Inbound, LegState, FRAME_SAMPLES};
use super::prompt::Prompt;
use super::recorder::{Channel, Recorder, RecordingSummary};
use super::udp::{RxBatch, BATCH};
use super::voicemail::Voicemail;
pub use super::voicemail::{VoicemailSpec, VoicemailStop, VoicemailSummary};
use crate::sip::sdp::Negotiated;
use std::collections::VecDeque;
use std::net::UdpSocket;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};
use tokio::io::Interest;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

/// Largest datagram we build or decode.
const MAX_DATAGRAM: usize = 2048;
/// How often the recorder is aligned and the RTP timeout checked.
const HOUSEKEEPING: Duration = Duration::from_millis(200);
/// Pacing period of prompts and silence.
const PTIME: Duration = Duration::from_millis(20);
/// Late frames are sent at once up to this lateness; beyond it the pacing restarts.
const MAX_CATCH_UP: Duration = Duration::from_millis(100);
/// Batches read per leg after the session is told to stop (16 × 4 packets, over a second).
const DRAIN_BATCHES: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("RTP socket: {0}")]
    Socket(#[from] std::io::Error),
}

/// Which leg of the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LegId {
    Caller,
    Operator,
}

/// A leg to start: its bound socket and what SDP agreed for it.
#[derive(Debug)]
pub struct LegConfig {
    pub socket: std::net::UdpSocket,
    pub media: Negotiated,
}

/// What starts a session.
#[derive(Debug)]
pub struct SessionConfig {
    /// The call's number in the SIP core, carried in every event.
    pub call: u64,
    pub caller: LegConfig,
    /// Where to record; `None` records nothing.
    pub recording: Option<PathBuf>,
    /// Hang up after this long without RTP from a leg that should be sending.
    pub rtp_timeout: Option<Duration>,
}

/// What the call flow asks of the media.
#[derive(Debug)]
pub enum Command {
    /// Play these prompts in order (replacing what plays now), then loop `then` (hold
    /// audio) or fall silent. [`SessionEvent::PlaybackDone`] follows the last of `prompts`.
    Play {
        prompts: Vec<Arc<Prompt>>,
        then: Option<Arc<Prompt>>,
    },
    /// Stop playing; the caller hears silence.
    StopPlayback,
    /// The caller's SDP changed (re-INVITE: hold, new address, codecs).
    UpdateCaller(Negotiated),
    /// Connect the caller to the operator's leg; prompts stop.
    Bridge(LegConfig),
    /// The operator's leg ends; the caller hears silence until the next `Play`.
    Unbridge,
    /// Record a voicemail: the caller's audio alone, in a mono file, until it ends by
    /// itself (length, silence), by [`Command::StopVoicemail`] or by the session's end;
    /// [`SessionEvent::VoicemailDone`] follows in every case. Prompts play on, the call
    /// recording goes on. Refused (an immediate `VoicemailDone` with
    /// [`VoicemailStop::Error`]) while another voicemail records.
    RecordVoicemail(VoicemailSpec),
    /// End the voicemail now (the caller pressed `#`): `VoicemailDone` with
    /// [`VoicemailStop::Key`]. Nothing happens when none records.
    StopVoicemail,
    /// End the session: the recording is finalised and [`SessionEvent::Ended`] sent.
    Stop,
}

/// What happened, for the call flow.
#[derive(Debug)]
pub enum SessionEvent {
    /// A DTMF digit by RFC 4733 from the caller.
    Dtmf(char),
    /// The prompts of the last `Play` have been sent.
    PlaybackDone,
    /// A leg's RTP stopped for longer than the timeout.
    RtpTimeout(LegId),
    /// The voicemail started by [`Command::RecordVoicemail`] ended; its file is final.
    /// Once per `RecordVoicemail`, and before `Ended`.
    VoicemailDone(VoicemailSummary),
    /// The session is over.
    Ended(SessionSummary),
}

/// Per-leg figures at the end of a call.
#[derive(Clone, Copy, Debug, Default)]
pub struct LegFigures {
    pub received: u64,
    pub lost: u64,
    /// Interarrival jitter (RFC 3550 A.8) in milliseconds.
    pub jitter_ms: f64,
    pub sent: u64,
}

#[derive(Debug)]
pub struct SessionSummary {
    pub recording: Option<RecordingSummary>,
    pub caller: LegFigures,
    pub operator: Option<LegFigures>,
}

/// The handle the call flow keeps.
pub struct Session {
    commands: mpsc::UnboundedSender<Command>,
    task: JoinHandle<()>,
}

impl Session {
    /// Starts the media task on the current runtime. `events` gets `(call, event)` pairs.
    pub fn spawn(
        config: SessionConfig,
        events: mpsc::UnboundedSender<(u64, SessionEvent)>,
    ) -> Result<Session, SessionError> {
        Session::spawn_on(&tokio::runtime::Handle::current(), config, events)
    }

    /// Starts the media task on `runtime` (the hotline's [`super::runtime::MediaRuntime`]).
    /// Its sockets are registered with that runtime's reactor, so that the thread woken
    /// by a packet is one of its threads.
    pub fn spawn_on(
        runtime: &tokio::runtime::Handle,
        config: SessionConfig,
        events: mpsc::UnboundedSender<(u64, SessionEvent)>,
    ) -> Result<Session, SessionError> {
        let _inside = runtime.enter();
        let now = Instant::now();
        // A recording that cannot be created (disk full, permissions) must not cost the
        // caller the call: it goes on unrecorded, and the error is logged loudly.
        let recorder =
            config
                .recording
                .as_deref()
                .and_then(|path| match Recorder::create_unique(path, now) {
                    Ok(r) => Some(r),
                    Err(e) => {
                        tracing::error!(call = config.call, error = %e, "call NOT recorded");
                        None
                    }
                });
        let caller = Leg::new(config.caller, now)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let task = MediaTask {
            call: config.call,
            caller,
            rx: RxBatch::default(),
            operator: None,
            player: Player::default(),
            recorder,
            voicemail: None,
            rtp_timeout: config.rtp_timeout,
            events,
            out: [0; MAX_DATAGRAM],
            pcm: [0; MAX_DATAGRAM],
        };
        let task = runtime.spawn(task.run(rx));
        Ok(Session { commands: tx, task })
    }

    /// Sends a command; false if the session has already ended.
    pub fn command(&self, command: Command) -> bool {
        self.commands.send(command).is_ok()
    }

    /// Stops the session and waits until its recording is finalised.
    pub async fn stop(self) {
        let _ = self.commands.send(Command::Stop);
        let _ = self.task.await;
    }
}

/// A leg with its socket and receive buffers.
struct Leg {
    socket: AsyncFd<UdpSocket>,
    state: LegState,
    sent: u64,
    timed_out: bool,
}

impl Leg {
    fn new(config: LegConfig, now: Instant) -> Result<Leg, SessionError> {
        config.socket.set_nonblocking(true)?;
        // Readable interest only: sends never wait (a packet the kernel cannot take now is
        // dropped), so writability would only cause wake-ups.
        // SAFETY: a `std::net::UdpSocket` owns its descriptor and always returns the same
        // one from `as_raw_fd`; the `AsyncFd` owns the socket until it is dropped.
        let socket = unsafe { AsyncFd::register_with_interest(config.socket, Interest::READABLE) }
            .map_err(std::io::Error::from)?;
        Ok(Leg {
            socket,
            state: LegState::new(&config.media, now),
            sent: 0,
            timed_out: false,
        })
    }

    /// Reads what the socket has once tokio says it is readable. Fewer datagrams than a
    /// full batch means the queue is empty: readiness is cleared without the extra
    /// `EAGAIN` read (see [`super::udp`]).
    /// (An associated function: the guard borrows the leg's socket, `rx` is its buffers,
    /// kept beside the leg so that both can be borrowed at once.)
    fn read_into(rx: &mut RxBatch, ready: std::io::Result<AsyncFdReadyGuard<'_, UdpSocket>>) {
        let Ok(mut guard) = ready else {
            rx.clear();
            return;
        };
        match rx.recv(guard.get_inner()) {
            Ok(n) if n < BATCH => guard.clear_ready(),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => guard.clear_ready(),
            // An ICMP error reported on the socket: consumed by the call; nothing to read.
            Err(_) => {}
        }
    }

    fn send(&mut self, datagram: &[u8]) {
        let Some(to) = self.state.remote().filter(|_| !datagram.is_empty()) else {
            return;
        };
        // RTP is real time: a packet the kernel cannot take now is late anyway; drop it.
        if self.socket.get_ref().send_to(datagram, to).is_ok() {
            self.sent += 1;
        }
    }

    fn figures(&self) -> LegFigures {
        let s = self.state.stats();
        LegFigures {
            received: s.received(),
            lost: s.lost(),
            jitter_ms: f64::from(s.jitter()) / 8.0,
            sent: self.sent,
        }
    }
}

/// Prompt playback: a queue of prompts, then an optional loop.
#[derive(Default)]
struct Player {
    queue: VecDeque<Arc<Prompt>>,
    looped: Option<Arc<Prompt>>,
    frame: usize,
    /// `PlaybackDone` is owed once `queue` empties.
    owe_done: bool,
}

impl Player {
    fn play(&mut self, prompts: Vec<Arc<Prompt>>, then: Option<Arc<Prompt>>) {
        self.queue = prompts.into();
        self.looped = then;
        self.frame = 0;
        self.owe_done = true;
    }

    fn stop(&mut self) {
        *self = Player::default();
    }

    /// The prompt and frame to send now, advancing; `done` is true when this call finished
    /// the queued prompts.
    fn next(&mut self) -> (Option<(Arc<Prompt>, usize)>, bool) {
        let mut done = false;
        while let Some(p) = self.queue.front() {
            if self.frame < p.frames() {
                let item = (p.clone(), self.frame);
                self.frame += 1;
                return (Some(item), done);
            }
            self.queue.pop_front();
            self.frame = 0;
            if self.queue.is_empty() && self.owe_done {
                self.owe_done = false;
                done = true;
            }
        }
        if self.owe_done {
            self.owe_done = false;
            done = true;
        }
        match &self.looped {
            Some(p) if p.frames() > 0 => {
                if self.frame >= p.frames() {
                    self.frame = 0;
                }
                let item = (p.clone(), self.frame);
                self.frame += 1;
                (Some(item), done)
            }
            _ => (None, done),
        }
    }
}

struct MediaTask {
    call: u64,
    caller: Leg,
    operator: Option<Leg>,
    /// The last datagrams read, from either leg: each read is handled before the next,
    /// so both legs share one set of buffers (6 KB a call less).
    rx: RxBatch,
    player: Player,
    recorder: Option<Recorder>,
    /// The voicemail being recorded.
    voicemail: Option<Voicemail>,
    rtp_timeout: Option<Duration>,
    events: mpsc::UnboundedSender<(u64, SessionEvent)>,
    out: [u8; MAX_DATAGRAM],
    pcm: [i16; MAX_DATAGRAM],
}

impl MediaTask {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut pacer = tokio::time::interval(PTIME);
        pacer.set_missed_tick_behavior(MissedTickBehavior::Burst);
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
        housekeeping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let bridged = self.operator.is_some();
            let pacing = !bridged && self.caller.state.we_send();
            tokio::select! {
                biased;
                command = commands.recv() => match command {
                    None | Some(Command::Stop) => break,
                    Some(c) => self.command(c),
                },
                ready = self.caller.socket.readable() => {
                    // `ready` borrows the socket only; the leg's other fields are free.
                    Leg::read_into(&mut self.rx, ready);
                    for i in 0..self.rx.len() {
                        self.on_caller(i);
                    }
                }
                ready = readable(self.operator.as_ref().map(|op| &op.socket)) => {
                    Leg::read_into(&mut self.rx, ready);
                    for i in 0..self.rx.len() {
                        self.on_operator(i);
                    }
                }
                due = pacer.tick(), if pacing => {
                    // Catch up a few late frames, but after a stall, a hold or a bridge
                    // (no pacing meanwhile) start afresh instead of flooding the phone.
                    if due.elapsed() > MAX_CATCH_UP {
                        pacer.reset();
                    }
                    self.pace();
                }
                _ = housekeeping.tick() => self.housekeeping(),
            }
        }
        self.drain();
        self.finish();
    }

    /// Takes in what the legs sent before the session stopped but the loop had not read:
    /// commands go first, so a hang-up can overtake the last packets of a sentence, which
    /// belong in the recording and the voicemail. At most [`DRAIN_BATCHES`] batches a leg.
    fn drain(&mut self) {
        for _ in 0..DRAIN_BATCHES {
            let n = self.rx.recv(self.caller.socket.get_ref()).unwrap_or(0);
            for i in 0..n {
                self.on_caller(i);
            }
            if n < BATCH {
                break;
            }
        }
        for _ in 0..DRAIN_BATCHES {
            let Some(op) = self.operator.as_ref() else {
                break;
            };
            let n = self.rx.recv(op.socket.get_ref()).unwrap_or(0);
            for i in 0..n {
                self.on_operator(i);
            }
            if n < BATCH {
                break;
            }
        }
    }

    fn emit(&self, event: SessionEvent) {
        let _ = self.events.send((self.call, event));
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Play { prompts, then } => {
                self.player.play(prompts, then);
                self.caller.state.resync();
            }
            Command::StopPlayback => self.player.stop(),
            Command::UpdateCaller(media) => {
                let was_receiving = self.caller.state.peer_sends();
                self.caller.state.update(&media);
                if !was_receiving && self.caller.state.peer_sends() {
                    // Off hold: give the caller a full timeout to resume sending.
                    self.caller.state.touch(Instant::now());
                    self.caller.timed_out = false;
                }
            }
            Command::Bridge(config) => match Leg::new(config, Instant::now()) {
                Ok(leg) => {
                    self.player.stop();
                    self.caller.state.resync();
                    self.operator = Some(leg);
                }
                Err(e) => tracing::error!(call = self.call, error = %e, "cannot bridge"),
            },
            Command::Unbridge => {
                self.operator = None;
                self.caller.state.resync();
            }
            Command::RecordVoicemail(spec) => self.start_voicemail(spec),
            Command::StopVoicemail => self.end_voicemail(VoicemailStop::Key),
            // Handled by the loop in `run`, which ends the session.
            Command::Stop => {}
        }
    }

    /// Datagram `i` of the last batch, read from the caller's leg.
    fn on_caller(&mut self, i: usize) {
        let now = Instant::now();
        let (datagram, Some(from)) = self.rx.get_mut(i) else {
            return;
        };
        let inbound = self.caller.state.receive_datagram(datagram, from, now);
        match inbound {
            Inbound::Audio(audio) => {
                // `forward` leaves the packet's PCM in `self.pcm` when it records it.
                let decoded = self.recorder.is_some();
                let to = self.operator.as_mut().map(|op| &mut op.state);
                let len = bridge::forward(
                    &audio,
                    Channel::Caller,
                    self.recorder.as_mut(),
                    to,
                    &mut self.pcm,
                    &mut self.out,
                );
                if let (Some(op), Some(len)) = (self.operator.as_mut(), len) {
                    op.send(&self.out[..len]);
                }
                // The voicemail gets the same PCM (and gaps) as the recording's caller
                // channel, decoded once.
                let stop = self.voicemail.as_mut().and_then(|vm| {
                    let n = if decoded {
                        audio.packet.payload.len().min(self.pcm.len())
                    } else {
                        g711::decode(audio.codec, audio.packet.payload, &mut self.pcm)
                    };
                    vm.audio(audio.gap, &self.pcm[..n])
                });
                if let Some(stop) = stop {
                    self.end_voicemail(stop);
                }
            }
            Inbound::Digit(d) => {
                tracing::debug!(call = self.call, digit = %d, "DTMF (RFC 4733)");
                self.emit(SessionEvent::Dtmf(d));
            }
            Inbound::Ignored => {}
        }
    }

    /// Datagram `i` of the last batch, read from the operator's leg.
    fn on_operator(&mut self, i: usize) {
        let Some(op) = self.operator.as_mut() else {
            return;
        };
        let (datagram, Some(from)) = self.rx.get_mut(i) else {
            return;
        };
        let inbound = op.state.receive_datagram(datagram, from, Instant::now());
        if let Inbound::Audio(audio) = inbound {
            let to = self
                .caller
                .state
                .we_send()
                .then_some(&mut self.caller.state);
            let len = bridge::forward(
                &audio,
                Channel::Other,
                self.recorder.as_mut(),
                to,
                &mut self.pcm,
                &mut self.out,
            );
            if let Some(len) = len {
                self.caller.send(&self.out[..len]);
            }
        }
    }

    /// One 20 ms frame of prompt (or silence) to the caller, recorded on the other channel.
    fn pace(&mut self) {
        let (item, done) = self.player.next();
        let codec = self.caller.state.codec();
        let mut frame = [g711::silence(codec); FRAME_SAMPLES as usize];
        match &item {
            Some((prompt, k)) => {
                frame.copy_from_slice(prompt.frame(codec, *k));
                if let Some(r) = self.recorder.as_mut() {
                    r.push(Channel::Other, prompt.pcm_frame(*k));
                }
            }
            None => {
                if let Some(r) = self.recorder.as_mut() {
                    r.push_silence(Channel::Other, FRAME_SAMPLES as usize);
                }
            }
        }
        let len = self.caller.state.write_frame(&frame, &mut self.out);
        self.caller.send(&self.out[..len]);
        if done {
            self.emit(SessionEvent::PlaybackDone);
        }
    }

    fn housekeeping(&mut self) {
        let now = Instant::now();
        if let Some(stop) = self.voicemail.as_mut().and_then(|vm| vm.tick(now)) {
            self.end_voicemail(stop);
        }
        if let Some(r) = self.recorder.as_mut() {
            if let Err(e) = r.tick(now) {
                tracing::error!(call = self.call, error = %e, "recording stopped");
                self.recorder = None;
            }
        }
        let Some(timeout) = self.rtp_timeout else {
            return;
        };
        for (id, leg) in [
            (LegId::Caller, Some(&mut self.caller)),
            (LegId::Operator, self.operator.as_mut()),
        ] {
            let Some(leg) = leg else { continue };
            if leg.state.peer_sends()
                && !leg.timed_out
                && now.saturating_duration_since(leg.state.last_rx()) > timeout
            {
                leg.timed_out = true;
                tracing::info!(call = self.call, leg = ?id, "RTP timeout");
                let _ = self.events.send((self.call, SessionEvent::RtpTimeout(id)));
            }
        }
    }

    fn start_voicemail(&mut self, spec: VoicemailSpec) {
        if self.voicemail.is_some() {
            tracing::error!(
                call = self.call,
                "voicemail requested while one records; refused"
            );
            self.emit(SessionEvent::VoicemailDone(VoicemailSummary::failed(
                spec.path,
            )));
            return;
        }
        let now = Instant::now();
        match Voicemail::start(&spec, now) {
            Ok(vm) => {
                tracing::info!(call = self.call, path = %vm.path().display(), "voicemail recording");
                self.voicemail = Some(vm);
                // Limits that end it at once (a zero length) end it here.
                if let Some(stop) = self.voicemail.as_mut().and_then(|vm| vm.tick(now)) {
                    self.end_voicemail(stop);
                }
            }
            Err(e) => {
                // The call goes on; the flow hears of the failure as an empty message.
                tracing::error!(call = self.call, error = %e, "voicemail NOT recorded");
                self.emit(SessionEvent::VoicemailDone(VoicemailSummary::failed(
                    spec.path,
                )));
            }
        }
    }

    /// Finalises the voicemail, if one records, and reports it.
    fn end_voicemail(&mut self, stop: VoicemailStop) {
        let Some(vm) = self.voicemail.take() else {
            return;
        };
        let summary = vm.finish(stop);
        tracing::info!(
            call = self.call,
            path = %summary.path.display(),
            duration_ms = summary.duration.as_millis() as u64,
            speech_ms = summary.speech.as_millis() as u64,
            empty = summary.empty,
            stop = ?summary.stop,
            "voicemail done"
        );
        self.emit(SessionEvent::VoicemailDone(summary));
    }

    fn finish(mut self) {
        // The caller hung up mid-message: what was said is kept, and reported first.
        self.end_voicemail(VoicemailStop::HangUp);
        let recording = self.recorder.take().and_then(|r| match r.finish() {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(call = self.call, error = %e, "cannot finalise recording");
                None
            }
        });
        for (leg, l) in [
            ("caller", Some(&self.caller)),
            ("operator", self.operator.as_ref()),
        ] {
            let Some(d) = l.map(|l| l.state.dropped()) else {
                continue;
            };
            if d.unauthenticated + d.replayed + d.throttled > 0 {
                // Forged or replayed packets, or a peer keyed otherwise: worth an eye.
                tracing::warn!(
                    call = self.call,
                    leg,
                    unauthenticated = d.unauthenticated,
                    replayed = d.replayed,
                    throttled = d.throttled,
                    "SRTP packets dropped"
                );
            }
        }
        let summary = SessionSummary {
            recording,
            caller: self.caller.figures(),
            operator: self.operator.as_ref().map(Leg::figures),
        };
        self.emit(SessionEvent::Ended(summary));
    }
}

/// Readiness of the operator leg's socket, or never when there is none. (The socket
/// alone, not the leg: an SRTP leg's contexts are `Send` but not `Sync`.)
async fn readable(
    operator: Option<&AsyncFd<UdpSocket>>,
) -> std::io::Result<AsyncFdReadyGuard<'_, UdpSocket>> {
    match operator {
        Some(socket) => socket.readable().await,
        None => std::future::pending().await,
    }
}
