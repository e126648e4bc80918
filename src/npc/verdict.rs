//! The reference evaluator: NetworkPolicy v1 semantics written as plainly as they are specified,
//! one packet at a time. It is slow and it is the oracle: the compiled ruleset, interpreted, must
//! agree with it on every world the property tests make.

use std::net::Ipv4Addr;

use super::model::{Direction, Peer, Pod, Policy, PortRef, Protocol, Rule, World};

/// The first packet of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// `None` for a protocol without ports (ICMP): only rules without ports allow it.
    pub protocol: Option<Protocol>,
    pub port: u16,
}

/// Whether policies allow `packet`: the source's egress and the destination's ingress must both.
pub fn verdict(world: &World, packet: &Packet) -> bool {
    allowed(world, Direction::Egress, packet) && allowed(world, Direction::Ingress, packet)
}

/// Whether the policies of the pod at the `direction` end allow `packet` (a pod no policy
/// isolates in that direction allows everything).
pub fn allowed(world: &World, direction: Direction, packet: &Packet) -> bool {
    let (subject_ip, peer_ip) = match direction {
        Direction::Egress => (packet.src, packet.dst),
        Direction::Ingress => (packet.dst, packet.src),
    };
    let Some(subject) = world.pod_at(subject_ip) else {
        return true;
    };
    let isolating: Vec<&Policy> = world
        .policies
        .iter()
        .filter(|policy| policy.selects(subject) && policy.rules(direction).is_some())
        .collect();
    if isolating.is_empty() {
        return true;
    }
    let destination = world.pod_at(packet.dst);
    isolating.iter().any(|policy| {
        policy
            .rules(direction)
            .unwrap_or_default()
            .iter()
            .any(|rule| rule_allows(world, policy, rule, peer_ip, destination, packet))
    })
}

fn rule_allows(
    world: &World,
    policy: &Policy,
    rule: &Rule,
    peer_ip: Ipv4Addr,
    destination: Option<&Pod>,
    packet: &Packet,
) -> bool {
    let peer_ok = rule.peers.is_empty()
        || rule.peers.iter().any(|peer| match peer {
            Peer::Block(ranges) => ranges
                .iter()
                .any(|range| range.contains(u32::from(peer_ip))),
            Peer::Pods { .. } => world
                .pod_at(peer_ip)
                .is_some_and(|pod| world.peer_selects_pod(peer, &policy.namespace, pod)),
        });
    let port_ok = rule.ports.is_empty()
        || packet.protocol.is_some_and(|protocol| {
            rule.ports.iter().any(|spec| {
                spec.protocol == protocol
                    && match &spec.port {
                        None => true,
                        Some(PortRef::Number(port)) => match spec.end_port {
                            None => packet.port == *port,
                            Some(end) => (*port..=end).contains(&packet.port),
                        },
                        // Resolved on the destination pod, whichever end the rule protects.
                        Some(PortRef::Name(name)) => {
                            destination.and_then(|pod| pod.named_port(name, protocol))
                                == Some(packet.port)
                        }
                    }
            })
        });
    peer_ok && port_ok
}
