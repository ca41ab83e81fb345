//! One call's flow as a plain state machine (SPEC §2): working hours → greeting → queue →
//! operator; no free operator before `max_wait` → "all busy" → beep → voicemail; outside
//! working hours → the after-hours greeting → beep → voicemail.
//!
//! The machine only decides. [`CallFlow::handle`] takes what happened ([`Input`]: the
//! caller's keys, the end of a prompt, the queue's offers, the operator's leg, the media) and
//! queues what to do ([`Action`], taken with [`CallFlow::poll_action`]); the call's task in
//! [`super::service`] carries the actions out against the SIP core, the media session, the
//! queue and the records, and feeds the results back. Tests drive it with a fake clock.
//!
//! Two orderings matter and live here, not in the I/O code:
//! * a voicemail is durable ([`Action::SaveVoicemail`], then [`Input::Durable`]) before the
//!   caller hears "your message is saved";
//! * the call's journal outcome ([`Action::Finish`]) comes after the media has stopped
//!   ([`Input::MediaEnded`]), so it names the finished recording, and after a voicemail left
//!   by a caller who hung up mid-sentence has been saved.

use crate::records::journal::Disposition;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A prompt the flow plays; the service resolves it to WAVs (`ivr-prompts/`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PromptName {
    /// «Здравствуйте, Вы позвонили в …» (working hours).
    Greeting,
    /// «Здравствуйте, Вас приветствует … Мы работаем в будние дни с __ до __ …», with the
    /// configured hours.
    AfterHours,
    /// «В настоящее время все операторы заняты …».
    AllBusy,
    /// «Ваш номер в очереди» and the position.
    Position(usize),
    Beep,
    /// «Ваше сообщение сохранено. Спасибо, до свидания.»
    MessageSaved,
}

/// What happened to the call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// The call is answered and its media runs; `open` says whether it came in working hours.
    Answered { open: bool },
    /// The prompts of the last [`Action::Play`] have been played.
    PlaybackDone,
    /// A key the caller pressed.
    Dtmf(char),
    /// The queue offers this operator.
    Offer(String),
    /// The queue withdraws its offer (the operator did not answer in time).
    CancelOffer(String),
    /// The caller's place in the queue, to be announced.
    Position(usize),
    /// The caller has waited `max_wait` (or no operator is free and `max_wait` is 0).
    MaxWait,
    /// The operator's phone answered.
    OperatorAnswered,
    /// The operator's phone refused or did not answer (a final error response).
    OperatorFailed,
    /// The operator's leg ended (a hang-up; while ringing, a phone that vanished, which
    /// counts as a failed offer).
    OperatorEnded,
    /// The caller hung up (or their call was lost).
    CallerEnded,
    /// The caller's media could not start after the answer (no RTP socket, the session
    /// failed): the call is over, and the caller's dialog must be ended by us.
    MediaFailed,
    /// A leg's RTP stopped for longer than `media.rtp_timeout_s`.
    RtpTimeout(Party),
    /// The voicemail recording stopped; `key` when the caller pressed `#`.
    VoicemailDone,
    /// The write the flow waited for ([`Action::SaveVoicemail`]) is durable.
    Durable,
    /// The media session has stopped and its recording is final.
    MediaEnded,
}

