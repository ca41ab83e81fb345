//! Registrar for operators' softphones (RFC 3261 §10.3) with digest authentication.
//!
//! Only configured operators can register, each only their own extension, after a digest
//! challenge (SHA-256 and/or MD5, RFC 8760). Addresses that keep failing are locked out.
//! Unknown users are challenged exactly like known ones and fail the same way (403), so the
//! registrar does not tell a scanner which extensions exist.
//!
//! Sans-IO: `handle` takes a parsed REGISTER, its source and `now`, and returns the response
//! bytes; bindings expire lazily and in `sweep`.

use super::digest::{Algorithm, DigestAuthenticator, DigestError};
use super::guard::AuthLockout;
use super::message::{
    addr_uri, contacts, first_header, header_param, header_values, uri_user, ResponseBuilder,
};
use super::Transport;
use bytes::Bytes;
use rand::rngs::StdRng;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Most contacts one operator may register (desk phone, softphone, a spare).
const MAX_BINDINGS_PER_AOR: usize = 5;
const DEFAULT_EXPIRES: u32 = 3600;

/// Where an operator can be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The Contact URI as registered.
    pub contact: String,
    pub expires_at: Instant,
    pub call_id: String,
    pub cseq: u32,
    /// Where the REGISTER came from: behind NAT this, not the Contact, reaches the phone.
    pub source: SocketAddr,
    pub transport: Transport,
    /// When the binding was last added or refreshed (the newest one is rung).
    pub updated_at: Instant,
    /// The Path the REGISTER carried (RFC 3327), in order: the proxies between us and the
    /// phone (the cluster's Kamailio edge). Requests to the phone are routed through it, so
    /// any node can ring a phone that registered on another.
    pub path: Vec<String>,
}

/// A change the rest of the system may care about (operator came online / went away).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationEvent {
    Registered {
        extension: String,
        contact: String,
        /// The new binding (a cluster shares it with the other nodes).
        binding: Box<Binding>,
    },
    Unregistered {
        extension: String,
        contact: String,
        /// The extension still has another current binding, so the operator is still
        /// reachable: the queue needs no copy of the bindings to know.
        still_registered: bool,
    },
}

/// Result of one REGISTER.
#[derive(Debug)]
pub struct RegisterOutcome {
    pub status: u16,
    pub response: Bytes,
    pub events: Vec<RegistrationEvent>,
}

/// What the registrar is configured with. The application builds it from its
/// configuration; the SIP stack reads none.
#[derive(Clone)]
pub struct RegistrarSettings {
    /// The digest realm: the SIP domain.
    pub realm: String,
    /// Offered in this order (RFC 8760 §2.4); at least one.
    pub algorithms: Vec<Algorithm>,
    /// A nonce older than this is answered with `stale=true`.
    pub nonce_lifetime: Duration,
    /// Failed digest attempts from one address before it is locked out…
    pub max_failures: u32,
    /// …for this long.
    pub lockout: Duration,
    pub min_expires: u32,
    pub max_expires: u32,
    /// Our `Server` header.
    pub server: String,
    /// The operators: extension and digest password (`None`: the extension exists but
    /// cannot register).
    pub accounts: Vec<(String, Option<String>)>,
    /// Registrations only over TLS (`[sip.tls] require_for_operators`): one over UDP or TCP
    /// gets 403 with a Warning saying so, before any digest exchange.
    pub require_tls: bool,
}

struct Account {
    password: Option<String>,
}

pub struct Registrar {
    auth: DigestAuthenticator,
    lockout: AuthLockout,
    accounts: HashMap<String, Account>,
    bindings: HashMap<String, Vec<Binding>>,
    min_expires: u32,
    max_expires: u32,
    require_tls: bool,
    server: String,
}

impl Registrar {
    /// A registrar with no bindings. Nonces and the digest secret come from `rng`, which
    /// must be seeded from a cryptographically secure source in production.
    pub fn new(settings: RegistrarSettings, rng: StdRng, now: Instant) -> Self {
        let accounts = settings
            .accounts
            .into_iter()
            .map(|(extension, password)| (extension, Account { password }))
            .collect();
        Registrar {
            auth: DigestAuthenticator::new(
                &settings.realm,
                settings.algorithms,
                settings.nonce_lifetime,
                now,
                rng,
            ),
            lockout: AuthLockout::new(settings.max_failures, settings.lockout),
            accounts,
            bindings: HashMap::new(),
            min_expires: settings.min_expires,
            max_expires: settings.max_expires,
            require_tls: settings.require_tls,
            server: settings.server,
        }
    }

