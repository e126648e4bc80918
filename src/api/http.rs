//! The HTTP API on `--http-addr` (status texts, report, connect/forget, metrics) and the metrics
//! listener on `--metrics-addr`. Handlers only ask actors for snapshots or hand them requests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;

use super::gauge_refresh::GaugeRefresh;
use super::status_text::{self, ENCRYPTED_ATTR};
use crate::actors::connection_maker::{Connect, ConnectionMaker, Forget, GetTargets};
use crate::actors::fastdp::{Fastdp, FastdpStatus, GetFastdpStatus};
use crate::actors::gossip::Gossip;
use crate::actors::gossip::messages::GetGossipStatus;
use crate::actors::ipam::{GetIpamSnapshot, Ipam};
use crate::actors::mac_learner::{GetMacTable, MacLearner, MacRow};
use crate::actors::sleeve::{GetSleeveStatus, Sleeve, SleeveLinkStatus};
use crate::actors::supervisor::{RecipientSource, SupervisedAddr};
use crate::dataplane::NetlinkLinkOps;
use crate::dataplane::garp::BridgeAnnouncer;
use crate::ipam::Cidr;
use crate::metrics;
use crate::snapshot::{
    BroadcastRoute, ConnectionState, ConnectionStatus, GetKubeStatus, MacStatus, OverlayStatus,
    PeerConnectionStatus, PeerStatus, RouterStatus, UnicastRoute, rfc3339_utc,
};
use crate::topology::{PeerName, PeerRecord};
use crate::wire::{PROTOCOL_MAX_VERSION, PROTOCOL_MIN_VERSION};

/// What never changes while the router runs.
#[derive(Clone, Debug)]
pub struct RouterInfo {
    pub name: PeerName,
    pub nickname: String,
    pub port: u16,
    pub conn_limit: u32,
    pub discovery: bool,
    /// The mesh has a password: links are sealed, and so is the sleeve's pod traffic.
    pub encryption: bool,
    /// `--trusted-subnets`, as given.
    pub trusted_subnets: Vec<String>,
}

/// The IPAM actor and what the API needs to know of its configuration.
#[derive(Clone)]
pub struct IpamApi {
    pub actor: SupervisedAddr<Ipam>,
    /// Where `POST /ip/{id}` allocates.
    pub default_subnet: Cidr,
}

#[derive(Clone)]
pub struct ApiState {
    pub gossip: SupervisedAddr<Gossip>,
    pub maker: SupervisedAddr<ConnectionMaker>,
    /// None when the router runs without IP address management.
    pub ipam: Option<IpamApi>,
    /// None without a data plane.
    pub fastdp: Option<SupervisedAddr<Fastdp>>,
    /// None without a data plane.
    pub mac_learner: Option<SupervisedAddr<MacLearner>>,
    /// Announces wired pods from the bridge; none without a data plane.
    pub announcer: Option<Arc<BridgeAnnouncer<NetlinkLinkOps>>>,
    /// None without a data plane, or when the sleeve could not start.
    pub sleeve: Option<SupervisedAddr<Sleeve>>,
    /// The Kubernetes side, with `--kube-peers`.
    pub kube: Option<Arc<dyn RecipientSource<GetKubeStatus>>>,
    pub info: Arc<RouterInfo>,
    pub ready: Arc<AtomicBool>,
    pub prometheus: PrometheusHandle,
    /// Shared by both listeners, so a storm on either costs one snapshot a second.
    pub gauge_refresh: Arc<GaugeRefresh>,
}

/// Errors a handler answers with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the router is not ready yet")]
    NotReady,
    #[error("the {0} subsystem is restarting; try again")]
    Unavailable(&'static str),
    #[error("{0}")]
    BadRequest(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self {
            ApiError::NotReady | ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
        };
        (status, format!("{self}\n")).into_response()
    }
}

