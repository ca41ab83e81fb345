//! The call flow at run time: one dispatcher task that routes the SIP core's events, and one
//! task per call that carries out its [`CallFlow`]'s actions.
//!
//! The dispatcher owns the table of calls (inbound call → its task, operator leg → the call
//! it serves) and nothing else; it never waits on the database or the media. Each call's
//! task owns that call's media session, its queue notices and its journal writes, so a slow
//! call slows nobody else.
//!
//! A call's task places its operator legs itself (`SipControl::originate`, naming the call
//! the leg serves). The SIP core reports each such leg as `LegPlaced` before any of its
//! progress, on the same event stream, so the dispatcher learns "leg → call" in order and
//! never waits on the SIP core. The core only rings registered operators' bindings
//! (`UserAgent::originate`); nothing here can name another destination.
//!
//! A call's journal writes are queued on the [`CallLog`], whose one FIFO keeps them in
//! order: the call's loop never blocks on the database, and the one write the flow must
//! wait for (a voicemail, before "your message is saved") comes back as [`Input::Durable`].
//!
//! The task around each [`CallFlow`] only moves events: every hang-up and outcome (the
//! media failing to start, an RTP time-out, an operator leg that vanished while ringing)
//! is the machine's decision.

use super::acd::{AcdHandle, QueueChange};
use super::call::{
    Action, CallFlow, FlowSettings, HangUp, Input, Outcome, Party, PromptName, Stage,
};
use super::queue::QueueNotice;
use super::{DtmfVia, Event};
use crate::calendar::Calendar;
use crate::desk::calllog::{Ack, CallLog, CallVoicemail};
use crate::live::{LiveCall, LiveEvent, LiveRequest, Metrics};
use crate::media::ports::PortPool;
use crate::media::prompt::{Prompt, PromptError, Prompts};
use crate::media::recorder::path_for;
use crate::media::session::{
    Command, LegConfig, LegId, Session, SessionConfig, SessionEvent, VoicemailSpec,
    VoicemailSummary,
};
use crate::records::journal::{CallProgress, NewCall};
use crate::sip::sdp::Negotiated;
use crate::sip::ua::{self, EndReason, Originate};
use chrono::{DateTime, Datelike, Utc};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, watch};

/// The prompts of the flow, resolved and checked at start-up.
pub struct FlowPrompts {
    greeting: Arc<Prompt>,
    after_hours: Vec<Arc<Prompt>>,
    all_busy: Arc<Prompt>,
    position: Arc<Prompt>,
    /// `number_N` by N (index 0 unused); a position without a prompt is not announced.
    numbers: Vec<Option<Arc<Prompt>>>,
    beep: Arc<Prompt>,
    message_saved: Arc<Prompt>,
    hold: Arc<Prompt>,
}

impl FlowPrompts {
    /// Resolves every prompt the flow plays. The after-hours greeting states the calendar's
    /// weekday hours, so changing `[calendar.hours]` changes what callers hear; when the
    /// weekdays' hours differ (the sentence «с __ до __» would be wrong) the hours are left
    /// out, with a warning.
    pub fn load(prompts: &Prompts, calendar: &Calendar) -> Result<FlowPrompts, PromptError> {
        let after_hours = match calendar.weekday_hours() {
            Some((open, close)) => {
                use chrono::Timelike;
                let hm = |t: chrono::NaiveTime| (t.hour() as u8, t.minute() as u8);
                // 24:00 is kept as 23:59:59.999 by some calendars: round it up.
                let close = if close.hour() == 23 && close.minute() == 59 {
                    (24, 0)
                } else {
                    hm(close)
                };
                prompts.after_hours(hm(open), close)?
            }
            None => {
                tracing::warn!(
                    "weekday hours differ: the after-hours greeting does not state them"
                );
                vec![
                    prompts.require("after_hours_intro")?,
                    prompts.require("after_hours_outro")?,
                ]
            }
        };
        Ok(FlowPrompts {
            greeting: prompts.require("greeting_working")?,
            after_hours,
            all_busy: prompts.require("all_busy")?,
            position: prompts.require("queue_position")?,
            numbers: (0..=99)
                .map(|n| prompts.get(&format!("number_{n}")))
                .collect(),
            beep: prompts.require("beep")?,
            message_saved: prompts.require("message_saved")?,
            hold: prompts.require("hold")?,
        })
    }

