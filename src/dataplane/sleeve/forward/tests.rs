//! Whole meshes simulated over the pure forwarding functions: every peer's table built the way
//! the `Sleeve` actor builds it (from the routes the gossip computes over the mesh's links),
//! frames followed hop by hop, kernel (fastdp) deliveries counted alongside sleeve ones.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use super::*;
use crate::dataplane::mac_table::MacTable;
use crate::dataplane::sleeve::forwarding::Neighbour;
use crate::topology::Routes;
use proptest::prelude::*;

fn peer(index: usize) -> PeerName {
    PeerName::from_u64(0x0200_0000_0000 + index as u64).unwrap()
}

/// An undirected mesh: `links[a][b]` is `Some(fastdp)` when a and b hold a direct connection.
#[derive(Debug)]
struct Mesh {
    links: Vec<Vec<Option<bool>>>,
}

impl Mesh {
    fn len(&self) -> usize {
        self.links.len()
    }

    fn neighbours(&self, a: usize) -> Vec<usize> {
        (0..self.len())
            .filter(|&b| self.links[a][b].is_some())
            .collect()
    }

    /// Every direct connection, once.
    fn links(&self) -> Vec<(PeerName, PeerName)> {
        (0..self.len())
            .flat_map(|a| self.neighbours(a).into_iter().map(move |b| (a, b)))
            .filter(|(a, b)| a < b)
            .map(|(a, b)| (peer(a), peer(b)))
            .collect()
    }

    /// Peer `me`'s table, with `macs` saying where each peer's pod MAC is.
    fn table(
        &self,
        me: usize,
        macs: &Arc<crate::dataplane::mac_table::MacSnapshot>,
    ) -> ForwardingTable {
        let mut table = ForwardingTable::alone(peer(me));
        for b in self.neighbours(me) {
            table.neighbours.insert(
                peer(b),
                Neighbour {
                    udp_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 6783)),
                    payload_limit: 1472,
                    fastdp: self.links[me][b] == Some(true),
                    draining: false,
                },
            );
        }
        let routes = Routes::from_links(peer(me), &self.links());
        table.next_hops = routes.unicast.into_iter().collect();
        table.broadcast = routes.broadcast;
        table.macs = Arc::clone(macs);
        table
    }
}

fn pod_mac(index: usize) -> MacAddr {
    MacAddr([0x02, 0xee, 0, 0, 0, index as u8])
}

/// What each peer's MAC table says: pod `i` lives at peer `i`.
fn macs_as_seen_by(me: usize, n: usize) -> Arc<crate::dataplane::mac_table::MacSnapshot> {
    let mut table = MacTable::new();
    let now = Instant::now();
    for i in 0..n {
        let at = if i == me {
            Location::Local
        } else {
            Location::Remote(peer(i))
        };
        table.observe(pod_mac(i), at, now);
    }
    table.snapshot()
}

/// Follows a frame captured at `origin` for `dst` through the whole mesh; returns deliveries per
/// peer (kernel and sleeve together).
fn deliveries(mesh: &Mesh, origin: usize, dst: MacAddr, known_macs: bool) -> Vec<usize> {
    let n = mesh.len();
    let tables: Vec<ForwardingTable> = (0..n)
        .map(|me| {
            let mut table = mesh.table(me, &Arc::new(Default::default()));
            if known_macs {
                table.macs = macs_as_seen_by(me, n);
            }
            table
        })
        .collect();
    let index_of = |name: PeerName| (0..n).find(|&i| peer(i) == name).unwrap();
    let mut delivered = vec![0; n];
    let mut actions = Vec::new();
    forward_captured(&tables[origin], dst, &mut actions);
    // The kernel's share: fastdp floods broadcasts and unknown unicast to every fastdp neighbour,
    // and carries unicast for a MAC at a fastdp neighbour straight there.
    let known_at = known_macs
        .then(|| (0..n).find(|&i| pod_mac(i) == dst))
        .flatten();
    for b in mesh.neighbours(origin) {
        if mesh.links[origin][b] == Some(true) && (known_at.is_none() || known_at == Some(b)) {
            delivered[b] += 1;
        }
    }
    let mut in_flight: VecDeque<(usize, usize, RecordDestination)> = VecDeque::new();
    for action in actions.drain(..) {
        if let Action::Send { hop, destination } = action {
            in_flight.push_back((origin, index_of(hop), destination));
        }
    }
    let mut steps = 0;
    while let Some((from, at, destination)) = in_flight.pop_front() {
        steps += 1;
        assert!(steps < 10 * n * n, "forwarding loops");
        assert!(mesh.links[from][at].is_some(), "sent to a non-neighbour");
        forward_received(
            &tables[at],
            peer(from),
            peer(origin),
            destination,
            &mut actions,
        );
        for action in actions.drain(..) {
            match action {
                Action::Deliver => delivered[at] += 1,
                Action::Send { hop, destination } => {
                    in_flight.push_back((at, index_of(hop), destination))
                }
                Action::Drop(_) => {}
            }
        }
    }
    delivered
}

