//! A test UA's media side: RTP sent and read over a real loopback socket, with its own
//! RTP parser and textbook G.711 (independent of the hotline's code, so that a bug there
//! cannot hide itself in the test).

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

/// One RTP packet as received.
#[derive(Clone, Debug)]
pub struct Rtp {
    pub pt: u8,
    pub marker: bool,
    pub seq: u16,
    pub ts: u32,
    pub ssrc: u32,
    pub payload: Vec<u8>,
    pub at: Instant,
}

/// RFC 3550 §5.1 fixed header (CSRCs skipped; the hotline sends no extensions).
pub fn parse(buf: &[u8]) -> Option<Rtp> {
    if buf.len() < 12 || buf[0] >> 6 != 2 {
        return None;
    }
    let start = 12 + 4 * usize::from(buf[0] & 0x0F);
    Some(Rtp {
        pt: buf[1] & 0x7F,
        marker: buf[1] & 0x80 != 0,
        seq: u16::from_be_bytes([buf[2], buf[3]]),
        ts: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
        ssrc: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
        payload: buf.get(start..)?.to_vec(),
        at: Instant::now(),
    })
}

pub fn rtp_header(pt: u8, marker: bool, seq: u16, ts: u32, ssrc: u32) -> [u8; 12] {
    let mut h = [0u8; 12];
    h[0] = 0x80;
    h[1] = pt | if marker { 0x80 } else { 0 };
    h[2..4].copy_from_slice(&seq.to_be_bytes());
    h[4..8].copy_from_slice(&ts.to_be_bytes());
    h[8..12].copy_from_slice(&ssrc.to_be_bytes());
    h
}

/// The test UA's SRTP (issue 20): the two contexts of `webrtc-srtp` used directly, keyed
/// from SDES lines this module writes and reads itself.
pub struct PeerSrtp {
    tx: webrtc_srtp::context::Context,
    rx: webrtc_srtp::context::Context,
    /// Packets received that did not authenticate.
    pub refused: usize,
}

/// A random AES_CM_128_HMAC_SHA1_80 key ‖ salt.
pub fn srtp_key() -> Vec<u8> {
    (0..30).map(|_| rand::random::<u8>()).collect()
}

