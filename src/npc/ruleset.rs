//! What the compiler produces and the kernel enforces, as plain values: per direction, the local
//! pods that are isolated and, per policy that isolates some of them, its own small sets: the
//! local pods it selects (its targets) and, per rule, the peer pods and address blocks, the numeric
//! ports and the named ports resolved on each destination pod. A change of one policy touches
//! only that policy's sets, and a pod's coming or going only the sets that name it. Interval
//! sets' elements are normalised to be disjoint, as nftables requires, and the ruleset can be
//! interpreted here, packet by packet, for the property tests.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use super::model::{Direction, Protocol};
use super::ranges::{Inclusive, IpRange};
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

    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

impl Inclusive for PortRange {
    fn bounds(&self) -> (u64, u64) {
        (u64::from(self.first), u64::from(self.last))
    }

    fn set_last(&mut self, last: u64) {
        self.last = u16::try_from(last).expect("a merged end is one of the ends");
    }
}

/// A range of ports of one protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProtocolPorts {
    pub protocol: Protocol,
    pub ports: PortRange,
}

/// A named port as one destination pod resolves it: traffic to `dst` on `protocol`/`port`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NamedPort {
    pub dst: Ipv4Addr,
    pub protocol: Protocol,
    pub port: u16,
}

/// The ports of a rule: numeric ones (for any destination) or named ones (per destination).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortSets {
    /// Sorted; disjoint within each protocol.
    pub numeric: Vec<ProtocolPorts>,
    pub named: BTreeSet<NamedPort>,
}

impl PortSets {
    fn allow(&self, dst: Ipv4Addr, protocol: Protocol, port: u16) -> bool {
        self.numeric
            .iter()
            .any(|range| range.protocol == protocol && range.ports.contains(port))
            || self.named.contains(&NamedPort {
                dst,
                protocol,
                port,
            })
    }
}

/// The peers of a rule: pods by address, and address blocks. Two sets, not one interval set of
/// both: the `nft` tool (1.0.6) reads every element of every interval set in the kernel before
/// each transaction, which made each change cost time in proportion to the number of peer pods
/// in all policies; pod addresses in hash sets it leaves alone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerSets {
    pub pods: BTreeSet<Ipv4Addr>,
    /// Sorted, disjoint ranges.
    pub blocks: Vec<IpRange>,
}

impl PeerSets {
    fn contains(&self, peer: Ipv4Addr) -> bool {
        self.pods.contains(&peer)
            || self
                .blocks
                .iter()
                .any(|range| range.contains(u32::from(peer)))
    }
}

/// One rule of a policy: a peer in `peers` and a port in `ports`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleSets {
    /// `None`: every peer. Otherwise the peers (possibly none).
    pub peers: Option<PeerSets>,
    /// `None`: every port of every protocol, and protocols without ports.
    pub ports: Option<PortSets>,
}

impl RuleSets {
    fn allows(&self, peer: Ipv4Addr, dst: Ipv4Addr, protocol: Option<Protocol>, port: u16) -> bool {
        self.peers.as_ref().is_none_or(|peers| peers.contains(peer))
            && self.ports.as_ref().is_none_or(|ports| {
                protocol.is_some_and(|protocol| ports.allow(dst, protocol, port))
            })
    }

    /// Which sets the kernel needs for this rule (what must stay the same for an update to be
    /// only a change of elements).
    pub fn shape(&self) -> (bool, bool) {
        (self.peers.is_some(), self.ports.is_some())
    }
}

/// One policy's part of one direction on this node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyRules {
    /// `<namespace>/<name>`, for people reading the table.
    pub name: String,
    /// The local pods the policy selects (and so isolates in this direction); never empty.
    pub targets: BTreeSet<Ipv4Addr>,
    /// What it allows them; none: nothing.
    pub rules: Vec<RuleSets>,
}

impl PolicyRules {
    pub fn shape(&self) -> Vec<(bool, bool)> {
        self.rules.iter().map(RuleSets::shape).collect()
    }

    fn element_count(&self) -> usize {
        self.targets.len()
            + self
                .rules
                .iter()
                .map(|rule| {
                    rule.peers
                        .as_ref()
                        .map_or(0, |peers| peers.pods.len() + peers.blocks.len())
                        + rule
                            .ports
                            .as_ref()
                            .map_or(0, |ports| ports.numeric.len() + ports.named.len())
                })
                .sum::<usize>()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirectionRules {
    /// Local pods isolated in this direction (every policy's targets): only what one of their
    /// policies allows gets through.
    pub isolated: BTreeSet<Ipv4Addr>,
    /// By a short id, stable while the policy exists (it names the policy's chain and sets).
    pub policies: BTreeMap<String, PolicyRules>,
}

impl DirectionRules {
    /// Whether a new connection of local `pod` with `peer` (to `dst`, the destination of the
    /// packet: `pod` for ingress, `peer` for egress) is allowed in this direction.
    pub fn allows(
        &self,
        pod: Ipv4Addr,
        peer: Ipv4Addr,
        dst: Ipv4Addr,
        protocol: Option<Protocol>,
        port: u16,
    ) -> bool {
        if !self.isolated.contains(&pod) {
            return true;
        }
        self.policies
            .values()
            .filter(|policy| policy.targets.contains(&pod))
            .any(|policy| {
                policy
                    .rules
                    .iter()
                    .any(|rule| rule.allows(peer, dst, protocol, port))
            })
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

    pub fn direction_mut(&mut self, direction: Direction) -> &mut DirectionRules {
        match direction {
            Direction::Ingress => &mut self.ingress,
            Direction::Egress => &mut self.egress,
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
            .allows(pod, peer, packet.dst, packet.protocol, packet.port)
    }

    /// Elements in all sets: the size of what the kernel holds.
    pub fn element_count(&self) -> usize {
        [&self.ingress, &self.egress]
            .iter()
            .map(|rules| {
                rules.isolated.len()
                    + rules
                        .policies
                        .values()
                        .map(PolicyRules::element_count)
                        .sum::<usize>()
            })
            .sum()
    }
}
