//! Route computation at scale: `Routes::compute` on the topology of a settled mesh of 250 peers
//! with 30 links each (what `load-tests/mesh_convergence.py --routers 250` builds), every link
//! established, then the same mesh with one link still pending, in one run. Profiles of 250 real
//! routers put half of all their CPU in this computation when it searched every reachable peer's
//! broadcast tree up front, for the established graph and again for the graph of every link.
//! Trees are now searched when first asked for; the "every tree" rows time what computing them
//! all costs (what each topology change used to cost), the baseline of the same run.
//!
//!     cargo run --release --example routes_bench [-- PEERS LINKS_PER_PEER]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use weft::topology::{ConnectionSummary, PeerName, PeerRecord, PeerUid, Routes, Topology};

/// Computations timed per case; the median is reported.
const SAMPLES: usize = 21;

fn name(n: u64) -> PeerName {
    PeerName::from_u64(n).expect("bench names fit in 48 bits")
}

/// Each peer linked to the peers `step · 7` away for `step` in 1..=links/2: a regular graph of
/// about `links` links per peer whose diameter, like a random one's, stays small.
fn settled_mesh(peers: u64, links: u64) -> Vec<PeerRecord> {
    let mut connections: Vec<BTreeMap<PeerName, ConnectionSummary>> =
        vec![BTreeMap::new(); peers as usize];
    for a in 0..peers {
        for step in 1..=links / 2 {
            let b = (a + step * 7) % peers;
            if a == b {
                continue;
            }
            for (from, to) in [(a, b), (b, a)] {
                connections[from as usize].insert(
                    name(to + 1),
                    ConnectionSummary {
                        remote_addr: SocketAddr::from(([127, 0, 0, 1], 6783)),
                        outbound: from < to,
                        established: true,
                    },
                );
            }
        }
    }
    connections
        .into_iter()
        .enumerate()
        .map(|(index, connections)| PeerRecord {
            name: name(index as u64 + 1),
            nickname: format!("n{}", index + 1),
            uid: PeerUid(1),
            version: 1,
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 6783)),
            conn_limit: links as u32,
            connections,
        })
        .collect()
}

fn topology(mut records: Vec<PeerRecord>) -> Topology {
    let ours = records.remove(0);
    let mut topology = Topology::new(ours);
    topology.merge(records);
    topology
}

/// Median time of `Routes::compute`, and with `every_tree` of every source's tree searched too
/// (both graphs'), and the number of broadcast sources.
fn median_compute(topology: &Topology, every_tree: bool) -> (Duration, usize) {
    let mut times = Vec::with_capacity(SAMPLES);
    let mut sources = 0;
    for _ in 0..SAMPLES {
        let started = Instant::now();
        let routes = Routes::compute(topology);
        if every_tree {
            sources = routes.broadcast.to_map().len();
            sources = sources.max(routes.broadcast_all.to_map().len());
        }
        times.push(started.elapsed());
    }
    times.sort();
    (times[SAMPLES / 2], sources)
}

fn ms(time: Duration) -> f64 {
    time.as_secs_f64() * 1e3
}

fn main() {
    let mut args = std::env::args().skip(1);
    let peers: u64 = args.next().map_or(250, |a| a.parse().expect("PEERS"));
    let links: u64 = args
        .next()
        .map_or(30, |a| a.parse().expect("LINKS_PER_PEER"));

    let settled = settled_mesh(peers, links);
    let mut pending = settled.clone();
    let remote = *pending[1]
        .connections
        .keys()
        .next()
        .expect("peer 2 has links");
    if let Some(link) = pending[1].connections.get_mut(&remote) {
        link.established = false;
    }

    let settled = topology(settled);
    let pending = topology(pending);
    let (settled_lazy, _) = median_compute(&settled, false);
    let (settled_every, sources) = median_compute(&settled, true);
    let (pending_lazy, _) = median_compute(&pending, false);
    let (pending_every, _) = median_compute(&pending, true);
    println!(
        "Routes::compute, {peers} peers, {links} links each, {sources} broadcast sources, median of {SAMPLES}:"
    );
    println!("                          trees when asked   every tree   ratio");
    for (case, lazy, every) in [
        ("every link established", settled_lazy, settled_every),
        ("one link pending", pending_lazy, pending_every),
    ] {
        println!(
            "  {case:<22} {:>12.3} ms {:>9.2} ms   {:.3}",
            ms(lazy),
            ms(every),
            lazy.as_secs_f64() / every.as_secs_f64()
        );
    }
}
