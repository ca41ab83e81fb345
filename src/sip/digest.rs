//! HTTP Digest authentication for SIP (RFC 3261 §22, RFC 7616, RFC 8760), server side.
//!
//! Sans-IO: nothing in here reads a clock or touches a socket. Every time-dependent call takes
//! `now: Instant` from the caller so that tests (and the event loop) decide what "now" is.
//!
//! Design choices, and why:
//! * **Stateless nonces.** A nonce is `hex(issued-at ms) + hex(8 random bytes) + hex(HMAC)`, so
//!   issuing a challenge costs no memory and an unauthenticated flood of REGISTERs cannot grow
//!   any table. The HMAC (keyed with a per-process random secret) makes nonces unforgeable.
//! * **State only after success.** The nonce-count table is written only once a response has
//!   verified, so only holders of valid credentials can fill it; it is bounded anyway.
//! * **Stale means "right password, old nonce"** (RFC 2617 §3.2.1): we only report
//!   [`DigestError::StaleNonce`] after the response hash checked out, so a guesser can never use
//!   "stale" to dodge the lock-out counter.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use md5::Md5;
use rand::rngs::StdRng;
use rand::Rng;
use sha2::{Digest as _, Sha256};

/// Upper bound of the (username, nonce) -> highest-nc table.
pub const DEFAULT_NONCE_TABLE_CAPACITY: usize = 10_000;

/// Digest hash algorithms we implement. The `-sess` variants are recognised but rejected: they
/// need per-session HA1 state and no phone we support requires them.
///
/// Also the configuration's `sip.auth_algorithms` entries (`"SHA-256"`, `"MD5"`), which is
/// why it deserialises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Deserialize)]
pub enum Algorithm {
    #[serde(rename = "SHA-256")]
    Sha256,
    #[serde(rename = "MD5")]
    Md5,
}

impl Algorithm {
    /// The token used in `algorithm=` parameters.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// Parse an `algorithm=` token, case-insensitively (RFC 7616 §3.3). `MD5-sess`,
    /// `SHA-256-sess`, `SHA-512-256` and unknown tokens are `UnsupportedAlgorithm`.
    pub fn from_token(token: &str) -> Result<Self, DigestError> {
        if token.eq_ignore_ascii_case("MD5") {
            Ok(Algorithm::Md5)
        } else if token.eq_ignore_ascii_case("SHA-256") {
            Ok(Algorithm::Sha256)
        } else {
            Err(DigestError::UnsupportedAlgorithm(clip(token)))
        }
    }

    /// Lower-case hex digest of `data`, as RFC 7616 requires for every intermediate value.
    pub fn hex_digest(self, data: &[u8]) -> String {
        match self {
            Algorithm::Md5 => hex::encode(Md5::digest(data)),
            Algorithm::Sha256 => hex::encode(Sha256::digest(data)),
        }
    }
}

/// Why a credential was not accepted. The caller maps these onto SIP responses and the lock-out
/// counter via [`DigestError::is_stale`] and [`DigestError::is_credential_failure`]. Callers
/// should answer `UnknownUser` and `BadResponse` identically on the wire so that usernames
/// cannot be enumerated.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    #[error("malformed digest header: {0}")]
    Malformed(String),
    #[error("unsupported digest algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    #[error("unsupported qop {0:?}")]
    UnsupportedQop(String),
    #[error("qop=auth is required for this request")]
    QopRequired,
    #[error("realm does not match")]
    WrongRealm,
    #[error("unknown user")]
    UnknownUser,
    #[error("digest response does not match")]
    BadResponse,
    #[error("nonce is stale")]
    StaleNonce,
    #[error("nonce was not issued by this server")]
    InvalidNonce,
    #[error("nonce count replayed")]
    Replay,
}

impl DigestError {
    /// True only for [`DigestError::StaleNonce`]: the credentials were right, the caller should
    /// re-challenge with `stale=true` and must not count a failed attempt.
    pub fn is_stale(&self) -> bool {
        matches!(self, DigestError::StaleNonce)
    }

    /// Wrong password, unknown user, forged nonce or replay: evidence of guessing or an
    /// attack, so these count towards lock-out. Malformed/unsupported input does not, because it
    /// cannot help anyone guess a password and is usually a phone configuration problem.
    pub fn is_credential_failure(&self) -> bool {
        matches!(
            self,
            DigestError::UnknownUser
                | DigestError::BadResponse
                | DigestError::InvalidNonce
                | DigestError::Replay
        )
    }
}

/// A successfully verified Authorization header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub username: String,
    pub algorithm: Algorithm,
    /// The `uri` parameter as sent; the caller may compare it with the Request-URI
    /// (RFC 3261 §22.4 leaves that check to the server's discretion).
    pub uri: String,
}

