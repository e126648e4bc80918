//! What the compiler produces and the kernel enforces, as plain values: per direction, the local
//! pods that are isolated and the (pod, peer[, protocol, ports]) tuples that are allowed. Elements
//! are normalised to be disjoint, as nftables' concatenated interval sets require, and the
//! ruleset can be interpreted here, packet by packet, for the property tests.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use super::model::{Direction, Protocol};
use super::ranges::{Inclusive, IpRange, merge};
use super::verdict::Packet;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub const ALL: PortRange = PortRange {
        first: 0,
        last: u16::MAX,
    };

    pub fn single(port: u16) -> Self {
        Self {
            first: port,
            last: port,
        }
    }
}

/// Any traffic between a local pod and a range of peers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AnyElement {
    pub pod: Ipv4Addr,
    pub peer: IpRange,
}

/// Traffic of one protocol to a range of ports, between a local pod and a range of peers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortElement {
    pub pod: Ipv4Addr,
    pub peer: IpRange,
    pub protocol: Protocol,
    pub ports: PortRange,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirectionRules {
    /// Local pods isolated in this direction: only what the elements allow gets through.
    pub isolated: BTreeSet<Ipv4Addr>,
    pub any: Vec<AnyElement>,
    pub ports: Vec<PortElement>,
}

impl DirectionRules {
    /// Whether `pod` may exchange a new connection with `peer` in this direction.
    pub fn allows(
        &self,
        pod: Ipv4Addr,
        peer: Ipv4Addr,
        protocol: Option<Protocol>,
        port: u16,
    ) -> bool {
        if !self.isolated.contains(&pod) {
            return true;
        }
        let peer = u32::from(peer);
        self.any
            .iter()
            .any(|element| element.pod == pod && element.peer.contains(peer))
            || protocol.is_some_and(|protocol| {
                self.ports.iter().any(|element| {
                    element.pod == pod
                        && element.protocol == protocol
                        && element.peer.contains(peer)
                        && (element.ports.first..=element.ports.last).contains(&port)
                })
            })
    }

    /// Makes the elements disjoint (and so as few as the allowed space permits).
    pub fn normalise(&mut self) {
        let mut any: BTreeMap<Ipv4Addr, Vec<IpRange>> = BTreeMap::new();
        for element in self.any.drain(..) {
            any.entry(element.pod).or_default().push(element.peer);
        }
        self.any = any
            .into_iter()
            .flat_map(|(pod, peers)| {
                merge(peers)
                    .into_iter()
                    .map(move |peer| AnyElement { pod, peer })
            })
            .collect();
        let mut ports: BTreeMap<(Ipv4Addr, Protocol), Vec<(IpRange, PortRange)>> = BTreeMap::new();
        for element in self.ports.drain(..) {
            ports
                .entry((element.pod, element.protocol))
                .or_default()
                .push((element.peer, element.ports));
        }
        self.ports = ports
            .into_iter()
            .flat_map(|((pod, protocol), rectangles)| {
                disjoint_rectangles(&rectangles)
                    .into_iter()
                    .map(move |(peer, ports)| PortElement {
                        pod,
                        peer,
                        protocol,
                        ports,
                    })
            })
            .collect();
    }
}

/// The union of `rectangles` (peers × ports) as disjoint rectangles: the peer axis is cut at
/// every rectangle's edges, each piece gets the merged ports of the rectangles covering it, and
/// neighbouring pieces with the same ports are joined again.
fn disjoint_rectangles(rectangles: &[(IpRange, PortRange)]) -> Vec<(IpRange, PortRange)> {
    let mut cuts: Vec<u64> = rectangles
        .iter()
        .flat_map(|(peer, _)| [u64::from(peer.first), u64::from(peer.last) + 1])
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut strips: Vec<(IpRange, Vec<PortRange>)> = Vec::new();
    for window in cuts.windows(2) {
        let (first, last) = (window[0] as u32, (window[1] - 1) as u32);
        let covering: Vec<PortRange> = rectangles
            .iter()
            .filter(|(peer, _)| peer.contains(first))
            .map(|(_, ports)| *ports)
            .collect();
        if covering.is_empty() {
            continue;
        }
        let ports = merge(covering);
        match strips.last_mut() {
            Some((previous, previous_ports))
                if u64::from(previous.last) + 1 == u64::from(first) && *previous_ports == ports =>
            {
                previous.last = last;
            }
            _ => strips.push((IpRange { first, last }, ports)),
        }
    }
    strips
        .into_iter()
        .flat_map(|(peer, ports)| ports.into_iter().map(move |range| (peer, range)))
        .collect()
}

impl Inclusive for PortRange {
    fn bounds(&self) -> (u64, u64) {
        (u64::from(self.first), u64::from(self.last))
    }

    fn set_last(&mut self, last: u64) {
        self.last = u16::try_from(last).expect("a merged end is one of the ends");
    }
}

/// One node's ruleset.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ruleset {
    pub ingress: DirectionRules,
    pub egress: DirectionRules,
}

impl Ruleset {
    pub fn direction(&self, direction: Direction) -> &DirectionRules {
        match direction {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }

    /// What this node's ruleset says of `packet` in `direction` (egress for a packet leaving a
    /// local pod, ingress for one arriving at a local pod).
    pub fn allows(&self, direction: Direction, packet: &Packet) -> bool {
        let (pod, peer) = match direction {
            Direction::Egress => (packet.src, packet.dst),
            Direction::Ingress => (packet.dst, packet.src),
        };
        self.direction(direction)
            .allows(pod, peer, packet.protocol, packet.port)
    }

    pub fn normalise(&mut self) {
        self.ingress.normalise();
        self.egress.normalise();
    }

    /// Elements in all sets: the size of what the kernel holds.
    pub fn element_count(&self) -> usize {
        [&self.ingress, &self.egress]
            .iter()
            .map(|rules| rules.isolated.len() + rules.any.len() + rules.ports.len())
            .sum()
    }
}
