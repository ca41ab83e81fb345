//! Typed, validated configuration read from `sip-config/hotline.toml`.
//!
//! Every problem is reported with the dotted key it concerns (`sip.listen`,
//! `operators[2].extension`) so that an engineer editing the file on a live system can fix it
//! without reading code. Unknown keys are rejected too: a typo must not silently fall back to a
//! default on a bank's phone line.

use ipnet::IpNet;
use serde::Deserialize;
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Errors found while reading or validating the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "cannot read {path}: {source} (relative paths are from the working directory: run \
         from the repository root, or give --config or HOTLINE_CONFIG)"
    )]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("`{key}`: {problem}")]
    Invalid { key: String, problem: String },
}

// The sections other modules own check themselves with their own errors; a problem is
// reported here under the same dotted key.
impl From<crate::records::RecordError> for ConfigError {
    fn from(e: crate::records::RecordError) -> Self {
        let crate::records::RecordError::Invalid { field, message } = e;
        ConfigError::invalid(field, message)
    }
}

impl From<crate::notify::NotifyError> for ConfigError {
    fn from(e: crate::notify::NotifyError) -> Self {
        match e {
            crate::notify::NotifyError::Invalid { key, problem } => {
                ConfigError::invalid(key, problem)
            }
            other => ConfigError::invalid("notify", other.to_string()),
        }
    }
}

impl From<crate::transcribe::SettingError> for ConfigError {
    fn from(e: crate::transcribe::SettingError) -> Self {
        let crate::transcribe::SettingError::Invalid { key, problem } = e;
        ConfigError::invalid(key, problem)
    }
}

impl ConfigError {
    pub(crate) fn invalid(key: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            problem: problem.into(),
        }
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub sip: SipConfig,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub media: MediaConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub operators: Vec<OperatorConfig>,
    #[serde(default)]
    pub calendar: crate::calendar::CalendarConfig,
    #[serde(default)]
    pub records: RecordsConfig,
    #[serde(default)]
    pub queue: QueueSettings,
    #[serde(default)]
    pub voicemail: VoicemailConfig,
    #[serde(default)]
    pub transcription: crate::transcribe::TranscriptionConfig,
    #[serde(default)]
    pub notify: crate::notify::NotifyConfig,
    #[serde(default)]
    pub tickets: crate::records::tickets::TicketsConfig,
    #[serde(default)]
    pub console: ConsoleConfig,
    #[serde(default)]
    pub alerts: crate::records::alert::AlertsConfig,
    #[serde(default)]
    pub cluster: ClusterConfig,
    /// The file as written, with the command line's overrides: what the admin's console
    /// shows ([`Config::masked_toml`]).
    #[serde(skip)]
    pub source: toml::Table,
}

/// `[cluster]`: this node's place among several behind Kamailio, and how it stops.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// This node's name in a cluster (letters, digits, `-`, `_`; up to 32). Set, the node
    /// is part of a cluster, whose one shared state is PostgreSQL: SQLite is refused.
    #[serde(default)]
    pub node_id: Option<String>,
    /// What SIGTERM does: "stop" (at once, as SIGINT) or "drain" (new calls and the
    /// proxy's OPTIONS probes get 503, the calls in progress finish, then the node stops:
    /// a rolling upgrade). A second signal while draining stops at once. Unset: "drain"
    /// for a node of a cluster, "stop" otherwise ([`ClusterConfig::sigterm`]).
    #[serde(default)]
    pub on_sigterm: Option<OnSigterm>,
    /// The longest a drain waits for the calls in progress; those still up are then cut.
    #[serde(default = "default_drain_limit_s")]
    pub drain_limit_s: u64,
    /// How often a node beats its heartbeat in the database (milliseconds).
    #[serde(default = "default_heartbeat_ms")]
    pub heartbeat_ms: u64,
    /// A node whose heartbeat is older than this is lost: a survivor ends its calls in
    /// progress and takes over its work. The heartbeat plus this stay under the 10 s the
    /// bank allows for a lost node's calls to be finalised.
    #[serde(default = "default_lost_after_s")]
    pub lost_after_s: u64,
    /// Where the other nodes reach this node's console and API (its recordings and
    /// voicemail are on its disk, and a node asked for one fetches it from here). Unset:
    /// `http://` or `https://` and the address the console listens on, when that is not a
    /// wildcard.
    #[serde(default)]
    pub http_url: Option<String>,
}

/// What SIGTERM does ([`ClusterConfig::on_sigterm`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnSigterm {
    #[default]
    Stop,
    Drain,
}

fn default_drain_limit_s() -> u64 {
    3600
}

fn default_heartbeat_ms() -> u64 {
    1000
}

fn default_lost_after_s() -> u64 {
    5
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            node_id: None,
            on_sigterm: None,
            drain_limit_s: default_drain_limit_s(),
            heartbeat_ms: default_heartbeat_ms(),
            lost_after_s: default_lost_after_s(),
            http_url: None,
        }
    }
}

impl ClusterConfig {
    /// What SIGTERM does here: as configured, else a cluster's node drains.
    pub fn sigterm(&self) -> OnSigterm {
        self.on_sigterm.unwrap_or(if self.node_id.is_some() {
            OnSigterm::Drain
        } else {
            OnSigterm::Stop
        })
    }

    fn validate(&self, storage: &StorageConfig) -> Result<(), ConfigError> {
        if !(1..=86_400).contains(&self.drain_limit_s) {
            return Err(ConfigError::invalid(
                "cluster.drain_limit_s",
                "must be between 1 and 86400 seconds",
            ));
        }
        if !(100..=10_000).contains(&self.heartbeat_ms) {
            return Err(ConfigError::invalid(
                "cluster.heartbeat_ms",
                "must be between 100 and 10000 milliseconds",
            ));
        }
        if !(1..=600).contains(&self.lost_after_s)
            || self.lost_after_s * 1000 < 3 * self.heartbeat_ms
        {
            return Err(ConfigError::invalid(
                "cluster.lost_after_s",
                "must be between 1 and 600 seconds, and at least three heartbeats",
            ));
        }
        if let Some(url) = &self.http_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) || url.contains('?') {
                return Err(ConfigError::invalid(
                    "cluster.http_url",
                    format!("{url:?}: an http:// or https:// base URL"),
                ));
            }
        }
        let Some(id) = &self.node_id else {
            return Ok(());
        };
        let fine = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if id.is_empty() || id.len() > 32 || !id.chars().all(fine) {
            return Err(ConfigError::invalid(
                "cluster.node_id",
                format!("{id:?}: use 1 to 32 letters, digits, '-' or '_'"),
            ));
        }
        let url = storage.effective_database_url();
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(ConfigError::invalid(
                "cluster.node_id",
                "a cluster shares one PostgreSQL database: set storage.database_url = \
                 \"postgres://…\" on every node (SQLite is one node's own file)",
            ));
        }
        Ok(())
    }
}

