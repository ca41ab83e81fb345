//! ITU-T G.711 µ-law (PCMU) and A-law (PCMA) companding.
//!
//! Every call leg carries G.711, so these conversions run for every sample of
//! every frame: 8,000 samples a second per direction per call. Everything here
//! is therefore a table lookup into tables built at compile time by `const fn`,
//! with no allocation, no data-dependent branches in the encoders, and
//! no way to panic whatever bytes or samples arrive.
//!
//! Conventions follow the classic Sun Microsystems `g711.c` reference:
//!
//! * Linear samples are 16-bit two's complement. µ-law clips magnitudes above
//!   32635 and quantises the magnitude, so `s` and `-s` give mirror codes;
//!   A-law quantises the 13 most significant bits, so negative input uses the
//!   one's complement magnitude (`!s`): -1..=-16 all encode to the code that
//!   decodes to -8, just as 0..=15 encode to the one that decodes to +8.
//! * Decoding returns the midpoint of each quantisation interval, so the
//!   error of a round trip is at most half a step.
//! * Encoding a decoded value gives back the same code for every code except
//!   µ-law 0x7F ("negative zero"), which re-encodes as 0xFF.

use crate::sip::sdp::Codec;

/// µ-law bias added to the magnitude before the segment search; it makes the
/// segment boundaries fall on powers of two.
const ULAW_BIAS: u16 = 0x84;
/// Largest magnitude µ-law can represent once the bias is added (0x7FFF - 0x84).
const ULAW_CLIP: u16 = 32635;

/// Decodes one µ-law code by the formula; used only to build [`ULAW_DECODE`].
const fn ulaw_decode_calc(code: u8) -> i16 {
    // µ-law codes are transmitted inverted, so undo that first.
    let u = !code;
    let mantissa = (u & 0x0F) as i32;
    let segment = ((u >> 4) & 0x07) as i32;
    let biased = ((mantissa << 3) + ULAW_BIAS as i32) << segment;
    let value = biased - ULAW_BIAS as i32;
    if u & 0x80 != 0 {
        -value as i16
    } else {
        value as i16
    }
}

/// Decodes one A-law code by the formula; used only to build [`ALAW_DECODE`].
const fn alaw_decode_calc(code: u8) -> i16 {
    // A-law inverts every even bit on the wire so that idle lines toggle.
    let a = code ^ 0x55;
    let mantissa = ((a & 0x0F) as i32) << 4;
    let segment = ((a >> 4) & 0x07) as i32;
    let magnitude = match segment {
        0 => mantissa + 8,
        1 => mantissa + 0x108,
        _ => (mantissa + 0x108) << (segment - 1),
    };
    if a & 0x80 != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

/// Segment/mantissa bits (before the sign mask) for a µ-law magnitude.
const fn ulaw_magnitude_code(magnitude: u16) -> u8 {
    let clipped = if magnitude > ULAW_CLIP {
        ULAW_CLIP
    } else {
        magnitude
    };
    let biased = clipped + ULAW_BIAS;
    // `biased` lies in 132..=32767: its top set bit is bit 7..=14, i.e. segment 0..=7.
    let segment = 8 - biased.leading_zeros();
    let mantissa = (biased >> (segment + 3)) & 0x0F;
    ((segment << 4) as u8) | mantissa as u8
}

/// Segment/mantissa bits (before the sign mask) for a 12-bit A-law magnitude
/// (the 16-bit magnitude shifted right by three).
const fn alaw_magnitude_code(m13: u16) -> u8 {
    // Segments 0 and 1 share the same step size, so both shift by one.
    let (segment, shift) = if m13 < 0x20 {
        (0, 1)
    } else {
        let s = 11 - m13.leading_zeros();
        (s, s)
    };
    ((segment << 4) as u8) | ((m13 >> shift) & 0x0F) as u8
}

/// Encodes one sample to µ-law by the formula; used to build the transcoding tables.
const fn ulaw_encode_calc(s: i16) -> u8 {
    let mask = if s < 0 { 0x7F } else { 0xFF };
    ulaw_magnitude_code(s.unsigned_abs()) ^ mask
}

/// Encodes one sample to A-law by the formula; used to build the transcoding tables.
const fn alaw_encode_calc(s: i16) -> u8 {
    if s < 0 {
        alaw_magnitude_code((!s as u16) >> 3) ^ 0x55
    } else {
        alaw_magnitude_code((s as u16) >> 3) ^ 0xD5
    }
}

const fn build_ulaw_decode() -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = ulaw_decode_calc(i as u8);
        i += 1;
    }
    t
}