/// The full control API, bound at `bound`: it refuses requests a web page could make (see
/// [`super::host_check`]).
pub fn control_router(state: ApiState, bound: SocketAddr) -> Router {
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/status", get(status))
        .route("/status/peers", get(status_peers))
        .route("/status/connections", get(status_connections))
        .route("/status/targets", get(status_targets))
        .route("/report", get(report))
        .route("/connect", post(connect))
        .route("/forget", post(forget))
        .route("/metrics", get(render_metrics))
        .merge(super::ipam_http::routes())
        .merge(super::announce_http::routes())
        .with_state(state);
    super::host_check::guarded(router, bound)
}

/// `/metrics` only, for `--metrics-addr`.
pub fn metrics_router(state: ApiState) -> Router {
    Router::new()
        .route("/metrics", get(render_metrics))
        .with_state(state)
}

/// Serves `router` on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, router: Router) -> std::io::Result<()> {
    axum::serve(listener, router).await
}

/// How long the liveness check waits for gossip, the actor every other one depends on.
const HEALTH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The liveness probe's answer: 200 while the router's core answers, 503 when gossip does not
/// answer within [`HEALTH_TIMEOUT`] (a wedged router, which a restart cures). Not readiness:
/// it is 200 while IPAM is still waiting for consensus.
async fn healthz(State(state): State<ApiState>) -> Response {
    let answer =
        tokio::time::timeout(HEALTH_TIMEOUT, state.gossip.addr().send(GetGossipStatus)).await;
    match answer {
        Ok(Ok(_)) => (StatusCode::OK, "ok\n").into_response(),
        Ok(Err(_)) => ApiError::Unavailable("gossip").into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "gossip did not answer within {} s\n",
                HEALTH_TIMEOUT.as_secs()
            ),
        )
            .into_response(),
    }
}

/// Gathers one consistent snapshot from the actors.
pub async fn snapshot(state: &ApiState) -> Result<RouterStatus, ApiError> {
    if !state.ready.load(Ordering::Acquire) {
        return Err(ApiError::NotReady);
    }
    let (gossip, targets) = futures_util::join!(
        state.gossip.addr().send(GetGossipStatus),
        state.maker.addr().send(GetTargets)
    );
    let gossip = gossip.map_err(|_| ApiError::Unavailable("gossip"))?;
    // A fastdp actor that is restarting shows its links without an overlay, not an error.
    let fastdp: Option<FastdpStatus> = match &state.fastdp {
        None => None,
        Some(fastdp) => fastdp.addr().send(GetFastdpStatus).await.ok(),
    };
    // Likewise a restarting MAC learner shows an empty table.
    let macs: Vec<MacRow> = match &state.mac_learner {
        None => Vec::new(),
        Some(learner) => learner.addr().send(GetMacTable).await.unwrap_or_default(),
    };
    let sleeve: Vec<SleeveLinkStatus> = match &state.sleeve {
        None => Vec::new(),
        Some(sleeve) => sleeve
            .addr()
            .send(GetSleeveStatus)
            .await
            .unwrap_or_default(),
    };
    let ipam = match &state.ipam {
        None => None,
        Some(ipam) => Some(
            ipam.actor
                .addr()
                .send(GetIpamSnapshot)
                .await
                .map_err(|_| ApiError::Unavailable("ipam"))?,
        ),
    };
    let kubernetes = match &state.kube {
        None => None,
        Some(kube) => Some(
            kube.recipient()
                .send(GetKubeStatus)
                .await
                .map_err(|_| ApiError::Unavailable("kubernetes"))?,
        ),
    };
    let targets = targets.map_err(|_| ApiError::Unavailable("connection maker"))?;
    let dataplane = state.fastdp.is_some() || state.sleeve.is_some();
    let nicknames: std::collections::BTreeMap<PeerName, String> = gossip
        .peers
        .iter()
        .map(|record| (record.name, record.nickname.clone()))
        .collect();
    let mut connections: Vec<ConnectionStatus> = gossip
        .links
        .iter()
        .map(|link| ConnectionStatus {
            address: link.remote_addr.to_string(),
            outbound: link.outbound,
            state: link_state(
                dataplane,
                fastdp.as_ref(),
                &sleeve,
                link.established,
                link.remote,
            ),
            peer: Some(link.remote),
            nick_name: Some(link.remote_nickname.clone()),
            // Why the link is on sleeve whatever fastdp's health, if it must be.
            info: fastdp
                .as_ref()
                .and_then(|status| status.peers.get(&link.remote))
                .and_then(|peer| peer.reason)
                .unwrap_or_default()
                .to_string(),
            overlay: overlay_of(fastdp.as_ref(), link.established, link.remote).map(str::to_string),
            attrs: link_attrs(
                state.info.encryption,
                overlay_of(fastdp.as_ref(), link.established, link.remote),
                link_mtu(fastdp.as_ref(), &sleeve, link.established, link.remote),
            ),
        })
        .collect();
    connections.extend(targets.pending);
    let info = &state.info;
    let mut peers: Vec<PeerStatus> = gossip
        .peers
        .iter()
        .map(|record| peer_status(record, &nicknames))
        .collect();
    // Ourselves first, as Weave Net lists them.
    peers.sort_by_key(|peer| (peer.name != info.name, peer.name));
    Ok(RouterStatus {
        version: env!("CARGO_PKG_VERSION").to_string(),
        protocol: "weft".to_string(),
        protocol_min_version: PROTOCOL_MIN_VERSION,
        protocol_max_version: PROTOCOL_MAX_VERSION,
        name: info.name,
        nick_name: info.nickname.clone(),
        encryption: info.encryption,
        peer_discovery: info.discovery,
        port: info.port,
        conn_limit: info.conn_limit,
        targets: targets.direct,
        connections,
        peers,
        unicast_routes: gossip
            .routes
            .unicast
            .iter()
            .map(|(dest, via)| UnicastRoute {
                dest: *dest,
                via: *via,
            })
            .collect(),
        broadcast_routes: gossip
            .routes
            .broadcast
            .to_map()
            .into_iter()
            .map(|(source, via)| BroadcastRoute { source, via })
            .collect(),
        termination_count: metrics::termination_count(),
        refused_for_limit_count: metrics::refused_for_limit_count(),
        trusted_subnets: info.trusted_subnets.clone(),
        ipam,
        macs: mac_status(macs),
        overlays: overlay_status(fastdp.as_ref(), &sleeve),
        kubernetes,
    })
}

