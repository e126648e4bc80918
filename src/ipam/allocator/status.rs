//! What `weave status`, `weave status ipam`, the report and the metrics show of the allocator:
//! its state in Weave Net's words, each peer's share of the range and whether it is reachable,
//! and the counts behind `weave_ips`, `weave_max_ips` and the unreachable gauges.

use std::fmt;

use serde::Serialize;

use super::Allocator;
use super::bootstrap::Bootstrap;
use crate::ipam::Cidr;
use crate::topology::PeerName;

/// The allocator's state, as the `Status:` line of `weave status` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum IpamState {
    /// No allocation or claim has needed the ring yet.
    Idle,
    /// Consensus on who shares the range is under way.
    AwaitingConsensus {
        quorum: usize,
        known: usize,
    },
    /// An observer waiting for a peer's ring (beyond Weave Net, which says `idle`).
    AwaitingRing,
    Ready,
    /// Requests wait for space or for an address's owner.
    WaitingForSpace,
    /// Requests wait, and every other peer owning part of the range is unreachable.
    AllUnreachable,
}

impl fmt::Display for IpamState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Idle => f.write_str("idle"),
            Self::AwaitingConsensus { quorum, known } => {
                write!(f, "awaiting consensus (quorum: {quorum}, known: {known})")
            }
            Self::AwaitingRing => f.write_str("awaiting the IP allocation ring from a peer"),
            Self::Ready => f.write_str("ready"),
            Self::WaitingForSpace => f.write_str("waiting for IP(s) to become available"),
            Self::AllUnreachable => f.write_str(
                "all IP ranges owned by unreachable peers - use 'rmpeer' if they are dead",
            ),
        }
    }
}

/// One peer's share of the range: a line of `weave status ipam`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PeerShareStatus {
    pub peer: PeerName,
    pub nickname: Option<String>,
    pub addresses: u64,
    /// Of the whole range, 0 to 100.
    pub percent: f64,
    /// Ourselves, or a peer the topology reaches.
    pub reachable: bool,
    /// Addresses in use: known for ourselves only.
    pub active: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct IpamStatus {
    pub state: IpamState,
    pub range: Cidr,
    pub default_subnet: Cidr,
    /// Ours first, then by peer name; empty until the ring is made.
    pub shares: Vec<PeerShareStatus>,
    /// Addresses allocated here (`weave_ips{state="local-used"}`).
    pub active_ips: u64,
    /// Size of the whole range (`weave_max_ips`).
    pub max_ips: u64,
    /// Peers owning part of the range that are unreachable.
    pub unreachable_count: usize,
    /// Share of the range those peers own, 0 to 100.
    pub unreachable_percentage: f64,
    pub pending_allocates: usize,
    pub pending_claims: usize,
}

impl Allocator {
    pub fn status(&self) -> IpamStatus {
        let local = self.config.local;
        let shares: Vec<PeerShareStatus> = self
            .ring
            .shares()
            .into_iter()
            .map(|share| PeerShareStatus {
                peer: share.peer,
                nickname: if share.peer == local {
                    Some(self.config.nickname.clone())
                } else {
                    self.nicknames.get(&share.peer).cloned()
                },
                addresses: u64::from(share.addresses),
                percent: share.percent,
                reachable: share.peer == local || self.is_live(share.peer),
                active: (share.peer == local).then(|| u64::from(self.space.allocated_count())),
            })
            .collect();
        let unreachable = shares.iter().filter(|share| !share.reachable);
        let unreachable_count = unreachable.clone().count();
        let unreachable_percentage = unreachable.map(|share| share.percent).sum();
        let others_all_unreachable = shares.iter().any(|share| share.peer != local)
            && shares
                .iter()
                .all(|share| share.peer == local || !share.reachable);
        IpamStatus {
            state: self.state(others_all_unreachable),
            range: self.config.universe,
            default_subnet: self.config.default_subnet,
            shares,
            active_ips: u64::from(self.space.allocated_count()),
            max_ips: u64::from(self.config.universe.size()),
            unreachable_count,
            unreachable_percentage,
            pending_allocates: self.pending.allocate_count(),
            pending_claims: self.pending.claim_count(),
        }
    }

    fn state(&self, others_all_unreachable: bool) -> IpamState {
        if self.ring.is_empty() {
            return match &self.bootstrap {
                Bootstrap::Consensus(_) => {
                    self.bootstrap.paxos().map_or(IpamState::Idle, |paxos| {
                        let status = paxos.status();
                        IpamState::AwaitingConsensus {
                            quorum: status.quorum,
                            known: status.known,
                        }
                    })
                }
                Bootstrap::AwaitingRing { .. } => IpamState::AwaitingRing,
                Bootstrap::Idle | Bootstrap::Established => IpamState::Idle,
            };
        }
        if self.pending.allocate_count() + self.pending.claim_count() == 0 {
            IpamState::Ready
        } else if others_all_unreachable {
            IpamState::AllUnreachable
        } else {
            IpamState::WaitingForSpace
        }
    }
}