/// The `a=crypto` line for `key` under `tag`.
pub fn crypto_line(tag: u32, key: &[u8]) -> String {
    use base64::Engine as _;
    format!(
        "a=crypto:{tag} AES_CM_128_HMAC_SHA1_80 inline:{}\r\n",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

/// The key of the first `a=crypto` line of `sdp`.
pub fn crypto_key(sdp: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let line = sdp.lines().find_map(|l| l.strip_prefix("a=crypto:"))?;
    let inline = line.split_whitespace().nth(2)?.strip_prefix("inline:")?;
    let key = inline.split('|').next()?;
    base64::engine::general_purpose::STANDARD.decode(key).ok()
}

impl PeerSrtp {
    /// Contexts for sending under `ours` and receiving under `theirs`.
    pub fn new(ours: &[u8], theirs: &[u8]) -> PeerSrtp {
        use webrtc_srtp::{option, protection_profile::ProtectionProfile as P};
        let ctx = |k: &[u8], replay: bool| {
            webrtc_srtp::context::Context::new(
                &k[..16],
                &k[16..],
                P::Aes128CmHmacSha1_80,
                replay.then(|| option::srtp_replay_protection(128)),
                None,
            )
            .expect("SRTP context")
        };
        PeerSrtp {
            tx: ctx(ours, false),
            rx: ctx(theirs, true),
            refused: 0,
        }
    }
}

/// The test UA's RTP endpoint.
pub struct RtpPeer {
    pub socket: UdpSocket,
    pub ssrc: u32,
    pub seq: u16,
    pub ts: u32,
    /// SRTP, once keyed: what is sent is encrypted, what is collected decrypted. (In a
    /// mutex so that collecting stays `&self`, as the tests that share a peer need.)
    pub srtp: std::sync::Mutex<Option<PeerSrtp>>,
}

impl RtpPeer {
    pub async fn bind() -> Self {
        RtpPeer {
            socket: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            ssrc: 0x5EED_0001,
            seq: 100,
            ts: 16000,
            srtp: std::sync::Mutex::new(None),
        }
    }

    /// Keys the peer's SRTP: sending under `ours`, receiving under `theirs`.
    pub fn key(&mut self, ours: &[u8], theirs: &[u8]) {
        *self.srtp.get_mut().unwrap() = Some(PeerSrtp::new(ours, theirs));
    }

    /// Received packets that did not authenticate (0 when SRTP is not keyed).
    pub fn refused(&self) -> usize {
        self.srtp.lock().unwrap().as_ref().map_or(0, |s| s.refused)
    }

    pub fn is_srtp(&self) -> bool {
        self.srtp.lock().unwrap().is_some()
    }

    /// `packet` as it goes on the wire: SRTP-protected once keyed.
    pub fn wire(&mut self, packet: Vec<u8>) -> Vec<u8> {
        match self.srtp.get_mut().unwrap().as_mut() {
            Some(s) => s.tx.encrypt_rtp(&packet).expect("SRTP protect").to_vec(),
            None => packet,
        }
    }

    pub fn port(&self) -> u16 {
        self.socket.local_addr().unwrap().port()
    }

    /// Sends one packet and advances the stream by `samples`.
    pub async fn send(
        &mut self,
        to: SocketAddr,
        pt: u8,
        marker: bool,
        payload: &[u8],
        samples: u32,
    ) {
        let mut p = rtp_header(pt, marker, self.seq, self.ts, self.ssrc).to_vec();
        p.extend_from_slice(payload);
        let p = self.wire(p);
        self.socket.send_to(&p, to).await.unwrap();
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(samples);
    }

    /// Sends `payload` in 20 ms packets of 160 bytes, paced in real time.
    pub async fn stream(&mut self, to: SocketAddr, pt: u8, payload: &[u8]) {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for (i, frame) in payload.chunks(160).enumerate() {
            tick.tick().await;
            self.send(to, pt, i == 0, frame, frame.len() as u32).await;
        }
    }

    /// One RFC 4733 event as a phone sends it: start (marker), updates, three end packets,
    /// all with the event's start timestamp.
    pub async fn press(&mut self, to: SocketAddr, pt: u8, digit: char) {
        let code = match digit {
            '0'..='9' => digit as u8 - b'0',
            '*' => 10,
            '#' => 11,
            'A'..='D' => 12 + (digit as u8 - b'A'),
            _ => panic!("not a DTMF digit"),
        };
        let start_ts = self.ts;
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let mut send = |marker: bool, end: bool, duration: u16| {
            let mut p = rtp_header(pt, marker, self.seq, start_ts, self.ssrc).to_vec();
            p.extend_from_slice(&[code, if end { 0x80 | 10 } else { 10 }]);
            p.extend_from_slice(&duration.to_be_bytes());
            self.seq = self.seq.wrapping_add(1);
            p
        };
        let mut packets = vec![send(true, false, 160)];
        for k in 2..=5u16 {
            packets.push(send(false, false, 160 * k));
        }
        for _ in 0..3 {
            packets.push(send(false, true, 960));
        }
        for p in packets {
            tick.tick().await;
            let p = self.wire(p);
            self.socket.send_to(&p, to).await.unwrap();
        }
        self.ts = self.ts.wrapping_add(960);
    }

    /// Everything received for `wait` (decrypted when SRTP is keyed; packets that do not
    /// authenticate are counted in `srtp.refused`), with the source of the first packet.
    /// Each packet is read as it arrives, so its `at` is its arrival.
    pub async fn collect(&self, wait: Duration) -> (Vec<Rtp>, Option<SocketAddr>) {
        let mut out = Vec::new();
        let source = self.receive_for(wait, |d| out.extend(self.open(d))).await;
        (out, source)
    }

    /// The datagrams received for `wait`, as they came.
    pub async fn collect_raw(&self, wait: Duration) -> (Vec<Vec<u8>>, Option<SocketAddr>) {
        let mut out = Vec::new();
        let source = self.receive_for(wait, |d| out.push(d.to_vec())).await;
        (out, source)
    }

    /// Hands every datagram received for `wait` to `each`; the source of the first.
    async fn receive_for(&self, wait: Duration, mut each: impl FnMut(&[u8])) -> Option<SocketAddr> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut source = None;
        let mut buf = [0u8; 2048];
        while let Ok(Ok((n, from))) =
            tokio::time::timeout_at(deadline, self.socket.recv_from(&mut buf)).await
        {
            source.get_or_insert(from);
            each(&buf[..n]);
        }
        source
    }

    /// A datagram as received, decrypted when SRTP is keyed (`None`, and counted in
    /// `srtp.refused`, when it does not authenticate).
    pub fn open(&self, datagram: &[u8]) -> Option<Rtp> {
        match self.srtp.lock().unwrap().as_mut() {
            None => parse(datagram),
            Some(s) => match s.rx.decrypt_rtp(datagram) {
                Ok(clear) => parse(&clear),
                Err(_) => {
                    s.refused += 1;
                    None
                }
            },
        }
    }
}

/// An SDP offer for a UA at `port` offering `codecs` (e.g. `&[(0, "PCMU")]`) and
/// telephone-event 101.
pub fn offer(port: u16, codecs: &[(u8, &str)]) -> String {
    offer_keyed(port, codecs, None)
}

/// [`offer`] as `RTP/SAVP` with `a=crypto:1` for `key` when it is given.
pub fn offer_keyed(port: u16, codecs: &[(u8, &str)], key: Option<&[u8]>) -> String {
    let pts: Vec<String> = codecs.iter().map(|(pt, _)| pt.to_string()).collect();
    let proto = if key.is_some() { "RTP/SAVP" } else { "RTP/AVP" };
    let mut s = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} {proto} {} 101\r\n",
        pts.join(" ")
    );
    if let Some(k) = key {
        s.push_str(&crypto_line(1, k));
    }
    for (pt, name) in codecs {
        s.push_str(&format!("a=rtpmap:{pt} {name}/8000\r\n"));
    }
    s.push_str(
        "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n",
    );
    s
}