/// The `qop=auth` part of a response computation, values exactly as sent on the wire.
#[derive(Debug, Clone, Copy)]
pub struct QopAuth<'a> {
    pub qop: &'a str,
    pub nc: &'a str,
    pub cnonce: &'a str,
}

/// HA1 = H(username:realm:password) (RFC 7616 §3.4.2, non-session algorithms).
pub fn ha1(algorithm: Algorithm, username: &str, realm: &str, password: &str) -> String {
    algorithm.hex_digest(format!("{username}:{realm}:{password}").as_bytes())
}

/// The lower-case hex `response`: H(HA1:nonce:nc:cnonce:qop:HA2) with qop, or the RFC 2069
/// form H(HA1:nonce:HA2) when `qop` is `None`; HA2 = H(method:uri).
pub fn response(
    algorithm: Algorithm,
    ha1: &str,
    nonce: &str,
    method: &str,
    uri: &str,
    qop: Option<QopAuth<'_>>,
) -> String {
    let ha2 = algorithm.hex_digest(format!("{method}:{uri}").as_bytes());
    let data = match qop {
        Some(q) => format!("{ha1}:{nonce}:{}:{}:{}:{ha2}", q.nc, q.cnonce, q.qop),
        None => format!("{ha1}:{nonce}:{ha2}"),
    };
    algorithm.hex_digest(data.as_bytes())
}

struct NcEntry {
    issued_ms: u64,
    highest: u32,
}

/// Server-side digest verifier; one per realm/server.
pub struct DigestAuthenticator {
    secret: [u8; 32],
    /// Where the secret and the nonces' salts come from. Production seeds it from the
    /// operating system: a guessable secret or salt would let anyone forge or predict
    /// nonces.
    rng: StdRng,
    realm: String,
    algorithms: Vec<Algorithm>,
    lifetime_ms: u64,
    epoch: Instant,
    allow_rfc2069: bool,
    capacity: usize,
    /// Keyed by (username, nonce) so one user cannot burn another user's nonce counts.
    counts: HashMap<(String, String), NcEntry>,
    /// Issue time of the newest *unexpired* nonce evicted for space. A nonce issued at or before
    /// this that is not in the table might have been evicted, so its nc history is unknown and
    /// we answer "stale" instead of risking a replay.
    evicted_floor_ms: Option<u64>,
}

impl DigestAuthenticator {
    /// `algorithms` are offered in this order (most preferred first, RFC 8760 §2.4). The HMAC
    /// secret and every nonce's salt are drawn from `rng`, which must be seeded from a
    /// cryptographically secure source in production (`StdRng::from_os_rng`); a fixed seed
    /// makes challenges reproducible in tests.
    ///
    /// # Panics
    /// If `algorithms` is empty or `realm` contains control characters: both are configuration
    /// errors that should stop start-up rather than produce challenges nobody can answer.
    pub fn new(
        realm: &str,
        algorithms: Vec<Algorithm>,
        nonce_lifetime: Duration,
        epoch: Instant,
        mut rng: StdRng,
    ) -> Self {
        assert!(!algorithms.is_empty(), "at least one digest algorithm");
        assert!(!realm.chars().any(char::is_control), "realm without CTLs");
        DigestAuthenticator {
            secret: rng.random(),
            rng,
            realm: realm.to_owned(),
            algorithms,
            lifetime_ms: u64::try_from(nonce_lifetime.as_millis()).unwrap_or(u64::MAX),
            epoch,
            allow_rfc2069: true,
            capacity: DEFAULT_NONCE_TABLE_CAPACITY,
            counts: HashMap::new(),
            evicted_floor_ms: None,
        }
    }

    /// Accept (MD5-only) responses without qop, as some old phones send. Such responses carry
    /// no nonce count, so they can be replayed until the nonce expires; default: allowed.
    pub fn set_allow_rfc2069(&mut self, allow: bool) {
        self.allow_rfc2069 = allow;
    }

    /// Bound of the nonce-count table (minimum 1).
    pub fn set_nonce_table_capacity(&mut self, capacity: usize) {
        self.capacity = capacity.max(1);
    }

    /// WWW-Authenticate values, one per offered algorithm in preference order, sharing one
    /// fresh nonce.
    pub fn challenges(&mut self, now: Instant, stale: bool) -> Vec<String> {
        let salt = self.rng.random();
        let nonce = self.make_nonce(self.now_ms(now), salt);
        let realm = quote_lossy(&self.realm);
        let stale = if stale { ", stale=true" } else { "" };
        self.algorithms
            .iter()
            .map(|a| {
                format!(
                    r#"Digest realm="{realm}", nonce="{nonce}", algorithm={}, qop="auth"{stale}"#,
                    a.as_str()
                )
            })
            .collect()
    }

