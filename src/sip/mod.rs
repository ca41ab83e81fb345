//! The SIP stack: `rsip` parses and prints messages; everything above that is ours.
//!
//! * [`message`]: lenient scan and checks before `rsip`, error responses, response builder
//! * [`headers`]: the one reading of Via, CSeq and header parameters, for the checks and
//!   the transaction keys alike
//! * [`framing`]: message boundaries on TCP
//! * [`transaction`]: RFC 3261 §17 state machines (sans-IO)
//! * [`dialog`]: calls as UAS dialogs and operator legs as UAC dialogs, 2xx retransmission,
//!   in-dialog requests
//! * [`registrar`] + [`digest`] + [`guard`]: operators' registrations, auth, lock-out, rate limit
//! * [`sdp`]: offer/answer for G.711 + telephone-event
//! * [`ua`]: the sans-IO core that ties them together: answers callers, rings operators
//! * [`transport`]: the only part that touches sockets
//!
//! Nothing here reads the configuration: the core, the registrar and the transport each take
//! their own settings ([`ua::UaSettings`], [`registrar::RegistrarSettings`],
//! [`transport::TransportSettings`]), which the application builds from its `Config`.

pub mod dialog;
pub mod digest;
pub mod framing;
pub mod guard;
pub mod headers;
pub mod info;
pub mod message;
pub mod registrar;
pub mod sdes;
pub mod sdp;
pub mod transaction;
pub mod transport;
pub mod ua;

use std::net::SocketAddr;

/// The transports the hotline speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    /// TCP under TLS (RFC 3261 §26), on its own port.
    Tls,
}

impl Transport {
    /// Reliable transports need no retransmissions (RFC 3261 §17).
    pub fn is_reliable(self) -> bool {
        matches!(self, Transport::Tcp | Transport::Tls)
    }

    /// A connection carries it: answers and requests to the peer go back on the connection
    /// it opened (RFC 3261 §18.2.2, RFC 5923), which is what reaches a phone behind NAT.
    pub fn is_connection(self) -> bool {
        matches!(self, Transport::Tcp | Transport::Tls)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }
}

/// The other end of a message: transport and address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Peer {
    pub transport: Transport,
    pub addr: SocketAddr,
}

/// Bytes the core wants sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub peer: Peer,
    pub bytes: bytes::Bytes,
}
