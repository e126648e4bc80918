//! Start-up of the data plane: the `weave` bridge and the VXLAN device (created or adopted, MTU
//! given or derived from the underlay), the `MacLearner` (always), the `Fastdp` actor that runs
//! the overlay switch and programs the kernel (with `--no-fastdp` it still programs the bridge,
//! every peer on sleeve), and the bridge's own address from IPAM (`weave:expose`, the pods'
//! gateway).
//!
//! The returned [`Dataplane`] is how the rest of the router joins in: the `Sleeve` actor adds
//! itself to [`Dataplane::fastdp_peers`] and [`Dataplane::mac_table`], and sends what it learns
//! to [`Dataplane::macs_seen`].
//!
//! It also sets up the masquerading of pod traffic leaving the pod range (our nftables table, as
//! Weave Net's router did it).

use std::net::Ipv4Addr;
use std::sync::Arc;

use actix::Actor;
use tracing::{info, warn};

use super::config::RouterArgs;
use crate::actors::fastdp::switch_policy::FastdpPolicy;
use crate::actors::fastdp::{Devices, Fastdp, FastdpConfig, FastdpOutputs};
use crate::actors::gossip::GossipView;
use crate::actors::ipam::Submit;
use crate::actors::mac_learner::MacLearner;
use crate::actors::overlay::{FastdpPeers, MacTablePublished, MacsSeen, Subscriber, Subscribers};
use crate::actors::supervisor::SupervisedAddr;
use crate::api::http::IpamApi;
use crate::dataplane::garp::BridgeAnnouncer;
use crate::dataplane::{
    DataplaneError, LinkOps, MacAddr, NetlinkLinkOps, NodeConfig, masquerade, setup_node,
    sleeve_tap_name,
};
use crate::ipam::{Cidr, Reply, Request};
use crate::metrics::ActorKind;
use crate::topology::PeerName;

/// VXLAN network identifier of the overlay. One VNI for the whole mesh: peers are told apart by
/// their underlay addresses, not by VNI (Weave Net's per-pair VNIs served its ODP flows).
pub const FASTDP_VNI: u32 = 0x5745; // "WE"
pub use weft_client::EXPOSE_IDENT;

/// The running data plane's actors and the registries the other overlay actors join.
#[derive(Clone)]
pub struct Dataplane {
    pub fastdp: SupervisedAddr<Fastdp>,
    pub mac_learner: SupervisedAddr<MacLearner>,
    /// Receivers of the overlay switch's [`FastdpPeers`] (whole set, on every change and every
    /// few seconds). Add the `Sleeve` actor (its `SupervisedAddr` handle, in an `Arc`).
    pub fastdp_peers: Subscribers<FastdpPeers>,
    /// Receivers of the MAC table ([`MacTablePublished`], coalesced after changes and every few
    /// seconds). `Fastdp` is subscribed; add the `Sleeve` actor.
    pub mac_table: Subscribers<MacTablePublished>,
    /// Where the hot paths report the MACs they see (the current `MacLearner`).
    pub macs_seen: Subscriber<MacsSeen>,
    /// The overlay MTU.
    pub mtu: u32,
    /// The underlay's MTU: where the sleeve's path-MTU search starts.
    pub underlay_mtu: u32,
    /// The bridge (`weave`) the overlay ports and pods hang off.
    pub bridge: String,
    /// The sleeve TAP's name (`sleeve-<mesh port>`), where the bridge entries of MACs at sleeve
    /// peers point.
    pub tap: String,
    /// Announces pods the CNI plugin wired (`POST /announce`); none if its socket cannot open.
    pub announcer: Option<Arc<BridgeAnnouncer<NetlinkLinkOps>>>,
}

