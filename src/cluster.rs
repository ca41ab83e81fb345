//! This node's membership of a cluster: its heartbeat in the shared database, the watch
//! for nodes that went silent (a `kill -9`, a power cut, a lost network), and the leases
//! that keep periodic work on one node at a time.
//!
//! Every `heartbeat` the node writes its heartbeat and state (up, draining), then looks for
//! nodes silent longer than `lost_after`. The first survivor to see one takes over its
//! work in one transaction ([`store::cluster::take_over`]): the lost node's calls in
//! progress end as failed with the reason `node_lost`, and the notifications and
//! transcription jobs it had in hand are due again for any node's worker. So a lost node's
//! calls are finalised within `heartbeat + lost_after` of its last heartbeat (6 s by
//! default), and nothing it had claimed stays claimed.
//!
//! A single hotline (no `node_id`) has no membership: [`Leases`] then always holds.

use crate::store::{self, Store, StoreError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// A node's calls and queue as it publishes them at each heartbeat, for the wallboards of
/// the other nodes (a call's media, and so its state, is on the node that took it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeLive {
    pub calls: Vec<NodeCall>,
    /// Callers waiting, in queue order.
    pub waiting: Vec<NodeWaiting>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeCall {
    pub phone: String,
    pub arrived_at: DateTime<Utc>,
    /// The call flow's stage name (`queued`, `connected`, …).
    pub stage: String,
    pub operator: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeWaiting {
    pub phone: String,
    pub waited_s: f64,
}

/// Reads this node's live view when the heartbeat publishes it.
pub type LiveSource = Arc<dyn Fn() -> futures::future::BoxFuture<'static, NodeLive> + Send + Sync>;

/// The other nodes' views older than this are not shown (a node silent this long is being
/// taken for lost).
pub const LIVE_FRESH: Duration = Duration::from_secs(5);

/// The live views the other nodes of `store`'s cluster published, by node; nothing on a
/// single hotline.
pub async fn others_live(store: &Store) -> Result<Vec<(String, NodeLive)>, StoreError> {
    let Some(me) = store.node() else {
        return Ok(Vec::new());
    };
    let rows = store::cluster::others_live(store, me, Utc::now() - delta(LIVE_FRESH)).await?;
    Ok(rows
        .into_iter()
        .filter_map(|(node, json)| match serde_json::from_str(&json) {
            Ok(live) => Some((node, live)),
            Err(e) => {
                tracing::warn!(node, error = %e, "a node's live view is unreadable");
                None
            }
        })
        .collect())
}

/// The membership's timings (`[cluster]`).
#[derive(Debug, Clone)]
pub struct MembershipSettings {
    pub node: String,
    pub heartbeat: Duration,
    pub lost_after: Duration,
}

/// A handle on the running membership.
#[derive(Clone)]
pub struct Membership {
    settings: Arc<MembershipSettings>,
    store: Store,
    draining: Arc<AtomicBool>,
    live: Option<LiveSource>,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Membership {
    /// Joins the cluster (the node's row says up, with a fresh heartbeat). Returns the
    /// membership and when the node's previous run started (for its recovery).
    pub async fn join(
        store: Store,
        settings: MembershipSettings,
    ) -> Result<(Membership, Option<DateTime<Utc>>), StoreError> {
        let previous = store::cluster::join(&store, &settings.node, Utc::now()).await?;
        tracing::info!(node = %settings.node, rejoined = previous.is_some(), "joined the cluster");
        Ok((
            Membership {
                settings: Arc::new(settings),
                store,
                draining: Arc::new(AtomicBool::new(false)),
                live: None,
            },
            previous,
        ))
    }

    /// Publishes what `live` reads at every heartbeat.
    pub fn with_live(mut self, live: LiveSource) -> Membership {
        self.live = Some(live);
        self
    }

    pub fn node(&self) -> &str {
        &self.settings.node
    }

    /// From now on the node says it is draining (it takes no new call).
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    fn state(&self) -> &'static str {
        if self.draining.load(Ordering::Relaxed) {
            "draining"
        } else {
            "up"
        }
    }

    /// Beats the heartbeat and takes over silent nodes until `stop`; then says the node
    /// stopped (a node that stops cleanly is never taken for lost).
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.settings.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => break,
            }
            if let Err(e) = self.beat().await {
                tracing::warn!(error = %e, "cluster heartbeat failed");
            }
        }
        let node = self.node();
        match store::cluster::heartbeat(&self.store, node, "stopped", Utc::now()).await {
            Ok(_) => tracing::info!(node, "left the cluster"),
            Err(e) => tracing::warn!(error = %e, "could not say the node stopped"),
        }
        if let Err(e) = store::cluster::release_all(&self.store, node).await {
            tracing::warn!(error = %e, "could not release the node's leases");
        }
    }

    /// One heartbeat, then the look for silent nodes.
    pub async fn beat(&self) -> Result<(), StoreError> {
        let node = self.node();
        let now = Utc::now();
        if !store::cluster::heartbeat(&self.store, node, self.state(), now).await? {
            // Silent too long (the database was away, or the process stalled): a survivor
            // ended this node's calls in progress. The node is back: it joins again.
            tracing::error!(
                node,
                "this node was declared lost by another; joining again"
            );
            store::cluster::join(&self.store, node, now).await?;
        }
        if let Some(live) = &self.live {
            let view = live().await;
            let json = serde_json::to_string(&view).unwrap_or_default();
            store::cluster::publish_live(&self.store, node, &json).await?;
        }
        let stale_before = now - delta(self.settings.lost_after);
        for lost in store::cluster::silent(&self.store, node, stale_before).await? {
            let taken =
                store::cluster::take_over(&self.store, &lost, node, stale_before, Utc::now())
                    .await?;
            if let Some(t) = taken {
                tracing::warn!(
                    lost = %lost,
                    calls = t.calls.len(),
                    notifications = t.notifications,
                    jobs = t.jobs,
                    leases = t.leases,
                    "node lost: its calls in progress are ended, its work taken over"
                );
            }
        }
        Ok(())
    }
}

/// Leases on periodic work (the overdue checks), so that one node of a cluster does it.
#[derive(Clone, Debug)]
pub struct Leases {
    store: Store,
    node: Option<String>,
}

impl Leases {
    /// `node`: this node's name in a cluster; `None` for a single hotline.
    pub fn new(store: Store, node: Option<String>) -> Leases {
        Leases { store, node }
    }

    /// Whether this node may do the work `name` now, holding it for `ttl` (renewed by
    /// asking again before then). Always on a single hotline; on a database error, no.
    pub async fn hold(&self, name: &str, ttl: Duration) -> bool {
        let Some(node) = &self.node else {
            return true;
        };
        let now = Utc::now();
        match store::cluster::lease(&self.store, name, node, now, now + delta(ttl)).await {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(error = %e, lease = name, "cluster lease failed");
                false
            }
        }
    }
}

fn delta(d: Duration) -> chrono::TimeDelta {
    chrono::TimeDelta::from_std(d).unwrap_or(chrono::TimeDelta::MAX)
}