/// What the service is to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Play these prompts (replacing what plays), then hold audio if `hold_after`, else
    /// silence. [`Input::PlaybackDone`] follows.
    Play {
        prompts: Vec<PromptName>,
        hold_after: bool,
    },
    /// Join the operator queue.
    Enqueue,
    /// Leave the queue (the caller chose voicemail or hung up).
    LeaveQueue,
    /// Ring this operator's registered phone (the only place a call is ever placed).
    RingOperator(String),
    /// Stop ringing the operator (CANCEL).
    CancelOperator,
    /// The operator answered: tell the queue, bridge the media, journal who and when.
    Connected(String),
    /// The operator's phone failed: tell the queue (it pauses them and offers the next).
    OfferFailed(String),
    /// The operator's call is over: tell the queue (wrap-up starts).
    OperatorDone(String),
    /// Start recording a voicemail (after the beep).
    StartVoicemail,
    /// Stop the voicemail recording (`#`).
    StopVoicemail,
    /// Journal the voicemail; [`Input::Durable`] follows.
    SaveVoicemail,
    /// End the caller's leg (BYE).
    HangUpCaller(HangUp),
    /// End the operator's leg (BYE).
    HangUpOperator(HangUp),
    /// Stop the media; [`Input::MediaEnded`] follows once the recordings are final.
    StopMedia,
    /// The call is over: journal its outcome. The last action.
    Finish(Outcome),
}

/// One side of the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Party {
    Caller,
    Operator,
}

/// Why the flow ends a leg, for the SIP core's records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HangUp {
    /// The flow is done with the leg.
    Normal,
    /// The leg's RTP stopped.
    RtpTimeout,
}

/// Where a call is, for the live view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Answering,
    Greeting,
    Queued,
    Ringing,
    Connected,
    /// «все операторы заняты» or the beep before the voicemail.
    ToVoicemail,
    /// Recording or saving the voicemail.
    Voicemail,
    Ending,
}

impl Stage {
    /// The stage's name in the live view and its feed.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Answering => "answering",
            Stage::Greeting => "greeting",
            Stage::Queued => "queued",
            Stage::Ringing => "ringing",
            Stage::Connected => "connected",
            Stage::ToVoicemail => "to_voicemail",
            Stage::Voicemail => "voicemail",
            Stage::Ending => "ending",
        }
    }
}

/// How the call ended, for its journal entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub disposition: Disposition,
    /// The operator who talked to the caller.
    pub operator: Option<String>,
    /// Time in the queue: from joining to the answer or to leaving it.
    pub wait: Option<Duration>,
}

/// Settings of the flow.
#[derive(Clone, Debug)]
pub struct FlowSettings {
    /// The key that leaves the queue for voicemail (SPEC §2.5, default `1`).
    pub voicemail_key: char,
}