    /// Current, unexpired bindings of an extension.
    pub fn lookup(&self, extension: &str, now: Instant) -> Vec<&Binding> {
        self.bindings
            .get(extension)
            .map(|v| v.iter().filter(|b| b.expires_at > now).collect())
            .unwrap_or_default()
    }

    /// Whether `extension` is a configured operator (only those can ever be registered or
    /// rung).
    pub fn is_operator(&self, extension: &str) -> bool {
        self.accounts.contains_key(extension)
    }

    /// The most recently registered or refreshed unexpired binding of an extension: where an
    /// operator leg is sent.
    pub fn newest(&self, extension: &str, now: Instant) -> Option<&Binding> {
        self.lookup(extension, now)
            .into_iter()
            .max_by_key(|b| b.updated_at)
    }

    /// Whether an address is currently locked out.
    pub fn is_locked(&self, ip: IpAddr, now: Instant) -> bool {
        self.lockout.is_locked(ip, now)
    }

    /// Removes expired bindings; returns what went away.
    pub fn sweep(&mut self, now: Instant) -> Vec<RegistrationEvent> {
        let mut events = Vec::new();
        for (ext, list) in self.bindings.iter_mut() {
            list.retain(|b| {
                let keep = b.expires_at > now;
                if !keep {
                    events.push(RegistrationEvent::Unregistered {
                        extension: ext.clone(),
                        contact: b.contact.clone(),
                        still_registered: false,
                    });
                }
                keep
            });
        }
        self.bindings.retain(|_, v| !v.is_empty());
        self.lockout.sweep(now);
        self.settle(&mut events, now);
        events
    }

    /// Fills in, once every change of one REGISTER or sweep is made, whether each
    /// unregistered extension is still reachable through another binding.
    fn settle(&self, events: &mut [RegistrationEvent], now: Instant) {
        for e in events {
            if let RegistrationEvent::Unregistered {
                extension,
                still_registered,
                ..
            } = e
            {
                *still_registered = !self.lookup(extension, now).is_empty();
            }
        }
    }

    /// Processes one REGISTER.
    pub fn handle(
        &mut self,
        req: &rsip::Request,
        source: SocketAddr,
        transport: Transport,
        now: Instant,
    ) -> RegisterOutcome {
        let reply = |status: u16, reason: &str| RegisterOutcome {
            status,
            response: ResponseBuilder::new(req, source, status, reason)
                .to_tag("reg")
                .header("Server", &self.server)
                .build(),
            events: Vec::new(),
        };
        if self.lockout.is_locked(source.ip(), now) {
            return reply(403, "Forbidden");
        }
        if self.require_tls && transport != Transport::Tls {
            tracing::warn!(%source, transport = transport.as_str(), "REGISTER refused: TLS is required");
            return RegisterOutcome {
                status: 403,
                response: ResponseBuilder::new(req, source, 403, "Forbidden")
                    .to_tag("reg")
                    .header("Server", &self.server)
                    .header(
                        "Warning",
                        "399 hotline \"Register over TLS (sips, port 5061)\"",
                    )
                    .build(),
                events: Vec::new(),
            };
        }
        let to = first_header(&req.headers, "To").unwrap_or_default();
        let Some(aor_user) = uri_user(addr_uri(to)).map(str::to_string) else {
            return reply(400, "Bad Request");
        };
        let method = req.method.to_string();
        let Some(authorization) = first_header(&req.headers, "Authorization") else {
            return challenge(&mut self.auth, &self.server, req, source, false, now);
        };
        let accounts = &self.accounts;
        let verified = self.auth.verify(authorization, &method, now, |user| {
            accounts.get(user).and_then(|a| a.password.clone())
        });
        match verified {
            Ok(v) if v.username == aor_user => {
                self.lockout.record_success(source.ip());
            }
            Ok(v) => {
                tracing::warn!(%source, user = %v.username, aor = %aor_user, "REGISTER for another user's extension");
                self.lockout.record_failure(source.ip(), now);
                return reply(403, "Forbidden");
            }
            Err(e) if e.is_stale() => {
                return challenge(&mut self.auth, &self.server, req, source, true, now)
            }
            Err(DigestError::InvalidNonce) => {
                // Most often a nonce from before a restart: challenge afresh, but count it,
                // since a forged nonce looks the same.
                self.lockout.record_failure(source.ip(), now);
                return challenge(&mut self.auth, &self.server, req, source, false, now);
            }
            Err(e) => {
                let locked = self.lockout.record_failure(source.ip(), now);
                tracing::warn!(%source, error = %e, locked, "REGISTER authentication failed");
                return reply(403, "Forbidden");
            }
        }
        self.update_bindings(req, &aor_user, source, transport, now)
    }

