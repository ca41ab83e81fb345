//! The per-packet media path allocates nothing: a counting global allocator watches 1,500
//! packets (30 s of a call, both directions) go through classification, recording and the
//! relay with transcoding, including lost packets, DTMF and the recorder's flushes.

use hotline::media::bridge;
use hotline::media::leg::{Inbound, LegState};
use hotline::media::recorder::{Channel, Recorder};
use hotline::sip::sdp::{Codec, Direction, Negotiated};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn media(pt: u8, codec: Codec, remote: &str) -> Negotiated {
    Negotiated {
        codecs: vec![(pt, codec)],
        telephone_event: Some(101),
        remote_rtp: Some(remote.parse().unwrap()),
        direction: Direction::SendRecv,
        ptime: Some(20),
        srtp: None,
    }
}

fn datagram(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8], out: &mut [u8; 256]) -> usize {
    out[0] = 0x80;
    out[1] = pt;
    out[2..4].copy_from_slice(&seq.to_be_bytes());
    out[4..8].copy_from_slice(&ts.to_be_bytes());
    out[8..12].copy_from_slice(&ssrc.to_be_bytes());
    out[12..12 + payload.len()].copy_from_slice(payload);
    12 + payload.len()
}

#[test]
fn relay_and_recording_do_not_allocate_per_packet() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let caller_addr = "127.0.0.1:40000".parse().unwrap();
    let operator_addr = "127.0.0.1:40002".parse().unwrap();
    let mut caller = LegState::new(&media(0, Codec::Pcmu, "127.0.0.1:40000"), t0);
    let mut operator = LegState::new(&media(8, Codec::Pcma, "127.0.0.1:40002"), t0);
    let mut recorder = Recorder::create(&dir.path().join("call.wav"), t0).unwrap();
    let (mut pcm, mut out, mut wire) = ([0i16; 2048], [0u8; 2048], [0u8; 256]);
    let voice: Vec<u8> = (0..160u32).map(|i| (i * 7) as u8).collect();
    let mut digits = 0;

    let mut relayed = 0;
    let mut step = |k: u32, counting: bool| {
        COUNTING.store(counting, Ordering::SeqCst);
        let now = t0 + Duration::from_millis(20 * u64::from(k));
        // Caller → operator, with every 97th packet lost and a key press now and then.
        if !k.is_multiple_of(97) {
            let n = if k % 250 == 5 {
                let event = [5u8, 0x0A, 0, 160];
                datagram(101, k as u16, k * 160, 1, &event, &mut wire)
            } else {
                datagram(0, k as u16, k * 160, 1, &voice, &mut wire)
            };
            match caller.receive(&wire[..n], caller_addr, now) {
                Inbound::Audio(audio) => {
                    let len = bridge::forward(
                        &audio,
                        Channel::Caller,
                        Some(&mut recorder),
                        Some(&mut operator),
                        &mut pcm,
                        &mut out,
                    );
                    relayed += usize::from(len.is_some());
                }
                Inbound::Digit(_) => digits += 1,
                Inbound::Ignored => {}
            }
        }
        // Operator → caller, A-law transcoded to µ-law.
        let n = datagram(8, k as u16, k * 160, 2, &voice, &mut wire);
        if let Inbound::Audio(audio) = operator.receive(&wire[..n], operator_addr, now) {
            bridge::forward(
                &audio,
                Channel::Other,
                Some(&mut recorder),
                Some(&mut caller),
                &mut pcm,
                &mut out,
            );
        }
        if k.is_multiple_of(10) {
            recorder.tick(now).unwrap();
        }
        COUNTING.store(false, Ordering::SeqCst);
    };
    // Warm up (first packets latch, the recorder's buffers reach their working size).
    for k in 1..=100 {
        step(k, false);
    }
    for k in 101..=1600 {
        step(k, true);
    }
    let allocations = ALLOCATIONS.load(Ordering::SeqCst);
    assert!(relayed > 1400, "{relayed} packets relayed");
    assert!(digits >= 6, "{digits} digits");
    assert_eq!(allocations, 0, "allocations on the per-packet path");
    let summary = recorder.finish().unwrap();
    assert!(summary.duration >= Duration::from_secs(31), "{summary:?}");
}
