//! The I/O of one browser's connection: a task that owns its public UDP socket (the ICE
//! candidate), a [`BrowserPeer`], and an inner socket that faces the call's media session.
//!
//! To the media session the browser is an ordinary RTP operator leg: plain RTP between two
//! local sockets, so that bridging, recording, the RTP timeout and the statistics stay
//! exactly as for a SIP phone. The relay only moves 20 ms frames between str0m (which
//! does ICE, DTLS-SRTP and RTCP with the browser) and that inner socket. The cost is one
//! local datagram each way per frame, measured in `benches/RESULTS.md`.

use super::peer::{BrowserPeer, Closed, PeerOutput};
use crate::media::g711;
use crate::media::rtp::{self, RtpSender};
use crate::sip::sdp::Codec;
use std::net::{SocketAddr, UdpSocket};
use std::time::Instant;
use tokio::sync::mpsc;

/// What the hub asks of a connection.
#[derive(Debug)]
pub enum RelayCommand {
    /// A call is answered: relay audio to and from the session's operator socket.
    Bridge { session: SocketAddr },
    /// The call is over: audio is no longer relayed (the connection stays up).
    Unbridge,
    /// The operator's microphone is (un)muted: the caller hears silence meanwhile.
    Mute(bool),
    /// The operator signed the browser phone out, or opened a new connection.
    Close,
}

/// What a connection tells the hub.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayEvent {
    Connected,
    Closed(Closed),
}

/// A running connection's inner address, as the session's SDP would name it.
pub struct Relay {
    pub commands: mpsc::UnboundedSender<RelayCommand>,
    pub inner: SocketAddr,
}

struct Task {
    peer: BrowserPeer,
    public: tokio::net::UdpSocket,
    inner: tokio::net::UdpSocket,
    codec: Codec,
    /// The session's operator socket while a call is bridged.
    session: Option<SocketAddr>,
    muted: bool,
    sender: RtpSender,
    out: Vec<u8>,
}

/// Starts the task for `peer` on `public` (its bound candidate socket), with an inner
/// socket on `inner_ip`. `report` hears every [`RelayEvent`]; the task ends after
/// [`RelayEvent::Closed`].
pub fn start(
    runtime: &tokio::runtime::Handle,
    peer: BrowserPeer,
    public: UdpSocket,
    inner_ip: std::net::IpAddr,
    report: impl Fn(RelayEvent) + Send + 'static,
) -> std::io::Result<Relay> {
    let _inside = runtime.enter();
    let inner = crate::media::ports::bind(SocketAddr::new(inner_ip, 0))?;
    let inner_addr = inner.local_addr()?;
    let codec = peer.codec().unwrap_or(Codec::Pcmu);
    let task = Task {
        peer,
        public: tokio::net::UdpSocket::from_std(public)?,
        inner: tokio::net::UdpSocket::from_std(inner)?,
        codec,
        session: None,
        muted: false,
        sender: RtpSender::new(),
        out: vec![0; 1500],
    };
    let (tx, rx) = mpsc::unbounded_channel();
    runtime.spawn(task.run(rx, report));
    Ok(Relay {
        commands: tx,
        inner: inner_addr,
    })
}

impl Task {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<RelayCommand>,
        report: impl Fn(RelayEvent),
    ) {
        let mut buf = vec![0u8; 2048];
        // One timer, moved only when the peer's deadline moves: most turns are a frame,
        // and re-arming a fresh timer for each cost more than the frame.
        let sleep = tokio::time::sleep_until(tokio::time::Instant::now());
        tokio::pin!(sleep);
        loop {
            let deadline = match self.drain(&report) {
                Some(at) => tokio::time::Instant::from_std(at),
                None => return,
            };
            if sleep.deadline() != deadline {
                sleep.as_mut().reset(deadline);
            }
            tokio::select! {
                command = commands.recv() => match command {
                    Some(RelayCommand::Bridge { session }) => {
                        self.session = Some(session);
                        self.sender.resync();
                    }
                    Some(RelayCommand::Unbridge) => self.session = None,
                    Some(RelayCommand::Mute(on)) => self.muted = on,
                    None | Some(RelayCommand::Close) => self.peer.close(Closed::Disconnected),
                },
                ready = self.public.readable() => {
                    if ready.is_err() {
                        return;
                    }
                    while let Ok((n, from)) = self.public.try_recv_from(&mut buf) {
                        self.peer.receive(from, &buf[..n], Instant::now());
                    }
                }
                ready = self.inner.readable() => {
                    if ready.is_err() {
                        return;
                    }
                    while let Ok((n, from)) = self.inner.try_recv_from(&mut buf) {
                        // Only the session's socket may speak for the caller.
                        if Some(from) != self.session {
                            continue;
                        }
                        if let Ok(p) = rtp::parse(&buf[..n]) {
                            self.peer.send_audio(self.codec, p.payload, p.timestamp, Instant::now());
                        }
                    }
                }
                _ = &mut sleep => self.peer.tick(Instant::now()),
            }
        }
    }

    /// Everything the peer has to say now; the next deadline, or `None` once it closed.
    fn drain(&mut self, report: &impl Fn(RelayEvent)) -> Option<Instant> {
        loop {
            match self.peer.poll(Instant::now()) {
                Err(at) => return Some(at),
                Ok(PeerOutput::Transmit { to, bytes }) => {
                    let _ = self.public.try_send_to(&bytes, to);
                }
                Ok(PeerOutput::Audio { codec, payload, .. }) => {
                    self.relay_to_session(codec, &payload)
                }
                Ok(PeerOutput::Connected) => report(RelayEvent::Connected),
                Ok(PeerOutput::Closed(why)) => {
                    report(RelayEvent::Closed(why));
                    return None;
                }
            }
        }
    }

    /// The operator's frame to the caller's session, as RTP in the leg's codec (silence
    /// while muted). The RTP clock follows the frames, as a phone's does.
    fn relay_to_session(&mut self, codec: Codec, payload: &[u8]) {
        let Some(session) = self.session else {
            return;
        };
        let mut frame = [0u8; 320];
        let n = payload.len().min(frame.len());
        if self.muted {
            frame[..n].fill(g711::silence(self.codec));
        } else if codec == self.codec {
            frame[..n].copy_from_slice(&payload[..n]);
        } else {
            g711::transcode(codec, self.codec, &payload[..n], &mut frame[..n]);
        }
        let pt = self.codec.payload_type();
        if let Ok(len) = self.sender.write(pt, false, &frame[..n], &mut self.out) {
            let _ = self.inner.try_send_to(&self.out[..len], session);
        }
        self.sender.advance(n as u32);
    }
}
