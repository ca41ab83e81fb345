//! What happens on a call (SPEC §2): the per-call state machine ([`call`]), the operator
//! queue ([`queue`], run by the [`acd`] actor), and the run-time that wires them to the SIP
//! core, the media and the records ([`service`]). Every call is recorded and journaled.

pub mod acd;
pub mod call;
pub mod lines;
pub mod queue;
pub mod recovery;
pub mod service;
pub mod shared_acd;

use crate::media::recorder::RecordingSummary;
use crate::media::session::LegId;
use crate::sip::ua;

/// How a DTMF digit arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DtmfVia {
    /// RFC 4733 telephone-event in the RTP stream.
    Rtp,
    /// SIP INFO (`application/dtmf-relay` or `application/dtmf`).
    SipInfo,
}

/// Everything observable about calls: the SIP core's events plus the media's.
#[derive(Clone, Debug)]
pub enum Event {
    Sip(ua::Event),
    /// A key the caller pressed, once per press whatever the transport.
    Dtmf {
        call: u64,
        digit: char,
        via: DtmfVia,
    },
    /// The greeting (the prompts of the last play request) has been sent.
    PlaybackDone {
        call: u64,
    },
    /// A leg's RTP stopped; the call is being hung up.
    RtpTimeout {
        call: u64,
        leg: LegId,
    },
    /// The call's media ended and its recording is complete on disk (`None`: the call
    /// could not be recorded, and an error was logged).
    RecordingSaved {
        call: u64,
        recording: Option<RecordingSummary>,
    },
}

/// How voicemail is recorded and judged empty (`[voicemail]`), as the call flow and the
/// start-up recovery need it; `app.rs` builds it from the configuration.
#[derive(Clone, Debug)]
pub struct VoicemailSettings {
    /// Longest message.
    pub max_length: std::time::Duration,
    /// A message ends after this much silence.
    pub silence: std::time::Duration,
    /// Less speech than this marks the message empty (it is kept all the same).
    pub min_speech: std::time::Duration,
    /// Frames quieter than this (dBFS RMS) count as silence.
    pub silence_dbfs: f32,
}
