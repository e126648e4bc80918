//! The invariants of the allocator simulation (`allocator_sim.rs`): those checked after every
//! step, and the final ones checked after healing, restarting everyone and gossiping.

use std::collections::BTreeMap;

use proptest::prelude::*;

use crate::ipam::allocator::tests::sim_cluster::{SimCluster, UNIVERSE};
use crate::ipam::allocator::tests::support::cidr;
use crate::ipam::{Address, AddressRange, Cidr, InitMode, IpamState, Request, Ring, RingState};

/// Rounds of the final gossip phase before the cluster is declared stuck.
const MAX_ROUNDS: usize = 12;

/// Every address held by a live ident (running nodes, and crashed nodes that will come back
/// with what they persisted), with its holders.
fn holders(cluster: &SimCluster) -> BTreeMap<Address, Vec<(usize, String)>> {
    let mut holders: BTreeMap<Address, Vec<(usize, String)>> = BTreeMap::new();
    for (index, node) in cluster.nodes.iter().enumerate() {
        if node.removed {
            continue;
        }
        let owned = match (&node.alloc, &node.persisted) {
            (Some(alloc), _) => alloc.owned().clone(),
            (None, Some(state)) => state.owned.clone(),
            (None, None) => BTreeMap::new(),
        };
        for (ident, addresses) in owned {
            for address in addresses {
                holders
                    .entry(address)
                    .or_default()
                    .push((index, ident.clone()));
            }
        }
    }
    holders
}

/// What node `index`'s ring says it owns.
fn ring_owned(cluster: &SimCluster, index: usize) -> Vec<AddressRange> {
    let alloc = cluster.nodes[index].alloc.as_ref().expect("running");
    let name = SimCluster::name(index);
    alloc.ring_state().map_or_else(Vec::new, |state| {
        Ring::restore(state.clone(), name)
            .expect("our own ring is valid")
            .owned_ranges(name)
    })
}

pub(crate) fn check_step(cluster: &SimCluster) -> Result<(), TestCaseError> {
    for (address, held_by) in holders(cluster) {
        prop_assert!(held_by.len() == 1, "{} is held by {:?}", address, held_by);
    }
    for index in (0..cluster.nodes.len()).filter(|&i| cluster.nodes[i].is_up()) {
        let alloc = cluster.nodes[index].alloc.as_ref().expect("running");
        prop_assert_eq!(
            alloc.owned_ranges(),
            ring_owned(cluster, index),
            "node {} out of step",
            index
        );
    }
    Ok(())
}

/// Free host addresses of `subnet` on running nodes.
fn free_hosts(cluster: &SimCluster, subnet: Cidr) -> u32 {
    let hosts = subnet.host_range();
    cluster
        .nodes
        .iter()
        .filter_map(|node| node.alloc.as_ref())
        .map(|alloc| {
            let owned: u32 = alloc
                .owned_ranges()
                .iter()
                .filter_map(|range| range.intersection(&hosts))
                .map(|range| range.size())
                .sum();
            let used = alloc
                .owned()
                .values()
                .flatten()
                .filter(|&&a| hosts.contains(a))
                .count();
            owned - used as u32
        })
        .sum()
}

/// Heals, restarts everyone, gossips (removing, on one node, whatever departed nodes still
/// own), and checks that all agree, nothing was lost and nothing waits that need not.
pub(crate) fn check_final(cluster: &mut SimCluster) -> Result<(), TestCaseError> {
    cluster.heal();
    for index in 0..cluster.nodes.len() {
        cluster.restart(index);
    }
    cluster.drain();
    let running: Vec<usize> = (0..cluster.nodes.len())
        .filter(|&i| cluster.nodes[i].is_up())
        .collect();
    let Some(&first) = running.first() else {
        return Ok(());
    };
    for _ in 0..MAX_ROUNDS {
        cluster.gossip_rounds(1);
        remove_leftovers(cluster, first);
        if rings_agree(cluster, &running) && settled(cluster) {
            break;
        }
    }
    cluster.drain();
    check_step(cluster)?;
    prop_assert!(
        rings_agree(cluster, &running),
        "rings differ after healing: {:#?}\nreports: {:#?}",
        running
            .iter()
            .map(|&i| ring_of(cluster, i))
            .collect::<Vec<_>>(),
        cluster.reports
    );
    check_consensus_completed(cluster, &running)?;
    if ring_of(cluster, first).is_some() {
        check_nothing_lost(cluster, &running)?;
    }
    let waiting: Vec<(String, Cidr)> = cluster
        .outstanding
        .values()
        .filter_map(|op| Some((op.ident.clone(), op.subnet?)))
        .collect();
    for (ident, subnet) in waiting {
        prop_assert_eq!(
            free_hosts(cluster, subnet),
            0,
            "{} waits in {} with space free",
            ident,
            subnet
        );
        cluster.count("waited for space at the end");
    }
    Ok(())
}

