//! `weft npc` running: watches Namespaces, Pods and NetworkPolicies, and after every burst of
//! changes compiles this node's ruleset and writes it in one transaction; checks the table for
//! an external flush or deletion and restores it; serves `/metrics` and `/healthz`.
//!
//! RBAC it needs (cluster-wide): `namespaces`, `pods`: get, list, watch;
//! `networkpolicies.networking.k8s.io`: get, list, watch.

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use futures_util::stream::{self, BoxStream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace as KubeNamespace, Pod as KubePod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::utils::StreamBackoff;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::de::DeserializeOwned;
use tracing::{error, info, warn};

use super::args::NpcArgs;
use super::blocked::{FirstSightings, describe_blocked, isolating_policies};
use super::controller::{Controller, ControllerEvent};
use super::convert;
use super::mirror::WatchEvent;
use super::nft::{Nft, NpcKernelError, PolicyKernel};
use super::ruleset::Ruleset;
use crate::kubernetes::client::{KubeError, WatchBackoff, connect};
use crate::metrics::{self, KubeApiOp, SyncResult};

/// Blocked connections waiting for the log; more are dropped (the kernel's log rule is
/// rate-limited to 20 a second per direction already).
const BLOCKED_QUEUE: usize = 1024;
/// A blocked connection's retransmitted SYNs within this time are one log line.
const BLOCKED_LOG_WINDOW: Duration = Duration::from_secs(10);
/// Blocked connections remembered for that, at most.
const BLOCKED_MEMORY: usize = 4096;

/// Changes arriving within this window are written together: a deployment's pods or a batch of
/// policies cost one transaction, and a single change still lands within milliseconds.
const DEBOUNCE: Duration = Duration::from_millis(20);

#[derive(Debug, thiserror::Error)]
pub enum NpcError {
    #[error("weft npc needs this node's name: give --node-name or set HOSTNAME")]
    NoNodeName,
    #[error(transparent)]
    Kube(#[from] KubeError),
    #[error("cannot listen for metrics on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Health for the liveness probe: starting (not synced yet), ok, or failing to write the table.
#[derive(Default)]
struct Health(AtomicU8);

const STARTING: u8 = 0;
const HEALTHY: u8 = 1;
const FAILING: u8 = 2;

#[derive(Clone)]
struct HttpState {
    prometheus: PrometheusHandle,
    health: Arc<Health>,
}

pub async fn run(args: NpcArgs) -> Result<(), NpcError> {
    let node = args
        .node_name
        .clone()
        .filter(|name| !name.trim().is_empty())
        .ok_or(NpcError::NoNodeName)?;
    let (client, url) = connect(args.kubeconfig.as_deref()).await?;
    info!("weft npc for node {node}, Kubernetes API at {url}");
    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .map_err(|source| NpcError::Bind {
            addr: args.metrics_addr,
            source,
        })?;
    let health = Arc::new(Health::default());
    let http = HttpState {
        prometheus: metrics::install(),
        health: health.clone(),
    };
    metrics::register_npc_series();
    let router = Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(healthz))
        .with_state(http);
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, router).await {
            error!("metrics server stopped: {err}");
        }
    });
    info!(
        "Listening for metrics and health checks on {}",
        args.metrics_addr
    );

    let kernel: Arc<dyn PolicyKernel + Sync> = Arc::new(Nft::default());
    let mut blocked = super::nflog::start(BLOCKED_QUEUE);
    let mut sightings = FirstSightings::new(BLOCKED_LOG_WINDOW, BLOCKED_MEMORY);
    let mut controller = Controller::new(&node);
    let mut events = watch_all(client);
    let mut due: Option<tokio::time::Instant> = None;
    let mut check = tokio::time::interval(args.check_interval);
    loop {
        let debounce = async {
            match due {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            item = events.next() => match item {
                Some(Ok(event)) => {
                    if controller.apply(event) && due.is_none() {
                        due = Some(tokio::time::Instant::now() + DEBOUNCE);
                    }
                }
                Some(Err(err)) => warn!("watching the cluster: {err}"),
                None => unreachable!("watches never end"),
            },
            () = debounce => {
                due = None;
                sync(&mut controller, &kernel, &health, false).await;
            }
            _ = check.tick() => restore_if_flushed(&mut controller, &kernel, &health).await,
            Some(connection) = blocked.recv() => {
                if sightings.first(connection, Instant::now()) {
                    let world = controller.world();
                    let isolating = isolating_policies(&world, &connection);
                    metrics::npc_blocked(connection.protocol, connection.dport);
                    for policy in &isolating {
                        metrics::npc_blocked_by_policy(policy, connection.direction);
                    }
                    warn!("{}", describe_blocked(&world, &connection, &isolating));
                }
            }
            () = crate::daemon::wait_for_shutdown_signal() => {
                // The table stays: the pods stay protected until the next npc takes over.
                info!("Shutting down; the table inet {} stays in force", super::nft::TABLE);
                return Ok(());
            }
        }
    }
}