const fn build_alaw_decode() -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = alaw_decode_calc(i as u8);
        i += 1;
    }
    t
}

/// Number of entries in [`ULAW_ENCODE`]: one per 4 units of magnitude.
const ULAW_ENCODE_LEN: usize = 1 << 13;
/// Number of entries in [`ALAW_ENCODE`]: one per 8 units of magnitude.
const ALAW_ENCODE_LEN: usize = 1 << 12;

const fn build_ulaw_encode() -> [u8; ULAW_ENCODE_LEN] {
    // The finest µ-law step is 8 and the bias is a multiple of 4, so every
    // magnitude sharing `m >> 2` has the same code: index by that.
    let mut t = [0u8; ULAW_ENCODE_LEN];
    let mut i = 0;
    while i < ULAW_ENCODE_LEN {
        t[i] = ulaw_magnitude_code((i as u16) << 2);
        i += 1;
    }
    t
}

const fn build_alaw_encode() -> [u8; ALAW_ENCODE_LEN] {
    let mut t = [0u8; ALAW_ENCODE_LEN];
    let mut i = 0;
    while i < ALAW_ENCODE_LEN {
        t[i] = alaw_magnitude_code(i as u16);
        i += 1;
    }
    t
}

const fn build_ulaw_to_alaw() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = alaw_encode_calc(ulaw_decode_calc(i as u8));
        i += 1;
    }
    t
}

const fn build_alaw_to_ulaw() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = ulaw_encode_calc(alaw_decode_calc(i as u8));
        i += 1;
    }
    t
}

// The tables are `static` rather than `const` so each exists once in the
// binary instead of being re-materialised at every use; their contents are
// still computed entirely at compile time.

/// µ-law code → linear sample.
static ULAW_DECODE: [i16; 256] = build_ulaw_decode();
/// A-law code → linear sample.
static ALAW_DECODE: [i16; 256] = build_alaw_decode();
/// `|sample| >> 2` → µ-law segment/mantissa bits (sign applied by the caller).
static ULAW_ENCODE: [u8; ULAW_ENCODE_LEN] = build_ulaw_encode();
/// `magnitude >> 3` → A-law segment/mantissa bits (sign applied by the caller).
static ALAW_ENCODE: [u8; ALAW_ENCODE_LEN] = build_alaw_encode();
/// µ-law code → A-law code (decode, then re-encode), for bridging PCMU and PCMA
/// legs without going through linear buffers. This is the plain
/// decode/re-encode mapping, not the ITU's dedicated conversion tables.
static ULAW_TO_ALAW: [u8; 256] = build_ulaw_to_alaw();
/// A-law code → µ-law code (decode, then re-encode).
static ALAW_TO_ULAW: [u8; 256] = build_alaw_to_ulaw();

/// Decodes one µ-law (PCMU) byte to a linear 16-bit sample.
#[inline]
pub fn ulaw_to_linear(u: u8) -> i16 {
    ULAW_DECODE[usize::from(u)]
}

/// Decodes one A-law (PCMA) byte to a linear 16-bit sample.
#[inline]
pub fn alaw_to_linear(a: u8) -> i16 {
    ALAW_DECODE[usize::from(a)]
}

/// Encodes one linear 16-bit sample as µ-law (PCMU).
#[inline]
pub fn linear_to_ulaw(s: i16) -> u8 {
    // 32768 (from -32768) clips to the same code as 32767, so capping there
    // keeps the index inside the table; the `&` is then a no-op that lets the
    // compiler drop the bounds check.
    let magnitude = s.unsigned_abs().min(0x7FFF);
    let index = usize::from(magnitude >> 2) & (ULAW_ENCODE_LEN - 1);
    // Positive samples carry the sign bit once the code is inverted:
    // 0xFF for s >= 0, 0x7F for s < 0, computed without a branch.
    let mask = 0xFF ^ ((s >> 15) as u8 & 0x80);
    ULAW_ENCODE[index] ^ mask
}

/// Encodes one linear 16-bit sample as A-law (PCMA).
#[inline]
pub fn linear_to_alaw(s: i16) -> u8 {
    // One's complement magnitude: `!s` for negatives maps -1 to 0 and -32768
    // to 32767. It is at most 0x7FFF, so the `&` below is a no-op that lets
    // the compiler drop the bounds check.
    let sign = s >> 15;
    let magnitude = (s ^ sign).cast_unsigned();
    let index = usize::from(magnitude >> 3) & (ALAW_ENCODE_LEN - 1);
    // 0xD5 for s >= 0, 0x55 for s < 0, computed without a branch.
    let mask = 0xD5 ^ (sign as u8 & 0x80);
    ALAW_ENCODE[index] ^ mask
}

