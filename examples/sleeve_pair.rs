//! Runs the sleeve hot path alone, with a static forwarding table and no router: one node of a
//! pair, for `load-tests/dataplane_bench.sh` row (c) until `weft router` drives the sleeve itself.
//! Creates (or adopts) the bridge and the sleeve TAP in the current network namespace, forwards
//! everything to the one peer given, and on SIGINT/SIGTERM prints its counters and removes the
//! TAP (it is persistent, so it would outlive the process).
//!
//! ```text
//! ip netns exec node1 sleeve_pair --name 02:5e:00:00:00:01 --peer 02:5e:00:00:00:02=203.0.113.2 \
//!     --bridge br-bench --mtu 1450
//! ```

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;

use anyhow::{Context, bail};
use arc_swap::ArcSwap;
use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use weft::dataplane::sleeve::{
    ForwardingTable, Neighbour, SleeveEngine, SleeveSocket, ensure_sleeve_tap, sleeve_tap_name,
};
use weft::dataplane::{LinkOps, MacAddr, NetlinkLinkOps};
use weft::topology::PeerName;
use weft::wire::sleeve::datagram_payload_limit;

#[derive(Parser, Debug)]
struct Args {
    /// Our peer name (also the bridge's MAC).
    #[arg(long)]
    name: PeerName,
    /// The other node: PEER_NAME=UNDERLAY_IPV4.
    #[arg(long)]
    peer: String,
    /// Bridge to create or adopt.
    #[arg(long, default_value = "weave")]
    bridge: String,
    /// Bridge (and TAP) MTU in bytes.
    #[arg(long, default_value_t = 1450)]
    mtu: u32,
    /// Underlay MTU in bytes: datagrams are kept within it.
    #[arg(long, default_value_t = 1500)]
    underlay_mtu: u32,
    /// UDP port of both ends.
    #[arg(long, default_value_t = 6783)]
    port: u16,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let Some((peer, ip)) = args.peer.split_once('=') else {
        bail!("--peer wants PEER_NAME=IPV4, got {}", args.peer);
    };
    let peer: PeerName = peer.parse().context("--peer name")?;
    let ip: Ipv4Addr = ip.parse().context("--peer address")?;

    let ops = NetlinkLinkOps::new()?;
    ops.ensure_bridge(&args.bridge, MacAddr(args.name.to_bytes()), args.mtu)
        .await?;
    let tap_name = sleeve_tap_name(args.port);
    let (tap, _) = ensure_sleeve_tap(&ops, &args.bridge, &tap_name).await?;
    let socket = SleeveSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, args.port))?;

    let mut table = ForwardingTable::alone(args.name);
    table.neighbours.insert(
        peer,
        Neighbour {
            udp_addr: SocketAddr::from((ip, args.port)),
            payload_limit: datagram_payload_limit(args.underlay_mtu),
            fastdp: false,
        },
    );
    table.next_hops.insert(peer, peer);
    table.broadcast_children.insert(args.name, vec![peer]);
    let (events, mut received) = mpsc::channel(1024);
    let engine = SleeveEngine::start(tap, socket, Arc::new(ArcSwap::from_pointee(table)), events)?;
    eprintln!(
        "sleeve_pair: {} -> {peer} at {ip}:{} running",
        args.name, args.port
    );

    let mut terminate = signal(SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
            // Nobody learns here: the events are drained so the channel never fills.
            Some(_) = received.recv() => {}
        }
    }
    let stats = engine.stats().snapshot();
    engine.stop();
    eprintln!("sleeve_pair: {stats:#?}");
    ops.delete_link(&tap_name).await?;
    Ok(())
}
