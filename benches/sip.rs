//! Criterion benchmarks of the SIP hot path.
//!
//! * `parse_invite`: one SIPp-style INVITE with SDP from bytes to an `rsip` message, through
//!   the hotline's lenient front end ([`decode`]) and, for comparison, `rsip` alone (as a
//!   `SipMessage`, which is what `decode` calls, and as a `Request`).
//! * `server_invite_transaction`: the signalling of one whole call through the sans-IO
//!   [`UserAgent`]: INVITE → 100 + 200, ACK, BYE → 200.
//!   - `core`: only the `UserAgent` calls are timed (messages are built and decoded outside
//!     the timed section), i.e. what the single core task spends per call;
//!   - `decode+core`: building the three requests from text and decoding them is timed too,
//!     i.e. all CPU the server spends on a call except the sockets.
//!
//! Time in the call benchmarks is simulated: every call advances the clock by [`CALL_SPACING`]
//! (2000 calls/s, the load target) and the UA's due timers are fired as they fall due, inside
//! the timed section. Ended calls leave their INVITE (RFC 6026 Accepted, Timer L) and BYE
//! (Completed, Timer J) server transactions behind for 64·T1 = 32 s, as on a real server;
//! before measuring, the UA is pre-filled with 64·T1 worth of calls so every sample runs
//! against the steady-state table size (~64 000 calls' transactions) instead of one that
//! grows with the iteration count.
//!
//! `cargo bench --bench sip -- --test` runs each benchmark once (smoke test).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hotline::config::Config;
use hotline::sip::message::{decode, tag_param, DecodeContext, Decoded};
use hotline::sip::registrar::RegistrarSettings;
use hotline::sip::ua::{UaSettings, UserAgent};
use hotline::sip::{Transmit, Transport};
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Simulated interval between calls: 2000 calls/s.
const CALL_SPACING: Duration = Duration::from_micros(500);

const SERVER: &str = "127.0.0.1:5060";
const CALLER: &str = "127.0.0.1:5061";

const SDP: &str = "v=0\r\n\
o=user1 53655765 2353687637 IN IP4 127.0.0.1\r\n\
s=-\r\n\
c=IN IP4 127.0.0.1\r\n\
t=0 0\r\n\
m=audio 6000 RTP/AVP 0\r\n\
a=rtpmap:0 PCMU/8000\r\n";

/// An INVITE as SIPp's built-in `uac` scenario sends it.
fn invite(call: u64) -> String {
    format!(
        "INVITE sip:8800@{SERVER} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {CALLER};branch=z9hG4bK-4242-{call}-0\r\n\
         From: sipp <sip:sipp@{CALLER}>;tag=4242SIPpTag00{call}\r\n\
         To: 8800 <sip:8800@{SERVER}>\r\n\
         Call-ID: {call}-4242@127.0.0.1\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: sip:sipp@{CALLER}\r\n\
         Max-Forwards: 70\r\n\
         Subject: Performance Test\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {len}\r\n\
         \r\n\
         {SDP}",
        len = SDP.len()
    )
}

/// ACK (message index 4 of the scenario) or BYE (index 6), with the hotline's To tag.
fn in_dialog(method: &str, cseq: u32, index: u32, call: u64, to_tag: &str) -> String {
    format!(
        "{method} sip:8800@{SERVER} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {CALLER};branch=z9hG4bK-4242-{call}-{index}\r\n\
         From: sipp <sip:sipp@{CALLER}>;tag=4242SIPpTag00{call}\r\n\
         To: 8800 <sip:8800@{SERVER}>;tag={to_tag}\r\n\
         Call-ID: {call}-4242@127.0.0.1\r\n\
         CSeq: {cseq} {method}\r\n\
         Contact: sip:sipp@{CALLER}\r\n\
         Max-Forwards: 70\r\n\
         Subject: Performance Test\r\n\
         Content-Length: 0\r\n\
         \r\n"
    )
}

fn ctx() -> DecodeContext<'static> {
    DecodeContext {
        transport: Transport::Udp,
        source: CALLER.parse().expect("caller address"),
        max_size: 16 * 1024,
        server: "Hotline/bench",
    }
}

fn decode_ok(bytes: &[u8]) -> rsip::SipMessage {
    match decode(bytes, &ctx()) {
        Decoded::Message(m) => m,
        Decoded::Rejected { reason, .. } => panic!("benchmark message rejected: {reason}"),
    }
}

fn bench_parse(c: &mut Criterion) {
    let msg = invite(1);
    let bytes = msg.as_bytes();
    let ctx = ctx();
    assert!(matches!(decode(bytes, &ctx), Decoded::Message(_)));
    let mut g = c.benchmark_group("parse_invite");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.sample_size(50);
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));
    g.bench_function("hotline_decode", |b| {
        b.iter(|| decode(black_box(bytes), black_box(&ctx)))
    });
    g.bench_function("rsip_try_from", |b| {
        b.iter(|| rsip::SipMessage::try_from(black_box(bytes)).expect("rsip parses"))
    });
    // `SipMessage::try_from` tries the response grammar first and builds (formats) an error
    // before trying the request grammar; parsing as a request directly shows that cost.
    g.bench_function("rsip_request_try_from", |b| {
        b.iter(|| rsip::Request::try_from(black_box(bytes)).expect("rsip parses"))
    });
    g.finish();
}