/// Sets up the node's devices and starts programming them. Must run inside the actix system.
pub async fn start(
    args: &RouterArgs,
    name: PeerName,
    initial_peers: &[String],
    view: GossipView,
    ipam: Option<&IpamApi>,
    password: bool,
) -> Result<Dataplane, DataplaneError> {
    let ops = NetlinkLinkOps::new()?;
    let mut node = NodeConfig::new(MacAddr(name.to_bytes()), args.port, FASTDP_VNI);
    node.mtu = args.mtu;
    // The route to a peer names the underlay interface whose MTU bounds ours.
    node.underlay_probe = initial_peers.iter().find_map(|peer| {
        let host = peer
            .rsplit_once(':')
            .map_or(peer.as_str(), |(host, _)| host);
        host.parse::<Ipv4Addr>().ok()
    });
    let state = setup_node(&ops, &node).await?;
    info!(
        "Bridge {} (MTU {}, {:?}), VXLAN {} on UDP {}",
        node.bridge, state.mtu, state.mtu_source, node.vxlan_name, node.vxlan_port
    );
    egress_masquerade(
        &args.ipalloc_range,
        &node.bridge,
        &[args.port, node.vxlan_port],
    );
    if args.no_fastdp {
        warn!("fastdp is off (--no-fastdp): every peer's traffic goes over sleeve");
    }
    let mac_table = Subscribers::<MacTablePublished>::default();
    let fastdp_peers = Subscribers::<FastdpPeers>::default();
    let mac_learner = {
        let view = view.clone();
        let mac_table = mac_table.clone();
        SupervisedAddr::start(ActorKind::MacLearner, move || {
            MacLearner::new(name, view.clone(), mac_table.clone()).start()
        })
    };
    let macs_seen: Subscriber<MacsSeen> = Arc::new(mac_learner.clone());
    let tap = sleeve_tap_name(args.port);
    let config = FastdpConfig {
        local: name,
        devices: Devices {
            vxlan: node.vxlan_name.clone(),
            tap: tap.clone(),
        },
        mtu: state.mtu,
        enabled: !args.no_fastdp,
        policy: FastdpPolicy::new(password, args.trusted_subnets.clone()),
    };
    let outputs = FastdpOutputs {
        macs_seen: Some(macs_seen.clone()),
        peers: fastdp_peers.clone(),
    };
    let announcer = match BridgeAnnouncer::open(ops.clone(), node.bridge.clone()) {
        Ok(announcer) => Some(Arc::new(announcer)),
        Err(err) => {
            warn!(
                "pods will not be announced (gratuitous ARP) on {}: {err}",
                node.bridge
            );
            None
        }
    };
    let fastdp = SupervisedAddr::start(ActorKind::Fastdp, move || {
        Fastdp::new(ops.clone(), config.clone(), view.clone(), outputs.clone()).start()
    });
    mac_table.add(Arc::new(fastdp.clone()));
    if let Some(ipam) = ipam {
        expose_bridge(ipam.clone(), node.bridge.clone());
    }
    Ok(Dataplane {
        fastdp,
        mac_learner,
        fastdp_peers,
        mac_table,
        macs_seen,
        mtu: state.mtu,
        underlay_mtu: state.underlay_mtu,
        bridge: node.bridge.clone(),
        tap,
        announcer,
    })
}

/// Masquerades pod traffic leaving `range` (the whole pod range, `--ipalloc-range`). Without it
/// pods can't reach anything outside the overlay, but the overlay itself still works, so a
/// failure (no `nft` tool, no nftables in the kernel) is logged loudly, not fatal.
fn egress_masquerade(range: &str, bridge: &str, overlay_udp_ports: &[u16]) {
    if range.is_empty() {
        return info!("No pod range (IPAM off): no egress masquerading");
    }
    // ipam_config already refused a malformed range; this only reads it back.
    let Ok(range) = range.parse::<Cidr>() else {
        return warn!("pod range {range:?} is not a CIDR: no egress masquerading");
    };
    let network = (Ipv4Addr::from(range.addr()), range.prefix_len());
    match masquerade::install(network, bridge, overlay_udp_ports) {
        Ok(()) => info!(
            "Masquerading traffic from {range} to other destinations (nftables table {})",
            masquerade::TABLE
        ),
        Err(err) => tracing::error!("pods can't reach beyond the overlay: {err}"),
    }
}

/// Gives the bridge its address from IPAM once the ring can allocate (it may wait for consensus),
/// as Weave Net's `weave expose` did: the pods' default gateway.
fn expose_bridge(ipam: IpamApi, bridge: String) {
    actix_rt::spawn(async move {
        let request = Request::Allocate {
            ident: EXPOSE_IDENT.to_string(),
            subnet: ipam.default_subnet,
        };
        let answer = match ipam.actor.addr().send(Submit(request)).await {
            Ok(receiver) => receiver.await,
            Err(_) => return warn!("cannot ask IPAM for the bridge's address"),
        };
        let cidr = match answer {
            Ok(Ok(Reply::Allocated(cidr))) => cidr,
            Ok(Ok(other)) => return warn!("unexpected IPAM answer for {EXPOSE_IDENT}: {other:?}"),
            Ok(Err(err)) => return warn!("no address for the bridge: {err}"),
            Err(_) => return warn!("IPAM went away before answering for {EXPOSE_IDENT}"),
        };
        let ops = match NetlinkLinkOps::new() {
            Ok(ops) => ops,
            Err(err) => return warn!("cannot open netlink to address the bridge: {err}"),
        };
        let addr = Ipv4Addr::from(cidr.address);
        match ops.add_ipv4_address(&bridge, addr, cidr.prefix_len()).await {
            Ok(()) => info!("Bridge {bridge} has address {cidr} ({EXPOSE_IDENT})"),
            Err(err) => warn!("cannot give {bridge} the address {cidr}: {err}"),
        }
    });
}