/// `[console]`: the web console's accounts and sessions.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// A session unused this long ends (seconds; 30 minutes by default).
    #[serde(default = "default_session_idle_s")]
    pub session_idle_s: u64,
    /// A session ends this long after its login, however busy (hours).
    #[serde(default = "default_session_max_hours")]
    pub session_max_hours: u64,
    /// Roles that give a TOTP code after the password: those that read every customer's data.
    #[serde(default = "default_totp_roles")]
    pub totp_roles: Vec<crate::records::role::Role>,
    /// Failed logins of one login, within the lock time, before it is locked.
    #[serde(default = "default_login_max_failures")]
    pub login_max_failures: u32,
    /// Failed logins from one address, within the lock time, before it is locked.
    #[serde(default = "default_address_max_failures")]
    pub address_max_failures: u32,
    /// How long a lock lasts, and the window failures are counted in (minutes).
    #[serde(default = "default_login_lock_minutes")]
    pub login_lock_minutes: u64,
    /// The name an authenticator app shows beside the codes.
    #[serde(default = "default_totp_issuer")]
    pub totp_issuer: String,
    /// The bank's name in the operators' greeting script (SPEC §4a).
    #[serde(default = "default_bank_name")]
    pub bank_name: String,
}

fn default_session_idle_s() -> u64 {
    30 * 60
}
fn default_session_max_hours() -> u64 {
    12
}
fn default_totp_roles() -> Vec<crate::records::role::Role> {
    use crate::records::role::Role;
    vec![Role::Supervisor, Role::Security, Role::Admin]
}
fn default_login_max_failures() -> u32 {
    5
}
fn default_address_max_failures() -> u32 {
    20
}
fn default_login_lock_minutes() -> u64 {
    15
}
fn default_totp_issuer() -> String {
    "Hotline".into()
}
fn default_bank_name() -> String {
    "Банк".into()
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            session_idle_s: default_session_idle_s(),
            session_max_hours: default_session_max_hours(),
            totp_roles: default_totp_roles(),
            login_max_failures: default_login_max_failures(),
            address_max_failures: default_address_max_failures(),
            login_lock_minutes: default_login_lock_minutes(),
            totp_issuer: default_totp_issuer(),
            bank_name: default_bank_name(),
        }
    }
}

impl ConsoleConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        for (key, v) in [
            ("console.session_idle_s", self.session_idle_s),
            ("console.session_max_hours", self.session_max_hours),
            ("console.login_lock_minutes", self.login_lock_minutes),
            (
                "console.login_max_failures",
                u64::from(self.login_max_failures),
            ),
            (
                "console.address_max_failures",
                u64::from(self.address_max_failures),
            ),
        ] {
            if v == 0 {
                return Err(ConfigError::invalid(key, "must be at least 1"));
            }
        }
        Ok(())
    }
}

/// `[voicemail]`: when a message ends (SPEC §2.6).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoicemailConfig {
    /// Longest message, in seconds (SPEC: 120).
    #[serde(default = "default_vm_max_length_s")]
    pub max_length_s: u64,
    /// A message ends after this many seconds of silence.
    #[serde(default = "default_vm_silence_s")]
    pub silence_s: u64,
    /// Less speech than this (milliseconds) marks the message empty; it is kept and
    /// journaled all the same.
    #[serde(default = "default_vm_min_speech_ms")]
    pub min_speech_ms: u64,
    /// Frames quieter than this (dBFS RMS) count as silence.
    #[serde(default = "default_vm_silence_dbfs")]
    pub silence_dbfs: f32,
}

impl Default for VoicemailConfig {
    fn default() -> Self {
        VoicemailConfig {
            max_length_s: default_vm_max_length_s(),
            silence_s: default_vm_silence_s(),
            min_speech_ms: default_vm_min_speech_ms(),
            silence_dbfs: default_vm_silence_dbfs(),
        }
    }
}

impl VoicemailConfig {
    pub fn max_length(&self) -> Duration {
        Duration::from_secs(self.max_length_s)
    }

    pub fn silence(&self) -> Duration {
        Duration::from_secs(self.silence_s)
    }

    pub fn min_speech(&self) -> Duration {
        Duration::from_millis(self.min_speech_ms)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=3600).contains(&self.max_length_s) {
            return Err(ConfigError::invalid(
                "voicemail.max_length_s",
                "must be between 1 and 3600 seconds",
            ));
        }
        if self.silence_s == 0 {
            return Err(ConfigError::invalid(
                "voicemail.silence_s",
                "must be at least 1 second",
            ));
        }
        if !(-96.0..=0.0).contains(&self.silence_dbfs) {
            return Err(ConfigError::invalid(
                "voicemail.silence_dbfs",
                "must be between -96 and 0 (dBFS)",
            ));
        }
        Ok(())
    }
}

fn default_vm_max_length_s() -> u64 {
    120
}
fn default_vm_silence_s() -> u64 {
    7
}
fn default_vm_min_speech_ms() -> u64 {
    1000
}
fn default_vm_silence_dbfs() -> f32 {
    -45.0
}

/// `[records]`: the journal's repeat-appeal window, retention and the service level.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordsConfig {
    /// A call from a number journaled within this many days is a repeat appeal (ch. 3).
    #[serde(default = "default_repeat_window_days")]
    pub repeat_window_days: u32,
    /// Years records and recordings are kept after their last document (§7.6: 5).
    #[serde(default = "default_retention_years")]
    pub retention_years: u32,
    /// Service level: calls answered within this many seconds.
    #[serde(default = "default_service_level_s")]
    pub service_level_s: u64,
}

impl Default for RecordsConfig {
    fn default() -> Self {
        RecordsConfig {
            repeat_window_days: default_repeat_window_days(),
            retention_years: default_retention_years(),
            service_level_s: default_service_level_s(),
        }
    }
}

impl RecordsConfig {
    pub fn settings(&self) -> crate::records::RecordsSettings {
        crate::records::RecordsSettings {
            repeat_window: Duration::from_secs(u64::from(self.repeat_window_days) * 86_400),
            retention_years: self.retention_years,
            service_level: Duration::from_secs(self.service_level_s),
        }
    }
}

fn default_repeat_window_days() -> u32 {
    30
}
fn default_retention_years() -> u32 {
    5
}
fn default_service_level_s() -> u64 {
    20
}

