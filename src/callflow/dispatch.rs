//! The default call flow: one task that starts each answered call's media session, plays
//! the greeting then hold audio, reports DTMF, and hangs up calls whose RTP stopped.
//!
//! It only routes: the media work happens in each call's own session task, so one
//! dispatcher keeps up with thousands of calls. On shutdown it stops every session and waits
//! for it, so every recording is finalised.

use super::{DtmfVia, Event};
use crate::media::ports::PortPool;
use crate::media::prompt::{Prompt, Prompts};
use crate::media::recorder::path_for;
use crate::media::session::{Command, LegConfig, LegId, Session, SessionConfig, SessionEvent};
use crate::sip::sdp::Negotiated;
use crate::sip::transport::SipControl;
use crate::sip::ua::{self, EndReason};
use chrono::Datelike;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch};

/// What the dispatcher needs.
pub struct Dispatcher {
    pub ports: PortPool,
    pub greeting: Arc<Prompt>,
    pub hold: Arc<Prompt>,
    /// `DATA_DIR/recordings`.
    pub recordings: PathBuf,
    pub rtp_timeout: Option<Duration>,
    pub control: SipControl,
    pub observers: broadcast::Sender<Event>,
}

/// A call offered but not answered yet: what its media will need.
struct Offered {
    call_id: String,
    rtp_port: u16,
    media: Negotiated,
}

impl Dispatcher {
    /// The prompts the default flow plays, checked at start-up.
    pub fn prompts(
        prompts: &Prompts,
    ) -> Result<(Arc<Prompt>, Arc<Prompt>), crate::media::prompt::PromptError> {
        Ok((
            prompts.require("greeting_working")?,
            prompts.require("hold")?,
        ))
    }

    pub async fn run(
        self,
        mut sip: mpsc::UnboundedReceiver<ua::Event>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let (media_tx, mut media) = mpsc::unbounded_channel();
        let mut offered: HashMap<u64, Offered> = HashMap::new();
        let mut sessions: HashMap<u64, Session> = HashMap::new();
        loop {
            tokio::select! {
                ev = sip.recv() => {
                    let Some(ev) = ev else { break };
                    self.on_sip(&ev, &mut offered, &mut sessions, &media_tx);
                    let _ = self.observers.send(Event::Sip(ev));
                }
                Some((call, ev)) = media.recv() => self.on_media(call, ev).await,
                _ = shutdown.changed() => break,
            }
        }
        for (_, session) in sessions.drain() {
            session.stop().await;
        }
        // Report the recordings the stopped sessions finalised.
        while let Ok((call, ev)) = media.try_recv() {
            self.on_media(call, ev).await;
        }
    }

    fn on_sip(
        &self,
        ev: &ua::Event,
        offered: &mut HashMap<u64, Offered>,
        sessions: &mut HashMap<u64, Session>,
        media_tx: &mpsc::UnboundedSender<(u64, SessionEvent)>,
    ) {
        match ev {
            ua::Event::CallOffered {
                call,
                call_id,
                rtp_port,
                media,
                ..
            } => {
                offered.insert(
                    *call,
                    Offered {
                        call_id: call_id.clone(),
                        rtp_port: *rtp_port,
                        media: media.clone(),
                    },
                );
            }
            ua::Event::CallAnswered { call } => {
                let Some(o) = offered.remove(call) else {
                    return;
                };
                let Some(socket) = self.ports.take(o.rtp_port) else {
                    tracing::error!(call, port = o.rtp_port, "RTP socket missing");
                    return;
                };
                let today = chrono::Utc::now().date_naive();
                let path = path_for(
                    &self.recordings,
                    (today.year(), today.month(), today.day()),
                    &o.call_id,
                );
                let config = SessionConfig {
                    call: *call,
                    caller: LegConfig {
                        socket,
                        media: o.media,
                    },
                    recording: Some(path),
                    rtp_timeout: self.rtp_timeout,
                };
                match Session::spawn(config, media_tx.clone()) {
                    Ok(session) => {
                        session.command(Command::Play {
                            prompts: vec![self.greeting.clone()],
                            then: Some(self.hold.clone()),
                        });
                        sessions.insert(*call, session);
                    }
                    Err(e) => tracing::error!(call, error = %e, "cannot start media"),
                }
            }
            ua::Event::MediaChanged { call, media } => {
                if let Some(s) = sessions.get(call) {
                    s.command(Command::UpdateCaller(media.clone()));
                } else if let Some(o) = offered.get_mut(call) {
                    o.media = media.clone();
                }
            }
            ua::Event::Dtmf { call, digit } => {
                let _ = self.observers.send(Event::Dtmf {
                    call: *call,
                    digit: *digit,
                    via: DtmfVia::SipInfo,
                });
            }
            ua::Event::CallEnded { call, .. } => {
                offered.remove(call);
                if let Some(s) = sessions.remove(call) {
                    // The session reports `Ended` (and so the recording) when it has stopped.
                    s.command(Command::Stop);
                }
            }
            ua::Event::CallConfirmed { .. } | ua::Event::Registration(_) => {}
        }
    }

    async fn on_media(&self, call: u64, ev: SessionEvent) {
        let out = match ev {
            SessionEvent::Dtmf(digit) => Event::Dtmf {
                call,
                digit,
                via: DtmfVia::Rtp,
            },
            SessionEvent::PlaybackDone => Event::PlaybackDone { call },
            SessionEvent::RtpTimeout(leg) => {
                if leg == LegId::Caller {
                    self.control.hangup(call, EndReason::RtpTimeout).await;
                }
                Event::RtpTimeout { call, leg }
            }
            SessionEvent::Ended(summary) => {
                tracing::info!(
                    call,
                    received = summary.caller.received,
                    lost = summary.caller.lost,
                    jitter_ms = summary.caller.jitter_ms,
                    "call media ended"
                );
                Event::RecordingSaved {
                    call,
                    recording: summary.recording,
                }
            }
        };
        let _ = self.observers.send(out);
    }
}