fn mesh_strategy() -> impl Strategy<Value = Mesh> {
    (2usize..8)
        .prop_flat_map(|n| {
            (
                Just(n),
                prop::collection::vec(prop::option::weighted(0.4, any::<bool>()), n * n),
                prop::collection::vec(any::<bool>(), n),
                Just(()).prop_perturb(move |_, mut rng| {
                    let mut order: Vec<usize> = (0..n).collect();
                    for i in (1..n).rev() {
                        order.swap(i, rng.random_range(0..=i));
                    }
                    order
                }),
            )
        })
        .prop_map(|(n, extra, chain_fastdp, order)| {
            let mut links = vec![vec![None; n]; n];
            // A random path through every peer keeps the mesh connected; extra links add cycles.
            for (i, pair) in order.windows(2).enumerate() {
                links[pair[0]][pair[1]] = Some(chain_fastdp[i]);
                links[pair[1]][pair[0]] = Some(chain_fastdp[i]);
            }
            for a in 0..n {
                for b in (a + 1)..n {
                    if let Some(fastdp) = extra[a * n + b] {
                        links[a][b] = Some(fastdp);
                        links[b][a] = Some(fastdp);
                    }
                }
            }
            Mesh { links }
        })
}

proptest! {
    #[test]
    fn every_peer_gets_each_broadcast_exactly_once(mesh in mesh_strategy(), origin in any::<prop::sample::Index>(), known in any::<bool>()) {
        let origin = origin.index(mesh.len());
        let delivered = deliveries(&mesh, origin, MacAddr::BROADCAST, known);
        for (i, &count) in delivered.iter().enumerate() {
            prop_assert_eq!(count, usize::from(i != origin), "peer {} of {:?}", i, delivered);
        }
        // Unknown unicast floods the same way.
        let unknown = deliveries(&mesh, origin, MacAddr([0x02, 0x99, 9, 9, 9, 9]), known);
        prop_assert_eq!(unknown, delivered);
    }

    #[test]
    fn unicast_reaches_its_peer_only_and_once(mesh in mesh_strategy(), pair in any::<(prop::sample::Index, prop::sample::Index)>()) {
        let origin = pair.0.index(mesh.len());
        let target = pair.1.index(mesh.len());
        let delivered = deliveries(&mesh, origin, pod_mac(target), true);
        for (i, &count) in delivered.iter().enumerate() {
            // A MAC on our own bridge is the bridge's to deliver: nothing crosses the overlay.
            let expected = usize::from(i == target && target != origin);
            prop_assert_eq!(count, expected, "peer {} of {:?}", i, delivered);
        }
    }
}

#[test]
fn captured_unicast_decisions() {
    // 0 - 1 (fastdp) and 1 - 2 (sleeve): a chain.
    let mesh = Mesh {
        links: vec![
            vec![None, Some(true), None],
            vec![Some(true), None, Some(false)],
            vec![None, Some(false), None],
        ],
    };
    let table = mesh.table(0, &macs_as_seen_by(0, 3));
    let mut out = Vec::new();
    forward_captured(&table, pod_mac(0), &mut out);
    forward_captured(&table, pod_mac(1), &mut out);
    forward_captured(&table, pod_mac(2), &mut out);
    forward_captured(&table, MacAddr::BROADCAST, &mut out);
    assert_eq!(
        out,
        vec![
            Action::Drop(DropReason::LocalDestination),
            Action::Drop(DropReason::KernelCarries),
            Action::Send {
                hop: peer(1),
                destination: RecordDestination::Peer(peer(2))
            },
            // 1 is a fastdp child that relays for 2: relay-only.
            Action::Send {
                hop: peer(1),
                destination: RecordDestination::RelayOnly
            },
        ]
    );
    // At 1, the relay of 0's unicast towards 2 goes over sleeve, and a frame from 0 for an
    // unreachable peer is dropped.
    out.clear();
    let at_one = mesh.table(1, &macs_as_seen_by(1, 3));
    forward_received(
        &at_one,
        peer(0),
        peer(0),
        RecordDestination::Peer(peer(2)),
        &mut out,
    );
    forward_received(
        &at_one,
        peer(0),
        peer(0),
        RecordDestination::Peer(peer(7)),
        &mut out,
    );
    forward_received(
        &at_one,
        peer(0),
        peer(1),
        RecordDestination::Broadcast,
        &mut out,
    );
    assert_eq!(
        out,
        vec![
            Action::Send {
                hop: peer(2),
                destination: RecordDestination::Peer(peer(2))
            },
            Action::Drop(DropReason::NoRoute),
            Action::Drop(DropReason::Loop),
        ]
    );
    // A lone peer has nobody to flood to.
    out.clear();
    forward_captured(
        &ForwardingTable::alone(peer(0)),
        MacAddr::BROADCAST,
        &mut out,
    );
    assert_eq!(out, vec![Action::Drop(DropReason::NoChildren)]);
}

#[test]
fn captured_unicast_to_a_draining_fastdp_peer_still_goes_over_sleeve_but_broadcasts_do_not() {
    // 0 - 1 (fastdp, taken over by the kernel moments ago): frames on our TAP for 1's MACs were
    // queued before the bridge moved them, so the kernel did not carry them.
    let mesh = Mesh {
        links: vec![vec![None, Some(true)], vec![Some(true), None]],
    };
    let mut table = mesh.table(0, &macs_as_seen_by(0, 2));
    table
        .neighbours
        .get_mut(&peer(1))
        .expect("1 is a neighbour")
        .draining = true;
    let mut out = Vec::new();
    forward_captured(&table, pod_mac(1), &mut out);
    forward_captured(&table, MacAddr::BROADCAST, &mut out);
    assert_eq!(
        out,
        vec![
            Action::Send {
                hop: peer(1),
                destination: RecordDestination::Peer(peer(1))
            },
            // The kernel floods to 1 already, and 1 relays for nobody.
            Action::Drop(DropReason::NoChildren),
        ]
    );
}