async fn sync(
    controller: &mut Controller,
    kernel: &Arc<dyn PolicyKernel + Sync>,
    health: &Health,
    force: bool,
) {
    let started = Instant::now();
    let Some(plan) = controller.plan(force) else {
        return;
    };
    for broken in &plan.new_errors {
        error!(
            "network policy {} cannot be enforced as written ({}): its pods are isolated and it allows nothing",
            broken.policy, broken.reason
        );
    }
    metrics::npc_policy_errors(plan.error_count);
    let Some(ruleset) = plan.ruleset else {
        return;
    };
    // A restore rewrites everything; otherwise only what changed.
    let previous = if force {
        None
    } else {
        controller.last_written().cloned()
    };
    match write(kernel, previous, ruleset.clone()).await {
        Ok(()) => {
            let elements = ruleset.element_count();
            controller.written(ruleset);
            metrics::npc_synced(started.elapsed().as_secs_f64(), SyncResult::Ok, elements);
            if health.0.swap(HEALTHY, Ordering::AcqRel) != HEALTHY {
                info!(
                    "table inet {} written ({elements} elements)",
                    super::nft::TABLE
                );
            }
        }
        Err(err) => {
            metrics::npc_synced(started.elapsed().as_secs_f64(), SyncResult::Failed, 0);
            health.0.store(FAILING, Ordering::Release);
            error!("{err}");
        }
    }
}

async fn write(
    kernel: &Arc<dyn PolicyKernel + Sync>,
    previous: Option<Ruleset>,
    ruleset: Ruleset,
) -> Result<(), NpcKernelError> {
    let kernel = kernel.clone();
    // `nft` is a child process: run it off the async threads.
    tokio::task::spawn_blocking(move || match previous {
        Some(previous) => kernel.update(&previous, &ruleset).or_else(|err| {
            // The table is not what we last wrote (someone edited it): write all of it.
            warn!("{err}; writing the whole table");
            kernel.apply(&ruleset)
        }),
        None => kernel.apply(&ruleset),
    })
    .await
    .expect("the nft writer does not panic")
}

/// A table someone flushed or deleted (a firewall reload, `nft flush ruleset`) is written again.
async fn restore_if_flushed(
    controller: &mut Controller,
    kernel: &Arc<dyn PolicyKernel + Sync>,
    health: &Health,
) {
    let Some(expected) = controller.last_written().map(super::render::rule_count) else {
        return;
    };
    let reader = kernel.clone();
    let installed = tokio::task::spawn_blocking(move || reader.installed_rules())
        .await
        .expect("the nft reader does not panic");
    match installed {
        Ok(Some(rules)) if rules == expected => {}
        Ok(found) => {
            warn!(
                "table inet {} was {} by someone else; restoring it",
                super::nft::TABLE,
                if found.is_none() {
                    "deleted"
                } else {
                    "flushed"
                }
            );
            sync(controller, kernel, health, true).await;
        }
        Err(err) => warn!("cannot check the npc table: {err}"),
    }
}

/// The three watches as one stream of controller events.
fn watch_all(client: Client) -> BoxStream<'static, Result<ControllerEvent, KubeError>> {
    stream::select_all([
        watch(
            Api::<KubeNamespace>::all(client.clone()),
            KubeApiOp::WatchNamespaces,
            convert::namespace,
            ControllerEvent::Namespace,
        ),
        watch(
            Api::<KubePod>::all(client.clone()),
            KubeApiOp::WatchPods,
            convert::pod,
            ControllerEvent::Pod,
        ),
        watch(
            Api::<NetworkPolicy>::all(client),
            KubeApiOp::WatchNetworkPolicies,
            convert::policy,
            ControllerEvent::Policy,
        ),
    ])
    .boxed()
}

fn key_of<K: Resource>(object: &K) -> String {
    let meta = object.meta();
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

/// Lists then watches one kind, re-listing with [`WatchBackoff`] after failures.
fn watch<K, T>(
    api: Api<K>,
    op: KubeApiOp,
    convert: fn(&K) -> Option<T>,
    wrap: fn(WatchEvent<T>) -> ControllerEvent,
) -> BoxStream<'static, Result<ControllerEvent, KubeError>>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    T: Send + 'static,
{
    let events = watcher::watcher(api, watcher::Config::default()).map(move |item| match item {
        // An expired resource version (after an API server restart) is a re-list, not a failure.
        Err(watcher::Error::WatchError(status)) if status.code == 410 => Ok(None),
        Err(source) => {
            metrics::kube_api_error(op);
            Err(KubeError::Watch { op, source })
        }
        Ok(Event::Init) => Ok(Some(wrap(WatchEvent::Relisting))),
        Ok(Event::InitDone) => Ok(Some(wrap(WatchEvent::Synced))),
        Ok(Event::InitApply(object)) => {
            Ok(convert(&object).map(|value| wrap(WatchEvent::Listed(key_of(&object), value))))
        }
        Ok(Event::Apply(object)) => {
            Ok(convert(&object).map(|value| wrap(WatchEvent::Applied(key_of(&object), value))))
        }
        Ok(Event::Delete(object)) => Ok(Some(wrap(WatchEvent::Deleted(key_of(&object))))),
    });
    StreamBackoff::new(events, WatchBackoff::default())
        .filter_map(|item| async move { item.transpose() })
        .boxed()
}

async fn render_metrics(State(state): State<HttpState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.prometheus.render(),
    )
}

/// 200 while starting (the first list may take a while on a large cluster) and while the table
/// is written; 503 while writing it fails, so that the kubelet restarts us.
async fn healthz(State(state): State<HttpState>) -> impl IntoResponse {
    match state.health.0.load(Ordering::Acquire) {
        FAILING => (
            StatusCode::SERVICE_UNAVAILABLE,
            "failing to write the nftables table\n",
        ),
        STARTING => (StatusCode::OK, "starting\n"),
        _ => (StatusCode::OK, "ok\n"),
    }
}