    /// Verify an Authorization / Proxy-Authorization value for a request with `method`.
    ///
    /// Must be called once per new request, not per retransmission (the transaction layer
    /// absorbs those), otherwise a retransmitted request would be reported as a replay.
    pub fn verify(
        &mut self,
        authorization: &str,
        method: &str,
        now: Instant,
        password: impl Fn(&str) -> Option<String>,
    ) -> Result<Verified, DigestError> {
        let params = parse_params(authorization)?;
        let get = |name: &str| unique_param(&params, name);
        let need = |name: &str| {
            get(name)?.ok_or_else(|| DigestError::Malformed(format!("missing {name}")))
        };
        let username = need("username")?;
        let realm = need("realm")?;
        let nonce = need("nonce")?;
        let uri = need("uri")?;
        let given_response = need("response")?;

        let algorithm = match get("algorithm")? {
            None => Algorithm::Md5,
            Some(token) => Algorithm::from_token(token)?,
        };
        if !self.algorithms.contains(&algorithm) {
            return Err(DigestError::UnsupportedAlgorithm(algorithm.as_str().into()));
        }
        if realm != self.realm {
            return Err(DigestError::WrongRealm);
        }

        let qop = match get("qop")? {
            Some(q) if q.eq_ignore_ascii_case("auth") => {
                let cnonce = need("cnonce")?;
                if cnonce.is_empty() {
                    return Err(DigestError::Malformed("empty cnonce".into()));
                }
                Some(QopAuth {
                    qop: q,
                    nc: need("nc")?,
                    cnonce,
                })
            }
            Some(q) => return Err(DigestError::UnsupportedQop(clip(q))),
            // RFC 2069 has no SHA-256 form; RFC 7616 makes qop mandatory.
            None if algorithm != Algorithm::Md5 || !self.allow_rfc2069 => {
                return Err(DigestError::QopRequired)
            }
            None => None,
        };
        let nc = qop.map(|q| parse_nc(q.nc)).transpose()?;

        // Nonce authenticity before the user lookup: forged nonces never reach the password
        // store, and cost nothing to reject.
        let issued_ms = self.check_nonce(nonce).ok_or(DigestError::InvalidNonce)?;
        let pw = password(username).ok_or(DigestError::UnknownUser)?;
        let ha1 = ha1(algorithm, username, realm, &pw);
        let expected = response(algorithm, &ha1, nonce, method, uri, qop);
        let given = given_response.to_ascii_lowercase();
        if !ct_eq(expected.as_bytes(), given.as_bytes()) {
            return Err(DigestError::BadResponse);
        }

        let now_ms = self.now_ms(now);
        if now_ms.saturating_sub(issued_ms) > self.lifetime_ms {
            return Err(DigestError::StaleNonce);
        }
        if let Some(nc) = nc {
            self.record_nc(username, nonce, issued_ms, nc, now_ms)?;
        }
        Ok(Verified {
            username: username.to_owned(),
            algorithm,
            uri: uri.to_owned(),
        })
    }

    fn now_ms(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    fn make_nonce(&self, issued_ms: u64, salt: [u8; 8]) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.secret)
            .expect("HMAC accepts keys of any length");
        mac.update(&issued_ms.to_be_bytes());
        mac.update(&salt);
        mac.update(self.realm.as_bytes());
        let tag = mac.finalize().into_bytes();
        let (salt, tag) = (hex::encode(salt), hex::encode(&tag[..16]));
        format!("{issued_ms:016x}{salt}{tag}")
    }

    /// Issue time of a genuine nonce, or `None`. Recomputing the whole string (rather than
    /// just the MAC) also pins the canonical lower-case spelling, so the nc table cannot be
    /// sidestepped by re-spelling a nonce.
    fn check_nonce(&self, nonce: &str) -> Option<u64> {
        let b = nonce.as_bytes();
        if b.len() != 64 || !b.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        let issued = u64::from_str_radix(&nonce[..16], 16).ok()?;
        let salt: [u8; 8] = hex::decode(&nonce[16..32]).ok()?.try_into().ok()?;
        ct_eq(self.make_nonce(issued, salt).as_bytes(), b).then_some(issued)
    }

    fn record_nc(
        &mut self,
        username: &str,
        nonce: &str,
        issued_ms: u64,
        nc: u32,
        now_ms: u64,
    ) -> Result<(), DigestError> {
        let key = (username.to_owned(), nonce.to_owned());
        if let Some(entry) = self.counts.get_mut(&key) {
            if nc <= entry.highest {
                return Err(DigestError::Replay);
            }
            entry.highest = nc;
            return Ok(());
        }
        if matches!(self.evicted_floor_ms, Some(floor) if issued_ms <= floor) {
            return Err(DigestError::StaleNonce);
        }
        if self.counts.len() >= self.capacity {
            let lifetime = self.lifetime_ms;
            self.counts
                .retain(|_, e| now_ms.saturating_sub(e.issued_ms) <= lifetime);
        }
        while self.counts.len() >= self.capacity {
            let oldest = self
                .counts
                .iter()
                .min_by_key(|(_, e)| e.issued_ms)
                .map(|(k, e)| (k.clone(), e.issued_ms));
            let Some((k, ms)) = oldest else { break };
            self.counts.remove(&k);
            self.evicted_floor_ms = Some(self.evicted_floor_ms.map_or(ms, |f| f.max(ms)));
        }
        self.counts.insert(
            key,
            NcEntry {
                issued_ms,
                highest: nc,
            },
        );
        Ok(())
    }
}

