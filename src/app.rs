//! Starting and stopping the whole hotline: prompts and the recordings' crash repair first
//! (a bad prompt file stops start-up), the records and their call log (which replays what a
//! database outage left spooled), the operator queue, then SIP, the call flow and HTTP (so
//! that `/healthz` answers 200 only once SIP is listening). Shutdown stops the calls first
//! (their recordings are finalised and their last journal writes handed over), then the
//! call log, then transcription and notifications (what they have not finished waits in
//! the database), then closes the database.

use crate::api::{self, AppState};
use crate::calendar::Calendar;
use crate::callflow::acd::AcdHandle;
use crate::callflow::service::{self, Context, FlowPrompts};
use crate::callflow::Event;
use crate::cluster::{Leases, Membership, MembershipSettings};
use crate::config::Config;
use crate::console;
use crate::desk::accounts::Accounts;
use crate::desk::calllog::{CallLog, CallLogError};
use crate::desk::notices::Targets;
use crate::desk::Records;
use crate::live::LiveEvent;
use crate::live::LiveRequest;
use crate::media::ports::PortPool;
use crate::media::prompt::{PromptError, Prompts};
use crate::media::recorder::{self, RecorderError};
use crate::media::runtime::MediaRuntime;
use crate::notify::worker::Deliverer;
use crate::sip::transport::{self, SipControl, TransportError};
use crate::store::Store;
use crate::transcribe::worker::{
    EngineStatus, JobEvent, StatusHandle, Worker as TranscriptionWorker,
};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;