fn mac_status(rows: Vec<MacRow>) -> Vec<MacStatus> {
    let now = std::time::SystemTime::now();
    rows.into_iter()
        .map(|row| MacStatus {
            mac: row.mac.to_string(),
            name: row.peer,
            nick_name: row.nickname,
            last_seen: rfc3339_utc(now - row.last_seen_ago),
        })
        .collect()
}

fn overlay_status(
    fastdp: Option<&FastdpStatus>,
    sleeve: &[SleeveLinkStatus],
) -> Vec<OverlayStatus> {
    let now = std::time::Instant::now();
    let Some(fastdp) = fastdp else {
        return Vec::new();
    };
    fastdp
        .peers
        .iter()
        .map(|(name, peer)| {
            let link = sleeve.iter().find(|link| link.peer == *name);
            OverlayStatus {
                name: *name,
                nick_name: peer.nickname.clone(),
                overlay: peer.overlay.to_string(),
                fastdp_healthy: peer.healthy,
                last_heartbeat_ack_ms: peer.last_ack.map(|at| {
                    u64::try_from(now.saturating_duration_since(at).as_millis()).unwrap_or(u64::MAX)
                }),
                sleeve_address: link.map(|link| link.udp_addr.to_string()),
                sleeve_established: link.is_some_and(|link| link.established),
                sleeve_verified_mtu: link.and_then(|link| link.verified_mtu),
            }
        })
        .collect()
}

/// A link's `key=value` attributes: `encrypted` (Weave's: whether its pod traffic is encrypted,
/// which with a password is all but fastdp's, the kernel here having no ESP) and the `mtu`.
fn link_attrs(password: bool, overlay: Option<&str>, mtu: Option<u32>) -> Vec<(String, String)> {
    let encrypted = password && overlay != Some("fastdp");
    let mut attrs = vec![(ENCRYPTED_ATTR.to_string(), encrypted.to_string())];
    attrs.extend(mtu.map(|mtu| ("mtu".to_string(), mtu.to_string())));
    attrs
}