    fn resolve(&self, names: &[PromptName]) -> Option<Vec<Arc<Prompt>>> {
        let mut out = Vec::new();
        for name in names {
            match name {
                PromptName::Greeting => out.push(self.greeting.clone()),
                PromptName::AfterHours => out.extend(self.after_hours.iter().cloned()),
                PromptName::AllBusy => out.push(self.all_busy.clone()),
                PromptName::Position(n) => {
                    let number = self.numbers.get(*n).cloned().flatten()?;
                    out.push(self.position.clone());
                    out.push(number);
                }
                PromptName::Beep => out.push(self.beep.clone()),
                PromptName::MessageSaved => out.push(self.message_saved.clone()),
            }
        }
        Some(out)
    }
}

/// Everything the calls share. Read-only after start.
pub struct Context {
    pub ports: PortPool,
    pub prompts: FlowPrompts,
    pub data_dir: PathBuf,
    pub rtp_timeout: Option<Duration>,
    /// The media runtime's handle: sessions run there ([`crate::media::runtime`]).
    pub media: tokio::runtime::Handle,
    /// Where operators are rung: SIP phones and browser phones.
    pub control: super::lines::OperatorLines,
    pub observers: broadcast::Sender<Event>,
    pub acd: AcdHandle,
    pub calllog: CallLog,
    pub calendar: Arc<Calendar>,
    pub flow: FlowSettings,
    pub voicemail: super::VoicemailSettings,
    pub live: broadcast::Sender<LiveEvent>,
    pub metrics: Arc<Metrics>,
}

/// What a call's task tells the dispatcher.
enum Routed {
    /// The call's task has ended.
    Gone { call: u64 },
    /// The call's stage changed (for the live view).
    Stage {
        call: u64,
        stage: Stage,
        operator: Option<String>,
    },
}

/// What reaches a call's task from the SIP core.
#[derive(Debug)]
enum ToCall {
    Answered,
    MediaChanged(Negotiated),
    Dtmf(char),
    CallerEnded,
    LegRinging,
    LegAnswered {
        leg: u64,
        media: Negotiated,
        rtp_port: u16,
    },
    /// The leg failed with this final status (603: the operator declined).
    LegFailed(u64, u16),
    LegEnded(u64),
}

