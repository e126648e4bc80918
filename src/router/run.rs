//! Start-up and shutdown of `weft router`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use actix::Actor;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::config::RouterArgs;
use super::late::{LateBound, SleeveSlot};
use crate::actors::connection::{
    LinkContext, LinkTimers, LocalIdentity, MeshKey, NOISE_PARAMS, WEAK_PASSWORD_BITS,
    estimated_bits,
};
use crate::actors::connection_maker::state::{TargetError, normalise_target};
use crate::actors::connection_maker::{ConnectionMaker, MakerConfig, Rebalancing};
use crate::actors::gossip::Gossip;
use crate::actors::ipam::{Ipam, IpamConfig};
use crate::actors::listener::{ConnectionLimiter, Listener};
use crate::actors::supervisor::SupervisedAddr;
use crate::api::http::{self, ApiState, IpamApi, RouterInfo};
use crate::daemon::wait_for_shutdown_signal;
use crate::identity::resolve_peer_name;
use crate::metrics::{self, ActorKind};
use crate::store::{Store, StoreError};
use crate::topology::{PeerRecord, PeerUid};

#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error("{0} (set --nickname)")]
    Nickname(#[from] crate::topology::NicknameError),
    #[error(transparent)]
    IpamConfig(#[from] super::ipam_config::IpamConfigError),
    #[error("IP address management cannot start: {0}")]
    Ipam(#[from] crate::actors::ipam::IpamActorError),
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Password(#[from] super::config::PasswordError),
    #[error(transparent)]
    MeshKey(#[from] crate::actors::connection::MeshKeyError),
    #[error("cannot set up the data plane: {0}")]
    Dataplane(#[from] crate::dataplane::DataplaneError),
    #[cfg(feature = "kube")]
    #[error("cannot start the Kubernetes side: {0}")]
    Kube(#[from] super::kube::KubeStartError),
    #[cfg(not(feature = "kube"))]
    #[error("--kube-peers: this weft was built without the `kube` feature")]
    KubeNotBuilt,
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string())
}

/// A starting version above anything an earlier incarnation of our gossip could have reached, so
/// that a re-created gossip actor's record outranks its predecessor's everywhere.
fn initial_version() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_millis() as u64)
        .unwrap_or(1)
}

/// Runs the router until SIGINT/SIGTERM. Must be called inside an actix system.
pub async fn run(args: RouterArgs) -> Result<(), RouterError> {
    info!("Command line options: {args:?}");
    let mesh_key = mesh_key(&args)?;
    let store = Arc::new(Store::open(&args.db_prefix)?);
    let name = resolve_peer_name(args.name, &store, &args.host_root)?;
    // On Kubernetes the node's name: a hostNetwork pod's hostname is the machine's, which need
    // not be the name operators see in `kubectl get nodes`.
    let nickname = args
        .nickname
        .clone()
        .or_else(|| {
            args.kube
                .enabled()
                .then(|| args.kube.node_name.clone())
                .flatten()
        })
        .unwrap_or_else(hostname);
    crate::topology::check_nickname(&nickname)?;
    let uid = PeerUid::random();
    info!("Our name is {name}({nickname})");

    let http_listener = http::bind(args.http_addr)
        .await
        .map_err(|source| RouterError::Bind {
            what: "HTTP API",
            addr: args.http_addr,
            source,
        })?;
    #[cfg(feature = "kube")]
    let kube = if args.kube.enabled() {
        // Without a persisted ring, IPAM's consensus must know how many nodes there are: a
        // fresh router waits for the first Node list, and says so on its API meanwhile.
        let fresh_ipam = matches!(store.ipam_state(), Ok(None));
        let (waiting_for, waiting_rx) = tokio::sync::watch::channel(
            "PeerDiscovery: kubernetes (listing the nodes)".to_string(),
        );
        let starting =
            http::StartingServer::start(&http_listener, waiting_rx).map_err(|source| {
                RouterError::Bind {
                    what: "HTTP API",
                    addr: args.http_addr,
                    source,
                }
            })?;
        let connected = super::kube::connect(&args.kube, fresh_ipam, &waiting_for).await;
        starting.stop().await;
        Some(connected?)
    } else {
        None
    };
    #[cfg(not(feature = "kube"))]
    if args.kube.enabled() {
        return Err(RouterError::KubeNotBuilt);
    }
    // The peers, and how many peers besides us a fresh IPAM consensus waits for.
    #[cfg(feature = "kube")]
    let (peers, consensus_peers) = match &kube {
        Some(kube) => {
            if !args.peers.is_empty() {
                info!("--kube-peers: the Nodes' addresses replace the peers on the command line");
            }
            let peers = match kube.nodes {
                Some(_) => kube.targets(),
                None => args.peers.clone(),
            };
            (peers, kube.consensus_peers())
        }
        None => (args.peers.clone(), None),
    };
    #[cfg(not(feature = "kube"))]
    let (peers, consensus_peers) = (args.peers.clone(), None::<usize>);
    let initial_peers = peers
        .iter()
        .map(|peer| normalise_target(peer, args.port))
        .collect::<Result<Vec<_>, _>>()?;
    // In a cluster the API was not reachable: keep what was persisted.
    let kube_without_list = consensus_peers.is_none() && args.kube.enabled();
    if !kube_without_list {
        store.set_direct_peers(&initial_peers)?;
    }
    info!("Initial set of peers: {initial_peers:?}");

    let listen_ip = args.host.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let mesh_addr = SocketAddr::new(listen_ip, args.port);
    let mesh_listener = std::net::TcpListener::bind(mesh_addr)
        .and_then(|listener| listener.set_nonblocking(true).map(|()| listener))
        .map_err(|source| RouterError::Bind {
            what: "mesh",
            addr: mesh_addr,
            source,
        })?;
    let metrics_listener =
        http::bind(args.metrics_addr)
            .await
            .map_err(|source| RouterError::Bind {
                what: "metrics",
                addr: args.metrics_addr,
                source,
            })?;
    let prometheus = metrics::install();
    metrics::register_router_series();

    let limiter = ConnectionLimiter::new(args.conn_limit);
    let (hints_tx, hints_rx) = watch::channel(Vec::new());
    let shutdown = CancellationToken::new();
    let gossip_slot = Arc::new(LateBound::<SupervisedAddr<Gossip>>::new());
    let maker_slot = Arc::new(LateBound::<SupervisedAddr<ConnectionMaker>>::new());
    let sleeve_slot = Arc::new(SleeveSlot::new(!args.no_dataplane));
    let sealed = mesh_key.is_some();
    let links = Arc::new(LinkContext {
        identity: LocalIdentity {
            name,
            nickname: nickname.clone(),
            uid,
            listen_port: args.port,
            overlays: Vec::new(),
        },
        timers: LinkTimers {
            handshake_timeout: args.handshake_timeout,
            heartbeat_interval: args.heartbeat_interval,
            read_timeout: args.read_timeout,
            sleeve_rekey_interval: args.sleeve_rekey_interval,
        },
        gossip: gossip_slot.clone(),
        maker: maker_slot.clone(),
        refusal_hints: hints_rx,
        conn_limit: args.conn_limit,
        sleeve_keys: sleeve_slot.clone(),
        mesh_key,
        shutdown: shutdown.clone(),
    });

    let local_record = PeerRecord {
        name,
        nickname: nickname.clone(),
        uid,
        version: 0,
        listen_addr: mesh_addr,
        conn_limit: args.conn_limit,
        connections: Default::default(),
    };
    let (view_tx, view) = crate::actors::gossip::view::channel();
    let gossip = {
        let maker_slot = maker_slot.clone();
        SupervisedAddr::start(ActorKind::Gossip, move || {
            let record = PeerRecord {
                version: initial_version(),
                ..local_record.clone()
            };
            Gossip::new(record, maker_slot.clone(), hints_tx.clone())
                .publishing_view(view_tx.clone())
                .start()
        })
    };
    gossip_slot.bind(gossip.clone());
    let maker_config = Arc::new(MakerConfig {
        links: links.clone(),
        limiter: limiter.clone(),
        bind_ip: args.host,
        default_port: args.port,
        discovery: !args.no_discovery,
        store: store.clone(),
        rebalancing: Some(Rebalancing {
            view: view.clone(),
            gossip: Arc::new(gossip.clone()),
        }),
    });
    let maker = SupervisedAddr::start(ActorKind::ConnectionMaker, move || {
        ConnectionMaker::new(maker_config.clone()).start()
    });
    maker_slot.bind(maker.clone());
    let ipam = match super::ipam_config::allocator_config(
        name,
        uid,
        &nickname,
        &args.ipalloc_range,
        args.ipalloc_default_subnet.as_deref(),
        args.ipalloc_init.as_deref(),
        consensus_peers.unwrap_or(initial_peers.len()),
    )? {
        None => {
            info!("IP address management is off (no --ipalloc-range)");
            None
        }
        Some(allocator) => {
            let default_subnet = allocator.default_subnet;
            info!(
                "IP address management: range {}, default subnet {default_subnet}, {:?}",
                allocator.universe, allocator.mode
            );
            let config = Arc::new(IpamConfig {
                allocator,
                store: store.clone(),
                gossip: gossip.clone(),
                view: view.clone(),
            });
            // The first incarnation is made here so that an unreadable database stops the start
            // with a clear error instead of a restart loop.
            let first = std::cell::Cell::new(Some(Ipam::new(config.clone())?));
            let actor = SupervisedAddr::start(ActorKind::Ipam, move || {
                let incarnation = match first.take() {
                    Some(ipam) => Ok(ipam),
                    None => Ipam::new(config.clone()),
                };
                match incarnation {
                    Ok(ipam) => ipam.start(),
                    Err(err) => {
                        // The database was readable at start and no longer is: nothing safe is
                        // left to do but stop, so that the node is restarted and looked at.
                        error!("cannot re-create IP address management: {err}");
                        std::process::exit(1);
                    }
                }
            });
            Some(IpamApi {
                actor,
                default_subnet,
            })
        }
    };
    let dataplane = if args.no_dataplane {
        None
    } else {
        let started = super::dataplane::start(
            &args,
            name,
            &initial_peers,
            view.clone(),
            ipam.as_ref(),
            sealed,
        );
        Some(started.await?)
    };
    // The sleeve runs beside fastdp; without it only fastdp peers are reachable, so a failure
    // to start it is loud but not fatal.
    let sleeve = match &dataplane {
        None => None,
        Some(dataplane) => {
            let started = super::sleeve::start(
                name,
                args.port,
                usize::from(args.sleeve_queues),
                dataplane.underlay_mtu,
                &dataplane.bridge,
                dataplane,
                gossip.clone(),
                view.clone(),
                sealed,
            )
            .await;
            sleeve_slot.bind(started.as_ref().ok().map(|sleeve| sleeve.actor.clone()));
            started.inspect_err(super::sleeve::report_failure).ok()
        }
    };
    let _listener = SupervisedAddr::start(ActorKind::Listener, move || {
        let listener = mesh_listener
            .try_clone()
            .and_then(tokio::net::TcpListener::from_std);
        match listener {
            Ok(listener) => Listener::new(listener, limiter.clone(), links.clone()).start(),
            Err(err) => {
                // A listener without a socket stops at once; supervision retries with backoff.
                error!("cannot re-create the mesh listener: {err}");
                Listener::stopped(limiter.clone(), links.clone()).start()
            }
        }
    });
    info!("Listening for mesh connections on {mesh_addr}");

    #[cfg(feature = "kube")]
    let kube_status = kube.map(|kube| {
        super::kube::start(
            kube,
            &args.kube,
            name,
            maker.clone(),
            ipam.as_ref().map(|ipam| ipam.actor.clone()),
        )
    });
    #[cfg(not(feature = "kube"))]
    let kube_status = None;

    let ready = Arc::new(AtomicBool::new(false));
    let api = ApiState {
        gossip,
        maker,
        ipam,
        fastdp: dataplane.as_ref().map(|d| d.fastdp.clone()),
        mac_learner: dataplane.as_ref().map(|d| d.mac_learner.clone()),
        announcer: dataplane.as_ref().and_then(|d| d.announcer.clone()),
        sleeve: sleeve.as_ref().map(|s| s.actor.clone()),
        kube: kube_status,
        info: Arc::new(RouterInfo {
            name,
            nickname,
            port: args.port,
            conn_limit: args.conn_limit,
            discovery: !args.no_discovery,
            encryption: sealed,
            trusted_subnets: args
                .trusted_subnets
                .iter()
                .map(ToString::to_string)
                .collect(),
        }),
        ready: ready.clone(),
        prometheus,
        gauge_refresh: Arc::default(),
    };
    info!("Listening for HTTP control messages on {}", args.http_addr);
    // The bound address, not the flag's: port 0 has become a real port by now.
    let http_bound = http_listener.local_addr().unwrap_or(args.http_addr);
    actix_rt::spawn(serve_logged(
        "HTTP API",
        http_listener,
        http::control_router(api.clone(), http_bound),
    ));
    info!("Listening for metrics requests on {}", args.metrics_addr);
    actix_rt::spawn(serve_logged(
        "metrics",
        metrics_listener,
        http::metrics_router(api),
    ));
    ready.store(true, Ordering::Release);

    wait_for_shutdown_signal().await;
    info!("Shutting down");
    drop(sleeve);
    shutdown.cancel();
    Ok(())
}

/// The mesh key, stretched from the password once, before anything listens.
fn mesh_key(args: &RouterArgs) -> Result<Option<Arc<MeshKey>>, RouterError> {
    let Some(password) = args.mesh_password()? else {
        info!(
            "Mesh connections are not authenticated: anyone who reaches port {} can join \
             (set WEAVE_PASSWORD, or firewall it to the nodes)",
            args.port
        );
        return Ok(None);
    };
    let bits = estimated_bits(password.as_bytes());
    if bits < WEAK_PASSWORD_BITS {
        warn!(
            "the mesh password is weak (at most {bits} bits; {WEAK_PASSWORD_BITS} or more \
             advised): someone who completes one handshake can try guesses offline"
        );
    }
    let started = std::time::Instant::now();
    let key = MeshKey::derive(password.as_bytes())?;
    info!(
        "Mesh password set: connections are authenticated and encrypted ({NOISE_PARAMS}); key \
         derived with Argon2id in {} ms",
        started.elapsed().as_millis()
    );
    if !args.no_dataplane {
        info!(
            "Sleeve datagrams are sealed (ChaCha20-Poly1305, keys agreed per link, rekeyed every \
             {} s)",
            args.sleeve_rekey_interval.as_secs()
        );
        if !args.no_fastdp {
            let trusted: Vec<String> = args.trusted_subnets.iter().map(|s| s.to_string()).collect();
            info!(
                "Fastdp (kernel VXLAN) cannot be encrypted here (no ESP): only peers in the \
                 trusted subnets [{}] may use it, the others use the encrypted sleeve",
                trusted.join(", ")
            );
        }
    }
    Ok(Some(Arc::new(key)))
}

async fn serve_logged(what: &'static str, listener: tokio::net::TcpListener, router: axum::Router) {
    if let Err(err) = http::serve(listener, router).await {
        error!("{what} server stopped: {err}");
    }
}
