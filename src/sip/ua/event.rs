//! What the core tells its owner ([`Event`], [`EndReason`]) and what the call flow asks of
//! it ([`Originate`], [`OriginateError`]).

use crate::sip::registrar::RegistrationEvent;
use crate::sip::sdp::Negotiated;

/// Why a call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// The caller (or, on an operator leg, the operator) sent BYE.
    RemoteBye,
    /// The caller cancelled before the answer; or we cancelled an operator leg
    /// ([`UserAgent::cancel`](super::UserAgent::cancel)).
    Cancelled,
    /// We answered but the ACK never came; we sent BYE.
    AckTimeout,
    /// The call flow hung up (we sent BYE).
    Hangup,
    /// The caller's RTP stopped for longer than `media.rtp_timeout_s`; we sent BYE.
    RtpTimeout,
}

/// Things that happened, for the call flow, the API and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// An INVITE to the hotline was accepted for answering.
    CallOffered {
        call: u64,
        call_id: String,
        from: String,
        number: String,
        /// Our RTP port in the SDP answer (bound by the [`RtpPorts`](super::RtpPorts) allocator).
        rtp_port: u16,
        /// What the SDP offer/answer agreed.
        media: Negotiated,
    },
    /// 200 OK sent.
    CallAnswered {
        call: u64,
    },
    /// ACK received: media may flow.
    CallConfirmed {
        call: u64,
    },
    /// A re-INVITE changed the media: direction (hold / unhold), address or codecs.
    MediaChanged {
        call: u64,
        media: Negotiated,
    },
    /// A DTMF digit sent by SIP INFO.
    Dtmf {
        call: u64,
        digit: char,
    },
    CallEnded {
        call: u64,
        reason: EndReason,
    },
    Registration(RegistrationEvent),
    /// An operator leg asked for with [`Originate::for_call`] was placed: reported before
    /// any of its progress, so that the owner can route the leg's events without waiting
    /// for [`UserAgent::originate`](super::UserAgent::originate)'s answer.
    LegPlaced {
        call: u64,
        for_call: u64,
    },
    /// The operator's phone rings (first 180 or 183 to our INVITE).
    OperatorRinging {
        call: u64,
    },
    /// The operator answered and we sent the ACK: media may flow.
    OperatorAnswered {
        call: u64,
        /// Our RTP port in the SDP offer (bound by the [`RtpPorts`](super::RtpPorts) allocator).
        rtp_port: u16,
        /// What the operator's SDP answer agreed.
        media: Negotiated,
    },
    /// The leg failed before an answer: the operator's final status (486 busy, 480, 603 …),
    /// 408 when nothing answered within Timer B, 488 for a 2xx without a usable SDP answer
    /// (ACKed and ended with BYE). The leg is over; no [`Event::CallEnded`] follows.
    OperatorFailed {
        call: u64,
        status: u16,
    },
}

/// A leg to ring an operator for a waiting caller ([`UserAgent::originate`](super::UserAgent::originate)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Originate {
    /// The operator's extension: a configured operator that is registered now.
    pub extension: String,
    /// The caller's number, from the caller's From (sanitised before use).
    pub caller_number: String,
    /// The caller's display name, if the caller sent one (sanitised before use).
    pub caller_name: Option<String>,
    /// The inbound call the leg serves: when set, the core reports the leg as
    /// [`Event::LegPlaced`].
    pub for_call: Option<u64>,
    /// In a cluster, the operator's binding on another node (with the edge's Path), rung
    /// when this node has none of its own.
    pub via: Option<Box<crate::sip::registrar::Binding>>,
}

/// Why no operator leg was placed; nothing was sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OriginateError {
    #[error("{0:?} is not an operator extension")]
    UnknownExtension(String),
    #[error("operator {0:?} is not registered")]
    NotRegistered(String),
    #[error("operator {0:?} registered a contact we cannot call")]
    BadContact(String),
    /// `media.srtp = "required"` and the operator's binding is not over TLS, so no SRTP
    /// key can be sent to it.
    #[error("operator {0:?} is not registered over TLS, and SRTP is required")]
    NotEncrypted(String),
    /// The RTP port range is exhausted (the 503 of an inbound call).
    #[error("no free RTP port")]
    NoRtpPort,
    /// The SIP core task has stopped.
    #[error("the SIP core is not running")]
    Unavailable,
}