/// `[queue]`: the operator queue (SPEC §2.5).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSettings {
    /// An operator's phone rings this long, then the next free operator is tried.
    #[serde(default = "default_ring_timeout_s")]
    pub ring_timeout_s: u64,
    /// After a call the operator gets no call for this long (journal entry, callback form).
    #[serde(default = "default_wrap_up_s")]
    pub wrap_up_s: u64,
    /// The longest a caller waits for an operator before voicemail (the service standard:
    /// 2 minutes); 0 sends them to voicemail at once when nobody is free, as §6.1 has it.
    #[serde(default = "default_max_wait_s")]
    pub max_wait_s: u64,
    /// A waiting caller hears their position this often; 0 never.
    #[serde(default = "default_position_every_s")]
    pub position_every_s: u64,
    /// The key that leaves the queue for voicemail: one of 0-9, `*`, `#`.
    #[serde(default = "default_voicemail_key")]
    pub voicemail_key: String,
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            ring_timeout_s: default_ring_timeout_s(),
            wrap_up_s: default_wrap_up_s(),
            max_wait_s: default_max_wait_s(),
            position_every_s: default_position_every_s(),
            voicemail_key: default_voicemail_key(),
        }
    }
}

impl QueueSettings {
    /// The voicemail key as a DTMF digit (validated: falls back to `1` only on a config
    /// that skipped [`Config::validate`]).
    pub fn voicemail_key(&self) -> char {
        match self.voicemail_key.chars().next() {
            Some(c) if self.voicemail_key.len() == 1 && is_dtmf_key(c) => c,
            _ => '1',
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=300).contains(&self.ring_timeout_s) {
            return Err(ConfigError::invalid(
                "queue.ring_timeout_s",
                "must be between 1 and 300 seconds",
            ));
        }
        for (key, value) in [
            ("queue.wrap_up_s", self.wrap_up_s),
            ("queue.max_wait_s", self.max_wait_s),
            ("queue.position_every_s", self.position_every_s),
        ] {
            if value > 3600 {
                return Err(ConfigError::invalid(key, "must be at most 3600 seconds"));
            }
        }
        let mut chars = self.voicemail_key.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) if is_dtmf_key(c) => Ok(()),
            _ => Err(ConfigError::invalid(
                "queue.voicemail_key",
                format!(
                    "{:?} is not one DTMF key (one of 0-9, *, #)",
                    self.voicemail_key
                ),
            )),
        }
    }
}

fn is_dtmf_key(c: char) -> bool {
    c.is_ascii_digit() || c == '*' || c == '#'
}
fn default_ring_timeout_s() -> u64 {
    15
}
fn default_wrap_up_s() -> u64 {
    10
}
fn default_max_wait_s() -> u64 {
    120
}
fn default_position_every_s() -> u64 {
    30
}
fn default_voicemail_key() -> String {
    "1".to_string()
}

/// Digest algorithms the registrar may offer (RFC 8760), in the configured order of preference:
/// the registrar's own type, spelled `"SHA-256"` and `"MD5"` in the file.
pub use crate::sip::digest::Algorithm as AuthAlgorithm;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipConfig {
    /// UDP and TCP listen on this same address and port.
    pub listen: SocketAddr,
    /// SIP domain of the hotline; also the digest realm.
    pub domain: String,
    /// Address put into Contact and SDP when `listen` is a wildcard address.
    #[serde(default)]
    pub public_address: Option<IpAddr>,
    /// User parts of the request-URIs that reach the hotline (`sip:8800@…`).
    pub hotline_numbers: Vec<String>,
    #[serde(default = "default_user_agent")]
    pub user_agent: String,
    /// Ring (180) for this long before answering; 0 answers at once.
    #[serde(default)]
    pub answer_delay_ms: u64,
    #[serde(default = "default_auth_algorithms")]
    pub auth_algorithms: Vec<AuthAlgorithm>,
    #[serde(default)]
    pub timers: TimerConfig,
    /// SIP over TLS beside UDP and TCP; none: no TLS listener.
    #[serde(default)]
    pub tls: Option<SipTlsConfig>,
}

/// `[sip.tls]`: SIP over TLS (RFC 3261 §26) on its own port.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipTlsConfig {
    /// Default: `sip.listen`'s address, port 5061 (port 0 there: any free port).
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// PEM chain, the leaf first ([`crate::tls::TlsFiles`]).
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Operators' phones must register over TLS: a registration over UDP or TCP gets 403
    /// with a Warning, and SDES keys are then never sent in the clear.
    #[serde(default)]
    pub require_for_operators: bool,
    /// A handshake not finished in this time is dropped.
    #[serde(default = "default_tls_handshake_timeout_ms")]
    pub handshake_timeout_ms: u64,
    /// Handshakes in progress at once; connections beyond it are closed at once.
    #[serde(default = "default_tls_max_handshakes")]
    pub max_handshakes: usize,
}

impl SipTlsConfig {
    /// Where the TLS listener binds, given the SIP address.
    pub fn listen_addr(&self, sip: SocketAddr) -> SocketAddr {
        self.listen.unwrap_or_else(|| {
            let port = if sip.port() == 0 { 0 } else { 5061 };
            SocketAddr::new(sip.ip(), port)
        })
    }

    pub fn files(&self) -> crate::tls::TlsFiles {
        crate::tls::TlsFiles {
            cert: self.cert.clone(),
            key: self.key.clone(),
        }
    }

    pub fn handshake_limits(&self) -> crate::tls::HandshakeLimits {
        crate::tls::HandshakeLimits {
            timeout: Duration::from_millis(self.handshake_timeout_ms),
            in_progress: self.max_handshakes,
        }
    }
}

fn default_tls_handshake_timeout_ms() -> u64 {
    5_000
}
fn default_tls_max_handshakes() -> usize {
    64
}

/// RFC 3261 timer base values; only tests and unusual networks change them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimerConfig {
    #[serde(default = "default_t1")]
    pub t1_ms: u64,
    #[serde(default = "default_t2")]
    pub t2_ms: u64,
    #[serde(default = "default_t4")]
    pub t4_ms: u64,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            t1_ms: default_t1(),
            t2_ms: default_t2(),
            t4_ms: default_t4(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// The console and the API; HTTPS when `[http.tls]` is set.
    #[serde(default = "default_http_listen")]
    pub listen: SocketAddr,
    /// Plain HTTP on an address other than loopback is refused unless this is set (and
    /// then warned about at start-up): the console carries customers' data and passwords.
    #[serde(default)]
    pub allow_plain_http: bool,
    #[serde(default)]
    pub tls: Option<HttpTlsConfig>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: default_http_listen(),
            allow_plain_http: false,
            tls: None,
        }
    }
}

/// `[http.tls]`: HTTPS for the console and the API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpTlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// A plain-HTTP listener here answers every request with a redirect to HTTPS.
    #[serde(default)]
    pub redirect_from: Option<SocketAddr>,
    /// `Strict-Transport-Security: max-age=…` on every response.
    #[serde(default = "default_hsts_max_age_s")]
    pub hsts_max_age_s: u64,
}

impl HttpTlsConfig {
    pub fn files(&self) -> crate::tls::TlsFiles {
        crate::tls::TlsFiles {
            cert: self.cert.clone(),
            key: self.key.clone(),
        }
    }
}