pub(crate) fn ring_of(cluster: &SimCluster, index: usize) -> Option<RingState> {
    cluster.nodes[index]
        .alloc
        .as_ref()
        .and_then(|a| a.ring_state().cloned())
}

pub(crate) fn rings_agree(cluster: &SimCluster, running: &[usize]) -> bool {
    running
        .windows(2)
        .all(|pair| ring_of(cluster, pair[0]) == ring_of(cluster, pair[1]))
}

/// `rmpeer` on node `by` of every departed node its ring still names (everything sent has
/// been delivered, so nothing of theirs is on its way).
fn remove_leftovers(cluster: &mut SimCluster, by: usize) {
    let Some(ring) = ring_of(cluster, by) else {
        return;
    };
    let leftovers: Vec<usize> = (0..cluster.nodes.len())
        .filter(|&i| cluster.nodes[i].removed)
        .filter(|&i| ring.entries().iter().any(|e| e.peer == SimCluster::name(i)))
        .collect();
    for dead in leftovers {
        let peer = format!("node{}", dead + 1);
        cluster.request(by, String::new(), Request::RemovePeer { peer });
    }
}

/// With at least a quorum of electors left, nobody may still be waiting for consensus.
fn check_consensus_completed(
    cluster: &mut SimCluster,
    running: &[usize],
) -> Result<(), TestCaseError> {
    let quorum = running.iter().find_map(|&i| match cluster.nodes[i].mode {
        InitMode::Consensus { quorum, .. } => Some(quorum),
        _ => None,
    });
    let electors = running
        .iter()
        .filter(|&&i| matches!(cluster.nodes[i].mode, InitMode::Consensus { .. }))
        .count();
    let Some(quorum) = quorum else {
        return Ok(());
    };
    let states: Vec<IpamState> = running
        .iter()
        .map(|&i| {
            cluster.nodes[i]
                .alloc
                .as_ref()
                .expect("running")
                .status()
                .state
        })
        .collect();
    if electors >= quorum {
        prop_assert!(
            states.iter().all(|s| !matches!(
                s,
                IpamState::AwaitingConsensus { .. } | IpamState::AwaitingRing
            )),
            "consensus stuck with {} electors for quorum {}: {:?}",
            electors,
            quorum,
            states
        );
    }
    if ring_of(cluster, running[0]).is_some() {
        cluster.count("consensus reached");
    }
    Ok(())
}

/// The running nodes own the whole range between them, and every held address is inside what
/// its node owns: allocated + free == range size.
pub(crate) fn check_nothing_lost(
    cluster: &SimCluster,
    running: &[usize],
) -> Result<(), TestCaseError> {
    let mut owned_total = 0u32;
    let mut allocated_total = 0u32;
    for &index in running {
        let alloc = cluster.nodes[index].alloc.as_ref().expect("running");
        let ranges = alloc.owned_ranges();
        owned_total += ranges.iter().map(AddressRange::size).sum::<u32>();
        for &address in alloc.owned().values().flatten() {
            prop_assert!(
                ranges.iter().any(|r| r.contains(address)),
                "{} held outside",
                address
            );
            allocated_total += 1;
        }
        prop_assert_eq!(
            alloc.status().pending_claims,
            0,
            "node {} still claims",
            index
        );
    }
    let free_total = owned_total - allocated_total;
    prop_assert_eq!(
        allocated_total + free_total,
        cidr(UNIVERSE).size(),
        "addresses lost"
    );
    Ok(())
}

/// No request waits while its subnet has free space somewhere.
fn settled(cluster: &SimCluster) -> bool {
    cluster.outstanding.values().all(|op| {
        op.subnet
            .is_none_or(|subnet| free_hosts(cluster, subnet) == 0)
    })
}
