//! The compiler: the world and a node's name in, that node's [`Ruleset`] out. Only pods on the
//! node are isolated here (egress is checked where a packet leaves, ingress where it arrives, so
//! a cross-node connection is checked once per direction); peers are every pod in the cluster.
//! Pure: the controller applies what it answers.

use std::net::Ipv4Addr;

use super::model::{Direction, Peer, Pod, Policy, PortRef, Rule, World};
use super::ranges::IpRange;
use super::ruleset::{AnyElement, DirectionRules, PortElement, PortRange, Ruleset};

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

/// Where a rule's peers are: a range of addresses, or one pod (named ports of egress rules are
/// resolved on the peer, so peer pods stay distinguishable).
enum PeerAddresses<'a> {
    Range(IpRange),
    Pod(&'a Pod),
}

pub fn compile(world: &World, node: &str) -> Compiled {
    let mut ruleset = Ruleset::default();
    let local = world
        .pods
        .iter()
        .filter(|pod| pod.node.as_deref() == Some(node))
        .filter_map(|pod| pod.policy_ip().map(|ip| (pod, ip)));
    for (pod, ip) in local {
        for direction in [Direction::Ingress, Direction::Egress] {
            let rules = match direction {
                Direction::Ingress => &mut ruleset.ingress,
                Direction::Egress => &mut ruleset.egress,
            };
            for policy in world.policies.iter().filter(|policy| policy.selects(pod)) {
                let Some(policy_rules) = policy.rules(direction) else {
                    continue;
                };
                rules.isolated.insert(ip);
                for rule in policy_rules {
                    compile_rule(world, policy, rule, direction, pod, ip, rules);
                }
            }
        }
    }
    ruleset.normalise();
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

fn compile_rule(
    world: &World,
    policy: &Policy,
    rule: &Rule,
    direction: Direction,
    subject: &Pod,
    subject_ip: Ipv4Addr,
    out: &mut DirectionRules,
) {
    let peers: Vec<PeerAddresses> = if rule.peers.is_empty() {
        vec![PeerAddresses::Range(IpRange::ALL)]
    } else {
        rule.peers
            .iter()
            .flat_map(|peer| match peer {
                Peer::Block(ranges) => ranges
                    .iter()
                    .copied()
                    .map(PeerAddresses::Range)
                    .collect::<Vec<_>>(),
                Peer::Pods { .. } => world
                    .pods
                    .iter()
                    .filter(|pod| {
                        pod.policy_ip().is_some()
                            && world.peer_selects_pod(peer, &policy.namespace, pod)
                    })
                    .map(PeerAddresses::Pod)
                    .collect(),
            })
            .collect()
    };
    let range_of = |peer: &PeerAddresses| match peer {
        PeerAddresses::Range(range) => *range,
        PeerAddresses::Pod(pod) => {
            IpRange::single(pod.policy_ip().expect("peer pods have addresses"))
        }
    };
    if rule.ports.is_empty() {
        for peer in &peers {
            out.any.push(AnyElement {
                pod: subject_ip,
                peer: range_of(peer),
            });
        }
        return;
    }
    for spec in &rule.ports {
        let numeric = match &spec.port {
            None => Some(PortRange::ALL),
            Some(PortRef::Number(port)) => Some(PortRange {
                first: *port,
                last: spec.end_port.unwrap_or(*port),
            }),
            Some(PortRef::Name(_)) => None,
        };
        if let Some(ports) = numeric {
            for peer in &peers {
                out.ports.push(PortElement {
                    pod: subject_ip,
                    peer: range_of(peer),
                    protocol: spec.protocol,
                    ports,
                });
            }
            continue;
        }
        let Some(PortRef::Name(name)) = &spec.port else {
            continue;
        };
        match direction {
            // The destination is the subject itself: one resolution for every peer.
            Direction::Ingress => {
                if let Some(port) = subject.named_port(name, spec.protocol) {
                    for peer in &peers {
                        out.ports.push(PortElement {
                            pod: subject_ip,
                            peer: range_of(peer),
                            protocol: spec.protocol,
                            ports: PortRange::single(port),
                        });
                    }
                }
            }
            // The destination is the peer: each peer pod resolves the name for itself, and a
            // range holds only the pods inside it that have the name.
            Direction::Egress => {
                let mut destinations: Vec<&Pod> = Vec::new();
                for peer in &peers {
                    match peer {
                        PeerAddresses::Pod(pod) => destinations.push(pod),
                        PeerAddresses::Range(range) => {
                            destinations.extend(world.pods.iter().filter(|pod| {
                                pod.policy_ip()
                                    .is_some_and(|ip| range.contains(u32::from(ip)))
                            }))
                        }
                    }
                }
                for destination in destinations {
                    if let (Some(ip), Some(port)) = (
                        destination.policy_ip(),
                        destination.named_port(name, spec.protocol),
                    ) {
                        out.ports.push(PortElement {
                            pod: subject_ip,
                            peer: IpRange::single(ip),
                            protocol: spec.protocol,
                            ports: PortRange::single(port),
                        });
                    }
                }
            }
        }
    }
}
