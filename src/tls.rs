//! TLS for the SIP listener and for the console and API: certificates read from files and
//! checked at start-up, reloaded on SIGHUP without dropping connections, and handshakes kept
//! off the accept loop under a time limit and a bound on how many run at once.
//!
//! The files are whatever the bank's CA or an ACME client writes: a PEM chain (leaf first)
//! and a PEM private key. [`self_signed`] makes a lab's pair (`hotline cert self-signed`).

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: no PEM certificate in it")]
    NoCertificate { path: PathBuf },
    #[error("{path}: no PEM private key in it")]
    NoKey { path: PathBuf },
    #[error("{path}: not an X.509 certificate: {reason}")]
    BadCertificate { path: PathBuf, reason: String },
    #[error("{path}: the certificate expired on {not_after}")]
    Expired { path: PathBuf, not_after: String },
    #[error("{path}: the certificate is not valid before {not_before}")]
    NotYetValid { path: PathBuf, not_before: String },
    #[error("{cert} with {key}: {source}")]
    Pair {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
    #[error("cannot make a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A certificate chain and its key, as files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM, the leaf first, then any intermediates.
    pub cert: PathBuf,
    /// PEM, PKCS#8, PKCS#1 or SEC1.
    pub key: PathBuf,
}

impl TlsFiles {
    /// Reads and checks the pair: both files readable, the leaf valid now, the key its own.
    /// Each error names the file.
    pub fn server_config(&self, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, TlsError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read {
                path: path.to_path_buf(),
                source,
            })
        };
        let cert_pem = read(&self.cert)?;
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
            .filter_map(Result::ok)
            .collect();
        let Some(leaf) = chain.first() else {
            return Err(TlsError::NoCertificate {
                path: self.cert.clone(),
            });
        };
        check_validity(&self.cert, leaf, chrono::Utc::now())?;
        let key_pem = read(&self.key)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::NoKey {
            path: self.key.clone(),
        })?;
        let pair = |source| TlsError::Pair {
            cert: self.cert.clone(),
            key: self.key.clone(),
            source,
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(pair)?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(pair)?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }
}

/// The leaf's validity period holds at `now`; otherwise an error naming `path` and the date.
fn check_validity(
    path: &Path,
    leaf: &CertificateDer<'_>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), TlsError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(leaf).map_err(|e| TlsError::BadCertificate {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    let validity = cert.validity();
    let at = |t: &x509_parser::time::ASN1Time| {
        chrono::DateTime::from_timestamp(t.timestamp(), 0).map_or_else(
            || t.to_string(),
            |d| d.format("%Y-%m-%d %H:%M UTC").to_string(),
        )
    };
    if now.timestamp() > validity.not_after.timestamp() {
        return Err(TlsError::Expired {
            path: path.to_path_buf(),
            not_after: at(&validity.not_after),
        });
    }
    if now.timestamp() < validity.not_before.timestamp() {
        return Err(TlsError::NotYetValid {
            path: path.to_path_buf(),
            not_before: at(&validity.not_before),
        });
    }
    Ok(())
}

/// A server's TLS settings that SIGHUP can replace while connections go on: a handshake
/// takes the configuration current when it starts, and connections already up keep theirs.
#[derive(Clone)]
pub struct Reloadable {
    files: TlsFiles,
    alpn: Vec<Vec<u8>>,
    current: Arc<RwLock<Arc<ServerConfig>>>,
}

impl Reloadable {
    /// Loads the files (a start-up error names the file at fault).
    pub fn load(files: TlsFiles, alpn: &[&[u8]]) -> Result<Reloadable, TlsError> {
        let config = files.server_config(alpn)?;
        Ok(Reloadable {
            files,
            alpn: alpn.iter().map(|p| p.to_vec()).collect(),
            current: Arc::new(RwLock::new(config)),
        })
    }

    /// Reads the files again. On an error the running certificate stays, so that a renewal
    /// written halfway cannot take the service down.
    pub fn reload(&self) -> Result<(), TlsError> {
        let alpn: Vec<&[u8]> = self.alpn.iter().map(Vec::as_slice).collect();
        let config = self.files.server_config(&alpn)?;
        *self.current.write().expect("tls config lock") = config;
        Ok(())
    }

    fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.read().expect("tls config lock").clone())
    }

    /// The files, for the log.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }
}

/// Limits on handshakes, so that a flood of connections that never finish their handshake
/// (or garbage instead of a ClientHello) cannot starve anything else.
#[derive(Debug, Clone, Copy)]
pub struct HandshakeLimits {
    /// A handshake not done by then is dropped.
    pub timeout: Duration,
    /// Handshakes in progress at once; a connection beyond it is closed at once.
    pub in_progress: usize,
}

impl Default for HandshakeLimits {
    fn default() -> Self {
        HandshakeLimits {
            timeout: Duration::from_secs(5),
            in_progress: 64,
        }
    }
}

/// Runs the handshake of `stream` under `limits`' time-out; `None` if it failed or took too
/// long (logged at debug: scanners make these all day).
pub async fn handshake(
    tls: &Reloadable,
    stream: TcpStream,
    addr: SocketAddr,
    timeout: Duration,
) -> Option<TlsStream<TcpStream>> {
    match tokio::time::timeout(timeout, tls.acceptor().accept(stream)).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            tracing::debug!(%addr, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%addr, "TLS handshake timed out");
            None
        }
    }
}

/// A TLS listener for `axum::serve`: TCP is accepted in a task of its own, and each
/// handshake runs in its own task under [`HandshakeLimits`], so that `accept` only ever
/// yields finished connections.
pub struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl TlsListener {
    pub fn new(
        listener: TcpListener,
        tls: Reloadable,
        limits: HandshakeLimits,
    ) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let permits = Arc::new(Semaphore::new(limits.in_progress));
        tokio::spawn(async move {
            // One warning a second at most: a flood must not fill the disk.
            let mut warned: Option<std::time::Instant> = None;
            loop {
                // Until the server is done with this listener (shutdown): then the port
                // is closed with it.
                let accepted = tokio::select! {
                    r = listener.accept() => r,
                    _ = tx.closed() => return,
                };
                let (stream, addr) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "HTTPS accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    if warned.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                        tracing::warn!(%addr, "too many TLS handshakes in progress; refused");
                        warned = Some(std::time::Instant::now());
                    }
                    continue;
                };
                let (tls, tx) = (tls.clone(), tx.clone());
                tokio::spawn(async move {
                    let _ = stream.set_nodelay(true);
                    let done = handshake(&tls, stream, addr, limits.timeout).await;
                    drop(permit);
                    if let Some(s) = done {
                        let _ = tx.send((s, addr)).await;
                    }
                });
            }
        });
        Ok(TlsListener { local, ready })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(x) => x,
            // The accept task never ends while this end is open.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// A lab's certificates, as `hotline cert self-signed` writes them.
pub struct SelfSigned {
    /// The CA that signed the leaf: what phones and browsers are told to trust.
    pub ca: PathBuf,
    /// The leaf and the CA, for the server (`[sip.tls] cert`, `[http.tls] cert`).
    pub cert: PathBuf,
    /// The leaf's key.
    pub key: PathBuf,
}

/// Makes a CA and a leaf it signs for `names` (DNS names or IP addresses), valid for `days`,
/// and writes `ca.pem`, `cert.pem` and `key.pem` (mode 0600) into `dir`. The CA's own key is
/// not kept: nothing else can be signed with it.
pub fn self_signed(dir: &Path, names: &[String], days: u32) -> Result<SelfSigned, TlsError> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let now = time::OffsetDateTime::now_utc();
    let until = now + time::Duration::days(i64::from(days));
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Hotline lab CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.not_before = now - time::Duration::hours(1);
    ca_params.not_after = until;
    let ca_key = KeyPair::generate()?;
    let ca = ca_params.self_signed(&ca_key)?;
    let mut leaf_params = CertificateParams::new(names.to_vec())?;
    leaf_params.distinguished_name.push(
        DnType::CommonName,
        names.first().map_or("hotline", String::as_str),
    );
    leaf_params.not_before = now - time::Duration::hours(1);
    leaf_params.not_after = until;
    leaf_params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let leaf_key = KeyPair::generate()?;
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key)?;
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let out = SelfSigned {
        ca: dir.join("ca.pem"),
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    write(&out.ca, ca.pem().as_bytes(), 0o644)?;
    write(
        &out.cert,
        format!("{}{}", leaf.pem(), ca.pem()).as_bytes(),
        0o644,
    )?;
    write(&out.key, leaf_key.serialize_pem().as_bytes(), 0o600)?;
    Ok(out)
}

fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(err)?;
    f.write_all(bytes).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lab(names: &[&str]) -> (tempfile::TempDir, SelfSigned) {
        let dir = tempfile::tempdir().unwrap();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let made = self_signed(dir.path(), &names, 30).unwrap();
        (dir, made)
    }

    #[test]
    fn a_lab_pair_loads_and_its_key_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let (_dir, made) = lab(&["localhost", "127.0.0.1"]);
        let files = TlsFiles {
            cert: made.cert.clone(),
            key: made.key.clone(),
        };
        files.server_config(&[b"http/1.1"]).unwrap();
        let mode = std::fs::metadata(&made.key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn each_bad_file_is_named() {
        let (dir, made) = lab(&["localhost"]);
        let missing = TlsFiles {
            cert: dir.path().join("nope.pem"),
            key: made.key.clone(),
        };
        let e = missing.server_config(&[]).unwrap_err().to_string();
        assert!(e.contains("nope.pem"), "{e}");
        // The key file given as the certificate, and the certificate as the key.
        let swapped = TlsFiles {
            cert: made.key.clone(),
            key: made.cert.clone(),
        };
        let e = swapped.server_config(&[]).unwrap_err();
        assert!(
            matches!(e, TlsError::NoCertificate { ref path } if *path == made.key),
            "{e}"
        );
        let no_key = TlsFiles {
            cert: made.cert.clone(),
            key: made.ca.clone(),
        };
        let e = no_key.server_config(&[]).unwrap_err();
        assert!(
            matches!(e, TlsError::NoKey { ref path } if *path == made.ca),
            "{e}"
        );
        // A key that is not the leaf's.
        let (_other_dir, other) = lab(&["localhost"]);
        let mismatched = TlsFiles {
            cert: made.cert.clone(),
            key: other.key.clone(),
        };
        let e = mismatched.server_config(&[]).unwrap_err().to_string();
        assert!(e.contains("cert.pem") && e.contains("key.pem"), "{e}");
    }

    #[test]
    fn an_expired_or_future_certificate_is_refused_with_its_date() {
        let (_dir, made) = lab(&["localhost"]);
        let pem = std::fs::read(&made.cert).unwrap();
        let leaf = CertificateDer::pem_slice_iter(&pem)
            .next()
            .unwrap()
            .unwrap();
        let now = chrono::Utc::now();
        check_validity(&made.cert, &leaf, now).unwrap();
        let later = now + chrono::Duration::days(31);
        let e = check_validity(&made.cert, &leaf, later).unwrap_err();
        assert!(matches!(e, TlsError::Expired { .. }), "{e}");
        assert!(e.to_string().contains("cert.pem") && e.to_string().contains("expired"));
        let earlier = now - chrono::Duration::days(1);
        let e = check_validity(&made.cert, &leaf, earlier).unwrap_err();
        assert!(matches!(e, TlsError::NotYetValid { .. }), "{e}");
    }

    #[test]
    fn a_failed_reload_keeps_the_running_certificate() {
        let (dir, made) = lab(&["localhost"]);
        let files = TlsFiles {
            cert: made.cert.clone(),
            key: made.key.clone(),
        };
        let tls = Reloadable::load(files, &[]).unwrap();
        let before = tls.current.read().unwrap().clone();
        std::fs::write(&made.cert, b"half-written").unwrap();
        assert!(tls.reload().is_err());
        assert!(Arc::ptr_eq(&before, &tls.current.read().unwrap()));
        // A renewal in place is taken.
        self_signed(dir.path(), &["localhost".to_string()], 30).unwrap();
        tls.reload().unwrap();
        assert!(!Arc::ptr_eq(&before, &tls.current.read().unwrap()));
    }
}
