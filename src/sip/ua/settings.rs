//! What the core is configured with ([`UaSettings`]) and where its RTP ports come from
//! ([`RtpPorts`]).

use crate::sip::transaction::Timers;
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// What the core is configured with. The application builds it from its configuration
/// (the SIP stack reads none); [`UaSettings::set_address`] fills in our address once the
/// sockets are bound.
#[derive(Debug, Clone)]
pub struct UaSettings {
    pub hotline_numbers: HashSet<String>,
    /// The SIP domain (`sip.domain`): host part of the From/To/P-Asserted-Identity URIs of the
    /// legs to operators.
    pub domain: String,
    pub server: String,
    /// `host:port` for our Contact and Via over UDP and TCP ([`UaSettings::set_address`]).
    pub contact_host: String,
    /// The same with the TLS listener's port ([`UaSettings::set_tls_port`]); empty without.
    pub contact_host_tls: String,
    /// The address in our SDP ([`UaSettings::set_address`]).
    pub media_ip: IpAddr,
    pub answer_delay: Duration,
    pub timers: Timers,
    pub max_calls: usize,
    /// `limits.peak_call_rate`: what the transaction table is sized for.
    pub peak_call_rate: u32,
    pub rtp_ports: (u16, u16),
    /// `media.sdp_trusted_sources`: peers (the carrier's SBC) whose SDP may name a media
    /// address other than their own; see [`vet_media_destination`](super::vet_media_destination).
    pub media_trusted: Vec<ipnet::IpNet>,
    /// Seed of the core's random numbers: tags, branches, Call-IDs, and the registrar's
    /// digest secret and nonces. `None` (production) seeds a cryptographically secure
    /// generator from the operating system, which these values need: predictable ones would
    /// let an attacker forge requests into our dialogs and transactions, or forge nonces.
    /// `Some` makes every run produce the same bytes, for tests and benchmarks only.
    pub rng_seed: Option<[u8; 32]>,
    /// `media.srtp`: whether legs may or must be SRTP (always only over TLS).
    pub srtp: crate::sip::sdes::Policy,
}

impl UaSettings {
    /// Points our Contact, Via and SDP at `public` (the address others reach us at, behind
    /// NAT), or else at `bound`; loopback when `bound` is a wildcard, which nobody can send to.
    pub fn set_address(&mut self, public: Option<IpAddr>, bound: SocketAddr) {
        let ip = public.unwrap_or_else(|| {
            if bound.ip().is_unspecified() {
                IpAddr::from([127, 0, 0, 1])
            } else {
                bound.ip()
            }
        });
        self.contact_host = host_port(ip, bound.port());
        self.media_ip = ip;
    }

    /// Our Contact and Via over TLS name this port (at the address of [`Self::set_address`],
    /// which must come first).
    pub fn set_tls_port(&mut self, port: u16) {
        self.contact_host_tls = host_port(self.media_ip, port);
    }

    /// What the SDP of a dialog over `transport` may carry.
    pub fn security(&self, transport: crate::sip::Transport) -> crate::sip::sdes::Security {
        crate::sip::sdes::Security {
            policy: self.srtp,
            signalling_encrypted: transport == crate::sip::Transport::Tls,
        }
    }

    /// `host:port` for our Contact and Via on `transport`.
    pub fn host_for(&self, transport: crate::sip::Transport) -> &str {
        match transport {
            crate::sip::Transport::Tls => &self.contact_host_tls,
            _ => &self.contact_host,
        }
    }
}

fn host_port(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

/// Where RTP ports for the SDP answer come from.
///
/// The core only asks this allocator for a port number and gives it back; it never binds a
/// socket itself (it is sans-IO, like everything under `sip/` but the transport). Binding
/// happens at the edge: the transport hands the core [`crate::media::ports::PortPool`],
/// which binds a socket for each port it gives out and keeps it for the call's media
/// session. Tests and benchmarks use [`CountingPorts`], which binds nothing.
pub trait RtpPorts: Send {
    /// A port for a new call, or `None` when the range is exhausted (the call gets 503).
    fn allocate(&mut self) -> Option<u16>;
    /// The call ended: a port whose media never started can be reused.
    fn release(&mut self, port: u16);
}

/// Round-robin port numbers without sockets: for tests and benchmarks of the SIP core.
pub struct CountingPorts {
    range: (u16, u16),
    next: u16,
}

impl CountingPorts {
    pub fn new(min: u16, max: u16) -> Self {
        CountingPorts {
            range: (min & !1, max),
            next: min & !1,
        }
    }
}

impl RtpPorts for CountingPorts {
    fn allocate(&mut self) -> Option<u16> {
        let (lo, hi) = self.range;
        let port = self.next;
        self.next = if u32::from(port) + 2 > u32::from(hi) {
            lo
        } else {
            port + 2
        };
        Some(port)
    }

    fn release(&mut self, _port: u16) {}
}