mod alerts;
mod sip_settings;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Sip(#[from] TransportError),
    #[error("cannot bind HTTP on {addr}: {source}")]
    Http {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("prompts: {0}")]
    Prompts(#[from] PromptError),
    #[error("recordings: {0}")]
    Recordings(#[from] RecorderError),
    #[error("calendar: {0}")]
    Calendar(#[from] crate::calendar::CalendarError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("call log: {0}")]
    CallLog(#[from] CallLogError),
    #[error(transparent)]
    Notify(#[from] crate::notify::NotifyError),
    #[error("cannot start the media threads: {0}")]
    Media(std::io::Error),
    #[error("operators' phone choices: {0}")]
    Records(crate::desk::DeskError),
    #[error("calls left by an earlier run: {0}")]
    Recovery(crate::callflow::recovery::RecoveryError),
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Tls {
        what: &'static str,
        source: crate::tls::TlsError,
    },
}

/// A running hotline.
pub struct Hotline {
    /// SIP (UDP and TCP) address actually bound.
    pub sip_addr: SocketAddr,
    /// SIP over TLS, when configured.
    pub sip_tls_addr: Option<SocketAddr>,
    /// HTTP address actually bound (HTTPS with `[http.tls]`).
    pub http_addr: SocketAddr,
    /// The plain-HTTP listener that redirects to HTTPS, when configured.
    pub http_redirect_addr: Option<SocketAddr>,
    /// The records (journal, forms, voicemail) the hotline writes.
    pub records: Records,
    /// The console's users and sessions.
    pub accounts: Accounts,
    /// The operator queue.
    pub acd: AcdHandle,
    /// Where the call flow's journal writes go (and wait while the database is away).
    pub calllog: CallLog,
    control: SipControl,
    live: mpsc::Sender<LiveRequest>,
    events: broadcast::Sender<Event>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    calllog_shutdown: watch::Sender<bool>,
    calllog_task: JoinHandle<()>,
    /// The call log's own connections.
    calllog_store: Store,
    background_shutdown: watch::Sender<bool>,
    background_tasks: Vec<JoinHandle<()>>,
    job_events: broadcast::Sender<JobEvent>,
    transcription: StatusHandle,
    /// Where the media sessions run; dropped (shut down) after the calls have stopped.
    media: MediaRuntime,
    /// This node's place in a cluster; `None` on a single hotline.
    pub membership: Option<Membership>,
}

impl Hotline {
    pub async fn start(config: Config) -> Result<Hotline, StartError> {
        // Certificates first: a missing or expired one stops the start, naming the file,
        // before anything listens.
        let sip_tls = match &config.sip.tls {
            Some(t) => Some(crate::sip::transport::SipTls {
                listen: t.listen_addr(config.sip.listen),
                server: crate::tls::Reloadable::load(t.files(), &[]).map_err(|source| {
                    StartError::Tls {
                        what: "[sip.tls]",
                        source,
                    }
                })?,
                limits: t.handshake_limits(),
            }),
            None => None,
        };
        let http_tls = match &config.http.tls {
            Some(t) => Some(
                crate::tls::Reloadable::load(t.files(), &[b"http/1.1"]).map_err(|source| {
                    StartError::Tls {
                        what: "[http.tls]",
                        source,
                    }
                })?,
            ),
            None => None,
        };
        if http_tls.is_none() && !config.http.listen.ip().is_loopback() {
            tracing::warn!(
                addr = %config.http.listen,
                "the console and API are served over plain HTTP on a non-loopback address \
                 (allow_plain_http): passwords and customers' data cross the network unencrypted \
                 unless a proxy in front terminates TLS"
            );
        }
        tokio::spawn(reload_on_hangup(
            sip_tls
                .iter()
                .map(|t| t.server.clone())
                .chain(http_tls.clone())
                .collect(),
        ));
        std::fs::create_dir_all(&config.storage.data_dir).map_err(|source| {
            StartError::DataDir {
                path: config.storage.data_dir.clone(),
                source,
            }
        })?;
        let calendar = Arc::new(Calendar::load(&config.calendar)?);
        if let Some(w) = calendar.coverage_warning(chrono::Utc::now()) {
            tracing::warn!("calendar: {w}");
        }
        tracing::info!("the hotline is {}", calendar.describe(chrono::Utc::now()));
        let database_url = config.storage.effective_database_url();
        let node = config.cluster.node_id.as_deref();
        let store = Store::connect(&database_url).await?.with_node(node);
        store.migrate().await?;
        // A node of a cluster says it is up before it finishes its own unfinished calls,
        // so that no survivor takes them over meanwhile.
        let (membership, previous_run) = match node {
            Some(node) => {
                let (m, previous) = Membership::join(
                    store.clone(),
                    MembershipSettings {
                        node: node.to_string(),
                        heartbeat: Duration::from_millis(config.cluster.heartbeat_ms),
                        lost_after: Duration::from_secs(config.cluster.lost_after_s),
                    },
                )
                .await?;
                (Some(m), previous)
            }
            None => (None, None),
        };
        let records = Records::new(store, calendar.clone(), config.records.settings())
            .with_targets(Targets::from_config(
                &config.notify,
                config
                    .operators
                    .iter()
                    .filter_map(|o| Some((o.extension.as_str(), o.email.as_deref()?))),
            ))
            .with_tickets(config.tickets.clone());
        records.sync_atms(&config.tickets.atms).await?;
        let prompts = Prompts::load(&config.media.prompts_dir)?;
        let flow_prompts = FlowPrompts::load(&prompts, &calendar)?;
        let recordings = config.storage.data_dir.join("recordings");
        // Call recordings and voicemail left open by a crash are made playable before any
        // new call can write next to them.
        for dir in [recordings, config.storage.data_dir.join("voicemail")] {
            let repair = recorder::repair_dir(&dir)?;
            if !repair.repaired.is_empty() || !repair.broken.is_empty() {
                tracing::warn!(
                    dir = %dir.display(),
                    repaired = ?repair.repaired,
                    broken = ?repair.broken,
                    "recordings left open by a crash"
                );
            }
        }
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (calllog_shutdown, calllog_shutdown_rx) = watch::channel(false);
        // The call log writes through connections of its own: under load, with the API's
        // readers and the workers holding the shared pool's, its commits waited seconds
        // for one (sqlx's slow-acquire warnings at 1,000 calls). Two, so that a try given
        // up at the bound can be cleaned up while the next one runs.
        let calllog_store = Store::connect_with(&database_url, Some(2))
            .await?
            .with_node(node);
        let (calllog, calllog_task) = CallLog::spawn(
            records.clone().with_store(calllog_store.clone()),
            config.storage.data_dir.join("spool"),
            calllog_shutdown_rx,
        )?;
        // Calls a crash cut off are finished (and their voicemails registered) before a
        // new call can arrive.
        let recovered = crate::callflow::recovery::finish_unfinished_calls(
            &records.store,
            &calllog,
            &crate::callflow::recovery::Files {
                data_dir: &config.storage.data_dir,
                calendar: &calendar,
                voicemail: &voicemail_settings(&config.voicemail),
            },
            previous_run,
        )
        .await
        .map_err(StartError::Recovery)?;
        if recovered.finished > 0 {
            tracing::warn!(
                calls = recovered.finished,
                voicemails = recovered.voicemails,
                "finished the calls an earlier run left in progress"
            );
        }
        let operator_list: Vec<String> = config
            .operators
            .iter()
            .map(|o| o.extension.clone())
            .collect();
        // A cluster's nodes share one queue in the database; a single hotline keeps its own.
        let (acd, acd_task) = match node {
            Some(node) => crate::callflow::shared_acd::spawn(
                queue_config(&config.queue),
                operator_list,
                records.store.clone(),
                node.to_string(),
                shutdown_rx.clone(),
            ),
            None => AcdHandle::spawn(
                queue_config(&config.queue),
                operator_list,
                shutdown_rx.clone(),
            ),
        };
        let ports = PortPool::new(
            config.sip.listen.ip(),
            config.media.rtp_port_min,
            config.media.rtp_port_max,
        );
        let (calls_tx, calls_rx) = mpsc::unbounded_channel();
        let phone_calls = calls_tx.clone();
        let mut sip_settings: transport::TransportSettings = (&config).into();
        sip_settings.tls = sip_tls;
        let sip = transport::start(
            sip_settings,
            Box::new(ports.clone()),
            calls_tx,
            shutdown_rx.clone(),
        )
        .await?;
        let (events, _) = broadcast::channel(16384);
        let (live_events, _) = broadcast::channel(4096);
        let metrics = Arc::new(crate::live::Metrics::for_node(node));
        let media =
            MediaRuntime::start(config.media.media_threads(), config.media.realtime_priority)
                .map_err(StartError::Media)?;
        match &media.scheduling().warning {
            Some(w) => tracing::warn!("{w}"),
            None => tracing::info!(
                threads = media.scheduling().threads,
                realtime_priority = ?media.scheduling().realtime_priority,
                "media threads started"
            ),
        }
        // The browser phones' candidates are on the media address the SDP names; their
        // relays face the sessions on the pool's own address.
        let listen_ip = config.sip.listen.ip();
        let inner_ip = if listen_ip.is_unspecified() {
            std::net::IpAddr::from([127, 0, 0, 1])
        } else {
            listen_ip
        };
        let (reach_tx, reach_rx) = mpsc::unbounded_channel();
        let phones = crate::phone::hub::BrowserPhones::new(
            ports.clone(),
            crate::phone::hub::PhoneAddresses {
                public_ip: config.sip.public_address.unwrap_or(inner_ip),
                inner_ip,
            },
            media.handle().clone(),
            phone_calls,
            reach_tx,
        );
        for (extension, ring_at) in records.ring_choices().await.map_err(StartError::Records)? {
            phones.set_ring_at(&extension, ring_at);
        }
        let ctx = Arc::new(Context {
            ports,
            prompts: flow_prompts,
            data_dir: config.storage.data_dir.clone(),
            rtp_timeout: config.media.rtp_timeout(),
            media: media.handle().clone(),
            control: crate::callflow::lines::OperatorLines {
                sip: sip.control.clone(),
                phones: Some(phones.clone()),
            },
            observers: events.clone(),
            acd: acd.clone(),
            calllog: calllog.clone(),
            calendar: calendar.clone(),
            flow: crate::callflow::call::FlowSettings {
                voicemail_key: config.queue.voicemail_key(),
            },
            voicemail: voicemail_settings(&config.voicemail),
            live: live_events.clone(),
            metrics: metrics.clone(),
        });
        let (live, live_rx) = mpsc::channel(64);
        let flow = tokio::spawn(service::run(
            ctx,
            calls_rx,
            reach_rx,
            live_rx,
            shutdown_rx.clone(),
        ));
        let http_error = |source| StartError::Http {
            addr: config.http.listen,
            source,
        };
        let listener = tokio::net::TcpListener::bind(config.http.listen)
            .await
            .map_err(http_error)?;
        let http_addr = listener.local_addr().map_err(http_error)?;
        if let Some(m) = &membership {
            let scheme = if http_tls.is_some() { "https" } else { "http" };
            let url = config.cluster.http_url.clone().or_else(|| {
                (!http_addr.ip().is_unspecified()).then(|| format!("{scheme}://{http_addr}"))
            });
            if url.is_none() {
                tracing::warn!(
                    "cluster.http_url is not set and the console listens on a wildcard \
                     address: the other nodes cannot fetch this node's recordings"
                );
            }
            crate::store::cluster::set_http_url(&records.store, m.node(), url.as_deref()).await?;
        }
        // Transcription and notifications run until the calls have stopped (their last
        // voicemail is recorded), and stop before the database closes.
        let (background_shutdown, background_rx) = watch::channel(false);
        let (job_events, _) = broadcast::channel(1024);
        let (transcription, transcription_task) = TranscriptionWorker {
            jobs: records.clone(),
            data_dir: config.storage.data_dir.clone(),
            config: config.transcription.clone(),
            engine: None,
            events: job_events.clone(),
        }
        .spawn(background_rx.clone());
        let alerts = tokio::spawn(alerts::watch_alerts(
            records.clone(),
            acd.clone(),
            config.alerts.clone(),
            live_events.clone(),
            background_rx.clone(),
        ));
        let overdue = tokio::spawn(watch_overdue(
            records.clone(),
            Leases::new(records.store.clone(), node.map(str::to_string)),
            live_events.clone(),
            Duration::from_secs(config.notify.overdue_check_s.max(1)),
            background_rx.clone(),
        ));
        // A node of a cluster publishes its calls and queue with each heartbeat, for the
        // other nodes' wallboards.
        let membership = membership.map(|m| {
            let (live, acd) = (live.clone(), acd.clone());
            m.with_live(Arc::new(move || {
                let (live, acd) = (live.clone(), acd.clone());
                Box::pin(async move { node_live(&live, &acd).await })
            }))
        });
        let mut background_tasks = Vec::new();
        if let Some(m) = &membership {
            background_tasks.push(tokio::spawn(m.clone().run(background_rx.clone())));
        }
        let deliverer = Deliverer::new(records.clone(), &config.notify)?.spawn(background_rx);
        tokio::spawn(forward_job_events(
            job_events.subscribe(),
            live_events.clone(),
        ));
        let operators = config
            .operators
            .iter()
            .map(|o| api::reports::Operator {
                extension: o.extension.clone(),
                name: o.name.clone(),
                can_register: o.resolve_password().is_some(),
            })
            .collect();
        let accounts = Accounts::new(records.clone(), account_settings(&config));
        let health = crate::health::Probe {
            sip_addr: sip.local_addr,
            sip_alive: sip.alive.clone(),
            records: records.clone(),
            transcription: Some(transcription.clone()),
            media: Some(media.scheduling().clone()),
            undeliverable: Arc::new(config.notify.undeliverable()),
            calllog: Some(calllog.clone()),
        };
        let console = console::router(console::ConsoleState {
            accounts: accounts.clone(),
            records: records.clone(),
            acd: Some(acd.clone()),
            tls: http_tls.is_some(),
            data_dir: config.storage.data_dir.clone(),
            bank_name: config.console.bank_name.clone(),
            health: Some(health.clone()),
            running_config: config.masked_toml(),
            board_cache: console::board::BoardCache::new(Some(&live_events)),
            phones: Some(phones.clone()),
            live: Some(console::ConsoleLive {
                events: live_events.clone(),
                calls: live.clone(),
                shutdown: shutdown_rx.clone(),
            }),
        });
        let router = api::router(AppState {
            records: records.clone(),
            data_dir: config.storage.data_dir.clone(),
            operators: Arc::new(operators),
            live: Some(api::live::Live {
                acd: acd.clone(),
                calls: live.clone(),
                events: live_events.clone(),
                metrics,
                calllog: calllog.clone(),
                shutdown: shutdown_rx.clone(),
            }),
            health,
        })
        .merge(console);
        let mut tasks = sip.tasks;
        let mut http_redirect_addr = None;
        let http = match (http_tls, &config.http.tls) {
            (Some(tls), Some(t)) => {
                let router = router.layer(axum::middleware::map_response(
                    crate::web::strict_transport(t.hsts_max_age_s),
                ));
                if let Some(from) = t.redirect_from {
                    let plain = tokio::net::TcpListener::bind(from)
                        .await
                        .map_err(|source| StartError::Http { addr: from, source })?;
                    let addr = plain
                        .local_addr()
                        .map_err(|source| StartError::Http { addr: from, source })?;
                    tasks.push(tokio::spawn(serve(
                        plain,
                        crate::web::to_https(http_addr.port()),
                        shutdown_rx.clone(),
                    )));
                    tracing::info!(%addr, "plain HTTP redirects to HTTPS");
                    http_redirect_addr = Some(addr);
                }
                let listener = crate::tls::TlsListener::new(listener, tls, Default::default())
                    .map_err(http_error)?;
                tracing::info!(%http_addr, "HTTPS listening");
                tokio::spawn(serve(listener, router, shutdown_rx.clone()))
            }
            _ => {
                tracing::info!(%http_addr, "HTTP listening");
                tokio::spawn(serve(listener, router, shutdown_rx.clone()))
            }
        };
        tasks.push(http);
        tasks.push(flow);
        tasks.push(acd_task);
        Ok(Hotline {
            sip_addr: sip.local_addr,
            sip_tls_addr: sip.tls_addr,
            http_addr,
            http_redirect_addr,
            records,
            accounts,
            acd,
            calllog,
            control: sip.control.clone(),
            live,
            events,
            shutdown,
            tasks,
            calllog_shutdown,
            calllog_task,
            calllog_store,
            background_shutdown,
            background_tasks: {
                background_tasks.extend([transcription_task, deliverer, overdue, alerts]);
                background_tasks
            },
            membership,
            job_events,
            transcription,
            media,
        })
    }

    /// Transcription results from now on.
    pub fn subscribe_transcriptions(&self) -> broadcast::Receiver<JobEvent> {
        self.job_events.subscribe()
    }

    /// Whether voicemail can be transcribed (the model's state).
    pub fn transcription_status(&self) -> EngineStatus {
        self.transcription
            .read()
            .map(|s| s.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    /// The SIP core's controls (hang up, ring an operator), for tests and tools.
    pub fn sip_control(&self) -> SipControl {
        self.control.clone()
    }

    /// The calls in progress.
    pub async fn live_calls(&self) -> Vec<crate::live::LiveCall> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.live.send(tx).await.is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Events of calls (SIP, DTMF, media, recordings) and registrations from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// A graceful stop for a rolling upgrade: new calls and the proxy's probes get 503
    /// at once (so Kamailio routes around this node), the calls in progress are finished,
    /// then the hotline shuts down. After `limit`, or when `cut` completes (a second
    /// signal), the calls still up are cut.
    pub async fn drain(self, limit: Duration, cut: impl std::future::Future) {
        self.control.drain().await;
        if let Some(m) = &self.membership {
            m.set_draining();
            if let Err(e) = m.beat().await {
                tracing::warn!(error = %e, "could not say the node drains");
            }
        }
        let deadline = tokio::time::Instant::now() + limit;
        tokio::pin!(cut);
        loop {
            let calls = self.control.active_calls().await;
            if calls == 0 {
                tracing::info!("drained: no call left");
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(calls, "drain limit reached: the calls still up are cut");
                    break;
                }
                _ = &mut cut => {
                    tracing::warn!(calls, "stopped while draining: the calls still up are cut");
                    break;
                }
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
        self.shutdown().await;
    }

    /// The calls the SIP core holds now (inbound calls and operator legs).
    pub async fn active_calls(&self) -> usize {
        self.control.active_calls().await
    }

    /// Stops every task and waits for them.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        let _ = self.calllog_shutdown.send(true);
        let _ = self.calllog_task.await;
        self.calllog_store.close().await;
        let _ = self.background_shutdown.send(true);
        for t in self.background_tasks {
            let _ = t.await;
        }
        self.records.store.close().await;
        self.media.shutdown();
    }
}

/// Serves `router` on `listener` until `stop`.
///
/// `into_make_service`: each connection gets a clone of the router (an `Arc`). Serving the
/// `Router` itself would rebuild its route table for every connection (axum does
/// `with_state(())` per connection), about 36 KB each, held as long as the connection:
/// 36 MB for a thousand operators' consoles with their event streams open.
async fn serve<L>(listener: L, router: axum::Router, mut stop: watch::Receiver<bool>)
where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    use axum::serve::ListenerExt;
    // `tap_io` (doing nothing) is what lets any listener give the peer's address to
    // `ConnectInfo<SocketAddr>`; axum has that only for its own `TcpListener` otherwise.
    let served = axum::serve(
        listener.tap_io(|_| ()),
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = stop.changed().await;
    })
    .await;
    if let Err(e) = served {
        tracing::error!(error = %e, "HTTP server failed");
    }
}

/// Reads the certificates again on each SIGHUP (a renewal by the bank's CA or an ACME
/// client). Connections already up keep theirs; a pair that does not load is logged and
/// the running one stays.
async fn reload_on_hangup(servers: Vec<crate::tls::Reloadable>) {
    if servers.is_empty() {
        return;
    }
    let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    else {
        tracing::warn!("cannot watch SIGHUP: certificates reload only on restart");
        return;
    };
    while hangups.recv().await.is_some() {
        for s in &servers {
            match s.reload() {
                Ok(()) => tracing::info!(cert = %s.files().cert.display(), "certificate reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "certificate not reloaded; the running one stays")
                }
            }
        }
    }
}

/// The operator queue's settings from `[queue]` (seconds to durations).
pub fn queue_config(q: &crate::config::QueueSettings) -> crate::callflow::queue::QueueConfig {
    crate::callflow::queue::QueueConfig {
        ring_timeout: Duration::from_secs(q.ring_timeout_s),
        wrap_up: Duration::from_secs(q.wrap_up_s),
        max_wait: Duration::from_secs(q.max_wait_s),
        position_every: Duration::from_secs(q.position_every_s),
    }
}

/// Transcription results on the supervisors' live feed.
async fn forward_job_events(
    mut jobs: broadcast::Receiver<JobEvent>,
    live: broadcast::Sender<LiveEvent>,
) {
    loop {
        let event = match jobs.recv().await {
            Ok(e) => e,
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let _ = live.send(match event {
            JobEvent::Done {
                voicemail_id,
                suggestion,
            } => LiveEvent::Transcription {
                voicemail_id,
                status: "done",
                kind: Some(suggestion.kind.as_str()),
                category: suggestion.category.map(|c| c.code()),
            },
            JobEvent::Failed { voicemail_id, .. } => LiveEvent::Transcription {
                voicemail_id,
                status: "failed",
                kind: None,
                category: None,
            },
        });
    }
}

/// Reminds the head of the call centre of overdue voicemail (outbox) and alerts the
/// supervisors of ATM tickets past their deadline (outbox and live feed), every `every`,
/// until shutdown.
async fn watch_overdue(
    records: Records,
    leases: Leases,
    live: broadcast::Sender<LiveEvent>,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        // One node of a cluster checks at a time: the one holding the lease, for three
        // rounds (another takes it over if this one is lost).
        if !leases.hold("overdue", every * 3).await {
            tokio::select! {
                _ = tokio::time::sleep(every) => continue,
                _ = shutdown.changed() => return,
            }
        }
        match records.remind_overdue_voicemail(chrono::Utc::now()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(n, "overdue voicemail reminders enqueued"),
            Err(e) => tracing::warn!(error = %e, "overdue voicemail check failed"),
        }
        match records.remind_overdue_tickets(chrono::Utc::now()).await {
            Ok(tickets) => {
                for t in tickets {
                    tracing::warn!(ticket = t.number, atm = t.atm_id, "ATM ticket overdue");
                    let _ = live.send(LiveEvent::TicketAlert {
                        alert: "overdue",
                        ticket_id: t.id,
                        atm_id: t.atm_id,
                        count: 1,
                    });
                }
            }
            Err(e) => tracing::warn!(error = %e, "overdue ticket check failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// This node's calls and queue, as published to the other nodes of a cluster.
async fn node_live(live: &mpsc::Sender<LiveRequest>, acd: &AcdHandle) -> crate::cluster::NodeLive {
    use crate::cluster::{NodeCall, NodeLive, NodeWaiting};
    let (tx, rx) = tokio::sync::oneshot::channel();
    let calls = if live.send(tx).await.is_ok() {
        rx.await.unwrap_or_default()
    } else {
        Vec::new()
    };
    let waiting = acd
        .snapshot()
        .await
        .waiting
        .iter()
        .map(|w| NodeWaiting {
            phone: calls
                .iter()
                .find(|c| c.call == w.call)
                .map_or_else(String::new, |c| c.phone.clone()),
            waited_s: w.waited.as_secs_f64(),
        })
        .collect();
    NodeLive {
        calls: calls
            .into_iter()
            .map(|c| NodeCall {
                phone: c.phone,
                arrived_at: c.arrived_at,
                stage: c.stage.to_string(),
                operator: c.operator,
            })
            .collect(),
        waiting,
    }
}

/// The call flow's view of `[voicemail]`.
fn voicemail_settings(v: &crate::config::VoicemailConfig) -> crate::callflow::VoicemailSettings {
    crate::callflow::VoicemailSettings {
        max_length: v.max_length(),
        silence: v.silence(),
        min_speech: v.min_speech(),
        silence_dbfs: v.silence_dbfs,
    }
}

/// The accounts' view of `[console]` and the operators.
pub fn account_settings(config: &Config) -> crate::desk::accounts::AccountSettings {
    use crate::records::account::guard::Limit;
    let c = &config.console;
    let lock = Duration::from_secs(c.login_lock_minutes * 60);
    crate::desk::accounts::AccountSettings {
        idle: Duration::from_secs(c.session_idle_s),
        lifetime: Duration::from_secs(c.session_max_hours * 3600),
        totp_roles: c.totp_roles.clone(),
        login_limit: Limit {
            max_failures: c.login_max_failures,
            window: lock,
            lock_for: lock,
        },
        address_limit: Limit {
            max_failures: c.address_max_failures,
            window: lock,
            lock_for: lock,
        },
        issuer: c.totp_issuer.clone(),
        extensions: config
            .operators
            .iter()
            .map(|o| o.extension.clone())
            .collect(),
    }
}
