//! The compiler: the world and a node's name in, that node's [`Ruleset`] out. Only pods on the
//! node are isolated here (egress is checked where a packet leaves, ingress where it arrives, so
//! a cross-node connection is checked once per direction); peers are every pod in the cluster.
//! Each policy compiles to its own sets, so its size is what it selects and names, never a
//! product of the two. Pure: the controller applies what it answers.

use std::collections::{BTreeMap, BTreeSet};

use super::model::{Direction, Peer, Pod, Policy, PortRef, Rule, World};
use super::ranges::{IpRange, merge};
use super::ruleset::{
    NamedPort, PeerSets, PolicyRules, PortRange, PortSets, ProtocolPorts, RuleSets, Ruleset,
};

/// A policy that could not be read, reported by the controller (it is enforced closed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyError {
    pub policy: String,
    pub reason: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Compiled {
    pub ruleset: Ruleset,
    pub errors: Vec<PolicyError>,
}

/// Hex digits of a policy's id: 48 bits of its name's hash, short enough that every set name
/// built on it stays within the 32 bytes older kernels allow (NFT_SET_MAXNAMELEN before 4.14).
const ID_DIGITS: usize = 12;

pub fn compile(world: &World, node: &str) -> Compiled {
    let mut ruleset = Ruleset::default();
    let local: Vec<&Pod> = world
        .pods
        .iter()
        .filter(|pod| pod.node.as_deref() == Some(node) && pod.policy_ip().is_some())
        .collect();
    for (policy, id) in world.policies.iter().zip(policy_ids(&world.policies)) {
        let targets: Vec<&Pod> = local
            .iter()
            .copied()
            .filter(|pod| policy.selects(pod))
            .collect();
        if targets.is_empty() {
            continue;
        }
        for direction in [Direction::Ingress, Direction::Egress] {
            let Some(rules) = policy.rules(direction) else {
                continue;
            };
            let compiled = PolicyRules {
                name: policy.to_string(),
                targets: targets.iter().filter_map(|pod| pod.policy_ip()).collect(),
                rules: rules
                    .iter()
                    .map(|rule| compile_rule(world, policy, rule, direction, &targets))
                    .collect(),
            };
            let out = ruleset.direction_mut(direction);
            out.isolated.extend(compiled.targets.iter().copied());
            out.policies.insert(id.clone(), compiled);
        }
    }
    let errors = world
        .policies
        .iter()
        .filter_map(|policy| {
            policy.broken.as_ref().map(|reason| PolicyError {
                policy: policy.to_string(),
                reason: reason.clone(),
            })
        })
        .collect();
    Compiled { ruleset, errors }
}

/// Each policy's id: a hash of `<namespace>/<name>`, so that it stays the same while other
/// policies come and go (an index would shift, and with it every chain and set name); a
/// collision (or two policies of one name, which only tests make) takes the next free value.
fn policy_ids(policies: &[Policy]) -> Vec<String> {
    let mut taken = BTreeSet::new();
    policies
        .iter()
        .map(|policy| {
            let mut hash = fnv1a(policy.to_string().as_bytes());
            loop {
                let id = format!(
                    "{:0width$x}",
                    hash >> (64 - 4 * ID_DIGITS),
                    width = ID_DIGITS
                );
                if taken.insert(id.clone()) {
                    return id;
                }
                hash = fnv1a(&hash.to_be_bytes());
            }
        })
        .collect()
}

/// 64-bit FNV-1a: stable across builds and platforms, unlike std's hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(PRIME)
    })
}

fn compile_rule(
    world: &World,
    policy: &Policy,
    rule: &Rule,
    direction: Direction,
    targets: &[&Pod],
) -> RuleSets {
    // The pods among the peers (all, without peers): egress resolves named ports on them.
    let peer_pods = || {
        world.pods.iter().filter(|pod| {
            pod.policy_ip().is_some_and(|ip| {
                rule.peers.is_empty()
                    || rule.peers.iter().any(|peer| match peer {
                        Peer::Block(ranges) => ranges.iter().any(|r| r.contains(u32::from(ip))),
                        Peer::Pods { .. } => world.peer_selects_pod(peer, &policy.namespace, pod),
                    })
            })
        })
    };
    let peers = (!rule.peers.is_empty()).then(|| {
        let mut pods = BTreeSet::new();
        let mut blocks: Vec<IpRange> = Vec::new();
        for peer in &rule.peers {
            match peer {
                Peer::Block(block) => blocks.extend(block.iter().copied()),
                Peer::Pods { .. } => pods.extend(
                    world
                        .pods
                        .iter()
                        .filter(|pod| world.peer_selects_pod(peer, &policy.namespace, pod))
                        .filter_map(Pod::policy_ip),
                ),
            }
        }
        PeerSets {
            pods,
            blocks: merge(blocks),
        }
    });
    let ports = (!rule.ports.is_empty()).then(|| {
        let mut numeric: BTreeMap<_, Vec<PortRange>> = BTreeMap::new();
        let mut named = BTreeSet::new();
        for spec in &rule.ports {
            let range = match &spec.port {
                None => PortRange::ALL,
                Some(PortRef::Number(port)) => PortRange {
                    first: *port,
                    last: spec.end_port.unwrap_or(*port),
                },
                Some(PortRef::Name(name)) => {
                    // Resolved on the destination: the target itself for ingress, each peer
                    // pod for egress.
                    let destinations: Vec<&Pod> = match direction {
                        Direction::Ingress => targets.to_vec(),
                        Direction::Egress => peer_pods().collect(),
                    };
                    named.extend(destinations.into_iter().filter_map(|pod| {
                        Some(NamedPort {
                            dst: pod.policy_ip()?,
                            protocol: spec.protocol,
                            port: pod.named_port(name, spec.protocol)?,
                        })
                    }));
                    continue;
                }
            };
            numeric.entry(spec.protocol).or_default().push(range);
        }
        PortSets {
            numeric: numeric
                .into_iter()
                .flat_map(|(protocol, ranges)| {
                    merge(ranges)
                        .into_iter()
                        .map(move |ports| ProtocolPorts { protocol, ports })
                })
                .collect(),
            named,
        }
    });
    RuleSets { peers, ports }
}

#[cfg(test)]
mod tests;