/// A link is `established` once an overlay has proven the path to its peer for pod frames: the
/// peer acked our sleeve heartbeats and the sleeve routes to it, or its fastdp heartbeats are
/// healthy and the kernel floods to it (as Weave Net showed it). The mesh handshake alone is not
/// enough: a pod that pinged a peer's pod at once would lose its first ping. Without a data plane
/// there is no overlay to wait for: the handshake establishes the link. `dataplane` is whether
/// the router runs one; a `None` fastdp status there (the actor restarting) proves nothing.
fn link_state(
    dataplane: bool,
    fastdp: Option<&FastdpStatus>,
    sleeve: &[SleeveLinkStatus],
    handshake_done: bool,
    remote: PeerName,
) -> ConnectionState {
    let proven = || {
        let by_sleeve = sleeve
            .iter()
            .any(|link| link.peer == remote && link.established);
        // Healthy heartbeats say the VXLAN path works; the kernel carries a pod's broadcast
        // there only once the peer is in the flood list, which follows a moment later.
        let by_fastdp = fastdp.is_some_and(|status| {
            status
                .peers
                .get(&remote)
                .is_some_and(|peer| peer.healthy && status.programmed.contains(&peer.ip))
        });
        by_sleeve || by_fastdp
    };
    if handshake_done && (!dataplane || proven()) {
        ConnectionState::Established
    } else {
        ConnectionState::Pending
    }
}

/// The MTU pods get on a link: the bridge's on fastdp, the verified (or still assumed) path MTU
/// of its sleeve datagrams on sleeve.
fn link_mtu(
    fastdp: Option<&FastdpStatus>,
    sleeve: &[SleeveLinkStatus],
    established: bool,
    remote: PeerName,
) -> Option<u32> {
    match overlay_of(fastdp, established, remote)? {
        "sleeve" => sleeve
            .iter()
            .find(|link| link.peer == remote)
            .map(|link| u32::from(link.mtu))
            .or(fastdp.map(|status| status.mtu)),
        _ => fastdp.map(|status| status.mtu),
    }
}

/// The overlay carrying an established link's pod traffic, as the overlay switch decided it
/// (`fastdp` only while the peer's fastdp heartbeats are acked, else `sleeve`). None without a
/// data plane, or for a link the switch has not seen yet.
fn overlay_of(
    fastdp: Option<&FastdpStatus>,
    established: bool,
    remote: PeerName,
) -> Option<&'static str> {
    if !established {
        return None;
    }
    fastdp?.peers.get(&remote).map(|peer| peer.overlay.as_str())
}

fn peer_status(
    record: &PeerRecord,
    nicknames: &std::collections::BTreeMap<PeerName, String>,
) -> PeerStatus {
    PeerStatus {
        name: record.name,
        nick_name: record.nickname.clone(),
        uid: record.uid,
        version: record.version,
        connections: record
            .connections
            .iter()
            .map(|(remote, summary)| PeerConnectionStatus {
                name: *remote,
                nick_name: nicknames.get(remote).cloned(),
                address: summary.remote_addr.to_string(),
                outbound: summary.outbound,
                established: summary.established,
            })
            .collect(),
    }
}