fn default_hsts_max_age_s() -> u64 {
    // A year, as browsers' preload lists ask.
    31_536_000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Recordings, voicemail and the embedded SQLite database live here.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; empty means SQLite under `data_dir`.
    #[serde(default)]
    pub database_url: Option<String>,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: default_data_dir(),
            database_url: None,
        }
    }
}

impl StorageConfig {
    /// The database URL in effect: the configured one or the embedded SQLite file.
    pub fn effective_database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("hotline.db").display()),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaConfig {
    /// RTP ports (even ones; each call takes one per leg). Ports in use by another program
    /// are skipped.
    #[serde(default = "default_rtp_min")]
    pub rtp_port_min: u16,
    #[serde(default = "default_rtp_max")]
    pub rtp_port_max: u16,
    /// A call whose caller sends no RTP for this long is hung up with BYE (a phone that lost
    /// power or network never sends one). Suspended while the caller has put the call on
    /// hold without media. `0` disables the check.
    #[serde(default = "default_rtp_timeout")]
    pub rtp_timeout_s: u64,
    /// Directory holding `prompts.toml` and the prompt WAVs, relative to the working
    /// directory unless absolute.
    #[serde(default = "default_prompts_dir")]
    pub prompts_dir: PathBuf,
    /// Threads that move RTP (unset: one per CPU). They run apart from signalling and the
    /// API ([`crate::media::runtime`]).
    #[serde(default)]
    pub threads: Option<usize>,
    /// `SCHED_RR` priority of those threads (1–99; 0: the normal class). Real-time media
    /// threads are what keeps jitter unchanged while voicemail is transcribed on the same
    /// cores; without the permission (`CAP_SYS_NICE`) the hotline warns and runs them
    /// normally.
    #[serde(default = "default_media_priority")]
    pub realtime_priority: u8,
    /// Signalling peers (the carrier's SBC) whose SDP may name a media address other than
    /// their own, to be sent to before any RTP has arrived from it. Anyone else's RTP goes
    /// nowhere until it arrives, then back where it came from (symmetric RTP): an SDP
    /// naming a third party cannot aim the hotline's audio at it.
    #[serde(default)]
    pub sdp_trusted_sources: Vec<ipnet::IpNet>,
    /// SRTP with SDES keys (RFC 3711, RFC 4568), only ever over SIP over TLS:
    /// `"off"`, `"optional"` (SRTP where the peer offers it, and to operators registered
    /// over TLS; plain RTP where the peer offers that) or `"required"` (a plain offer gets
    /// 488; needs `[sip.tls]` with `require_for_operators`).
    #[serde(default)]
    pub srtp: crate::sip::sdes::Policy,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            rtp_port_min: default_rtp_min(),
            rtp_port_max: default_rtp_max(),
            rtp_timeout_s: default_rtp_timeout(),
            prompts_dir: default_prompts_dir(),
            threads: None,
            realtime_priority: default_media_priority(),
            sdp_trusted_sources: Vec::new(),
            srtp: crate::sip::sdes::Policy::default(),
        }
    }
}

impl MediaConfig {
    /// `None` when the RTP timeout is disabled.
    pub fn rtp_timeout(&self) -> Option<Duration> {
        (self.rtp_timeout_s > 0).then(|| Duration::from_secs(self.rtp_timeout_s))
    }

    /// The media threads to start.
    pub fn media_threads(&self) -> usize {
        self.threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Concurrent calls; over it new INVITEs get 503.
    #[serde(default = "default_max_calls")]
    pub max_calls: usize,
    /// New calls per second the SIP core is sized for. Ended transactions linger 32 s
    /// (64·T1) to absorb retransmissions, so the transaction table is allocated up front
    /// for this rate's lingering transactions: it then never stops the core to grow during
    /// a rush. Above the rate it still grows, pausing the core for milliseconds (tens at
    /// 100k transactions) at each doubling; below it, the table is memory held for nothing
    /// (about 1 MB per 100 calls/s).
    #[serde(default = "default_peak_call_rate")]
    pub peak_call_rate: u32,
    /// Largest SIP message accepted, in bytes.
    #[serde(default = "default_max_message_size")]
    pub max_message_size: usize,
    #[serde(default = "default_tcp_max_connections")]
    pub tcp_max_connections: usize,
    /// TCP connections one address may hold at once (`trusted_sources` exempt): a phone
    /// needs one, a busy PBX a few; a flood from one address cannot take every slot.
    #[serde(default = "default_tcp_max_connections_per_source")]
    pub tcp_max_connections_per_source: usize,
    /// A TCP connection with no traffic for this long is closed.
    #[serde(default = "default_tcp_idle")]
    pub tcp_idle_timeout_s: u64,
    /// Requests per second one source address may send (token bucket rate)…
    #[serde(default = "default_source_rate")]
    pub source_rate: u32,
    /// …and the bucket size (burst).
    #[serde(default = "default_source_burst")]
    pub source_burst: u32,
    /// Sources exempt from the rate limit: the carrier trunk or SBC.
    #[serde(default)]
    pub trusted_sources: Vec<IpNet>,
    /// Failed digest attempts from one address before it is locked out…
    #[serde(default = "default_auth_max_failures")]
    pub auth_max_failures: u32,
    /// …for this many minutes.
    #[serde(default = "default_auth_lockout")]
    pub auth_lockout_minutes: u64,
    #[serde(default = "default_min_expires")]
    pub register_min_expires: u32,
    #[serde(default = "default_max_expires")]
    pub register_max_expires: u32,
    /// A digest nonce older than this is answered with `stale=true`.
    #[serde(default = "default_nonce_lifetime")]
    pub nonce_lifetime_s: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        // One source of truth for the defaults: deserialise an empty table.
        toml::from_str("").expect("defaults of [limits] deserialise")
    }
}

impl LimitsConfig {
    pub fn auth_lockout(&self) -> Duration {
        Duration::from_secs(self.auth_lockout_minutes * 60)
    }
}

/// One operator's softphone account.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorConfig {
    /// The SIP user the phone registers as (`sip:1001@domain`).
    pub extension: String,
    /// Shown to supervisors and in the journal.
    pub name: String,
    /// Digest password given inline (tests, labs)…
    #[serde(default)]
    pub password: Option<String>,
    /// …or the name of an environment variable that holds it (production: no secrets in files).
    #[serde(default)]
    pub password_env: Option<String>,
    /// Where the operator is told that an ATM they registered a ticket for works again.
    #[serde(default)]
    pub email: Option<String>,
}

impl OperatorConfig {
    /// The operator's password, resolved from the file or the environment.
    pub fn resolve_password(&self) -> Option<String> {
        if let Some(p) = &self.password {
            return Some(p.clone());
        }
        self.password_env
            .as_ref()
            .and_then(|var| std::env::var(var).ok())
            .filter(|p| !p.is_empty())
    }
}