/// The UA under test plus its simulated clock.
struct Bench {
    ua: UserAgent,
    now: Instant,
    next_call: u64,
    source: SocketAddr,
    /// Responses are collected here (and dropped) instead of going to a socket.
    sent: Vec<Transmit>,
}

impl Bench {
    fn new() -> Self {
        let toml = r#"
[sip]
listen = "127.0.0.1:5060"
domain = "hotline.test"
hotline_numbers = ["8800", "hotline"]

[http]
listen = "127.0.0.1:0"

[storage]
data_dir = "target/bench-data-unused"

[limits]
max_calls = 100000
trusted_sources = ["127.0.0.0/8"]

[[operators]]
extension = "1001"
name = "Иванова Анна"
password = "secret-1001"
"#;
        let config = Config::from_toml(toml).expect("bench config parses");
        config.validate().expect("bench config is valid");
        let settings = UaSettings::from(&config);
        let now = Instant::now();
        Bench {
            ua: UserAgent::new(settings, RegistrarSettings::from(&config), now),
            now,
            next_call: 1,
            source: CALLER.parse().expect("caller address"),
            sent: Vec::with_capacity(8),
        }
    }

    /// Advances the simulated clock by one call spacing and fires what fell due.
    fn tick(&mut self) {
        self.now += CALL_SPACING;
        if self.ua.poll_timeout().is_some_and(|t| t <= self.now) {
            self.ua.handle_timeout(self.now);
        }
    }

    fn feed(&mut self, msg: rsip::SipMessage) {
        self.ua
            .handle_message(msg, self.source, Transport::Udp, self.now);
        while let Some(t) = self.ua.poll_transmit() {
            self.sent.push(t);
        }
        while self.ua.poll_event().is_some() {}
    }

    /// The hotline's To tag from the 200 OK to the INVITE, and checks 100 + 200 came out.
    fn take_answer(&mut self) -> String {
        assert_eq!(self.sent.len(), 2, "expected 100 Trying + 200 OK");
        assert!(self.sent[0].bytes.starts_with(b"SIP/2.0 100 "));
        let ok = &self.sent[1].bytes;
        assert!(ok.starts_with(b"SIP/2.0 200 "), "INVITE not answered 200");
        let text = std::str::from_utf8(ok).expect("200 OK is UTF-8");
        let head = text.split("\r\n\r\n").next().unwrap_or_default();
        let to = head
            .split("\r\n")
            .find_map(|l| l.strip_prefix("To:"))
            .expect("200 OK has To");
        let tag = tag_param(to.trim())
            .expect("200 OK To has a tag")
            .to_string();
        self.sent.clear();
        tag
    }

    fn take_bye_ok(&mut self) {
        assert_eq!(self.sent.len(), 1, "expected one 200 OK to the BYE");
        assert!(self.sent[0].bytes.starts_with(b"SIP/2.0 200 "));
        self.sent.clear();
    }

    /// One whole call; returns the time spent in the timed parts.
    /// With `time_decode`, building and decoding the requests is timed too.
    fn call(&mut self, time_decode: bool) -> Duration {
        let call = self.next_call;
        self.next_call += 1;

        let t0 = Instant::now();
        let inv = decode_ok(invite(call).as_bytes());
        let t1 = Instant::now();
        self.tick();
        self.feed(inv);
        let t2 = Instant::now();
        let mut timed = if time_decode { t2 - t0 } else { t2 - t1 };
        let tag = self.take_answer();

        let t0 = Instant::now();
        let ack = decode_ok(in_dialog("ACK", 1, 4, call, &tag).as_bytes());
        let bye = decode_ok(in_dialog("BYE", 2, 6, call, &tag).as_bytes());
        let t1 = Instant::now();
        self.feed(ack);
        assert!(self.sent.is_empty(), "nothing is sent for an ACK");
        self.feed(bye);
        let t2 = Instant::now();
        timed += if time_decode { t2 - t0 } else { t2 - t1 };
        self.take_bye_ok();
        timed
    }
}

fn bench_transaction(c: &mut Criterion) {
    // Sanity: the call flow works and every call ends.
    let mut bench = Bench::new();
    bench.call(true);
    assert_eq!(bench.ua.active_calls(), 0);

    // Pre-fill to the steady state: 64·T1 of calls at CALL_SPACING.
    let linger = Duration::from_millis(64 * 500);
    let prefill = (linger.as_micros() / CALL_SPACING.as_micros()) as u64 + 100;
    let prefill = if is_test_mode() { 10 } else { prefill };
    for _ in 0..prefill {
        bench.call(false);
    }
    let open = bench.ua.open_transactions();

    let mut g = c.benchmark_group("server_invite_transaction");
    g.throughput(Throughput::Elements(1));
    g.sample_size(30);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(4));
    for (name, time_decode) in [("core", false), ("decode+core", true)] {
        g.bench_function(BenchmarkId::new(name, "udp"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += bench.call(time_decode);
                }
                total
            })
        });
    }
    g.finish();

    // The table neither drained nor grew: the samples ran against the steady state.
    assert_eq!(bench.ua.active_calls(), 0);
    let after = bench.ua.open_transactions();
    if !is_test_mode() {
        assert!(
            after <= open + open / 10 + 10,
            "open transactions grew from {open} to {after}"
        );
    }
}

/// `cargo bench -- --test` runs each benchmark once; skip the long pre-fill then.
fn is_test_mode() -> bool {
    std::env::args().any(|a| a == "--test")
}

criterion_group!(benches, bench_parse, bench_transaction);
criterion_main!(benches);
