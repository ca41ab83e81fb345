//! The browser phone: an operator takes calls in the console's tab over WebRTC, with no
//! softphone to install.
//!
//! * [`peer`]: one browser's WebRTC connection (str0m, sans-IO): ICE-lite, DTLS-SRTP,
//!   G.711 only.
//! * [`relay`]: the task that gives a connection its sockets and relays its audio to the
//!   call's media session as plain RTP on the host.
//! * [`hub`]: every operator's browser phone, its ringing and answered calls, and what the
//!   page and the call flow hear.
//! * [`loopback`]: a browser played by a second str0m in memory, for the benchmarks.
//!
//! The connection is made once, when the operator switches the browser phone on, and
//! stays up between calls (as a SIP phone stays registered): a call rings as an event to
//! the page and is answered with a click, with no ICE or DTLS round trips then.

pub mod hub;
pub mod loopback;
pub mod peer;
mod relay;
