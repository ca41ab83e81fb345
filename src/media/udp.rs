//! Reading an RTP socket with one `recvmmsg(2)` per wake-up.
//!
//! With tokio's `recv_from` every packet costs two system calls: the read, and a second one
//! that fails with `EAGAIN` and so tells tokio the socket is drained. An RTP leg receives a
//! packet every 20 ms, one at a time, so that second call is a third of the media path's
//! system calls. `recvmmsg` asked for up to [`BATCH`] datagrams says more: when it returns
//! fewer, the queue was empty, and the session clears the socket's readiness itself
//! (`AsyncFdReadyGuard::clear_ready`, which keeps any readiness that arrived meanwhile).
//! Bursts (a peer's jitter buffer flushing) are read [`BATCH`] at a time.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;

/// Datagrams read per call.
pub const BATCH: usize = 4;
/// Largest datagram kept whole (Ethernet MTU); RTP for G.711 at 20–60 ms is 172–492 bytes.
pub const SLOT: usize = 1500;

/// Buffers for one batch, reused for the life of a media session (both its legs).
pub struct RxBatch {
    bufs: Box<[[u8; SLOT]; BATCH]>,
    lens: [usize; BATCH],
    sources: [Option<SocketAddr>; BATCH],
    count: usize,
}

impl Default for RxBatch {
    fn default() -> Self {
        RxBatch {
            bufs: Box::new([[0; SLOT]; BATCH]),
            lens: [0; BATCH],
            sources: [None; BATCH],
            count: 0,
        }
    }
}

impl RxBatch {
    /// Reads what is queued, without blocking: `Ok(n)` with `1..=BATCH` datagrams, or
    /// `WouldBlock` when there was none.
    pub fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        self.count = 0;
        // SAFETY: every pointer handed to the kernel points into buffers that live until
        // the call returns: `storage`, `iov` and `headers` on this stack frame, `self.bufs`
        // on the heap; each length is the size of what it points to.
        let mut storage: [libc::sockaddr_storage; BATCH] = unsafe { std::mem::zeroed() };
        let mut iov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        let mut headers: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for i in 0..BATCH {
            iov[i].iov_base = self.bufs[i].as_mut_ptr().cast();
            iov[i].iov_len = SLOT;
            let h = &mut headers[i].msg_hdr;
            h.msg_name = std::ptr::addr_of_mut!(storage[i]).cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = std::ptr::addr_of_mut!(iov[i]);
            h.msg_iovlen = 1;
        }
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                headers.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for i in 0..n {
            self.lens[i] = (headers[i].msg_len as usize).min(SLOT);
            self.sources[i] = to_socket_addr(&storage[i]);
        }
        self.count = n;
        Ok(n)
    }

    /// Forgets the last batch.
    pub fn clear(&mut self) {
        self.count = 0;
    }

    /// Datagrams read by the last [`RxBatch::recv`].
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Datagram `i` of the last batch and where it came from (`None` for an address family
    /// other than IPv4/IPv6, which a UDP/IP socket does not produce).
    pub fn get(&self, i: usize) -> (&[u8], Option<SocketAddr>) {
        (&self.bufs[i][..self.lens[i]], self.sources[i])
    }

    /// [`RxBatch::get`], writable: an SRTP leg decrypts the datagram where it lies.
    pub fn get_mut(&mut self, i: usize) -> (&mut [u8], Option<SocketAddr>) {
        (&mut self.bufs[i][..self.lens[i]], self.sources[i])
    }
}

fn to_socket_addr(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(s.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a `sockaddr_in`, which it is large
            // enough for and aligned for.
            let a: &libc::sockaddr_in = unsafe { &*(s as *const _ as *const libc::sockaddr_in) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for `sockaddr_in6`.
            let a: &libc::sockaddr_in6 = unsafe { &*(s as *const _ as *const libc::sockaddr_in6) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                u32::from_be(a.sin6_flowinfo),
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_batch_with_sources_then_would_block() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut batch = RxBatch::default();
        let err = batch.recv(&rx).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        for k in 0..6u8 {
            tx.send_to(&[k; 172], rx.local_addr().unwrap()).unwrap();
        }
        // Loopback delivery is synchronous: all six are queued.
        assert_eq!(batch.recv(&rx).unwrap(), BATCH);
        for i in 0..BATCH {
            let (data, from) = batch.get(i);
            assert_eq!(data, &[i as u8; 172][..]);
            assert_eq!(from, Some(tx.local_addr().unwrap()));
        }
        assert_eq!(
            batch.recv(&rx).unwrap(),
            2,
            "fewer than BATCH: the queue is empty"
        );
        assert_eq!(batch.get(1).0[0], 5);
        assert!(batch.recv(&rx).is_err());
        assert!(batch.is_empty());
    }

    #[test]
    fn ipv6_sources() {
        let Ok(rx) = UdpSocket::bind("[::1]:0") else {
            return; // no IPv6 loopback on this machine
        };
        rx.set_nonblocking(true).unwrap();
        let tx = UdpSocket::bind("[::1]:0").unwrap();
        tx.send_to(b"x", rx.local_addr().unwrap()).unwrap();
        let mut batch = RxBatch::default();
        assert_eq!(batch.recv(&rx).unwrap(), 1);
        assert_eq!(batch.get(0), (&b"x"[..], Some(tx.local_addr().unwrap())));
    }
}