/// Runs the dispatcher until shutdown; every call's task is waited for, so that every
/// recording is final and every journal write handed over before this returns.
pub async fn run(
    ctx: Arc<Context>,
    mut sip: mpsc::UnboundedReceiver<ua::Event>,
    mut reachability: mpsc::UnboundedReceiver<String>,
    mut live: mpsc::Receiver<LiveRequest>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (routed_tx, mut routed) = mpsc::unbounded_channel::<Routed>();
    let mut calls: HashMap<u64, (mpsc::UnboundedSender<ToCall>, LiveCall)> = HashMap::new();
    let mut legs: HashMap<u64, u64> = HashMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    let mut queue_changes = ctx.acd.subscribe();
    let mut queue_open = true;
    // Operators with a current SIP binding; whether they can be rung also depends on
    // their browser phone and where they chose to be rung ([`OperatorLines::reachable`]).
    let mut sip_registered: HashSet<String> = HashSet::new();
    loop {
        tokio::select! {
            ev = sip.recv() => {
                let Some(ev) = ev else { break };
                let _ = ctx.observers.send(Event::Sip(ev.clone()));
                if let ua::Event::Registration(r) = &ev {
                    use crate::sip::registrar::RegistrationEvent as R;
                    let (extension, registered, binding) = match r {
                        R::Registered { extension, binding, .. } => (extension, true, Some(binding)),
                        R::Unregistered { extension, still_registered, .. } => {
                            (extension, *still_registered, None)
                        }
                    };
                    if registered {
                        sip_registered.insert(extension.clone());
                    } else {
                        sip_registered.remove(extension);
                    }
                    let reachable = ctx.control.reachable(extension, registered);
                    match binding {
                        Some(b) => ctx.acd.registered_at(extension, reachable, (**b).clone()),
                        None => ctx.acd.set_registered(extension, reachable),
                    }
                } else {
                    route(&ctx, ev, &mut calls, &mut legs, &routed_tx, &mut tasks);
                }
            }
            Some(extension) = reachability.recv() => {
                let reachable = ctx
                    .control
                    .reachable(&extension, sip_registered.contains(&extension));
                ctx.acd.set_registered(&extension, reachable);
            }
            Some(msg) = routed.recv() => match msg {
                Routed::Gone { call } => {
                    calls.remove(&call);
                    legs.retain(|_, c| *c != call);
                }
                Routed::Stage { call, stage, operator } => {
                    if let Some((_, info)) = calls.get_mut(&call) {
                        info.stage = stage.as_str();
                        info.operator = operator.clone();
                    }
                    let _ = ctx.live.send(LiveEvent::CallStage {
                        call,
                        stage: stage.as_str(),
                        operator,
                    });
                }
            },
            Some(reply) = live.recv() => {
                let mut list: Vec<LiveCall> = calls.values().map(|(_, l)| l.clone()).collect();
                list.sort_by_key(|c| c.call);
                let _ = reply.send(list);
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            change = queue_changes.recv(), if queue_open => match change {
                Ok(c) => {
                    let _ = ctx.live.send(live_event(c));
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => queue_open = false,
            },
            _ = shutdown.changed() => break,
        }
    }
    // Hang every call up: each task stops its media (finalising the recording and any
    // voicemail) and hands its last journal writes over before it ends.
    for (_, (tx, _)) in calls.drain() {
        let _ = tx.send(ToCall::CallerEnded);
    }
    while tasks.join_next().await.is_some() {}
}

/// The live feed's form of a queue change.
fn live_event(c: QueueChange) -> LiveEvent {
    match c {
        QueueChange::Operator { extension, state } => LiveEvent::Operator {
            extension,
            state: state.as_str(),
        },
        QueueChange::CallerJoined { call } => LiveEvent::Queue { call, joined: true },
        QueueChange::CallerLeft { call, .. } => LiveEvent::Queue {
            call,
            joined: false,
        },
    }
}

fn route(
    ctx: &Arc<Context>,
    ev: ua::Event,
    calls: &mut HashMap<u64, (mpsc::UnboundedSender<ToCall>, LiveCall)>,
    legs: &mut HashMap<u64, u64>,
    routed: &mpsc::UnboundedSender<Routed>,
    tasks: &mut tokio::task::JoinSet<()>,
) {
    let send = |calls: &HashMap<u64, (mpsc::UnboundedSender<ToCall>, LiveCall)>, call, m| {
        if let Some((tx, _)) = calls.get(&call) {
            let _ = tx.send(m);
        }
    };
    match ev {
        ua::Event::CallOffered {
            call,
            call_id,
            from,
            rtp_port,
            media,
            ..
        } => {
            let (phone, name) = caller_of(&from);
            let arrived_at = Utc::now();
            let _ = ctx.live.send(LiveEvent::CallStarted {
                call,
                phone: phone.clone(),
                arrived_at,
            });
            let (tx, rx) = mpsc::unbounded_channel();
            let journal_key = journal_key(&call_id, &from);
            calls.insert(
                call,
                (
                    tx,
                    LiveCall {
                        call,
                        call_id: call_id.clone(),
                        journal_key: journal_key.clone(),
                        phone: phone.clone(),
                        arrived_at,
                        stage: Stage::Answering.as_str(),
                        operator: None,
                    },
                ),
            );
            let offered = Offered {
                call,
                call_id,
                journal_key,
                phone,
                name,
                arrived_at,
                rtp_port,
                media,
            };
            tasks.spawn(run_call(ctx.clone(), offered, rx, routed.clone()));
        }
        ua::Event::CallAnswered { call } => send(calls, call, ToCall::Answered),
        ua::Event::CallConfirmed { .. } => {}
        ua::Event::MediaChanged { call, media } => send(calls, call, ToCall::MediaChanged(media)),
        ua::Event::Dtmf { call, digit } => {
            let _ = ctx.observers.send(Event::Dtmf {
                call,
                digit,
                via: DtmfVia::SipInfo,
            });
            send(calls, call, ToCall::Dtmf(digit));
        }
        ua::Event::LegPlaced {
            call: leg,
            for_call,
        } => {
            legs.insert(leg, for_call);
        }
        ua::Event::OperatorRinging { call: leg } => {
            if let Some(&call) = legs.get(&leg) {
                send(calls, call, ToCall::LegRinging);
            }
        }
        ua::Event::OperatorAnswered {
            call: leg,
            media,
            rtp_port,
        } => {
            let delivered =
                legs.get(&leg)
                    .and_then(|call| calls.get(call))
                    .is_some_and(|(tx, _)| {
                        tx.send(ToCall::LegAnswered {
                            leg,
                            media,
                            rtp_port,
                        })
                        .is_ok()
                    });
            if !delivered {
                // Its call is gone: nobody will take the port.
                ctx.ports.release(rtp_port);
            }
        }
        ua::Event::OperatorFailed { call: leg, status } => {
            if let Some(call) = legs.remove(&leg) {
                send(calls, call, ToCall::LegFailed(leg, status));
            }
        }
        ua::Event::CallEnded { call, .. } => {
            if let Some(parent) = legs.remove(&call) {
                send(calls, parent, ToCall::LegEnded(call));
            } else {
                send(calls, call, ToCall::CallerEnded);
            }
        }
        // Handled by `run`, which knows the browser phones too.
        ua::Event::Registration(_) => {}
    }
}

/// The caller's number and display name from the INVITE's From. A user part that is not a
/// phone number (a softphone's user name, a scanner's junk) is journaled as `anonymous`.
fn caller_of(from: &str) -> (String, Option<String>) {
    use crate::sip::message::{addr_uri, uri_user};
    let name = from
        .split_once('<')
        .map(|(d, _)| d.trim().trim_matches('"').trim())
        .filter(|d| !d.is_empty())
        .map(|d| d.chars().filter(|c| !c.is_control()).take(200).collect());
    let uri = addr_uri(from);
    let user = uri_user(uri)
        .or_else(|| {
            uri.strip_prefix("tel:")
                .map(|t| t.split(';').next().unwrap_or(t))
        })
        .unwrap_or_default();
    let phone = if crate::records::journal::validate_phone("phone", user).is_ok() {
        user.to_string()
    } else {
        "anonymous".to_string()
    };
    (phone, name)
}

/// The key of a call's journal entry: its dialog's Call-ID and the caller's From tag
/// (RFC 3261 §12: a dialog is Call-ID plus tags). Two callers who send the same Call-ID
/// are two calls and two entries; a retransmitted INVITE is absorbed by its transaction
/// and never gets here twice. `;` cannot occur in a Call-ID, so the key is unambiguous. A
/// From without a tag (RFC 2543 phones) keys by the Call-ID alone.
pub(crate) fn journal_key(call_id: &str, from: &str) -> String {
    match crate::sip::message::tag_param(from) {
        Some(tag) if !tag.is_empty() => format!("{call_id};from-tag={tag}"),
        _ => call_id.to_string(),
    }
}

/// A call the SIP core has accepted, with what its media will need.
struct Offered {
    call: u64,
    call_id: String,
    /// The journal's key for this call ([`journal_key`]).
    journal_key: String,
    phone: String,
    name: Option<String>,
    arrived_at: DateTime<Utc>,
    rtp_port: u16,
    media: Negotiated,
}

/// The task of one call. See the module documentation.
async fn run_call(
    ctx: Arc<Context>,
    offered: Offered,
    mut sip: mpsc::UnboundedReceiver<ToCall>,
    routed: mpsc::UnboundedSender<Routed>,
) {
    let call = offered.call;
    let started = Instant::now();
    // The entry is durable (in the database, or spooled while it is away) before the
    // caller hears anything.
    let arrival = NewCall {
        call_id: Some(offered.journal_key.clone()),
        arrived_at: offered.arrived_at,
        phone: offered.phone.clone(),
        caller_name: offered.name.clone(),
    };
    if let Err(e) = ctx.calllog.arrived(arrival).await {
        tracing::error!(call, error = %e, "call NOT journaled");
    }

    let (media_tx, mut media_rx) = mpsc::unbounded_channel::<(u64, SessionEvent)>();
    let (queue_tx, mut queue_rx) = mpsc::unbounded_channel::<QueueNotice>();
    let mut c = CallTask {
        ctx: ctx.clone(),
        call,
        offered,
        flow: CallFlow::new(ctx.flow.clone()),
        session: None,
        leg: None,
        ringing: Vec::new(),
        pending_media: None,
        port_taken: false,
        answered_at: None,
        recording: None,
        voicemail: None,
        inputs: Vec::new(),
        routed,
        saving: None,
        queue_tx,
        media_tx,
        stage: Stage::Answering,
    };
    loop {
        c.drain().await;
        if c.flow.is_done() {
            break;
        }
        tokio::select! {
            m = sip.recv() => match m {
                Some(m) => c.on_sip(m).await,
                None => c.inputs.push(Input::CallerEnded),
            },
            Some((_, ev)) = media_rx.recv() => c.on_media(ev),
            Some(n) = queue_rx.recv() => c.inputs.push(match n {
                QueueNotice::Offer { operator } => Input::Offer(operator),
                QueueNotice::CancelOffer { operator } => Input::CancelOffer(operator),
                QueueNotice::Position(p) => Input::Position(p),
                QueueNotice::MaxWait => Input::MaxWait,
            }),
            durable = async { c.saving.as_mut().expect("guarded").await }, if c.saving.is_some() => {
                c.saving = None;
                if let Err(e) = durable {
                    tracing::error!(call, error = %e, "voicemail NOT journaled");
                }
                // The flow goes on either way; the error is logged loudly above.
                c.inputs.push(Input::Durable);
            }
        }
    }
    tracing::debug!(call, secs = started.elapsed().as_secs(), "call over");
    let _ = c.routed.send(Routed::Gone { call });
    // The SIP core handed this call its RTP ports; those never taken for media are freed
    // here, including an operator leg answered too late. A taken one closed with its
    // session, and its number may already be a newer call's: it is left alone.
    if !c.port_taken {
        c.ctx.ports.release(c.offered.rtp_port);
    }
    sip.close();
    while let Ok(m) = sip.try_recv() {
        if let ToCall::LegAnswered { rtp_port, .. } = m {
            c.ctx.ports.release(rtp_port);
        }
    }
    // The call's writes are all queued on the call log by now (at shutdown the log is
    // stopped only after every call).
}

struct CallTask {
    ctx: Arc<Context>,
    call: u64,
    offered: Offered,
    flow: CallFlow,
    session: Option<Session>,
    /// The operator leg that answered (its SIP or browser leg number).
    leg: Option<u64>,
    /// Legs ringing for the current offer: one, or two when the operator rings on both
    /// their phones (the first to answer wins, the other is cancelled).
    ringing: Vec<u64>,
    /// The caller's RTP socket was taken from the pool for the media (else the call frees
    /// the port when it ends).
    port_taken: bool,
    /// A caller re-INVITE that came before the media started.
    pending_media: Option<Negotiated>,
    answered_at: Option<DateTime<Utc>>,
    /// The call recording, relative to the data directory.
    recording: Option<String>,
    voicemail: Option<VoicemailSummary>,
    /// Inputs produced while carrying out actions, fed before waiting again.
    inputs: Vec<Input>,
    routed: mpsc::UnboundedSender<Routed>,
    /// The voicemail write the flow waits for ([`Input::Durable`]).
    saving: Option<Ack>,
    queue_tx: mpsc::UnboundedSender<QueueNotice>,
    media_tx: mpsc::UnboundedSender<(u64, SessionEvent)>,
    stage: Stage,
}

impl CallTask {
    /// Feeds pending inputs and carries out the actions until both are exhausted.
    async fn drain(&mut self) {
        loop {
            let now = Instant::now();
            for input in std::mem::take(&mut self.inputs) {
                self.flow.handle(input, now);
            }
            let mut any = false;
            while let Some(a) = self.flow.poll_action() {
                any = true;
                self.perform(a).await;
            }
            if !any && self.inputs.is_empty() {
                break;
            }
        }
        let stage = self.flow.stage();
        if stage != self.stage {
            self.stage = stage;
            let _ = self.routed.send(Routed::Stage {
                call: self.call,
                stage,
                operator: self.flow.operator().map(str::to_string),
            });
        }
    }

    async fn on_sip(&mut self, m: ToCall) {
        match m {
            ToCall::Answered => self.start_media(),
            ToCall::MediaChanged(media) => match &self.session {
                Some(s) => {
                    s.command(Command::UpdateCaller(media));
                }
                None => self.pending_media = Some(media),
            },
            ToCall::Dtmf(d) => self.inputs.push(Input::Dtmf(d)),
            ToCall::CallerEnded => self.inputs.push(Input::CallerEnded),
            ToCall::LegRinging => {}
            ToCall::LegAnswered {
                leg,
                media,
                rtp_port,
            } => {
                if self.leg.is_none() && self.ringing.contains(&leg) {
                    self.leg = Some(leg);
                    for other in std::mem::take(&mut self.ringing) {
                        if other != leg {
                            self.ctx.control.cancel(other).await;
                        }
                    }
                    self.inputs.push(Input::OperatorAnswered);
                    self.bridge(media, rtp_port);
                } else {
                    // A leg this call no longer wants: its port is ours to free.
                    self.ctx.ports.release(rtp_port);
                }
            }
            ToCall::LegFailed(leg, status) => {
                // The operator declined on one of their phones: the other stops ringing
                // too, and the refusal counts as theirs (not as a ring left unanswered).
                if status == 603 && self.ringing.contains(&leg) {
                    for other in std::mem::take(&mut self.ringing) {
                        if other != leg {
                            self.ctx.control.cancel(other).await;
                        }
                    }
                    if self.leg.is_none() {
                        self.inputs.push(Input::OperatorFailed);
                    }
                } else {
                    self.ring_over(leg);
                }
            }
            ToCall::LegEnded(leg) => {
                if self.ringing.contains(&leg) {
                    self.ring_over(leg);
                } else if self.leg == Some(leg) {
                    self.leg = None;
                    if let Some(s) = &self.session {
                        s.command(Command::Unbridge);
                    }
                    self.inputs.push(Input::OperatorEnded);
                }
            }
        }
    }

    /// One of the ringing legs failed or ended: the offer fails once none rings.
    fn ring_over(&mut self, leg: u64) {
        let before = self.ringing.len();
        self.ringing.retain(|l| *l != leg);
        if self.ringing.len() < before && self.ringing.is_empty() && self.leg.is_none() {
            self.inputs.push(Input::OperatorFailed);
        }
    }

    fn start_media(&mut self) {
        let o = &self.offered;
        let Some(socket) = self.ctx.ports.take(o.rtp_port) else {
            tracing::error!(call = self.call, port = o.rtp_port, "RTP socket missing");
            self.inputs.push(Input::MediaFailed);
            return;
        };
        self.port_taken = true;
        let local = self.ctx.calendar.local_date(o.arrived_at);
        let path = path_for(
            &self.ctx.data_dir.join("recordings"),
            (local.year(), local.month(), local.day()),
            &o.call_id,
        );
        let mut media = o.media.clone();
        if let Some(m) = self.pending_media.take() {
            media = m;
        }
        let config = SessionConfig {
            call: self.call,
            caller: LegConfig { socket, media },
            recording: Some(path),
            rtp_timeout: self.ctx.rtp_timeout,
        };
        match Session::spawn_on(&self.ctx.media, config, self.media_tx.clone()) {
            Ok(s) => {
                self.session = Some(s);
                let open = self.ctx.calendar.is_open(Utc::now());
                self.inputs.push(Input::Answered { open });
            }
            Err(e) => {
                tracing::error!(call = self.call, error = %e, "cannot start media");
                self.inputs.push(Input::MediaFailed);
            }
        }
    }

    fn bridge(&mut self, media: Negotiated, port: u16) {
        let Some(socket) = self.ctx.ports.take(port) else {
            tracing::error!(call = self.call, port, "operator RTP socket missing");
            return;
        };
        if let Some(s) = &self.session {
            s.command(Command::Bridge(LegConfig { socket, media }));
        }
    }

    fn on_media(&mut self, ev: SessionEvent) {
        match ev {
            SessionEvent::Dtmf(d) => {
                let _ = self.ctx.observers.send(Event::Dtmf {
                    call: self.call,
                    digit: d,
                    via: DtmfVia::Rtp,
                });
                self.inputs.push(Input::Dtmf(d));
            }
            SessionEvent::PlaybackDone => {
                let _ = self
                    .ctx
                    .observers
                    .send(Event::PlaybackDone { call: self.call });
                self.inputs.push(Input::PlaybackDone);
            }
            SessionEvent::RtpTimeout(leg) => {
                let _ = self.ctx.observers.send(Event::RtpTimeout {
                    call: self.call,
                    leg,
                });
                self.inputs.push(Input::RtpTimeout(match leg {
                    LegId::Caller => Party::Caller,
                    LegId::Operator => Party::Operator,
                }));
            }
            SessionEvent::VoicemailDone(summary) => {
                self.voicemail = Some(summary);
                self.inputs.push(Input::VoicemailDone);
            }
            SessionEvent::Ended(summary) => {
                self.recording = summary
                    .recording
                    .as_ref()
                    .and_then(|r| relative(&self.ctx.data_dir, &r.path));
                let _ = self.ctx.observers.send(Event::RecordingSaved {
                    call: self.call,
                    recording: summary.recording,
                });
                self.session = None;
                self.inputs.push(Input::MediaEnded);
            }
        }
    }

    async fn perform(&mut self, a: Action) {
        let ctx = self.ctx.clone();
        match a {
            Action::Play {
                prompts,
                hold_after,
            } => {
                let Some(list) = ctx.prompts.resolve(&prompts) else {
                    return; // a position past the numbers we have: not announced
                };
                if let Some(s) = &self.session {
                    s.command(Command::Play {
                        prompts: list,
                        then: hold_after.then(|| ctx.prompts.hold.clone()),
                    });
                }
            }
            Action::Enqueue => ctx.acd.enqueue(self.call, self.queue_tx.clone()),
            Action::LeaveQueue => ctx.acd.leave(self.call),
            Action::RingOperator(extension) => {
                let via = ctx.acd.shared_binding(&extension);
                let o = Originate {
                    extension,
                    caller_number: self.offered.phone.clone(),
                    caller_name: self.offered.name.clone(),
                    for_call: Some(self.call),
                    via,
                };
                match ctx.control.originate(o).await {
                    Ok(legs) => self.ringing = legs,
                    Err(e) => {
                        tracing::warn!(call = self.call, error = %e, "operator leg not placed");
                        self.inputs.push(Input::OperatorFailed);
                    }
                }
            }
            Action::CancelOperator => {
                for leg in std::mem::take(&mut self.ringing) {
                    ctx.control.cancel(leg).await;
                }
                if let Some(leg) = self.leg.take() {
                    ctx.control.cancel(leg).await;
                }
            }
            Action::Connected(op) => {
                ctx.acd.answered(self.call, &op);
                let now = Utc::now();
                self.answered_at = Some(now);
                self.progress(CallProgress {
                    answered_at: Some(now),
                    operator: Some(op),
                    wait_ms: None,
                    ..CallProgress::default()
                });
            }
            Action::OfferFailed(op) => ctx.acd.offer_failed(self.call, &op),
            Action::OperatorDone(op) => ctx.acd.call_ended(&op),
            Action::StartVoicemail => {
                let local = ctx.calendar.local_date(self.offered.arrived_at);
                let path = path_for(
                    &ctx.data_dir.join("voicemail"),
                    (local.year(), local.month(), local.day()),
                    &self.offered.call_id,
                );
                let v = &ctx.voicemail;
                if let Some(s) = &self.session {
                    s.command(Command::RecordVoicemail(VoicemailSpec {
                        path,
                        max_length: v.max_length,
                        silence: v.silence,
                        min_speech: v.min_speech,
                        threshold_dbfs: v.silence_dbfs,
                    }));
                }
            }
            Action::StopVoicemail => {
                if let Some(s) = &self.session {
                    s.command(Command::StopVoicemail);
                }
            }
            Action::SaveVoicemail => match self.voicemail.take().and_then(|v| {
                relative(&ctx.data_dir, &v.path).map(|file| CallVoicemail {
                    arrived_at: self.offered.arrived_at,
                    file,
                    duration: v.duration,
                    empty: v.empty,
                    after_hours: !ctx.calendar.is_open(self.offered.arrived_at),
                })
            }) {
                Some(vm) => {
                    let key = self.offered.journal_key.clone();
                    self.saving = Some(ctx.calllog.voicemail(key, vm));
                }
                None => {
                    tracing::error!(call = self.call, "voicemail has no file to journal");
                    self.inputs.push(Input::Durable);
                }
            },
            Action::HangUpCaller(why) => ctx.control.hangup(self.call, end_reason(why)).await,
            Action::HangUpOperator(why) => {
                for leg in std::mem::take(&mut self.ringing) {
                    ctx.control.cancel(leg).await;
                }
                if let Some(leg) = self.leg.take() {
                    ctx.control.hangup(leg, end_reason(why)).await;
                }
            }
            Action::StopMedia => match &self.session {
                Some(s) => {
                    s.command(Command::Stop);
                }
                None => self.inputs.push(Input::MediaEnded),
            },
            Action::Finish(outcome) => self.finish(outcome),
        }
    }

    fn finish(&mut self, outcome: Outcome) {
        let Outcome {
            disposition,
            operator,
            wait,
        } = outcome;
        self.ctx.metrics.call_ended(disposition.as_str());
        let _ = self.ctx.live.send(LiveEvent::CallEnded {
            call: self.call,
            disposition: disposition.as_str(),
        });
        let progress = CallProgress {
            answered_at: self.answered_at,
            ended_at: Some(Utc::now()),
            wait_ms: wait.map(|w| w.as_millis() as i64),
            disposition: Some(disposition),
            operator,
            recording: self.recording.clone(),
        };
        self.progress(progress);
    }

    /// Queues a journal update; the call log keeps it in order behind the call's earlier
    /// writes and logs it if it fails, so the call does not wait for it.
    fn progress(&self, p: CallProgress) {
        drop(
            self.ctx
                .calllog
                .progress(self.offered.journal_key.clone(), p),
        );
    }
}

/// The SIP core's name for why the flow ended a leg.
fn end_reason(why: HangUp) -> EndReason {
    match why {
        HangUp::Normal => EndReason::Hangup,
        HangUp::RtpTimeout => EndReason::RtpTimeout,
    }
}

/// `path` relative to the data directory, as records name files.
fn relative(data_dir: &Path, path: &Path) -> Option<String> {
    path.strip_prefix(data_dir)
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::caller_of;

    #[test]
    fn caller_number_and_name_from_the_from_header() {
        assert_eq!(
            caller_of("\"Иван\" <sip:+79781234567@10.0.0.1>;tag=1"),
            ("+79781234567".into(), Some("Иван".into()))
        );
        assert_eq!(
            caller_of("<sip:89781234567@h;user=phone>;tag=x"),
            ("89781234567".into(), None)
        );
        assert_eq!(
            caller_of("sipp <sip:sipp@127.0.0.1:5061>;tag=1"),
            ("anonymous".into(), Some("sipp".into()))
        );
        assert_eq!(caller_of("sip:8800@h"), ("8800".into(), None));
        assert_eq!(
            caller_of("<tel:+79781234567;phone-context=x>"),
            ("+79781234567".into(), None)
        );
    }
}