/// Decodes a G.711 payload into linear samples.
///
/// Writes `min(payload.len(), out.len())` samples and returns that count, so a
/// short output buffer truncates rather than panicking.
pub fn decode(codec: Codec, payload: &[u8], out: &mut [i16]) -> usize {
    let table = match codec {
        Codec::Pcmu => &ULAW_DECODE,
        Codec::Pcma => &ALAW_DECODE,
    };
    let n = payload.len().min(out.len());
    for (dst, &src) in out[..n].iter_mut().zip(&payload[..n]) {
        *dst = table[usize::from(src)];
    }
    n
}

/// Encodes linear samples into a G.711 payload.
///
/// Writes `min(pcm.len(), out.len())` bytes and returns that count.
pub fn encode(codec: Codec, pcm: &[i16], out: &mut [u8]) -> usize {
    let n = pcm.len().min(out.len());
    let (src, dst) = (&pcm[..n], &mut out[..n]);
    // The match sits outside the loop so each loop is a tight, inlinable lookup.
    match codec {
        Codec::Pcmu => {
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = linear_to_ulaw(s);
            }
        }
        Codec::Pcma => {
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = linear_to_alaw(s);
            }
        }
    }
    n
}

/// Converts a G.711 payload from one law to the other in a single lookup per
/// byte (used when bridging a PCMU leg to a PCMA leg).
///
/// Writes `min(input.len(), out.len())` bytes and returns that count; when
/// `from == to` the bytes are copied unchanged.
pub fn transcode(from: Codec, to: Codec, input: &[u8], out: &mut [u8]) -> usize {
    let n = input.len().min(out.len());
    let (src, dst) = (&input[..n], &mut out[..n]);
    let table = match (from, to) {
        (Codec::Pcmu, Codec::Pcma) => &ULAW_TO_ALAW,
        (Codec::Pcma, Codec::Pcmu) => &ALAW_TO_ULAW,
        (Codec::Pcmu, Codec::Pcmu) | (Codec::Pcma, Codec::Pcma) => {
            dst.copy_from_slice(src);
            return n;
        }
    };
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = table[usize::from(s)];
    }
    n
}