fn default_user_agent() -> String {
    format!("Hotline/{}", env!("CARGO_PKG_VERSION"))
}
fn default_auth_algorithms() -> Vec<AuthAlgorithm> {
    vec![AuthAlgorithm::Sha256, AuthAlgorithm::Md5]
}
fn default_t1() -> u64 {
    500
}
fn default_t2() -> u64 {
    4000
}
fn default_t4() -> u64 {
    5000
}
fn default_http_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}
fn default_rtp_min() -> u16 {
    20000
}
fn default_rtp_max() -> u16 {
    39999
}
fn default_rtp_timeout() -> u64 {
    30
}
/// Low in the real-time range: above every normal thread, below the kernel's own
/// real-time threads (interrupt threads run at 50).
fn default_media_priority() -> u8 {
    10
}
fn default_prompts_dir() -> PathBuf {
    PathBuf::from("ivr-prompts")
}
fn default_max_calls() -> usize {
    1000
}
fn default_peak_call_rate() -> u32 {
    200
}
fn default_max_message_size() -> usize {
    16 * 1024
}
fn default_tcp_max_connections() -> usize {
    1024
}
fn default_tcp_max_connections_per_source() -> usize {
    32
}
fn default_tcp_idle() -> u64 {
    300
}
fn default_source_rate() -> u32 {
    50
}
fn default_source_burst() -> u32 {
    200
}
fn default_auth_max_failures() -> u32 {
    5
}
fn default_auth_lockout() -> u64 {
    15
}
fn default_min_expires() -> u32 {
    60
}
fn default_max_expires() -> u32 {
    3600
}
fn default_nonce_lifetime() -> u64 {
    300
}

const MASK: &str = "••••••";

fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    !k.ends_with("_env")
        && ["password", "secret", "token", "key", "credential"]
            .iter()
            .any(|s| k.contains(s))
}

fn mask_table(table: &mut toml::Table) {
    for (key, value) in table.iter_mut() {
        if is_secret_key(key) && !value.is_table() && !value.is_array() {
            *value = toml::Value::String(MASK.into());
        } else {
            mask_value(value);
        }
    }
}

fn mask_value(value: &mut toml::Value) {
    match value {
        toml::Value::Table(t) => mask_table(t),
        toml::Value::Array(a) => a.iter_mut().for_each(mask_value),
        toml::Value::String(s) => *s = mask_url_password(s),
        _ => {}
    }
}

/// `scheme://user:password@host…` → `scheme://user:••••••@host…`; anything else as it is.
fn mask_url_password(s: &str) -> String {
    let Some(scheme_end) = s.find("://") else {
        return s.to_string();
    };
    let rest = &s[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return s.to_string();
    };
    let Some(colon) = rest[..at].find(':') else {
        return s.to_string();
    };
    format!(
        "{}{}{MASK}{}",
        &s[..scheme_end + 3],
        &rest[..colon + 1],
        &rest[at..]
    )
}

/// Overrides given on the command line; they win over the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub sip_listen: Option<SocketAddr>,
    pub http_listen: Option<SocketAddr>,
    pub database_url: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub node_id: Option<String>,
}