    fn update_bindings(
        &mut self,
        req: &rsip::Request,
        aor: &str,
        source: SocketAddr,
        transport: Transport,
        now: Instant,
    ) -> RegisterOutcome {
        let mut events = Vec::new();
        let call_id = first_header(&req.headers, "Call-ID")
            .unwrap_or_default()
            .to_string();
        let cseq = first_header(&req.headers, "CSeq")
            .and_then(|v| super::headers::parse_cseq(v).ok())
            .map(|(n, _)| n)
            .unwrap_or(0);
        let header_expires: Option<u32> =
            first_header(&req.headers, "Expires").and_then(|v| v.trim().parse().ok());
        let contact_values = contacts(&req.headers);
        // Only loose-routing SIP proxies; anything else is no route we would follow.
        let path: Vec<String> = header_values(&req.headers, "Path");
        if path
            .iter()
            .any(|p| !(addr_uri(p).starts_with("sip:") && addr_uri(p).contains(";lr")))
        {
            tracing::warn!(%source, "REGISTER with a Path that is no loose-routing SIP URI");
            return RegisterOutcome {
                status: 400,
                response: ResponseBuilder::new(req, source, 400, "Bad Path")
                    .to_tag("reg")
                    .header("Server", &self.server)
                    .build(),
                events: Vec::new(),
            };
        }
        let error = |status: u16, reason: &str, extra: Option<(&str, String)>| {
            let mut b = ResponseBuilder::new(req, source, status, reason)
                .to_tag("reg")
                .header("Server", &self.server);
            if let Some((n, v)) = extra {
                b = b.header(n, v);
            }
            RegisterOutcome {
                status,
                response: b.build(),
                events: Vec::new(),
            }
        };

        if contact_values.iter().any(|c| c.trim() == "*") {
            if contact_values.len() != 1 || header_expires != Some(0) {
                return error(400, "Bad Request", None);
            }
            for b in self.bindings.remove(aor).unwrap_or_default() {
                events.push(RegistrationEvent::Unregistered {
                    extension: aor.to_string(),
                    contact: b.contact,
                    still_registered: false,
                });
            }
        } else {
            let mut changes = Vec::new();
            for c in &contact_values {
                let uri = addr_uri(c).to_string();
                if !uri.starts_with("sip:") && !uri.starts_with("sips:") {
                    return error(400, "Bad Request", None);
                }
                let expires = header_param(c, "expires")
                    .and_then(|v| v.parse::<u32>().ok())
                    .or(header_expires)
                    .unwrap_or(DEFAULT_EXPIRES);
                if expires != 0 && expires < self.min_expires {
                    return error(
                        423,
                        "Interval Too Brief",
                        Some(("Min-Expires", self.min_expires.to_string())),
                    );
                }
                changes.push((uri, expires.min(self.max_expires)));
            }
            let list = self.bindings.entry(aor.to_string()).or_default();
            list.retain(|b| b.expires_at > now);
            for (uri, expires) in changes {
                let existing = list.iter().position(|b| b.contact == uri);
                if let Some(i) = existing {
                    if list[i].call_id == call_id && list[i].cseq >= cseq && cseq != 0 {
                        // An old or replayed REGISTER must not undo a newer one (§10.3 step 7).
                        continue;
                    }
                }
                if expires == 0 {
                    if let Some(i) = existing {
                        let b = list.remove(i);
                        events.push(RegistrationEvent::Unregistered {
                            extension: aor.to_string(),
                            contact: b.contact,
                            still_registered: false,
                        });
                    }
                    continue;
                }
                let binding = Binding {
                    contact: uri.clone(),
                    expires_at: now + Duration::from_secs(expires as u64),
                    call_id: call_id.clone(),
                    cseq,
                    source,
                    transport,
                    updated_at: now,
                    path: path.clone(),
                };
                match existing {
                    Some(i) => list[i] = binding,
                    None => {
                        if list.len() >= MAX_BINDINGS_PER_AOR {
                            return error(403, "Forbidden (too many contacts)", None);
                        }
                        list.push(binding.clone());
                        events.push(RegistrationEvent::Registered {
                            extension: aor.to_string(),
                            contact: uri,
                            binding: Box::new(binding),
                        });
                    }
                }
            }
            if list.is_empty() {
                self.bindings.remove(aor);
            }
        }

        let mut b = ResponseBuilder::new(req, source, 200, "OK")
            .to_tag("reg")
            .header("Server", &self.server);
        // RFC 3327 §5.3: the registrar returns the Path it stored.
        for p in &path {
            b = b.header("Path", p);
        }
        for binding in self.lookup(aor, now) {
            let left = binding.expires_at.saturating_duration_since(now).as_secs();
            b = b.header("Contact", format!("<{}>;expires={left}", binding.contact));
        }
        self.settle(&mut events, now);
        RegisterOutcome {
            status: 200,
            response: b.build(),
            events,
        }
    }
}

