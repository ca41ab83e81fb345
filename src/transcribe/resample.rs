//! Telephone audio to whisper's input: 8 kHz 16-bit PCM (decoded G.711) to 16 kHz f32.
//!
//! Whisper's mel front end expects 16 kHz. Doubling each sample would mirror the 0–4 kHz
//! band into 4–8 kHz (imaging), which whisper hears as hiss; rubato's FFT resampler
//! interpolates with a proper anti-imaging filter instead.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

/// Whisper's sample rate.
pub const WHISPER_RATE: u32 = 16_000;

#[derive(Debug, thiserror::Error)]
pub enum ResampleError {
    #[error("unsupported sample rate {0} Hz")]
    Rate(u32),
    #[error("resampler: {0}")]
    Resampler(String),
}

/// Converts mono 16-bit samples at `rate` to mono f32 at 16 kHz, scaled to [-1, 1].
pub fn to_whisper(samples: &[i16], rate: u32) -> Result<Vec<f32>, ResampleError> {
    if rate == 0 || rate > 192_000 {
        return Err(ResampleError::Rate(rate));
    }
    let input: Vec<f32> = samples.iter().map(|&s| f32::from(s) / 32768.0).collect();
    if rate == WHISPER_RATE || input.is_empty() {
        return Ok(input);
    }
    let mut resampler = Fft::<f32>::new(
        rate as usize,
        WHISPER_RATE as usize,
        1024,
        1,
        FixedSync::Input,
    )
    .map_err(|e| ResampleError::Resampler(e.to_string()))?;
    let adapter = InterleavedSlice::new(&input[..], 1, input.len())
        .map_err(|e| ResampleError::Resampler(e.to_string()))?;
    let out = resampler
        .process_all(&adapter, input.len(), None)
        .map_err(|e| ResampleError::Resampler(e.to_string()))?;
    Ok(out.take_data())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f32::consts::PI;

    fn tone(freq: f32, rate: u32, seconds: f32) -> Vec<i16> {
        let n = (rate as f32 * seconds) as usize;
        (0..n)
            .map(|i| ((2.0 * PI * freq * i as f32 / rate as f32).sin() * 16000.0) as i16)
            .collect()
    }

    /// Power of `x` at `freq` (Goertzel), normalised by length.
    fn power_at(x: &[f32], freq: f32, rate: u32) -> f32 {
        let w = 2.0 * PI * freq / rate as f32;
        let (mut s1, mut s2) = (0.0f32, 0.0f32);
        for &v in x {
            let s = v + 2.0 * w.cos() * s1 - s2;
            s2 = s1;
            s1 = s;
        }
        (s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2) / (x.len() as f32).powi(2)
    }

    #[test]
    fn doubles_the_length_and_keeps_the_tone() {
        let input = tone(1000.0, 8000, 1.0);
        let out = to_whisper(&input, 8000).unwrap();
        assert!(
            (out.len() as i64 - 16_000).abs() <= 2,
            "{} samples for one second",
            out.len()
        );
        // Same amplitude (16000/32768 ≈ 0.49) in the middle of the clip.
        let peak = out[4000..12000].iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!((peak - 0.488).abs() < 0.02, "peak {peak}");
        // The 1 kHz tone is there; its 7 kHz image (what sample doubling makes) is not.
        let tone_p = power_at(&out[2000..14000], 1000.0, 16_000);
        let image_p = power_at(&out[2000..14000], 7000.0, 16_000);
        assert!(tone_p > 1000.0 * image_p, "tone {tone_p}, image {image_p}");
    }

    #[test]
    fn sample_doubling_would_fail_the_image_check() {
        // The check above is meaningful: naive doubling leaves a strong image.
        let input = tone(1000.0, 8000, 1.0);
        let doubled: Vec<f32> = input
            .iter()
            .flat_map(|&s| [f32::from(s) / 32768.0; 2])
            .collect();
        let tone_p = power_at(&doubled[2000..14000], 1000.0, 16_000);
        let image_p = power_at(&doubled[2000..14000], 7000.0, 16_000);
        assert!(tone_p < 1000.0 * image_p);
    }

    #[test]
    fn sixteen_khz_passes_through_and_bad_rates_are_errors() {
        let input = tone(440.0, 16_000, 0.1);
        assert_eq!(to_whisper(&input, 16_000).unwrap().len(), input.len());
        assert!(matches!(to_whisper(&input, 0), Err(ResampleError::Rate(0))));
        assert!(to_whisper(&[], 8000).unwrap().is_empty());
    }
}
