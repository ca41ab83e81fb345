//! Call audio: everything between the SDP the SIP core negotiated and the sound a caller
//! hears and the recording keeps.
//!
//! * [`g711`]: µ-law / A-law, table-driven
//! * [`rtp`]: RTP packets (rtp-rs), our outgoing stream, receive statistics, latching
//! * [`dtmf`]: RFC 4733 telephone-events and SIP INFO bodies
//! * [`prompt`]: the IVR prompts, loaded once and pre-encoded in 20 ms frames
//! * [`recorder`]: two-channel WAV recordings flushed as they grow, crash repair
//! * [`voicemail`]: the caller's message in a mono WAV file; when a message ends
//! * [`leg`]: one RTP leg's state without its socket
//! * [`srtp`]: a leg's SRTP contexts (RFC 3711), keyed by SDES
//! * [`bridge`]: the per-packet relay between two legs, feeding the recorder
//! * [`ports`]: RTP port allocation (binding real sockets)
//! * [`session`]: the per-call media task: the only part that touches RTP sockets
//! * [`runtime`]: the real-time threads the sessions run on
//! * [`udp`]: `recvmmsg` reads that need no `EAGAIN` call to find a socket drained

pub mod bridge;
pub mod dtmf;
pub mod g711;
pub mod leg;
pub mod ports;
pub mod prompt;
pub mod recorder;
pub mod rtp;
pub mod runtime;
pub mod session;
pub mod srtp;
pub mod udp;
pub mod voicemail;