impl Config {
    /// Reads, applies overrides and validates.
    pub fn load(path: &Path, overrides: &Overrides) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Config::from_toml(&text).map_err(|e| match e {
            ConfigError::Syntax { message, .. } => ConfigError::Syntax {
                path: path.to_owned(),
                message,
            },
            other => other,
        })?;
        config.apply(overrides);
        config.validate()?;
        Ok(config)
    }

    /// Parses TOML text without validating (tests build configs this way).
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let syntax = |e: toml::de::Error| ConfigError::Syntax {
            path: PathBuf::from("<config>"),
            message: e.to_string().trim_end().to_string(),
        };
        let mut config: Config = toml::from_str(text).map_err(syntax)?;
        config.source = toml::from_str(text).map_err(syntax)?;
        Ok(config)
    }

    /// The running configuration as TOML with every secret replaced by `••••••`: values of
    /// keys that name a password, secret, token or key, and the password in a URL
    /// (`postgres://user:…@host`). Names of environment variables (`*_env`) are kept:
    /// they say where the secret is, not what it is.
    pub fn masked_toml(&self) -> String {
        let mut table = self.source.clone();
        mask_table(&mut table);
        toml::to_string_pretty(&table).unwrap_or_default()
    }

    pub fn apply(&mut self, o: &Overrides) {
        if let Some(a) = o.sip_listen {
            self.sip.listen = a;
            self.set_source("sip", "listen", a.to_string());
        }
        if let Some(a) = o.http_listen {
            self.http.listen = a;
            self.set_source("http", "listen", a.to_string());
        }
        if let Some(u) = &o.database_url {
            self.storage.database_url = Some(u.clone());
            self.set_source("storage", "database_url", u.clone());
        }
        if let Some(d) = &o.data_dir {
            self.storage.data_dir = d.clone();
            self.set_source("storage", "data_dir", d.display().to_string());
        }
        if let Some(n) = &o.node_id {
            self.cluster.node_id = Some(n.clone());
            self.set_source("cluster", "node_id", n.clone());
        }
    }

    fn set_source(&mut self, section: &str, key: &str, value: String) {
        let entry = self
            .source
            .entry(section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(t) = entry {
            t.insert(key.to_string(), toml::Value::String(value));
        }
    }

    /// Checks everything serde cannot: names, ranges, uniqueness.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.voicemail.validate()?;
        self.queue.validate()?;
        self.transcription.validate()?;
        self.notify.validate()?;
        self.tickets.validate()?;
        self.console.validate()?;
        self.cluster.validate(&self.storage)?;
        for o in &self.operators {
            if let Some(e) = &o.email {
                if e.parse::<lettre::Address>().is_err() {
                    return Err(ConfigError::invalid(
                        "operators.email",
                        format!("{e} (operator {}) is not an e-mail address", o.extension),
                    ));
                }
            }
        }
        if self.records.retention_years == 0 {
            return Err(ConfigError::invalid(
                "records.retention_years",
                "must be at least 1 (the regulation keeps case files 5 years)",
            ));
        }
        if self.sip.domain.is_empty() || !self.sip.domain.chars().all(is_host_char) {
            return Err(ConfigError::invalid(
                "sip.domain",
                "must be a host name or address (letters, digits, '.', '-')",
            ));
        }
        if self.sip.hotline_numbers.is_empty() {
            return Err(ConfigError::invalid(
                "sip.hotline_numbers",
                "at least one number is needed, or no call can reach the hotline",
            ));
        }
        let mut users = HashSet::new();
        for (i, n) in self.sip.hotline_numbers.iter().enumerate() {
            if !is_sip_user(n) {
                return Err(ConfigError::invalid(
                    format!("sip.hotline_numbers[{i}]"),
                    format!("{n:?} is not a valid SIP user part"),
                ));
            }
            users.insert(n.as_str());
        }
        if self.sip.auth_algorithms.is_empty() {
            return Err(ConfigError::invalid(
                "sip.auth_algorithms",
                "offer at least one of \"SHA-256\", \"MD5\"",
            ));
        }
        let t = &self.sip.timers;
        if t.t1_ms == 0 || t.t2_ms < t.t1_ms || t.t4_ms == 0 {
            return Err(ConfigError::invalid(
                "sip.timers",
                "need t1_ms > 0, t2_ms >= t1_ms and t4_ms > 0",
            ));
        }
        if self.media.srtp == crate::sip::sdes::Policy::Required
            && !self
                .sip
                .tls
                .as_ref()
                .is_some_and(|t| t.require_for_operators)
        {
            return Err(ConfigError::invalid(
                "media.srtp",
                "\"required\" needs [sip.tls] with require_for_operators = true: SRTP keys \
                 travel only over TLS, so every call and operator must use it",
            ));
        }
        if self.sip.answer_delay_ms > 60_000 {
            return Err(ConfigError::invalid(
                "sip.answer_delay_ms",
                "at most 60000 (callers hang up long before)",
            ));
        }
        if self.http.tls.is_none()
            && !self.http.allow_plain_http
            && !self.http.listen.ip().is_loopback()
        {
            return Err(ConfigError::invalid(
                "http.listen",
                format!(
                    "{} is not a loopback address: set [http.tls] (cert, key) for HTTPS, or \
                     allow_plain_http = true behind a TLS-terminating proxy",
                    self.http.listen
                ),
            ));
        }
        if let Some(t) = &self.http.tls {
            if self.http.listen.port() != 0 && t.redirect_from == Some(self.http.listen) {
                return Err(ConfigError::invalid(
                    "http.tls.redirect_from",
                    "must differ from http.listen",
                ));
            }
        }
        if let Some(t) = &self.sip.tls {
            let at = t.listen_addr(self.sip.listen);
            if at.port() != 0 && at == self.sip.listen {
                return Err(ConfigError::invalid(
                    "sip.tls.listen",
                    "must differ from sip.listen (UDP and TCP are there)",
                ));
            }
            if t.handshake_timeout_ms == 0 || t.max_handshakes == 0 {
                return Err(ConfigError::invalid(
                    "sip.tls",
                    "handshake_timeout_ms and max_handshakes must be greater than 0",
                ));
            }
        }
        if self.http.listen.port() != 0 && self.http.listen == self.sip.listen {
            return Err(ConfigError::invalid(
                "http.listen",
                "must differ from sip.listen (SIP uses TCP on that port too)",
            ));
        }
        let m = &self.media;
        if m.rtp_port_min < 1024 || m.rtp_port_min >= m.rtp_port_max {
            return Err(ConfigError::invalid(
                "media.rtp_port_min",
                "need 1024 <= rtp_port_min < rtp_port_max",
            ));
        }
        if m.realtime_priority > 99 {
            return Err(ConfigError::invalid(
                "media.realtime_priority",
                "must be between 0 (normal scheduling) and 99",
            ));
        }
        if m.threads.is_some_and(|n| !(1..=256).contains(&n)) {
            return Err(ConfigError::invalid(
                "media.threads",
                "must be between 1 and 256",
            ));
        }
        let l = &self.limits;
        for (key, value) in [
            ("limits.max_calls", l.max_calls as u64),
            ("limits.peak_call_rate", l.peak_call_rate as u64),
            ("limits.tcp_max_connections", l.tcp_max_connections as u64),
            (
                "limits.tcp_max_connections_per_source",
                l.tcp_max_connections_per_source as u64,
            ),
            ("limits.tcp_idle_timeout_s", l.tcp_idle_timeout_s),
            ("limits.source_rate", l.source_rate as u64),
            ("limits.source_burst", l.source_burst as u64),
            ("limits.auth_max_failures", l.auth_max_failures as u64),
            ("limits.nonce_lifetime_s", l.nonce_lifetime_s),
            ("limits.register_min_expires", l.register_min_expires as u64),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(key, "must be greater than 0"));
            }
        }
        if !(1024..=65_535).contains(&l.max_message_size) {
            return Err(ConfigError::invalid(
                "limits.max_message_size",
                "must be between 1024 and 65535 bytes",
            ));
        }
        if l.register_max_expires < l.register_min_expires {
            return Err(ConfigError::invalid(
                "limits.register_max_expires",
                "must not be below register_min_expires",
            ));
        }
        let mut extensions = HashSet::new();
        for (i, op) in self.operators.iter().enumerate() {
            let key = |field: &str| format!("operators[{i}].{field}");
            if !is_sip_user(&op.extension) {
                return Err(ConfigError::invalid(
                    key("extension"),
                    format!("{:?} is not a valid SIP user part", op.extension),
                ));
            }
            if users.contains(op.extension.as_str()) {
                return Err(ConfigError::invalid(
                    key("extension"),
                    format!("{} is also a hotline number", op.extension),
                ));
            }
            if !extensions.insert(op.extension.as_str()) {
                return Err(ConfigError::invalid(
                    key("extension"),
                    format!("{} is used by another operator", op.extension),
                ));
            }
            if op.name.trim().is_empty() {
                return Err(ConfigError::invalid(key("name"), "must not be empty"));
            }
            match (&op.password, &op.password_env) {
                (Some(_), Some(_)) | (None, None) => {
                    return Err(ConfigError::invalid(
                        key("password"),
                        "give exactly one of `password` and `password_env`",
                    ))
                }
                (Some(p), None) if p.len() < 8 => {
                    return Err(ConfigError::invalid(
                        key("password"),
                        "must be at least 8 characters",
                    ))
                }
                (None, Some(var)) if var.is_empty() => {
                    return Err(ConfigError::invalid(
                        key("password_env"),
                        "must name an environment variable",
                    ))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Non-fatal findings worth telling whoever runs `check-config` or starts the server.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (i, op) in self.operators.iter().enumerate() {
            if op.resolve_password().is_none() {
                out.push(format!(
                    "operators[{i}] ({}): environment variable {} is not set; this operator cannot register",
                    op.extension,
                    op.password_env.as_deref().unwrap_or("?")
                ));
            }
        }
        if self.records.retention_years < 5 {
            out.push(format!(
                "records.retention_years = {}: the regulation (§7.6) keeps case files 5 years",
                self.records.retention_years
            ));
        }
        for what in self.notify.undeliverable() {
            out.push(format!("notices not delivered: {what}"));
        }
        if self.sip.listen.ip().is_unspecified() && self.sip.public_address.is_none() {
            out.push(
                "sip.public_address is not set: Contact and SDP will carry the address the host routes by default"
                    .to_string(),
            );
        }
        out
    }
}

fn is_host_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == ':' || c == '[' || c == ']'
}