/// 401 with one challenge per offered algorithm. Apart from the registrar so that it can
/// take the authenticator mutably (each challenge draws a fresh salt) while the caller
/// still holds other fields.
fn challenge(
    auth: &mut DigestAuthenticator,
    server: &str,
    req: &rsip::Request,
    source: SocketAddr,
    stale: bool,
    now: Instant,
) -> RegisterOutcome {
    let mut b = ResponseBuilder::new(req, source, 401, "Unauthorized")
        .to_tag("reg")
        .header("Server", server);
    for c in auth.challenges(now, stale) {
        b = b.header("WWW-Authenticate", c);
    }
    RegisterOutcome {
        status: 401,
        response: b.build(),
        events: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    //! The registrar on a fake clock: expiry, lock-out and stale nonces without sleeping.
    use super::*;
    use rand::SeedableRng;

    const PHONE: &str = "198.51.100.7:5070";

    fn registrar(t0: Instant) -> Registrar {
        let settings = RegistrarSettings {
            realm: "hotline.test".into(),
            algorithms: vec![Algorithm::Md5],
            nonce_lifetime: Duration::from_secs(300),
            max_failures: 5,
            lockout: Duration::from_secs(15 * 60),
            min_expires: 60,
            max_expires: 3600,
            server: "Hotline/test".into(),
            accounts: vec![("1001".into(), Some("pw1".into()))],
            require_tls: false,
        };
        Registrar::new(settings, StdRng::seed_from_u64(7), t0)
    }

    fn register(cseq: u32, contact: &str, expires: u32, auth: Option<&str>) -> rsip::Request {
        let auth = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
        let text = format!(
            "REGISTER sip:hotline.test SIP/2.0\r\nVia: SIP/2.0/UDP {PHONE};branch=z9hG4bK{cseq}\r\n\
             From: <sip:1001@hotline.test>;tag=r1\r\nTo: <sip:1001@hotline.test>\r\n\
             Call-ID: reg-1001\r\nCSeq: {cseq} REGISTER\r\nContact: <{contact}>\r\n\
             Expires: {expires}\r\n{auth}Content-Length: 0\r\n\r\n"
        );
        rsip::Request::try_from(text.as_str()).unwrap()
    }

    fn www(outcome: &RegisterOutcome) -> String {
        let text = String::from_utf8(outcome.response.to_vec()).unwrap();
        text.split("\r\n")
            .find_map(|l| l.strip_prefix("WWW-Authenticate: "))
            .unwrap_or_else(|| panic!("no challenge in {text}"))
            .to_string()
    }

    fn answer(challenge: &str, password: &str) -> String {
        crate::sip::digest::client_authorization(
            challenge,
            "REGISTER",
            "sip:hotline.test",
            "1001",
            password,
            "c0ffee",
            1,
        )
        .unwrap()
    }

    /// Registers `contact` for `expires` seconds at `now` (challenge, then the answer).
    fn registered(r: &mut Registrar, cseq: u32, contact: &str, expires: u32, now: Instant) {
        let src = PHONE.parse().unwrap();
        let challenge = r.handle(
            &register(cseq, contact, expires, None),
            src,
            Transport::Udp,
            now,
        );
        assert_eq!(challenge.status, 401);
        let auth = answer(&www(&challenge), "pw1");
        let ok = r.handle(
            &register(cseq + 1, contact, expires, Some(&auth)),
            src,
            Transport::Udp,
            now,
        );
        assert_eq!(ok.status, 200);
    }

    /// A REGISTER relayed by the cluster's edge carries a Path (RFC 3327): the binding keeps
    /// it, for ringing the phone through the edge, and the 200 returns it. A Path that is
    /// no loose-routing SIP URI is refused.
    #[test]
    fn a_path_is_kept_with_the_binding_and_returned() {
        let t0 = Instant::now();
        let mut r = registrar(t0);
        let src = PHONE.parse().unwrap();
        let path = "<sip:192.0.2.50:5088;lr;received=sip:198.51.100.7:5070>";
        let with_path = |req: rsip::Request, path: &str| {
            let text = req.to_string().replace(
                "Content-Length: 0",
                &format!("Path: {path}\r\nContent-Length: 0"),
            );
            rsip::Request::try_from(text.as_str()).unwrap()
        };
        let challenge = r.handle(
            &register(1, "sip:1001@10.0.0.5", 600, None),
            src,
            Transport::Udp,
            t0,
        );
        let auth = answer(&www(&challenge), "pw1");
        let req = with_path(register(2, "sip:1001@10.0.0.5", 600, Some(&auth)), path);
        let ok = r.handle(&req, src, Transport::Udp, t0);
        assert_eq!(ok.status, 200);
        let text = String::from_utf8(ok.response.to_vec()).unwrap();
        assert!(text.contains(&format!("Path: {path}\r\n")), "{text}");
        match &ok.events[..] {
            [RegistrationEvent::Registered { binding, .. }] => {
                assert_eq!(binding.path, vec![path.to_string()])
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(r.newest("1001", t0).unwrap().path, vec![path.to_string()]);

        let challenge = r.handle(
            &register(3, "sip:1001@10.0.0.6", 600, None),
            src,
            Transport::Udp,
            t0,
        );
        let auth = answer(&www(&challenge), "pw1");
        let req = with_path(
            register(4, "sip:1001@10.0.0.6", 600, Some(&auth)),
            "<sip:192.0.2.50>",
        );
        assert_eq!(r.handle(&req, src, Transport::Udp, t0).status, 400);
    }

    /// With TLS required, a REGISTER over UDP or TCP is refused with a Warning before any
    /// challenge, and one over TLS goes through and records its transport.
    #[test]
    fn tls_required_refuses_cleartext_registrations() {
        let t0 = Instant::now();
        let mut r = registrar(t0);
        r.require_tls = true;
        let src: SocketAddr = PHONE.parse().unwrap();
        let contact = "sip:1001@198.51.100.7:5070;transport=tls";
        for cleartext in [Transport::Udp, Transport::Tcp] {
            let out = r.handle(&register(1, contact, 300, None), src, cleartext, t0);
            assert_eq!(out.status, 403);
            let text = String::from_utf8(out.response.to_vec()).unwrap();
            assert!(
                text.contains("Warning: 399 hotline \"Register over TLS"),
                "{text}"
            );
            assert!(!text.contains("WWW-Authenticate"), "{text}");
        }
        let challenge = r.handle(&register(1, contact, 300, None), src, Transport::Tls, t0);
        assert_eq!(challenge.status, 401);
        let auth = answer(&www(&challenge), "pw1");
        let ok = r.handle(
            &register(2, contact, 300, Some(&auth)),
            src,
            Transport::Tls,
            t0,
        );
        assert_eq!(ok.status, 200);
        let b = r.newest("1001", t0).unwrap();
        assert_eq!((b.transport, b.source), (Transport::Tls, src));
    }

    #[test]
    fn a_binding_expires_at_its_time_and_says_whether_another_remains() {
        let t0 = Instant::now();
        let mut r = registrar(t0);
        registered(&mut r, 1, "sip:1001@10.0.0.5:5070", 60, t0);
        registered(&mut r, 3, "sip:1001@10.0.0.6:5070", 120, t0);
        let s = Duration::from_secs;
        assert!(r.sweep(t0 + s(59)).is_empty());
        assert_eq!(r.lookup("1001", t0 + s(59)).len(), 2);
        assert_eq!(
            r.sweep(t0 + s(60)),
            vec![RegistrationEvent::Unregistered {
                extension: "1001".into(),
                contact: "sip:1001@10.0.0.5:5070".into(),
                still_registered: true,
            }]
        );
        assert_eq!(
            r.sweep(t0 + s(120)),
            vec![RegistrationEvent::Unregistered {
                extension: "1001".into(),
                contact: "sip:1001@10.0.0.6:5070".into(),
                still_registered: false,
            }]
        );
        assert!(r.lookup("1001", t0 + s(120)).is_empty());
    }

    #[test]
    fn wrong_passwords_lock_the_address_out_for_the_configured_time() {
        let t0 = Instant::now();
        let mut r = registrar(t0);
        let src: SocketAddr = PHONE.parse().unwrap();
        let contact = "sip:1001@10.0.0.5:5070";
        for i in 0..5 {
            let now = t0 + Duration::from_secs(i);
            let challenge = r.handle(&register(1, contact, 300, None), src, Transport::Udp, now);
            let auth = answer(&www(&challenge), "guess");
            let refused = r.handle(
                &register(2, contact, 300, Some(&auth)),
                src,
                Transport::Udp,
                now,
            );
            assert_eq!(refused.status, 403, "attempt {i}");
        }
        let locked_at = t0 + Duration::from_secs(4);
        assert!(r.is_locked(src.ip(), locked_at));
        // Locked: no challenge, whatever is sent, until the lock-out has run its course.
        let just_before = locked_at + Duration::from_secs(15 * 60 - 1);
        let r403 = r.handle(
            &register(3, contact, 300, None),
            src,
            Transport::Udp,
            just_before,
        );
        assert_eq!(r403.status, 403);
        // Another address is not affected.
        let other: SocketAddr = "198.51.100.8:5070".parse().unwrap();
        let r401 = r.handle(
            &register(1, contact, 300, None),
            other,
            Transport::Udp,
            locked_at,
        );
        assert_eq!(r401.status, 401);
        // Over: challenged again, and the right password registers.
        let after = locked_at + Duration::from_secs(15 * 60 + 1);
        r.sweep(after);
        assert!(!r.is_locked(src.ip(), after));
        registered(&mut r, 5, contact, 300, after);
    }

    #[test]
    fn an_answer_to_an_old_nonce_is_rechallenged_as_stale() {
        let t0 = Instant::now();
        let mut r = registrar(t0);
        let src: SocketAddr = PHONE.parse().unwrap();
        let contact = "sip:1001@10.0.0.5:5070";
        let challenge = r.handle(&register(1, contact, 300, None), src, Transport::Udp, t0);
        let auth = answer(&www(&challenge), "pw1");
        let late = t0 + Duration::from_secs(301);
        let stale = r.handle(
            &register(2, contact, 300, Some(&auth)),
            src,
            Transport::Udp,
            late,
        );
        assert_eq!(stale.status, 401);
        let fresh = www(&stale);
        assert!(fresh.contains("stale=true"), "{fresh}");
        let ok = r.handle(
            &register(3, contact, 300, Some(&answer(&fresh, "pw1"))),
            src,
            Transport::Udp,
            late,
        );
        assert_eq!(ok.status, 200);
        // Not a failure: a stale nonce is no guess.
        assert!(!r.is_locked(src.ip(), late));
    }
}
