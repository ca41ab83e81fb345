//! What happens on a call. For now the default flow the media issue asks for: answer, play
//! the working-hours greeting, then hold audio, recording the whole call; DTMF and media
//! events are reported. The full flow (calendar, queue, operators, voicemail) replaces
//! [`dispatch`] with per-call state machines.

pub mod dispatch;

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