/// The code for digital silence in `codec`, for filling frames when there is
/// nothing to play (comfort gaps, muted legs).
///
/// µ-law 0xFF decodes to 0; A-law has no zero code, and 0xD5 decodes to +8,
/// the smallest positive level.
pub fn silence(codec: Codec) -> u8 {
    match codec {
        Codec::Pcmu => 0xFF,
        Codec::Pcma => 0xD5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Slow reference µ-law encoder in the style of the original Sun code: a
    /// linear search over segment end points, computed on the 16-bit magnitude.
    fn reference_ulaw(s: i16) -> u8 {
        const SEG_END: [i32; 8] = [0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF, 0x3FFF, 0x7FFF];
        let (magnitude, mask) = if s < 0 {
            (-i32::from(s), 0x7F)
        } else {
            (i32::from(s), 0xFF)
        };
        let biased = magnitude.min(32635) + 0x84;
        let mut seg = 0;
        while biased > SEG_END[seg] {
            seg += 1;
        }
        let code = ((seg as i32) << 4) | ((biased >> (seg + 3)) & 0x0F);
        (code as u8) ^ mask
    }

    /// Slow reference A-law encoder, same style (no bias; negative values use
    /// the one's complement magnitude `-s - 1`).
    fn reference_alaw(s: i16) -> u8 {
        const SEG_END: [i32; 8] = [0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF, 0x3FFF, 0x7FFF];
        let (magnitude, mask) = if s >= 0 {
            (i32::from(s), 0xD5)
        } else {
            (-i32::from(s) - 1, 0x55)
        };
        let mut seg = 0;
        while magnitude > SEG_END[seg] {
            seg += 1;
        }
        let mantissa = if seg < 2 {
            (magnitude >> 4) & 0x0F
        } else {
            (magnitude >> (seg + 3)) & 0x0F
        };
        (((seg as i32) << 4) | mantissa) as u8 ^ mask
    }

    #[test]
    fn ulaw_decode_reference_values() {
        assert_eq!(ulaw_to_linear(0xFF), 0);
        assert_eq!(ulaw_to_linear(0x7F), 0);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        // Smallest non-zero steps: mantissa 1 in segment 0 is ((1 << 3) + 132) - 132 = 8.
        assert_eq!(ulaw_to_linear(0xFE), 8);
        assert_eq!(ulaw_to_linear(0x7E), -8);
        // Top of segment 0 / bottom of segment 1: (15*8 + 132) - 132 = 120 and
        // ((0 + 132) << 1) - 132 = 132.
        assert_eq!(ulaw_to_linear(0xF0), 120);
        assert_eq!(ulaw_to_linear(0xEF), 132);
    }

    #[test]
    fn alaw_decode_reference_values() {
        assert_eq!(alaw_to_linear(0xD5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0x2A), -32256);
        assert_eq!(alaw_to_linear(0xAA), 32256);
        // 0xD4 ^ 0x55 = 0x81: mantissa 1, segment 0 → 16 + 8 = 24.
        assert_eq!(alaw_to_linear(0xD4), 24);
        // 0xC5 ^ 0x55 = 0x90: segment 1, mantissa 0 → 0x108 = 264.
        assert_eq!(alaw_to_linear(0xC5), 264);
    }

    #[test]
    fn encode_reference_values() {
        assert_eq!(linear_to_ulaw(0), 0xFF);
        assert_eq!(linear_to_alaw(0), 0xD5);
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
        assert_eq!(linear_to_alaw(i16::MAX), 0xAA);
        assert_eq!(linear_to_alaw(i16::MIN), 0x2A);
        // A-law: the first interval is 16 wide; -1..=-16 (one's complement
        // magnitude 0..=15) share the code that decodes to -8.
        assert_eq!(linear_to_alaw(15), 0xD5);
        assert_eq!(linear_to_alaw(16), 0xD4);
        assert_eq!(linear_to_alaw(-1), 0x55);
        assert_eq!(linear_to_alaw(-16), 0x55);
        assert_eq!(linear_to_alaw(-17), 0x54);
        // µ-law: biased 132..=135 is the zero interval (|s| <= 3), then 8-wide
        // intervals; the mapping is sign-symmetric.
        assert_eq!(linear_to_ulaw(3), 0xFF);
        assert_eq!(linear_to_ulaw(-3), 0x7F);
        assert_eq!(linear_to_ulaw(4), 0xFE);
        assert_eq!(linear_to_ulaw(-4), 0x7E);
        assert_eq!(linear_to_ulaw(11), 0xFE);
        assert_eq!(linear_to_ulaw(12), 0xFD);
    }

    #[test]
    fn silence_codes_decode_to_near_zero() {
        assert_eq!(silence(Codec::Pcmu), 0xFF);
        assert_eq!(silence(Codec::Pcma), 0xD5);
        assert_eq!(ulaw_to_linear(silence(Codec::Pcmu)), 0);
        assert_eq!(alaw_to_linear(silence(Codec::Pcma)), 8);
    }

    #[test]
    fn every_code_round_trips() {
        for c in 0..=255u8 {
            let expected_u = if c == 0x7F { 0xFF } else { c };
            assert_eq!(
                linear_to_ulaw(ulaw_to_linear(c)),
                expected_u,
                "ulaw {c:#04x}"
            );
            assert_eq!(linear_to_alaw(alaw_to_linear(c)), c, "alaw {c:#04x}");
        }
    }

    #[test]
    fn decode_tables_are_symmetric_and_monotonic() {
        for k in 0..=127u8 {
            // Flipping the sign bit negates the value.
            assert_eq!(ulaw_to_linear(k), -ulaw_to_linear(k | 0x80));
            assert_eq!(alaw_to_linear(k), -alaw_to_linear(k | 0x80));
        }
        for k in 0..127u8 {
            // µ-law: inverted magnitude, so larger positive codes are quieter.
            let pos = |m: u8| ulaw_to_linear(0xFF - m);
            assert!(pos(k) < pos(k + 1), "ulaw magnitude {k}");
            // A-law: magnitude index is (code ^ 0x55) & 0x7F, sign bit set = positive.
            let apos = |m: u8| alaw_to_linear((m | 0x80) ^ 0x55);
            assert!(apos(k) < apos(k + 1), "alaw magnitude {k}");
        }
    }

    #[test]
    fn encoders_match_reference_for_every_sample() {
        for s in i16::MIN..=i16::MAX {
            assert_eq!(linear_to_ulaw(s), reference_ulaw(s), "ulaw {s}");
            assert_eq!(linear_to_alaw(s), reference_alaw(s), "alaw {s}");
        }
    }

    #[test]
    fn quantisation_error_is_at_most_half_a_step() {
        for s in i16::MIN..=i16::MAX {
            let abs = i32::from(s).abs();
            let u_err = (i32::from(ulaw_to_linear(linear_to_ulaw(s))) - i32::from(s)).abs();
            // µ-law step is (|s| + 132) / 16 at worst, so half a step is (|s| + 132) / 32.
            assert!(32 * u_err <= abs + 132, "ulaw {s}: error {u_err}");
            let a_err = (i32::from(alaw_to_linear(linear_to_alaw(s))) - i32::from(s)).abs();
            // A-law: step 16 in the two lowest segments, |s| / 16 above; +1 for
            // the one's complement of negatives.
            assert!(a_err <= (abs / 32 + 1).max(8), "alaw {s}: error {a_err}");
        }
    }

    #[test]
    fn slice_functions_write_min_len() {
        let pcm = [0i16, 1000, -1000, 32767];
        let mut enc = [0u8; 3];
        assert_eq!(encode(Codec::Pcmu, &pcm, &mut enc), 3);
        assert_eq!(
            enc,
            [
                linear_to_ulaw(0),
                linear_to_ulaw(1000),
                linear_to_ulaw(-1000)
            ]
        );
        let mut dec = [0i16; 8];
        assert_eq!(decode(Codec::Pcmu, &enc, &mut dec), 3);
        assert_eq!(&dec[..3], &[0, 988, -988]);
        assert_eq!(dec[3], 0);

        let mut a = [0u8; 4];
        assert_eq!(encode(Codec::Pcma, &pcm, &mut a), 4);
        assert_eq!(a, [0xD5, linear_to_alaw(1000), linear_to_alaw(-1000), 0xAA]);
        let mut short = [0i16; 2];
        assert_eq!(decode(Codec::Pcma, &a, &mut short), 2);
        assert_eq!(short, [8, 1008]);

        assert_eq!(decode(Codec::Pcmu, &[], &mut dec), 0);
        assert_eq!(encode(Codec::Pcma, &pcm, &mut []), 0);
    }

    #[test]
    fn transcode_tables_match_decode_then_encode() {
        for c in 0..=255u8 {
            assert_eq!(
                ULAW_TO_ALAW[usize::from(c)],
                linear_to_alaw(ulaw_to_linear(c))
            );
            assert_eq!(
                ALAW_TO_ULAW[usize::from(c)],
                linear_to_ulaw(alaw_to_linear(c))
            );
        }
        // Silence maps to (near) silence both ways.
        assert_eq!(ULAW_TO_ALAW[0xFF], 0xD5);
        assert_eq!(ALAW_TO_ULAW[0xD5], 0xFE);
    }

    #[test]
    fn transcode_same_codec_copies() {
        let input: Vec<u8> = (0..=255).collect();
        let mut out = [0u8; 300];
        assert_eq!(transcode(Codec::Pcma, Codec::Pcma, &input, &mut out), 256);
        assert_eq!(&out[..256], &input[..]);
        assert_eq!(
            transcode(Codec::Pcmu, Codec::Pcmu, &input, &mut out[..10]),
            10
        );
    }

    #[test]
    fn transcoding_a_sine_ulaw_alaw_ulaw_stays_close() {
        // One 20 ms frame of a 1 kHz tone at about -10 dBFS.
        let pcm: Vec<i16> = (0..160)
            .map(|n| {
                let phase = 2.0 * std::f64::consts::PI * 1000.0 * f64::from(n) / 8000.0;
                (10_000.0 * phase.sin()).round() as i16
            })
            .collect();
        let mut ulaw = [0u8; 160];
        let mut alaw = [0u8; 160];
        let mut back = [0u8; 160];
        encode(Codec::Pcmu, &pcm, &mut ulaw);
        assert_eq!(transcode(Codec::Pcmu, Codec::Pcma, &ulaw, &mut alaw), 160);
        assert_eq!(transcode(Codec::Pcma, Codec::Pcmu, &alaw, &mut back), 160);

        let mut direct = [0i16; 160];
        let mut via_alaw = [0i16; 160];
        decode(Codec::Pcmu, &ulaw, &mut direct);
        decode(Codec::Pcmu, &back, &mut via_alaw);
        for (i, (&d, &v)) in direct.iter().zip(&via_alaw).enumerate() {
            let err = (i32::from(d) - i32::from(v)).abs();
            // Two extra quantisations, each at most half a step (~|x| / 32).
            assert!(
                err <= i32::from(d).abs() / 16 + 16,
                "sample {i}: {d} vs {v}"
            );
            // The sign survives, except at zero where A-law has no zero code.
            if d.abs() > 16 {
                assert_eq!(d.signum(), v.signum(), "sample {i}");
            }
        }
        // The codes themselves differ by at most one quantisation step.
        for (&a, &b) in ulaw.iter().zip(&back) {
            assert!(
                (i32::from(a) - i32::from(b)).abs() <= 1,
                "{a:#04x} vs {b:#04x}"
            );
        }
    }
}