/// Parse `Digest a=b, c="quoted, with comma", d=e` into ordered `(lower-cased name, value)`
/// pairs. Accepts SIP linear white space (SP, HT, CR, LF) between items and empty list elements;
/// rejects other schemes, missing values, unterminated quotes and control characters inside
/// quoted strings (they could only serve header or log injection).
pub fn parse_params(header_value: &str) -> Result<Vec<(String, String)>, DigestError> {
    let bad = |why: &str| DigestError::Malformed(why.to_owned());
    let s = header_value.as_bytes();
    let mut i = skip_ws(s, 0);
    let start = i;
    while i < s.len() && is_tchar(s[i]) {
        i += 1;
    }
    if !header_value[start..i].eq_ignore_ascii_case("Digest") {
        return Err(bad("not a Digest header"));
    }
    if i < s.len() && !is_ws(s[i]) {
        return Err(bad("garbage after scheme"));
    }
    let mut out = Vec::new();
    loop {
        i = skip_ws(s, i);
        if i == s.len() {
            return Ok(out);
        }
        if s[i] == b',' {
            i += 1;
            continue;
        }
        let start = i;
        while i < s.len() && is_tchar(s[i]) {
            i += 1;
        }
        if start == i {
            return Err(bad("expected parameter name"));
        }
        let name = header_value[start..i].to_ascii_lowercase();
        i = skip_ws(s, i);
        if i == s.len() || s[i] != b'=' {
            return Err(bad("parameter without value"));
        }
        i = skip_ws(s, i + 1);
        let value = if i < s.len() && s[i] == b'"' {
            let mut buf = Vec::new();
            i += 1;
            loop {
                match s.get(i) {
                    None => return Err(bad("unterminated quoted string")),
                    Some(b'"') => break,
                    Some(b'\\') => match s.get(i + 1) {
                        Some(&c) if c != b'\r' && c != b'\n' => buf.push(c),
                        _ => return Err(bad("bad escape")),
                    },
                    Some(&c) if (c < 0x20 && c != b'\t') || c == 0x7f => {
                        return Err(bad("control character in quoted string"))
                    }
                    Some(&c) => buf.push(c),
                }
                i += if s[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            String::from_utf8(buf).map_err(|_| bad("invalid UTF-8"))?
        } else {
            let start = i;
            while i < s.len() && (0x21..0x7f).contains(&s[i]) && s[i] != b',' && s[i] != b'"' {
                i += 1;
            }
            if start == i {
                return Err(bad("parameter without value"));
            }
            header_value[start..i].to_owned()
        };
        out.push((name, value));
        i = skip_ws(s, i);
        if i < s.len() && s[i] != b',' {
            return Err(bad("expected comma"));
        }
    }
}

/// Client side: the Authorization value answering `challenge` (a WWW-Authenticate value).
/// Uses qop=auth when offered, RFC 2069 form when the challenge has no qop (MD5 only).
pub fn client_authorization(
    challenge: &str,
    method: &str,
    uri: &str,
    username: &str,
    password: &str,
    cnonce: &str,
    nc: u32,
) -> Result<String, DigestError> {
    let params = parse_params(challenge)?;
    let get = |name: &str| unique_param(&params, name);
    let need = |name: &str| {
        get(name)?.ok_or_else(|| DigestError::Malformed(format!("challenge lacks {name}")))
    };
    let realm = need("realm")?;
    let nonce = need("nonce")?;
    let algorithm = match get("algorithm")? {
        None => Algorithm::Md5,
        Some(token) => Algorithm::from_token(token)?,
    };
    let offers_auth = |list: &str| {
        list.split(',')
            .any(|q| q.trim().eq_ignore_ascii_case("auth"))
    };
    let use_qop = match get("qop")? {
        Some(list) if offers_auth(list) => true,
        Some(list) => return Err(DigestError::UnsupportedQop(clip(list))),
        None if algorithm == Algorithm::Md5 => false,
        None => return Err(DigestError::QopRequired),
    };
    if use_qop && (nc == 0 || cnonce.is_empty()) {
        return Err(DigestError::Malformed("need nc >= 1 and a cnonce".into()));
    }
    let nc_hex = format!("{nc:08x}");
    let qop = use_qop.then_some(QopAuth {
        qop: "auth",
        nc: &nc_hex,
        cnonce,
    });
    let ha1 = ha1(algorithm, username, realm, password);
    let response = response(algorithm, &ha1, nonce, method, uri, qop);
    let mut out = format!(
        r#"Digest username="{}", realm="{}", nonce="{}", uri="{}", response="{response}", algorithm={}"#,
        quote(username)?,
        quote(realm)?,
        quote(nonce)?,
        quote(uri)?,
        algorithm.as_str(),
    );
    if use_qop {
        out += &format!(r#", cnonce="{}", qop=auth, nc={nc_hex}"#, quote(cnonce)?);
    }
    if let Some(opaque) = get("opaque")? {
        out += &format!(r#", opaque="{}""#, quote(opaque)?);
    }
    Ok(out)
}

/// The value of `name`, or `None`; a parameter given twice is ambiguous and rejected
/// (RFC 7616 §3.4: each parameter at most once).
fn unique_param<'a>(
    params: &'a [(String, String)],
    name: &str,
) -> Result<Option<&'a str>, DigestError> {
    let mut found = params.iter().filter(|(n, _)| n == name);
    let first = found.next().map(|(_, v)| v.as_str());
    if found.next().is_some() {
        return Err(DigestError::Malformed(format!("duplicate {name}")));
    }
    Ok(first)
}

fn parse_nc(nc: &str) -> Result<u32, DigestError> {
    let n = (nc.len() == 8 && nc.bytes().all(|c| c.is_ascii_hexdigit()))
        .then(|| u32::from_str_radix(nc, 16).ok())
        .flatten()
        .filter(|&n| n > 0);
    n.ok_or_else(|| DigestError::Malformed("nc must be 8 hex digits, not zero".into()))
}

/// Compare without an early exit, so the time taken reveals nothing about how many leading
/// characters of a guessed response were right. Lengths are public.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn quote(s: &str) -> Result<String, DigestError> {
    if s.chars().any(char::is_control) {
        return Err(DigestError::Malformed("control character in value".into()));
    }
    Ok(quote_lossy(s))
}

fn quote_lossy(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Client-supplied text echoed in errors (and so in logs) is cut short.
fn clip(s: &str) -> String {
    s.chars().take(32).collect()
}

fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

fn skip_ws(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && is_ws(s[i]) {
        i += 1;
    }
    i
}

/// RFC 7230 tchar.
fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use DigestError::*;

    const REALM: &str = "hotline.bank.example";
    const PW: &str = "s3cret pw";

    fn users(name: &str) -> Option<String> {
        let pw = match name {
            "alice" => PW,
            "bob" => "hunter2",
            _ => return None,
        };
        Some(pw.into())
    }

    /// Seeded from the OS as in production: every authenticator has its own secret.
    fn auth(t0: Instant, algorithms: Vec<Algorithm>) -> DigestAuthenticator {
        let rng = rand::rngs::StdRng::from_os_rng();
        DigestAuthenticator::new(REALM, algorithms, Duration::from_secs(60), t0, rng)
    }

    fn both(t0: Instant) -> DigestAuthenticator {
        auth(t0, vec![Algorithm::Sha256, Algorithm::Md5])
    }

    /// An Authorization value for `challenge`, as alice (or `user`) would send it.
    fn answer(challenge: &str, user: &str, pw: &str, nc: u32) -> String {
        let uri = "sip:hotline.bank.example";
        client_authorization(challenge, "REGISTER", uri, user, pw, "c0ffee", nc).unwrap()
    }

    fn check(a: &mut DigestAuthenticator, h: &str, now: Instant) -> Result<Algorithm, DigestError> {
        a.verify(h, "REGISTER", now, users).map(|v| v.algorithm)
    }

    fn param(header: &str, name: &str) -> String {
        unique_param(&parse_params(header).unwrap(), name)
            .unwrap()
            .unwrap()
            .into()
    }

    #[test]
    fn rfc2617_md5_example() {
        let ha1 = ha1(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
        );
        let qop = QopAuth {
            qop: "auth",
            nc: "00000001",
            cnonce: "0a4f113b",
        };
        let nonce = "dcd98b7102dd2f0e8b11d0f600bfb0c093";
        let r = response(
            Algorithm::Md5,
            &ha1,
            nonce,
            "GET",
            "/dir/index.html",
            Some(qop),
        );
        assert_eq!(r, "6629fae49393a05397450978507c4ef1");
    }

    #[test]
    fn rfc7616_examples() {
        let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
        let qop = Some(QopAuth {
            qop: "auth",
            nc: "00000001",
            cnonce,
        });
        let nonce = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
        let r = |alg| {
            let ha1 = ha1(alg, "Mufasa", "http-auth@example.org", "Circle of Life");
            response(alg, &ha1, nonce, "GET", "/dir/index.html", qop)
        };
        let sha = "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1";
        assert_eq!(r(Algorithm::Sha256), sha);
        assert_eq!(r(Algorithm::Md5), "8ca523f5e9506fed4657c9700eebdbec");
    }

    #[test]
    fn algorithm_tokens() {
        assert_eq!(Algorithm::from_token("md5"), Ok(Algorithm::Md5));
        assert_eq!(Algorithm::from_token("sha-256"), Ok(Algorithm::Sha256));
        for t in ["MD5-sess", "SHA-256-sess", "SHA-512-256", ""] {
            assert_eq!(
                Algorithm::from_token(t),
                Err(UnsupportedAlgorithm(t.into()))
            );
        }
    }

    #[test]
    fn round_trip_both_algorithms() {
        let t0 = Instant::now();
        let mut a = both(t0);
        for (i, alg) in [Algorithm::Sha256, Algorithm::Md5].into_iter().enumerate() {
            // Fresh challenge each time: both algorithms share one nonce, hence one nc sequence.
            let ch = &a.challenges(t0, false)[i];
            let v = a
                .verify(&answer(ch, "alice", PW, 1), "REGISTER", t0, users)
                .unwrap();
            assert_eq!((v.username.as_str(), v.algorithm), ("alice", alg));
            assert_eq!(v.uri, "sip:hotline.bank.example");
            let e = check(&mut a, &answer(ch, "alice", "wrong", 2), t0).unwrap_err();
            assert_eq!(e, BadResponse);
            assert!(e.is_credential_failure() && !e.is_stale());
            let e = check(&mut a, &answer(ch, "mallory", PW, 1), t0).unwrap_err();
            assert_eq!(e, UnknownUser);
            assert!(e.is_credential_failure());
            // The method is part of HA2.
            let invite = a.verify(&answer(ch, "alice", PW, 3), "INVITE", t0, users);
            assert_eq!(invite.unwrap_err(), BadResponse);
        }
    }

    #[test]
    fn challenge_format_and_order() {
        let t0 = Instant::now();
        let mut a = both(t0);
        let ch = a.challenges(t0, false);
        let n = param(&ch[0], "nonce");
        assert_eq!(n.len(), 64);
        assert_eq!(
            ch,
            [
                format!(r#"Digest realm="{REALM}", nonce="{n}", algorithm=SHA-256, qop="auth""#),
                format!(r#"Digest realm="{REALM}", nonce="{n}", algorithm=MD5, qop="auth""#),
            ]
        );
        let stale = a.challenges(t0, true);
        assert!(stale
            .iter()
            .all(|c| c.ends_with(r#", qop="auth", stale=true"#)));
        assert_ne!(param(&stale[0], "nonce"), n, "fresh nonce per call");
        assert_eq!(
            auth(t0, vec![Algorithm::Md5]).challenges(t0, false).len(),
            1
        );
    }

    #[test]
    fn a_seed_fixes_the_secret_and_the_nonces() {
        let t0 = Instant::now();
        let seeded = |seed: u8| {
            let rng = rand::rngs::StdRng::from_seed([seed; 32]);
            let algorithms = vec![Algorithm::Sha256];
            DigestAuthenticator::new(REALM, algorithms, Duration::from_secs(60), t0, rng)
        };
        let (mut a, mut b, mut c) = (seeded(1), seeded(1), seeded(2));
        let first = a.challenges(t0, false);
        assert_eq!(first, b.challenges(t0, false));
        assert_ne!(first, c.challenges(t0, false));
        // Same secret: each verifies the other's nonces; another seed's are forged.
        let next = b.challenges(t0, false)[0].clone();
        assert_ne!(next, first[0], "a fresh salt for every challenge");
        assert_eq!(
            check(&mut a, &answer(&next, "alice", PW, 1), t0),
            Ok(Algorithm::Sha256)
        );
        let foreign = c.challenges(t0, false)[0].clone();
        let e = check(&mut a, &answer(&foreign, "alice", PW, 1), t0);
        assert_eq!(e, Err(InvalidNonce));
    }

    #[test]
    fn stale_only_with_right_password() {
        let t0 = Instant::now();
        let mut a = both(t0);
        let ch = &a.challenges(t0, false)[0];
        let late = t0 + Duration::from_secs(61);
        let e = check(&mut a, &answer(ch, "alice", PW, 1), late).unwrap_err();
        assert_eq!(e, StaleNonce);
        assert!(e.is_stale() && !e.is_credential_failure());
        assert_eq!(
            check(&mut a, &answer(ch, "alice", "nope", 1), late),
            Err(BadResponse)
        );
        let edge = t0 + Duration::from_secs(60); // exactly the lifetime: still fresh
        assert!(check(&mut a, &answer(ch, "alice", PW, 1), edge).is_ok());
    }

    #[test]
    fn forged_nonces_are_invalid() {
        let t0 = Instant::now();
        let mut a = both(t0);
        let ch = a.challenges(t0, false)[0].clone();
        let n = param(&ch, "nonce");
        let last = if n.ends_with('0') { "1" } else { "0" };
        let forged = [
            ch.replace(&n, &format!("{}{last}", &n[..63])),
            ch.replace(&n, &n.to_uppercase()),
            ch.replace(&n, &format!("{:016x}{}", 5u64, &n[16..])), // moved issue time
            ch.replace(&n, "dcd98b7102dd2f0e8b11d0f600bfb0c093"),
            both(t0).challenges(t0, false)[0].clone(), // another secret
        ];
        for c in forged {
            let e = check(&mut a, &answer(&c, "alice", PW, 1), t0).unwrap_err();
            assert_eq!(e, InvalidNonce, "{c}");
            assert!(e.is_credential_failure());
        }
    }

    #[test]
    fn nonce_count_replay() {
        let t0 = Instant::now();
        let mut a = both(t0);
        let ch = a.challenges(t0, false)[0].clone();
        let mut nc = |user, pw, nc| check(&mut a, &answer(&ch, user, pw, nc), t0);
        assert!(nc("alice", PW, 1).is_ok());
        assert_eq!(nc("alice", PW, 1), Err(Replay));
        assert!(nc("alice", PW, 2).is_ok());
        assert!(nc("alice", PW, 7).is_ok());
        assert_eq!(nc("alice", PW, 5), Err(Replay));
        assert!(Replay.is_credential_failure());
        // Another user's counter on the same nonce is independent.
        assert!(nc("bob", "hunter2", 1).is_ok());
        let short = answer(&ch, "alice", PW, 8).replace("nc=00000008", "nc=8");
        assert!(matches!(check(&mut a, &short, t0), Err(Malformed(_))));
    }

    #[test]
    fn table_eviction_never_reopens_replays() {
        let t0 = Instant::now();
        let mut a = both(t0);
        a.set_nonce_table_capacity(2);
        let at = |ms| t0 + Duration::from_millis(ms);
        let ch: Vec<String> = (1..=3)
            .map(|ms| a.challenges(at(ms), false)[0].clone())
            .collect();
        for c in &ch {
            assert!(check(&mut a, &answer(c, "alice", PW, 1), at(10)).is_ok());
        }
        // ch[0] was evicted while unexpired: its nc history is unknown, so stale rather than Ok.
        assert_eq!(
            check(&mut a, &answer(&ch[0], "alice", PW, 1), at(11)),
            Err(StaleNonce)
        );
        assert_eq!(
            check(&mut a, &answer(&ch[2], "alice", PW, 1), at(11)),
            Err(Replay)
        );
        // Expired entries are dropped first, without raising the floor.
        let late = at(100_000);
        let c4 = a.challenges(late, false)[0].clone();
        let c5 = a.challenges(at(100_001), false)[0].clone();
        assert!(check(&mut a, &answer(&c4, "alice", PW, 1), late).is_ok());
        assert!(check(&mut a, &answer(&c5, "bob", "hunter2", 1), late).is_ok());
        assert_eq!((a.counts.len(), a.evicted_floor_ms), (2, Some(1)));
    }

    #[test]
    fn rfc2069_md5_without_qop() {
        let t0 = Instant::now();
        let mut a = both(t0);
        let ch = a.challenges(t0, false);
        let h = answer(&ch[1].replace(r#", qop="auth""#, ""), "alice", PW, 1);
        assert!(!h.contains("qop") && !h.contains("nc="), "{h}");
        assert_eq!(check(&mut a, &h, t0), Ok(Algorithm::Md5));
        let bare = h.replace(", algorithm=MD5", ""); // absent algorithm means MD5
        assert_eq!(check(&mut a, &bare, t0), Ok(Algorithm::Md5));
        // SHA-256 has no RFC 2069 form, on either side.
        let sha = ch[0].replace(r#", qop="auth""#, "");
        let c = client_authorization(&sha, "REGISTER", "sip:x", "alice", PW, "c", 1);
        assert_eq!(c, Err(QopRequired));
        let forced = h.replace("algorithm=MD5", "algorithm=SHA-256");
        assert_eq!(check(&mut a, &forced, t0), Err(QopRequired));
        a.set_allow_rfc2069(false);
        assert_eq!(check(&mut a, &h, t0), Err(QopRequired));
    }

    #[test]
    fn algorithm_realm_and_qop_checks() {
        let t0 = Instant::now();
        let mut a = auth(t0, vec![Algorithm::Sha256]);
        let ch = a.challenges(t0, false)[0].clone();
        let md5 = answer(&ch.replace("SHA-256", "MD5"), "alice", PW, 1);
        let e = check(&mut a, &md5, t0).unwrap_err();
        assert_eq!(e, UnsupportedAlgorithm("MD5".into()));
        assert!(!e.is_credential_failure() && !e.is_stale());
        let h = answer(&ch, "alice", PW, 1);
        let sess = h.replace("SHA-256", "SHA-256-sess");
        assert_eq!(
            check(&mut a, &sess, t0),
            Err(UnsupportedAlgorithm("SHA-256-sess".into()))
        );
        let evil = answer(&ch.replace(REALM, "evil.example"), "alice", PW, 1);
        assert_eq!(check(&mut a, &evil, t0), Err(WrongRealm));
        let int = h.replace("qop=auth", "qop=auth-int");
        assert_eq!(
            check(&mut a, &int, t0),
            Err(UnsupportedQop("auth-int".into()))
        );
        let dup = format!("{h}, nonce=\"x\"");
        assert_eq!(
            check(&mut a, &dup, t0),
            Err(Malformed("duplicate nonce".into()))
        );
        let resp = param(&h, "response");
        let upper = h.replace(&resp, &resp.to_uppercase()); // hex case is not significant
        assert_eq!(check(&mut a, &upper, t0), Ok(Algorithm::Sha256));
    }

    #[test]
    fn parse_params_edge_cases() {
        let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        let p = parse_params(r#"Digest a=b, c="quoted, with comma", d=e"#);
        assert_eq!(
            p,
            Ok(pairs(&[
                ("a", "b"),
                ("c", "quoted, with comma"),
                ("d", "e")
            ]))
        );
        let p = parse_params(
            "  dIgEsT\tUserName = \"a\\\"b\\\\c\" ,, ,\r\n Realm=\"\"\t,uri=\"sip:x\",",
        );
        assert_eq!(
            p,
            Ok(pairs(&[
                ("username", "a\"b\\c"),
                ("realm", ""),
                ("uri", "sip:x")
            ]))
        );
        assert_eq!(parse_params("Digest"), Ok(vec![]));
        assert_eq!(
            parse_params("Digest u=\"J\\ürgen\""),
            Ok(pairs(&[("u", "Jürgen")]))
        );
        for bad in [
            "",
            "Basic dXNlcjpwYXNz",
            "Digestx a=b",
            "Digest=a",
            "Digest a",
            "Digest a=",
            "Digest a= , b=c",
            "Digest a=b c=d",
            "Digest a=\"b\"c",
            "Digest a=\"unterminated",
            "Digest a=\"trailing\\",
            "Digest a=\"line\r\nbreak\"",
            "Digest a=\"nul\0\"",
            "Digest =b",
            "Digest a=b\"",
            "Digest a=b\u{7f}",
        ] {
            assert!(matches!(parse_params(bad), Err(Malformed(_))), "{bad:?}");
        }
    }

    #[test]
    fn garbage_never_panics() {
        let t0 = Instant::now();
        let mut a = both(t0);
        let good = answer(&a.challenges(t0, false)[0], "alice", PW, 1);
        // Every strict prefix of a valid header is rejected (nc comes last).
        for (i, _) in good.char_indices() {
            assert!(check(&mut a, &good[..i], t0).is_err(), "{}", &good[..i]);
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
        let alphabet: Vec<char> = "Digest =,\"\\\r\n\t aéz0f-_:".chars().collect();
        for round in 0..4000 {
            let len = rng.random_range(0..80);
            let s = if round % 2 == 0 {
                let bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
                String::from_utf8_lossy(&bytes).into_owned()
            } else {
                let tail = (0..len).map(|_| alphabet[rng.random_range(0..alphabet.len())]);
                "Digest ".chars().chain(tail).collect()
            };
            let _ = parse_params(&s);
            assert!(check(&mut a, &s, t0).is_err());
            let _ = client_authorization(&s, "REGISTER", "sip:x", "u", "p", "c", 1);
        }
        assert_eq!(check(&mut a, &good, t0), Ok(Algorithm::Sha256));
    }
}