/// The address an SDP body says to send RTP to.
pub fn media_addr(sdp: &str) -> SocketAddr {
    let ip = sdp
        .lines()
        .find_map(|l| l.strip_prefix("c=IN IP4 "))
        .expect("c= line")
        .trim();
    let port = sdp
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|l| l.split(' ').next())
        .expect("m= line");
    format!("{ip}:{port}").parse().unwrap()
}

// ---------------------------------------------------------------- textbook G.711

/// µ-law decode, the formula of ITU-T G.711 / Sun's g711.c.
pub fn ulaw_decode(u: u8) -> i16 {
    let u = !u;
    let t = ((i32::from(u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4);
    (if u & 0x80 != 0 { 0x84 - t } else { t - 0x84 }) as i16
}

/// µ-law encode, G.711's segment arithmetic written out (Sun's g711.c form, 16-bit input).
pub fn ulaw_encode(s: i16) -> u8 {
    let bias = 0x84i32;
    let clip = 32635i32;
    let (sign, mag) = if s < 0 {
        (0x80u8, (-(i32::from(s))).min(clip))
    } else {
        (0u8, i32::from(s).min(clip))
    };
    let mag = mag + bias;
    let mut seg = 0u8;
    while seg < 7 && mag > (0x100 << seg) - 1 {
        seg += 1;
    }
    let mantissa = ((mag >> (seg + 3)) & 0x0F) as u8;
    !(sign | (seg << 4) | mantissa)
}

/// A-law decode (G.711).
pub fn alaw_decode(a: u8) -> i16 {
    let a = a ^ 0x55;
    let mut t = i32::from(a & 0x0F) << 4;
    let seg = (a & 0x70) >> 4;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

/// Reads a WAV file's samples (any channel count), with its channel count.
pub fn read_wav(path: &std::path::Path) -> (Vec<i16>, u16) {
    let mut r = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let channels = r.spec().channels;
    (r.samples::<i16>().map(Result::unwrap).collect(), channels)
}

/// `secs` of a µ-law sine at `hz`, −10 dBFS.
pub fn ulaw_tone(hz: f64, secs: f64) -> Vec<u8> {
    sine_8k(hz, secs, 10_000.0)
        .into_iter()
        .map(ulaw_encode)
        .collect()
}

/// `secs` of a 16-bit sine at `hz` sampled at 8 kHz, peak `amplitude`.
pub fn sine_8k(hz: f64, secs: f64, amplitude: f64) -> Vec<i16> {
    let n = (8000.0 * secs) as usize;
    (0..n)
        .map(|i| ((i as f64 * hz * std::f64::consts::TAU / 8000.0).sin() * amplitude) as i16)
        .collect()
}

/// Writes a mono 8 kHz 16-bit WAV (a voicemail as the hotline records one), creating its
/// directory.
pub fn write_wav_8k(path: &std::path::Path, samples: &[i16]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &s in samples {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
}

/// Position of `needle` inside `hay`, if it occurs.
pub fn find(hay: &[i16], needle: &[i16]) -> Option<usize> {
    if needle.is_empty() || needle.len() > hay.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}
