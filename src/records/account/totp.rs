//! The second factor: TOTP (RFC 6238: HMAC-SHA1, 30-second steps, 6 digits, which every
//! authenticator app reads from an `otpauth://` URI), and one-time recovery codes.
//!
//! A code is accepted for the step before, the step of, and the step after now (a phone's
//! clock may be off by half a minute), and only for a step later than the last one the user
//! spent: a code seen by someone at the operator's shoulder cannot be used again.

use data_encoding::BASE32_NOPAD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// Seconds per step.
pub const STEP: i64 = 30;
const DIGITS: u32 = 6;
/// Recovery codes made at enrolment.
pub const RECOVERY_CODES: usize = 10;

/// A fresh 160-bit secret (RFC 4226's recommended length), as raw bytes.
pub fn new_secret() -> Vec<u8> {
    let mut s = vec![0u8; 20];
    rand::rng().fill_bytes(&mut s);
    s
}

/// The secret as an authenticator app takes it typed in: base32 without padding.
pub fn secret_text(secret: &[u8]) -> String {
    BASE32_NOPAD.encode(secret)
}

/// The step that `unix_seconds` falls in.
pub fn step_of(unix_seconds: i64) -> i64 {
    unix_seconds.div_euclid(STEP)
}

/// The code for a step (RFC 4226 §5.3 dynamic truncation).
pub fn code_at(secret: &[u8], step: i64) -> u32 {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(&step.to_be_bytes());
    let h = mac.finalize().into_bytes();
    let offset = usize::from(h[h.len() - 1] & 0x0f);
    let bin = u32::from_be_bytes([
        h[offset] & 0x7f,
        h[offset + 1],
        h[offset + 2],
        h[offset + 3],
    ]);
    bin % 10u32.pow(DIGITS)
}

/// The step whose code `code` is, near `now` (one step either side), if it is later than
/// `last_used`. The caller stores the returned step as the new `last_used`.
pub fn verify(secret: &[u8], code: &str, unix_seconds: i64, last_used: Option<i64>) -> Option<i64> {
    let code = code.trim();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let want: u32 = code.parse().ok()?;
    let now = step_of(unix_seconds);
    (now - 1..=now + 1)
        .filter(|s| last_used.is_none_or(|l| *s > l))
        .find(|s| code_at(secret, *s) == want)
}

/// The `otpauth://` URI an authenticator app enrols from (as a QR code or a link).
pub fn uri(secret: &[u8], issuer: &str, login: &str) -> String {
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP}",
        percent(issuer),
        percent(login),
        secret_text(secret),
        percent(issuer)
    )
}

/// RFC 3986 percent-encoding of everything but the unreserved characters.
fn percent(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Fresh recovery codes, as the user is shown them once: `XXXX-XXXX` (40 random bits each;
/// guessing is bounded by the login lock-out).
pub fn new_recovery_codes() -> Vec<String> {
    (0..RECOVERY_CODES)
        .map(|_| {
            let mut raw = [0u8; 5];
            rand::rng().fill_bytes(&mut raw);
            let t = BASE32_NOPAD.encode(&raw);
            format!("{}-{}", &t[..4], &t[4..])
        })
        .collect()
}

/// What is stored of a recovery code: the SHA-256 of its letters, upper-cased, without the
/// dash or spaces (so that «abcd-efgh» typed by hand matches).
pub fn recovery_hash(code: &str) -> String {
    let norm: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    hex::encode(Sha256::digest(norm.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_SECRET: &[u8] = b"12345678901234567890";

    #[test]
    fn rfc_6238_test_vectors_sha1_in_six_digits() {
        // Appendix B, SHA1 column, last six of the eight digits.
        for (t, code) in [
            (59, 287_082),
            (1_111_111_109, 81_804),
            (1_111_111_111, 50_471),
            (1_234_567_890, 5_924),
            (2_000_000_000, 279_037),
        ] {
            assert_eq!(code_at(RFC_SECRET, step_of(t)), code, "T = {t}");
        }
    }

    #[test]
    fn a_code_is_good_one_step_either_side_and_only_once() {
        let t = 1_234_567_890;
        let code = format!("{:06}", code_at(RFC_SECRET, step_of(t)));
        assert_eq!(code, "005924");
        let step = verify(RFC_SECRET, &code, t, None).unwrap();
        assert_eq!(step, step_of(t));
        assert_eq!(verify(RFC_SECRET, &code, t + STEP, None), Some(step));
        assert_eq!(verify(RFC_SECRET, &code, t - STEP, None), Some(step));
        assert_eq!(
            verify(RFC_SECRET, &code, t + 3 * STEP, None),
            None,
            "too late"
        );
        assert_eq!(verify(RFC_SECRET, &code, t, Some(step)), None, "replayed");
        for bad in ["", "12345", "1234567", "00592a", "999999"] {
            assert_eq!(verify(RFC_SECRET, bad, t, None), None, "{bad:?}");
        }
    }

    #[test]
    fn the_uri_names_the_issuer_and_login_encoded() {
        let u = uri(RFC_SECRET, "Банк Горячая линия", "m.ivanova");
        assert!(u.starts_with("otpauth://totp/%D0%91"), "{u}");
        assert!(
            u.contains(":m.ivanova?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&"),
            "{u}"
        );
        assert!(u.contains("&digits=6&period=30"), "{u}");
    }

    #[test]
    fn recovery_codes_are_random_and_typed_loosely() {
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), RECOVERY_CODES);
        assert_ne!(codes[0], codes[1]);
        assert_eq!(codes[0].len(), 9);
        let loose = codes[0].to_lowercase().replace('-', " ");
        assert_eq!(recovery_hash(&loose), recovery_hash(&codes[0]));
    }
}
