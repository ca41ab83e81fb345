//! Throughput of the G.711 hot paths on one 20 ms frame (160 samples at 8 kHz),
//! the unit every call leg processes 50 times a second per direction.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use hotline::media::g711;
use hotline::sip::sdp::Codec;

/// Samples in one 20 ms frame at 8 kHz.
const FRAME: usize = 160;

/// A speech-like test frame: a 440 Hz tone plus a quieter 1.3 kHz one, so the
/// samples span several companding segments rather than sitting in one.
fn test_frame() -> [i16; FRAME] {
    let mut pcm = [0i16; FRAME];
    for (n, s) in pcm.iter_mut().enumerate() {
        let t = n as f64 / 8000.0;
        let v = 12_000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()
            + 3_000.0 * (2.0 * std::f64::consts::PI * 1300.0 * t).sin();
        *s = v as i16;
    }
    pcm
}

fn bench_g711(c: &mut Criterion) {
    let pcm = test_frame();
    let mut ulaw = [0u8; FRAME];
    let mut alaw = [0u8; FRAME];
    g711::encode(Codec::Pcmu, &pcm, &mut ulaw);
    g711::encode(Codec::Pcma, &pcm, &mut alaw);
    let mut bytes = [0u8; FRAME];
    let mut samples = [0i16; FRAME];

    let mut group = c.benchmark_group("g711");
    group.bench_function("encode_ulaw_160", |b| {
        b.iter(|| g711::encode(Codec::Pcmu, black_box(&pcm), black_box(&mut bytes)))
    });
    group.bench_function("decode_ulaw_160", |b| {
        b.iter(|| g711::decode(Codec::Pcmu, black_box(&ulaw), black_box(&mut samples)))
    });
    group.bench_function("encode_alaw_160", |b| {
        b.iter(|| g711::encode(Codec::Pcma, black_box(&pcm), black_box(&mut bytes)))
    });
    group.bench_function("decode_alaw_160", |b| {
        b.iter(|| g711::decode(Codec::Pcma, black_box(&alaw), black_box(&mut samples)))
    });
    group.bench_function("transcode_ulaw_alaw_160", |b| {
        b.iter(|| {
            g711::transcode(
                Codec::Pcmu,
                Codec::Pcma,
                black_box(&ulaw),
                black_box(&mut bytes),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, bench_g711);
criterion_main!(benches);
