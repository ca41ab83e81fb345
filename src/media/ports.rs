//! RTP port allocation: binds a real UDP socket on an even port of the configured range.
//!
//! The SIP core must put a port into its SDP answer before the call's media task exists, so
//! the port is bound when the INVITE is answered and the socket waits here until the media
//! session [`take`](PortPool::take)s it. Binding (rather than counting) means a port held by
//! another program, or by another hotline on the same machine, is simply skipped.
//!
//! Only the SIP core allocates and the call dispatcher takes, once per call, so the lock is
//! never contended on the media path.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};

/// Ports for RTP, shared between the SIP core (allocate, release) and the media side (take).
#[derive(Clone)]
pub struct PortPool {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    ip: IpAddr,
    min: u16,
    max: u16,
    next: u16,
    /// Bound sockets whose call has not started its media yet.
    reserved: HashMap<u16, UdpSocket>,
}

/// How large the kernel receive buffer of each RTP socket is asked to be: a few hundred
/// packets, so that a media task delayed by a scheduling hiccup loses nothing.
const RTP_RCVBUF: usize = 64 * 1024;

impl PortPool {
    /// Ports `min..=max` on `ip` (the SIP listen address; a wildcard binds all interfaces).
    pub fn new(ip: IpAddr, min: u16, max: u16) -> Self {
        let min = (min + 1) & !1;
        PortPool {
            inner: Arc::new(Mutex::new(Inner {
                ip,
                min,
                max,
                next: min,
                reserved: HashMap::new(),
            })),
        }
    }

    /// Binds the next free even port (round-robin, so a port just released is not reused
    /// at once and stray packets of the old call do not reach the new one).
    pub fn allocate(&self) -> Option<u16> {
        let mut inner = self.inner.lock().expect("port pool lock");
        let slots = (u32::from(inner.max) - u32::from(inner.min)) / 2 + 1;
        for _ in 0..slots {
            let port = inner.next;
            inner.next = if u32::from(port) + 2 > u32::from(inner.max) {
                inner.min
            } else {
                port + 2
            };
            if inner.reserved.contains_key(&port) {
                continue;
            }
            if let Ok(socket) = bind(SocketAddr::new(inner.ip, port)) {
                inner.reserved.insert(port, socket);
                return Some(port);
            }
        }
        tracing::warn!("no free RTP port in {}..={}", inner.min, inner.max);
        None
    }

    /// The socket bound for `port`, handed over to the call's media session.
    pub fn take(&self, port: u16) -> Option<UdpSocket> {
        self.inner
            .lock()
            .expect("port pool lock")
            .reserved
            .remove(&port)
    }

    /// Frees a port whose call ended before its media started (a CANCEL before the answer).
    /// A port already taken closes with its media session instead.
    pub fn release(&self, port: u16) {
        self.inner
            .lock()
            .expect("port pool lock")
            .reserved
            .remove(&port);
    }

    /// Sockets bound but not yet taken.
    pub fn reserved(&self) -> usize {
        self.inner.lock().expect("port pool lock").reserved.len()
    }
}

/// A non-blocking UDP socket (ready for tokio) with a larger receive buffer.
pub fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    if addr.is_ipv6() {
        let _ = socket.set_only_v6(false);
    }
    socket.bind(&addr.into())?;
    let _ = socket.set_recv_buffer_size(RTP_RCVBUF);
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

impl crate::sip::ua::RtpPorts for PortPool {
    fn allocate(&mut self) -> Option<u16> {
        PortPool::allocate(self)
    }

    fn release(&mut self, port: u16) {
        PortPool::release(self, port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free_range(len: u16) -> u16 {
        // A range nobody else in this test binary uses: derived from the process id.
        30000 + (std::process::id() % 1000) as u16 * 2 + len
    }

    #[test]
    fn allocates_even_ports_and_skips_busy_ones() {
        let base = free_range(0) & !1;
        let squatter = UdpSocket::bind(("127.0.0.1", base)).ok();
        let pool = PortPool::new(IpAddr::from([127, 0, 0, 1]), base, base + 7);
        let a = pool.allocate().unwrap();
        let b = pool.allocate().unwrap();
        assert_eq!(a % 2, 0);
        assert_eq!(b % 2, 0);
        assert_ne!(a, b);
        if squatter.is_some() {
            assert_ne!(a, base, "a port held by another socket is skipped");
        }
        assert_eq!(pool.reserved(), 2);
        let socket = pool.take(a).unwrap();
        assert_eq!(socket.local_addr().unwrap().port(), a);
        assert!(pool.take(a).is_none());
        pool.release(b);
        assert_eq!(pool.reserved(), 0);
    }

    #[test]
    fn exhausted_range_gives_none() {
        let base = (free_range(40) + 100) & !1;
        let pool = PortPool::new(IpAddr::from([127, 0, 0, 1]), base, base + 3);
        let got: Vec<_> = std::iter::from_fn(|| pool.allocate()).take(5).collect();
        assert!(got.len() <= 2);
        assert!(pool.allocate().is_none());
    }
}