fn text(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

async fn status(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let status = snapshot(&state).await?;
    let ipam = status.ipam.as_ref().map(super::ipam_text::section);
    Ok(text(status_text::status(&status, ipam.as_deref())))
}

async fn status_peers(State(state): State<ApiState>) -> Result<Response, ApiError> {
    Ok(text(status_text::peers(&snapshot(&state).await?)))
}

async fn status_connections(State(state): State<ApiState>) -> Result<Response, ApiError> {
    Ok(text(status_text::connections(&snapshot(&state).await?)))
}

async fn status_targets(State(state): State<ApiState>) -> Result<Response, ApiError> {
    Ok(text(status_text::targets(&snapshot(&state).await?)))
}

async fn report(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let status = snapshot(&state).await?;
    Ok(axum::Json(status).into_response())
}

/// The `peer` values (repeatable) and the `replace` flag of a request, from its form body and
/// its query string as Weave's API read them (Go's `ParseForm`: body values first).
fn peers_form(query: Option<&str>, body: &[u8]) -> (Vec<String>, bool) {
    let query = query.unwrap_or_default().as_bytes();
    let mut peers = Vec::new();
    let mut replace = None;
    for (key, value) in form_urlencoded::parse(body).chain(form_urlencoded::parse(query)) {
        match key.as_ref() {
            "peer" => peers.push(value.into_owned()),
            "replace" => replace = replace.or(Some(value == "true")),
            _ => {}
        }
    }
    (peers, replace.unwrap_or(false))
}

/// A request naming no peer did nothing while answering 200; only `replace=true` (drop every
/// target) means something without one.
fn no_peer(what: &str) -> ApiError {
    ApiError::BadRequest(format!(
        "{what} names no peer: send peer=<host[:port]> in the form body or the query string"
    ))
}

async fn connect(
    State(state): State<ApiState>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let (peers, replace) = peers_form(query.as_deref(), &body);
    if peers.is_empty() && !replace {
        return Err(no_peer("connect"));
    }
    state
        .maker
        .addr()
        .send(Connect { peers, replace })
        .await
        .map_err(|_| ApiError::Unavailable("connection maker"))?
        .map_err(|err| ApiError::BadRequest(err.to_string()))?;
    Ok(StatusCode::OK)
}

async fn forget(
    State(state): State<ApiState>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let (peers, _) = peers_form(query.as_deref(), &body);
    if peers.is_empty() {
        return Err(no_peer("forget"));
    }
    state
        .maker
        .addr()
        .send(Forget { peers })
        .await
        .map_err(|_| ApiError::Unavailable("connection maker"))?
        .map_err(|err| ApiError::BadRequest(err.to_string()))?;
    Ok(StatusCode::OK)
}

async fn render_metrics(State(state): State<ApiState>) -> Response {
    // Gauges are refreshed from a snapshot; if the router is not ready yet, counters still render.
    let refresh = || async {
        let Ok(status) = snapshot(&state).await else {
            return false;
        };
        metrics::record_connections(&status);
        if let Some(ipam) = &status.ipam {
            metrics::record_ipam(ipam);
        }
        true
    };
    state
        .gauge_refresh
        .refresh_if_stale(std::time::Instant::now(), refresh)
        .await;
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.prometheus.render(),
    )
        .into_response()
}

/// Binds both listeners up front, so that a port in use fails the start with a clear error.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

/// Answers every request on the API's socket with 503 and what the router is waiting for, while
/// start-up waits (for the Kubernetes API, on a fresh node): `weave status` then says why the
/// router is not ready instead of "connection refused". Stopped with [`StartingServer::stop`],
/// after which the real API takes the same socket.
pub struct StartingServer {
    stop: tokio::sync::oneshot::Sender<()>,
    served: actix_rt::task::JoinHandle<()>,
}

impl StartingServer {
    pub fn start(
        listener: &tokio::net::TcpListener,
        waiting_for: tokio::sync::watch::Receiver<String>,
    ) -> std::io::Result<Self> {
        let clone: std::net::TcpListener = socket2::SockRef::from(listener).try_clone()?.into();
        clone.set_nonblocking(true)?;
        let clone = tokio::net::TcpListener::from_std(clone)?;
        // Alive while waiting: a liveness probe must not restart a router that is only
        // patient (the readiness probe on /status says it is not ready).
        let router = Router::new()
            .route("/healthz", get(|| async { "starting\n" }))
            .fallback(move || {
                let message = waiting_for.borrow().clone();
                async move { (StatusCode::SERVICE_UNAVAILABLE, format!("{message}\n")) }
            });
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let served = actix_rt::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(err) = axum::serve(clone, router)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::warn!("the start-up status server stopped: {err}");
            }
        });
        Ok(Self { stop, served })
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.served.await;
    }
}

#[cfg(test)]
mod tests;