/// RFC 3261 `user` characters, minus escapes (we never need them for numbers and extensions).
fn is_sip_user(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.!~*'()&=+$,;?/".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [sip]
        listen = "127.0.0.1:5060"
        domain = "hotline.test"
        hotline_numbers = ["8800"]
    "#;

    fn err_key(text: &str) -> String {
        let c = Config::from_toml(text).unwrap();
        match c.validate().unwrap_err() {
            ConfigError::Invalid { key, .. } => key,
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn the_running_config_shows_no_secret() {
        let text = format!(
            "{MINIMAL}
            [storage]
            database_url = \"postgres://hotline:s3cr3t-db@db.bank:5432/hotline\"
            [notify.smtp]
            host = \"mail.bank\"
            password_env = \"HOTLINE_SMTP_PASSWORD\"
            [[operators]]
            extension = \"1001\"
            name = \"Иванова\"
            password = \"s3cr3t-phone\"
            [[operators]]
            extension = \"1002\"
            name = \"Петров\"
            password_env = \"HOTLINE_PASSWORD_1002\"
            "
        );
        let mut config = Config::from_toml(&text).unwrap();
        config.apply(&Overrides {
            http_listen: Some("127.0.0.1:8099".parse().unwrap()),
            ..Default::default()
        });
        let shown = config.masked_toml();
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(
            shown.contains("postgres://hotline:••••••@db.bank:5432/hotline"),
            "{shown}"
        );
        assert!(
            shown.contains("HOTLINE_PASSWORD_1002"),
            "where the secret is: {shown}"
        );
        assert!(
            shown.contains("Иванова") && shown.contains("mail.bank"),
            "{shown}"
        );
        assert!(
            shown.contains("127.0.0.1:8099"),
            "the override is what runs: {shown}"
        );
        assert_eq!(
            mask_url_password("sqlite://data/hotline.db"),
            "sqlite://data/hotline.db"
        );
        assert_eq!(mask_url_password("https://a.b/x@y:z"), "https://a.b/x@y:z");
    }

    #[test]
    fn minimal_config_has_defaults() {
        let c = Config::from_toml(MINIMAL).unwrap();
        c.validate().unwrap();
        assert_eq!(c.limits.auth_max_failures, 5);
        assert_eq!(c.http.listen.port(), 8080);
        assert_eq!(
            c.sip.auth_algorithms,
            vec![AuthAlgorithm::Sha256, AuthAlgorithm::Md5]
        );
        assert!(c
            .storage
            .effective_database_url()
            .starts_with("sqlite://data"));
    }

    #[test]
    fn syntax_errors_name_the_key() {
        let e = Config::from_toml(&MINIMAL.replace("127.0.0.1:5060", "nonsense")).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("listen"), "{msg}");
        let e = Config::from_toml(&format!("{MINIMAL}\nbogus_key = 1")).unwrap_err();
        assert!(e.to_string().contains("bogus_key"), "{e}");
    }

    /// A node of a cluster needs the shared PostgreSQL: SQLite (the default) is refused
    /// with the reason; a cluster on PostgreSQL, and drain on SIGTERM, are accepted.
    #[test]
    fn a_cluster_needs_postgresql_and_a_plain_node_id() {
        let sqlite = format!("{MINIMAL}\n[cluster]\nnode_id = \"a\"\n");
        let e = Config::from_toml(&sqlite).unwrap().validate().unwrap_err();
        assert!(
            e.to_string().contains("cluster.node_id") && e.to_string().contains("PostgreSQL"),
            "{e}"
        );
        let pg = |cluster: &str| {
            format!(
                "{MINIMAL}\n[storage]\ndatabase_url = \"postgres://db/hotline\"\n[cluster]\n{cluster}\n"
            )
        };
        let c = Config::from_toml(&pg("node_id = \"node-a\"")).unwrap();
        c.validate().unwrap();
        assert_eq!(c.cluster.node_id.as_deref(), Some("node-a"));
        assert_eq!(
            c.cluster.sigterm(),
            OnSigterm::Drain,
            "a cluster's node drains"
        );
        let c = Config::from_toml(&pg("node_id = \"node-a\"\non_sigterm = \"stop\"")).unwrap();
        assert_eq!(c.cluster.sigterm(), OnSigterm::Stop);
        assert_eq!(c.cluster.drain_limit_s, 3600);
        assert_eq!(err_key(&pg("node_id = \"a b\"")), "cluster.node_id");
        assert_eq!(err_key(&pg("node_id = \"\"")), "cluster.node_id");
        assert_eq!(err_key(&pg("drain_limit_s = 0")), "cluster.drain_limit_s");
        assert_eq!(
            err_key(&pg("http_url = \"10.0.0.1:8080\"")),
            "cluster.http_url"
        );
        assert_eq!(c.cluster.heartbeat_ms, 1000);
        assert_eq!(c.cluster.lost_after_s, 5);
        assert_eq!(err_key(&pg("heartbeat_ms = 50")), "cluster.heartbeat_ms");
        assert_eq!(
            err_key(&pg("heartbeat_ms = 2000\nlost_after_s = 5")),
            "cluster.lost_after_s"
        );
        assert!(Config::from_toml(&pg("on_sigterm = \"later\"")).is_err());
        let single = Config::from_toml(MINIMAL).unwrap();
        assert_eq!(single.cluster.node_id, None);
        assert_eq!(single.cluster.sigterm(), OnSigterm::Stop);
    }

    #[test]
    fn validation_names_the_key() {
        assert_eq!(
            err_key(&MINIMAL.replace(r#"["8800"]"#, "[]")),
            "sip.hotline_numbers"
        );
        assert_eq!(
            err_key(&MINIMAL.replace(r#"["8800"]"#, r#"["88 00"]"#)),
            "sip.hotline_numbers[0]"
        );
        let ops = r#"
            [[operators]]
            extension = "1001"
            name = "A"
            password = "secret-one"
            [[operators]]
            extension = "1001"
            name = "B"
            password = "secret-two"
        "#;
        assert_eq!(
            err_key(&format!("{MINIMAL}{ops}")),
            "operators[1].extension"
        );
        let short = "[[operators]]\nextension = \"1002\"\nname = \"C\"\npassword = \"x\"\n";
        assert_eq!(
            err_key(&format!("{MINIMAL}{short}")),
            "operators[0].password"
        );
        let limits = "[limits]\nmax_calls = 0\n";
        assert_eq!(err_key(&format!("{MINIMAL}{limits}")), "limits.max_calls");
        let limits = "[limits]\npeak_call_rate = 0\n";
        assert_eq!(
            err_key(&format!("{MINIMAL}{limits}")),
            "limits.peak_call_rate"
        );
        let media = "[media]\nrealtime_priority = 100\n";
        assert_eq!(
            err_key(&format!("{MINIMAL}{media}")),
            "media.realtime_priority"
        );
        let media = "[media]\nthreads = 0\n";
        assert_eq!(err_key(&format!("{MINIMAL}{media}")), "media.threads");
        for bad in ["\"\"", "\"12\"", "\"a\""] {
            let queue = format!("[queue]\nvoicemail_key = {bad}\n");
            assert_eq!(err_key(&format!("{MINIMAL}{queue}")), "queue.voicemail_key");
        }
        let queue = "[queue]\nring_timeout_s = 0\n";
        assert_eq!(
            err_key(&format!("{MINIMAL}{queue}")),
            "queue.ring_timeout_s"
        );
    }

    #[test]
    fn media_threads_default_to_real_time_one_per_cpu() {
        let c = Config::from_toml(MINIMAL).unwrap();
        assert_eq!(c.media.realtime_priority, 10);
        let cpus = std::thread::available_parallelism().unwrap().get();
        assert_eq!(c.media.media_threads(), cpus);
        let c = Config::from_toml(&format!(
            "{MINIMAL}[media]\nthreads = 3\nrealtime_priority = 0\n"
        ))
        .unwrap();
        c.validate().unwrap();
        assert_eq!((c.media.media_threads(), c.media.realtime_priority), (3, 0));
    }

    #[test]
    fn queue_table_defaults_keys_and_unknown_fields() {
        let c = Config::from_toml(MINIMAL).unwrap();
        let q = crate::app::queue_config(&c.queue);
        assert_eq!(q, crate::callflow::queue::QueueConfig::default());
        assert_eq!(c.queue.voicemail_key(), '1');
        let c = Config::from_toml(&format!(
            "{MINIMAL}[queue]\nmax_wait_s = 0\nwrap_up_s = 0\nvoicemail_key = \"#\"\n"
        ))
        .unwrap();
        c.validate().unwrap();
        let q = crate::app::queue_config(&c.queue);
        assert_eq!(q.max_wait, Duration::ZERO);
        assert_eq!(q.ring_timeout, Duration::from_secs(15));
        assert_eq!(c.queue.voicemail_key(), '#');
        let e = Config::from_toml(&format!("{MINIMAL}[queue]\nmax_wait = 5\n")).unwrap_err();
        assert!(e.to_string().contains("max_wait"), "{e}");
        let c = Config::from_toml(&format!("{MINIMAL}[queue]\nvoicemail_key = \"12\"\n")).unwrap();
        let msg = c.validate().unwrap_err().to_string();
        assert!(
            msg.contains("queue.voicemail_key") && msg.contains("\"12\""),
            "{msg}"
        );
    }

    #[test]
    fn password_from_environment() {
        let op = |var: &str| OperatorConfig {
            extension: "1001".into(),
            name: "A".into(),
            password: None,
            password_env: Some(var.into()),
            email: None,
        };
        assert_eq!(
            op("HOTLINE_TEST_PASSWORD_ENV_UNSET_XYZ").resolve_password(),
            None
        );
        // A variable only this test uses, so parallel tests are not affected.
        std::env::set_var("HOTLINE_TEST_PASSWORD_ENV_SET_XYZ", "from-the-env");
        assert_eq!(
            op("HOTLINE_TEST_PASSWORD_ENV_SET_XYZ").resolve_password(),
            Some("from-the-env".to_string())
        );
        let c = Config::from_toml(&format!(
            "{MINIMAL}[[operators]]\nextension = \"1001\"\nname = \"A\"\npassword_env = \"HOTLINE_TEST_PASSWORD_ENV_UNSET_XYZ\"\n"
        ))
        .unwrap();
        assert!(c.warnings()[0].contains("HOTLINE_TEST_PASSWORD_ENV_UNSET_XYZ"));
    }

    #[test]
    fn plain_http_off_loopback_needs_tls_or_an_explicit_allowance() {
        let open = format!("{MINIMAL}\n[http]\nlisten = \"0.0.0.0:8080\"\n");
        assert_eq!(err_key(&open), "http.listen");
        let allowed =
            format!("{MINIMAL}\n[http]\nlisten = \"0.0.0.0:8080\"\nallow_plain_http = true\n");
        Config::from_toml(&allowed).unwrap().validate().unwrap();
        let tls = format!(
            "{MINIMAL}\n[http]\nlisten = \"0.0.0.0:8443\"\n[http.tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n\
             redirect_from = \"0.0.0.0:8443\"\n"
        );
        assert_eq!(err_key(&tls), "http.tls.redirect_from");
        let tls = tls.replace(
            "redirect_from = \"0.0.0.0:8443\"",
            "redirect_from = \"0.0.0.0:8080\"",
        );
        let c = Config::from_toml(&tls).unwrap();
        c.validate().unwrap();
        assert_eq!(c.http.tls.unwrap().hsts_max_age_s, 31_536_000);
    }

    #[test]
    fn sip_tls_listens_on_5061_beside_sip_unless_told_otherwise() {
        let text = format!("{MINIMAL}\n[sip.tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n");
        let c = Config::from_toml(&text).unwrap();
        c.validate().unwrap();
        let t = c.sip.tls.as_ref().unwrap();
        assert_eq!(
            t.listen_addr(c.sip.listen),
            "127.0.0.1:5061".parse().unwrap()
        );
        assert!(!t.require_for_operators);
        assert_eq!(t.handshake_limits().in_progress, 64);
        let clash = text.replace(
            "key = \"k.pem\"",
            "key = \"k.pem\"\nlisten = \"127.0.0.1:5060\"",
        );
        assert_eq!(err_key(&clash), "sip.tls.listen");
        let zero = text.replace("key = \"k.pem\"", "key = \"k.pem\"\nmax_handshakes = 0");
        assert_eq!(err_key(&zero), "sip.tls");
    }

    #[test]
    fn srtp_is_optional_by_default_and_required_needs_tls_of_operators() {
        let c = Config::from_toml(MINIMAL).unwrap();
        assert_eq!(c.media.srtp, crate::sip::sdes::Policy::Optional);
        let required = format!("{MINIMAL}\n[media]\nsrtp = \"required\"\n");
        assert_eq!(err_key(&required), "media.srtp");
        let with_tls = format!(
            "{required}[sip.tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nrequire_for_operators = true\n"
        );
        let c = Config::from_toml(&with_tls).unwrap();
        c.validate().unwrap();
        assert_eq!(c.media.srtp, crate::sip::sdes::Policy::Required);
        let typo = format!("{MINIMAL}\n[media]\nsrtp = \"mandatory\"\n");
        assert!(Config::from_toml(&typo).is_err());
    }

    #[test]
    fn sample_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("sip-config/hotline.toml");
        Config::load(&path, &Overrides::default()).unwrap();
    }
}
