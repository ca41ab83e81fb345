//! Starting and stopping the whole hotline: prompts and the recordings' crash repair first
//! (a bad prompt file stops start-up), then SIP, the call dispatcher and HTTP (so that
//! `/healthz` answers 200 only once SIP is listening), with one shutdown signal for every
//! task.

use crate::api::{self, AppState};
use crate::calendar::Calendar;
use crate::callflow::dispatch::Dispatcher;
use crate::callflow::Event;
use crate::config::Config;
use crate::media::ports::PortPool;
use crate::media::prompt::{PromptError, Prompts};
use crate::media::recorder::{self, RecorderError};
use crate::records::Records;
use crate::sip::transport::{self, TransportError};
use crate::store::Store;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;

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
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// A running hotline.
pub struct Hotline {
    /// SIP (UDP and TCP) address actually bound.
    pub sip_addr: SocketAddr,
    /// HTTP address actually bound.
    pub http_addr: SocketAddr,
    /// The records (journal, forms, voicemail) the hotline writes.
    pub records: Records,
    events: broadcast::Sender<Event>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Hotline {
    pub async fn start(config: Config) -> Result<Hotline, StartError> {
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
        let store = Store::connect(&config.storage.effective_database_url()).await?;
        store.migrate().await?;
        let records = Records::new(store, calendar, config.records.settings());
        let prompts = Prompts::load(&config.media.prompts_dir)?;
        let (greeting, hold) = Dispatcher::prompts(&prompts)?;
        let recordings = config.storage.data_dir.join("recordings");
        let repair = recorder::repair_dir(&recordings)?;
        if !repair.repaired.is_empty() || !repair.broken.is_empty() {
            tracing::warn!(
                repaired = ?repair.repaired,
                broken = ?repair.broken,
                "recordings left open by a crash"
            );
        }
        let (shutdown, shutdown_rx) = watch::channel(false);
        let ports = PortPool::new(
            config.sip.listen.ip(),
            config.media.rtp_port_min,
            config.media.rtp_port_max,
        );
        let (calls_tx, calls_rx) = mpsc::unbounded_channel();
        let sip = transport::start(&config, ports.clone(), calls_tx, shutdown_rx.clone()).await?;
        let (events, _) = broadcast::channel(16384);
        let dispatcher = Dispatcher {
            ports,
            greeting,
            hold,
            recordings,
            rtp_timeout: config.media.rtp_timeout(),
            control: sip.control.clone(),
            observers: events.clone(),
        };
        let dispatch = tokio::spawn(dispatcher.run(calls_rx, shutdown_rx.clone()));
        let http_error = |source| StartError::Http {
            addr: config.http.listen,
            source,
        };
        let listener = tokio::net::TcpListener::bind(config.http.listen)
            .await
            .map_err(http_error)?;
        let http_addr = listener.local_addr().map_err(http_error)?;
        let operators = config
            .operators
            .iter()
            .map(|o| api::reports::Operator {
                extension: o.extension.clone(),
                name: o.name.clone(),
                can_register: o.resolve_password().is_some(),
            })
            .collect();
        let router = api::router(AppState {
            sip_addr: sip.local_addr,
            sip_alive: sip.alive.clone(),
            records: records.clone(),
            data_dir: config.storage.data_dir.clone(),
            operators: Arc::new(operators),
        });
        let mut stop = shutdown_rx.clone();
        let http = tokio::spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stop.changed().await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "HTTP server failed");
            }
        });
        tracing::info!(%http_addr, "HTTP listening");
        let mut tasks = sip.tasks;
        tasks.push(http);
        tasks.push(dispatch);
        Ok(Hotline {
            sip_addr: sip.local_addr,
            http_addr,
            records,
            events,
            shutdown,
            tasks,
        })
    }

    /// Events of calls (SIP, DTMF, media, recordings) and registrations from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Stops every task and waits for them.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        self.records.store.close().await;
    }
}