impl Default for FlowSettings {
    fn default() -> Self {
        FlowSettings { voicemail_key: '1' }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    /// Not answered yet.
    Answering,
    Greeting,
    Waiting,
    Ringing(String),
    Connected(String),
    /// «все операторы заняты» is playing.
    AllBusy,
    Beep,
    Recording,
    /// The voicemail is being made durable.
    Saving,
    /// «сообщение сохранено» is playing.
    Goodbye,
    /// The media is stopping; the outcome is written once it has.
    Ending,
    Done,
}

/// The flow of one call. See the module documentation.
#[derive(Debug)]
pub struct CallFlow {
    settings: FlowSettings,
    state: State,
    open: bool,
    actions: VecDeque<Action>,
    queued_at: Option<Instant>,
    wait: Option<Duration>,
    /// Set when the call has an outcome but the media or a voicemail write is outstanding.
    outcome: Option<Outcome>,
    caller_gone: bool,
    /// Why our BYE to the caller is sent, if we send one.
    hang_up_caller: HangUp,
    media_ended: bool,
    /// A voicemail is recording (its `VoicemailDone` is still due).
    recording_voicemail: bool,
    /// A voicemail write is not durable yet.
    saving: bool,
    voicemail_left: bool,
}

impl CallFlow {
    pub fn new(settings: FlowSettings) -> CallFlow {
        CallFlow {
            settings,
            state: State::Answering,
            open: false,
            actions: VecDeque::new(),
            queued_at: None,
            wait: None,
            outcome: None,
            caller_gone: false,
            hang_up_caller: HangUp::Normal,
            media_ended: false,
            recording_voicemail: false,
            saving: false,
            voicemail_left: false,
        }
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// True once [`Action::Finish`] has been emitted.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The operator the caller talks to or whose phone rings, for the live view.
    pub fn operator(&self) -> Option<&str> {
        match &self.state {
            State::Ringing(op) | State::Connected(op) => Some(op),
            _ => None,
        }
    }

    /// Where the call is, for the live view.
    pub fn stage(&self) -> Stage {
        match self.state {
            State::Answering => Stage::Answering,
            State::Greeting => Stage::Greeting,
            State::Waiting => Stage::Queued,
            State::Ringing(_) => Stage::Ringing,
            State::Connected(_) => Stage::Connected,
            State::AllBusy | State::Beep => Stage::ToVoicemail,
            State::Recording | State::Saving => Stage::Voicemail,
            State::Goodbye | State::Ending | State::Done => Stage::Ending,
        }
    }

    pub fn handle(&mut self, input: Input, now: Instant) {
        use State as S;
        match (self.state.clone(), input) {
            (_, Input::MediaEnded) => {
                self.media_ended = true;
                // The session reports a voicemail it finalises before it ends: one still
                // "recording" now was never started (the session failed), so none will come.
                self.recording_voicemail = false;
                self.finish_if_ready();
            }
            (_, Input::Durable) => {
                if self.saving {
                    self.saving = false;
                    if self.state == S::Saving && !self.caller_gone {
                        self.play(vec![PromptName::MessageSaved], false);
                        self.state = S::Goodbye;
                    } else {
                        self.finish_if_ready();
                    }
                }
            }
            (_, Input::VoicemailDone) => {
                if self.recording_voicemail {
                    self.recording_voicemail = false;
                    self.voicemail_left = true;
                    self.saving = true;
                    self.push(Action::SaveVoicemail);
                    if self.state == S::Recording {
                        self.state = S::Saving;
                    }
                }
            }
            (S::Done, _) => {}
            (_, Input::MediaFailed) => {
                // Whatever the stage, the call cannot go on without its media; the caller's
                // dialog is still up and gets our BYE.
                if let S::Ringing(_) = self.state {
                    self.push(Action::CancelOperator);
                }
                if matches!(self.state, S::Waiting | S::Ringing(_)) {
                    self.push(Action::LeaveQueue);
                    self.left_queue(now);
                }
                if let S::Connected(op) = self.state.clone() {
                    self.push(Action::HangUpOperator(HangUp::Normal));
                    self.push(Action::OperatorDone(op));
                }
                if self.state != S::Ending {
                    self.end(Disposition::Failed, None);
                }
            }
            (S::Ending, Input::RtpTimeout(_)) => {}
            (state, Input::RtpTimeout(Party::Caller)) => {
                // The caller is lost: end as a hang-up would, with our BYE to close the
                // dialog.
                self.hang_up_caller = HangUp::RtpTimeout;
                self.caller_left(state, now);
            }
            (S::Connected(op), Input::RtpTimeout(Party::Operator)) => {
                self.push(Action::HangUpOperator(HangUp::RtpTimeout));
                self.push(Action::OperatorDone(op.clone()));
                self.end(Disposition::Answered, Some(op));
            }
            (S::Answering, Input::Answered { open }) => {
                self.open = open;
                let greeting = if open {
                    PromptName::Greeting
                } else {
                    PromptName::AfterHours
                };
                self.play(vec![greeting], false);
                self.state = S::Greeting;
            }
            (S::Greeting, Input::PlaybackDone) => {
                if self.open {
                    self.queued_at = Some(now);
                    self.push(Action::Enqueue);
                    self.play(vec![], true);
                    self.state = S::Waiting;
                } else {
                    self.play(vec![PromptName::Beep], false);
                    self.state = S::Beep;
                }
            }
            (S::Waiting, Input::Offer(op)) => {
                self.push(Action::RingOperator(op.clone()));
                self.state = S::Ringing(op);
            }
            (S::Waiting, Input::Position(n)) => {
                self.play(vec![PromptName::Position(n)], true);
            }
            (S::Waiting | S::Ringing(_), Input::MaxWait) => {
                if let S::Ringing(_) = self.state {
                    self.push(Action::CancelOperator);
                }
                self.left_queue(now);
                self.go_to_voicemail();
            }
            (S::Waiting | S::Ringing(_), Input::Dtmf(d)) if d == self.settings.voicemail_key => {
                if let S::Ringing(_) = self.state {
                    self.push(Action::CancelOperator);
                }
                self.push(Action::LeaveQueue);
                self.left_queue(now);
                self.go_to_voicemail();
            }
            (S::Ringing(op), Input::CancelOffer(o)) if o == op => {
                // The queue has put the caller back at the head and will offer the next.
                self.push(Action::CancelOperator);
                self.state = S::Waiting;
            }
            (S::Ringing(op), Input::OperatorFailed | Input::OperatorEnded) => {
                self.push(Action::OfferFailed(op));
                self.state = S::Waiting;
            }
            (S::Ringing(op), Input::OperatorAnswered) => {
                self.left_queue(now);
                self.push(Action::Connected(op.clone()));
                self.state = S::Connected(op);
            }
            (S::Connected(op), Input::OperatorEnded) => {
                self.push(Action::OperatorDone(op.clone()));
                self.end(Disposition::Answered, Some(op));
            }
            (state, Input::CallerEnded) => {
                self.caller_gone = true;
                self.caller_left(state, now);
            }
            (S::AllBusy, Input::PlaybackDone) => {
                self.play(vec![PromptName::Beep], false);
                self.state = S::Beep;
            }
            (S::Beep, Input::PlaybackDone) => {
                self.recording_voicemail = true;
                self.push(Action::StartVoicemail);
                self.state = S::Recording;
            }
            (S::Recording, Input::Dtmf('#')) => self.push(Action::StopVoicemail),
            (S::Goodbye, Input::PlaybackDone) => {
                let d = self.voicemail_disposition();
                self.end(d, None);
            }
            // Anything else is stale (an offer that raced the caller's key, a prompt end
            // after a bridge): ignored.
            (_, _) => {}
        }
    }

    /// The caller is gone (hung up, or lost to an RTP timeout): what was set up for them is
    /// undone and the outcome depends on how far the call got.
    fn caller_left(&mut self, state: State, now: Instant) {
        use State as S;
        match state {
            S::Connected(op) => {
                self.push(Action::HangUpOperator(HangUp::Normal));
                self.push(Action::OperatorDone(op.clone()));
                self.end(Disposition::Answered, Some(op));
            }
            S::Recording | S::Saving | S::Goodbye => {
                // What was said is kept: the session finalises the voicemail as it stops
                // and reports it before it ends.
                let d = self.voicemail_disposition();
                self.end(d, None);
            }
            S::Ending | S::Done => {}
            state => {
                // Before an operator or a voicemail: abandoned.
                if let S::Ringing(_) = state {
                    self.push(Action::CancelOperator);
                }
                if matches!(state, S::Waiting | S::Ringing(_)) {
                    self.push(Action::LeaveQueue);
                    self.left_queue(now);
                }
                let disposition = if state == S::Answering {
                    Disposition::Failed
                } else {
                    Disposition::Abandoned
                };
                self.end(disposition, None);
            }
        }
    }

    fn push(&mut self, a: Action) {
        self.actions.push_back(a);
    }

    fn play(&mut self, prompts: Vec<PromptName>, hold_after: bool) {
        self.push(Action::Play {
            prompts,
            hold_after,
        });
    }

    fn left_queue(&mut self, now: Instant) {
        if let Some(t) = self.queued_at.take() {
            self.wait = Some(now.saturating_duration_since(t));
        }
    }

    fn go_to_voicemail(&mut self) {
        self.play(vec![PromptName::AllBusy], false);
        self.state = State::AllBusy;
    }

    fn voicemail_disposition(&self) -> Disposition {
        if self.open {
            Disposition::Voicemail
        } else {
            Disposition::AfterHoursVoicemail
        }
    }

    /// Hangs up what is still up and stops the media; the outcome is written once the media
    /// has stopped and any voicemail is saved.
    fn end(&mut self, disposition: Disposition, operator: Option<String>) {
        if !self.caller_gone {
            self.push(Action::HangUpCaller(self.hang_up_caller));
        }
        self.push(Action::StopMedia);
        // A caller who hung up in the beep never started a voicemail: abandoned stays.
        let disposition = if self.voicemail_left || self.recording_voicemail {
            self.voicemail_disposition()
        } else {
            disposition
        };
        self.outcome = Some(Outcome {
            disposition,
            operator,
            wait: self.wait,
        });
        self.state = State::Ending;
        self.finish_if_ready();
    }

    fn finish_if_ready(&mut self) {
        if self.state != State::Ending
            || !self.media_ended
            || self.saving
            || self.recording_voicemail
        {
            return;
        }
        if let Some(outcome) = self.outcome.take() {
            self.push(Action::Finish(outcome));
            self.state = State::Done;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Sim {
        flow: CallFlow,
        t0: Instant,
        now: Instant,
    }

    impl Sim {
        fn new() -> Sim {
            let t0 = Instant::now();
            Sim {
                flow: CallFlow::new(FlowSettings::default()),
                t0,
                now: t0,
            }
        }
        fn at(&mut self, secs: u64) -> &mut Self {
            self.now = self.t0 + Duration::from_secs(secs);
            self
        }
        /// Feeds `input` and returns the actions it produced.
        fn feed(&mut self, input: Input) -> Vec<Action> {
            self.flow.handle(input, self.now);
            std::iter::from_fn(|| self.flow.poll_action()).collect()
        }
    }

    fn play(prompts: Vec<PromptName>, hold_after: bool) -> Action {
        Action::Play {
            prompts,
            hold_after,
        }
    }

    fn finish(d: Disposition, op: Option<&str>, wait: Option<u64>) -> Action {
        Action::Finish(Outcome {
            disposition: d,
            operator: op.map(str::to_string),
            wait: wait.map(Duration::from_secs),
        })
    }

    /// Answered in working hours and queued after the greeting at t = 5 s.
    fn queued() -> Sim {
        let mut s = Sim::new();
        assert_eq!(
            s.feed(Input::Answered { open: true }),
            vec![play(vec![PromptName::Greeting], false)]
        );
        assert_eq!(s.flow.stage(), Stage::Greeting);
        assert_eq!(
            s.at(5).feed(Input::PlaybackDone),
            vec![Action::Enqueue, play(vec![], true)]
        );
        s
    }

    #[test]
    fn working_hours_greeting_queue_operator_then_caller_hangs_up() {
        let mut s = queued();
        // A key other than the voicemail key does nothing in the queue.
        assert!(s.feed(Input::Dtmf('5')).is_empty());
        assert_eq!(
            s.at(8).feed(Input::Offer("1001".into())),
            vec![Action::RingOperator("1001".into())]
        );
        assert_eq!(s.flow.operator(), Some("1001"));
        assert_eq!(
            s.at(12).feed(Input::OperatorAnswered),
            vec![Action::Connected("1001".into())]
        );
        assert_eq!(s.flow.stage(), Stage::Connected);
        assert_eq!(
            s.at(100).feed(Input::CallerEnded),
            vec![
                Action::HangUpOperator(HangUp::Normal),
                Action::OperatorDone("1001".into()),
                Action::StopMedia
            ]
        );
        assert!(!s.flow.is_done());
        assert_eq!(
            s.feed(Input::MediaEnded),
            vec![finish(Disposition::Answered, Some("1001"), Some(7))]
        );
        assert!(s.flow.is_done());
        assert!(s.feed(Input::CallerEnded).is_empty());
    }

    #[test]
    fn operator_hangs_up_and_the_caller_gets_bye() {
        let mut s = queued();
        s.feed(Input::Offer("1002".into()));
        s.feed(Input::OperatorAnswered);
        assert_eq!(
            s.feed(Input::OperatorEnded),
            vec![
                Action::OperatorDone("1002".into()),
                Action::HangUpCaller(HangUp::Normal),
                Action::StopMedia
            ]
        );
        assert_eq!(
            s.feed(Input::MediaEnded),
            vec![finish(Disposition::Answered, Some("1002"), Some(0))]
        );
    }

    #[test]
    fn ring_timeout_and_failure_go_back_to_waiting_for_the_next_operator() {
        let mut s = queued();
        s.feed(Input::Offer("1001".into()));
        // A stale withdrawal for another operator is ignored.
        assert!(s.feed(Input::CancelOffer("1003".into())).is_empty());
        assert_eq!(
            s.feed(Input::CancelOffer("1001".into())),
            vec![Action::CancelOperator]
        );
        assert_eq!(s.flow.stage(), Stage::Queued);
        s.feed(Input::Offer("1002".into()));
        assert_eq!(
            s.feed(Input::OperatorFailed),
            vec![Action::OfferFailed("1002".into())]
        );
        assert_eq!(
            s.feed(Input::Offer("1003".into())),
            vec![Action::RingOperator("1003".into())]
        );
        assert_eq!(
            s.feed(Input::OperatorAnswered),
            vec![Action::Connected("1003".into())]
        );
    }

    #[test]
    fn positions_are_announced_while_waiting_only() {
        let mut s = queued();
        assert_eq!(
            s.feed(Input::Position(3)),
            vec![play(vec![PromptName::Position(3)], true)]
        );
        s.feed(Input::Offer("1001".into()));
        assert!(s.feed(Input::Position(1)).is_empty());
    }

    #[test]
    fn max_wait_leads_to_all_busy_beep_voicemail_saved_goodbye() {
        let mut s = queued();
        assert_eq!(
            s.at(125).feed(Input::MaxWait),
            vec![play(vec![PromptName::AllBusy], false)]
        );
        assert_eq!(
            s.feed(Input::PlaybackDone),
            vec![play(vec![PromptName::Beep], false)]
        );
        assert_eq!(s.feed(Input::PlaybackDone), vec![Action::StartVoicemail]);
        assert_eq!(s.flow.stage(), Stage::Voicemail);
        assert_eq!(s.feed(Input::Dtmf('#')), vec![Action::StopVoicemail]);
        assert_eq!(s.feed(Input::VoicemailDone), vec![Action::SaveVoicemail]);
        // "Saved" only once the voicemail is durable.
        assert!(s.feed(Input::PlaybackDone).is_empty());
        assert_eq!(
            s.feed(Input::Durable),
            vec![play(vec![PromptName::MessageSaved], false)]
        );
        assert_eq!(
            s.feed(Input::PlaybackDone),
            vec![Action::HangUpCaller(HangUp::Normal), Action::StopMedia]
        );
        assert_eq!(
            s.feed(Input::MediaEnded),
            vec![finish(Disposition::Voicemail, None, Some(120))]
        );
    }

    #[test]
    fn voicemail_key_in_the_queue_and_while_ringing() {
        let mut s = queued();
        assert_eq!(
            s.at(9).feed(Input::Dtmf('1')),
            vec![Action::LeaveQueue, play(vec![PromptName::AllBusy], false)]
        );
        let mut s = queued();
        s.feed(Input::Offer("1001".into()));
        assert_eq!(
            s.feed(Input::Dtmf('1')),
            vec![
                Action::CancelOperator,
                Action::LeaveQueue,
                play(vec![PromptName::AllBusy], false)
            ]
        );
        // The offer that raced the key is ignored.
        assert!(s.feed(Input::Offer("1002".into())).is_empty());
    }

    #[test]
    fn after_hours_goes_straight_to_beep_and_voicemail() {
        let mut s = Sim::new();
        assert_eq!(
            s.feed(Input::Answered { open: false }),
            vec![play(vec![PromptName::AfterHours], false)]
        );
        // Keys during the greeting change nothing.
        assert!(s.feed(Input::Dtmf('1')).is_empty());
        assert_eq!(
            s.feed(Input::PlaybackDone),
            vec![play(vec![PromptName::Beep], false)]
        );
        assert_eq!(s.feed(Input::PlaybackDone), vec![Action::StartVoicemail]);
        assert_eq!(s.feed(Input::VoicemailDone), vec![Action::SaveVoicemail]);
        s.feed(Input::Durable);
        s.feed(Input::PlaybackDone);
        assert_eq!(
            s.feed(Input::MediaEnded),
            vec![finish(Disposition::AfterHoursVoicemail, None, None)]
        );
    }

    #[test]
    fn hang_up_mid_voicemail_keeps_the_message_before_finishing() {
        let mut s = Sim::new();
        s.feed(Input::Answered { open: false });
        s.feed(Input::PlaybackDone);
        s.feed(Input::PlaybackDone);
        assert_eq!(s.feed(Input::CallerEnded), vec![Action::StopMedia]);
        // The session reports the voicemail it finalised, then its end; the outcome waits
        // for the voicemail to be durable.
        assert_eq!(s.feed(Input::VoicemailDone), vec![Action::SaveVoicemail]);
        assert!(s.feed(Input::MediaEnded).is_empty());
        assert_eq!(
            s.feed(Input::Durable),
            vec![finish(Disposition::AfterHoursVoicemail, None, None)]
        );
    }

    #[test]
    fn media_may_end_before_the_voicemail_is_durable_or_after() {
        let mut s = queued();
        s.feed(Input::MaxWait);
        s.feed(Input::PlaybackDone);
        s.feed(Input::PlaybackDone);
        s.feed(Input::VoicemailDone);
        // Hang-up while the voicemail is being saved: no "saved" prompt, outcome after both.
        assert_eq!(s.feed(Input::CallerEnded), vec![Action::StopMedia]);
        assert!(s.feed(Input::Durable).is_empty());
        assert_eq!(
            s.feed(Input::MediaEnded),
            vec![finish(Disposition::Voicemail, None, Some(0))]
        );
    }

    #[test]
    fn hang_up_while_waiting_or_ringing_is_abandoned() {
        let mut s = queued();
        assert_eq!(
            s.at(30).feed(Input::CallerEnded),
            vec![Action::LeaveQueue, Action::StopMedia]
        );
        assert_eq!(
            s.feed(Input::MediaEnded),
            vec![finish(Disposition::Abandoned, None, Some(25))]
        );

        let mut s = queued();
        s.feed(Input::Offer("1001".into()));
        assert_eq!(
            s.at(20).feed(Input::CallerEnded),
            vec![
                Action::CancelOperator,
                Action::LeaveQueue,
                Action::StopMedia
            ]
        );
        assert_eq!(
            s.feed(Input::MediaEnded),
            vec![finish(Disposition::Abandoned, None, Some(15))]
        );

        // In the greeting (never queued) and in the "all busy" prompt.
        let mut s = Sim::new();
        s.feed(Input::Answered { open: true });
        assert_eq!(s.feed(Input::CallerEnded), vec![Action::StopMedia]);
        assert_eq!(
            s.feed(Input::MediaEnded),
            vec![finish(Disposition::Abandoned, None, None)]
        );
        let mut s = queued();
        s.feed(Input::MaxWait);
        s.feed(Input::CallerEnded);
        assert_eq!(
            s.feed(Input::MediaEnded),
            vec![finish(Disposition::Abandoned, None, Some(0))]
        );
    }

    #[test]
    fn a_call_lost_before_the_answer_is_failed() {
        let mut s = Sim::new();
        assert_eq!(s.feed(Input::CallerEnded), vec![Action::StopMedia]);
        assert_eq!(
            s.feed(Input::MediaEnded),
            vec![finish(Disposition::Failed, None, None)]
        );
    }

    /// Issue 18's defect: when the media cannot start after the 200 OK, the flow used to be
    /// fed `CallerEnded`, so it believed the caller gone and never sent BYE (the caller sat in
    /// a silent dialog), and the service wrote `Failed` a second time on its own. Now the
    /// flow hears `MediaFailed`, hangs the caller up itself and writes one outcome.
    #[test]
    fn media_that_cannot_start_hangs_the_caller_up_and_fails_once() {
        let mut s = Sim::new();
        // What the old path did: no BYE.
        let mut old = Sim::new();
        assert_eq!(old.feed(Input::CallerEnded), vec![Action::StopMedia]);

        assert_eq!(
            s.feed(Input::MediaFailed),
            vec![Action::HangUpCaller(HangUp::Normal), Action::StopMedia]
        );
        assert_eq!(
            s.feed(Input::MediaEnded),
            vec![finish(Disposition::Failed, None, None)]
        );
        // The caller's dialog ending (our BYE answered) adds nothing.
        assert!(s.feed(Input::CallerEnded).is_empty());
        assert!(s.feed(Input::MediaFailed).is_empty());

        // Mid-call: the operator is released and the caller gets BYE.
        let mut s = queued();
        s.feed(Input::Offer("1001".into()));
        s.feed(Input::OperatorAnswered);
        assert_eq!(
            s.feed(Input::MediaFailed),
            vec![
                Action::HangUpOperator(HangUp::Normal),
                Action::OperatorDone("1001".into()),
                Action::HangUpCaller(HangUp::Normal),
                Action::StopMedia
            ]
        );
    }

    #[test]
    fn rtp_timeouts_are_decided_by_the_flow() {
        // The caller's RTP stops mid-queue: abandoned, with our BYE marked as a timeout.
        let mut s = queued();
        assert_eq!(
            s.at(40).feed(Input::RtpTimeout(Party::Caller)),
            vec![
                Action::LeaveQueue,
                Action::HangUpCaller(HangUp::RtpTimeout),
                Action::StopMedia
            ]
        );
        assert!(s.feed(Input::CallerEnded).is_empty());
        assert_eq!(
            s.feed(Input::MediaEnded),
            vec![finish(Disposition::Abandoned, None, Some(35))]
        );

        // The operator's RTP stops on a bridged call: both legs end, the call was answered.
        let mut s = queued();
        s.feed(Input::Offer("1001".into()));
        s.feed(Input::OperatorAnswered);
        assert_eq!(
            s.feed(Input::RtpTimeout(Party::Operator)),
            vec![
                Action::HangUpOperator(HangUp::RtpTimeout),
                Action::OperatorDone("1001".into()),
                Action::HangUpCaller(HangUp::Normal),
                Action::StopMedia
            ]
        );
        // The operator leg's end, reported after our BYE, is stale.
        assert!(s.feed(Input::OperatorEnded).is_empty());
        assert!(s.feed(Input::RtpTimeout(Party::Caller)).is_empty());
        assert_eq!(
            s.feed(Input::MediaEnded),
            vec![finish(Disposition::Answered, Some("1001"), Some(0))]
        );

        // An operator RTP timeout while nobody is bridged means nothing.
        let mut s = queued();
        assert!(s.feed(Input::RtpTimeout(Party::Operator)).is_empty());
    }

    #[test]
    fn an_operator_leg_that_ends_while_ringing_is_a_failed_offer() {
        let mut s = queued();
        s.feed(Input::Offer("1001".into()));
        assert_eq!(
            s.feed(Input::OperatorEnded),
            vec![Action::OfferFailed("1001".into())]
        );
        assert_eq!(s.flow.stage(), Stage::Queued);
    }
}
