//! The allocator's vocabulary with the IPAM actor: its configuration, the requests the HTTP API
//! makes, the replies, the effects the actor carries out (persist, gossip, reply, report) and the
//! state that is persisted. Plain data; the behaviour is in `allocator.rs` and its parts.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ipam::messages::IpamMessage;
use crate::ipam::paxos::PaxosState;
use crate::ipam::{Address, Cidr, IpamError, RingState};
use crate::topology::{PeerName, PeerUid};

/// How the ring is first made (`--ipalloc-init`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InitMode {
    /// Agree by Paxos on the peers that share the range; a quorum of 1 decides at once.
    /// Paxos among the electors. `expected` is how many peers the operator said would take
    /// part (`consensus=N`): a proposer waits up to `CONSENSUS_PATIENCE` (10 s) for all of them before
    /// it settles for a quorum, so that the range is split among all the first peers, not just
    /// the first majority that answered. 0: settle for the quorum at once.
    Consensus { quorum: usize, expected: usize },
    /// Every peer is given this same list and splits the range among it at once.
    Seed(Vec<PeerName>),
    /// Never take part in making the ring nor get a share of it; wait for the ring from a peer
    /// (space can still be asked for afterwards).
    Observer,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllocatorConfig {
    pub local: PeerName,
    /// This process's incarnation (the consensus tells restarts apart by it).
    pub uid: PeerUid,
    pub nickname: String,
    /// The whole allocation range (`--ipalloc-range`).
    pub universe: Cidr,
    /// The subnet of `POST /ip/{id}` (`--ipalloc-default-subnet`), inside the universe.
    pub default_subnet: Cidr,
    pub mode: InitMode,
}

/// The actor's handle on one request, to match replies and cancellations.
pub type RequestId = u64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// `POST /ip/{id}[/{ip}/{prefix}]`: the lowest free address of `subnet`. Asking again for
    /// the same ident and subnet gives the same address.
    Allocate { ident: String, subnet: Cidr },
    /// `PUT /ip/{id}/{ip}/{prefix}`: this very address (`subnet` is where it lives, for lookups).
    Claim {
        ident: String,
        addr: Address,
        subnet: Cidr,
    },
    /// `DELETE /ip/{id}`: every address of `ident`; freeing nothing is fine (cleanup is
    /// idempotent). Pending requests of `ident` are cancelled.
    Free { ident: String },
    /// `DELETE /ip/{id}/{ip}`: one address; fine if nobody holds it, an error if another
    /// ident does.
    FreeAddress { ident: String, addr: Address },
    /// `DELETE /peer/{name-or-nickname}` (`weave rmpeer`): take over a dead peer's ranges.
    RemovePeer { peer: String },
    /// `DELETE /peer` (`weave reset`): hand all our ranges to a reachable peer.
    Reset,
}

impl Request {
    /// The ident the request is about, if any.
    pub fn ident(&self) -> Option<&str> {
        match self {
            Request::Allocate { ident, .. }
            | Request::Claim { ident, .. }
            | Request::Free { ident }
            | Request::FreeAddress { ident, .. } => Some(ident),
            Request::RemovePeer { .. } | Request::Reset => None,
        }
    }
}

/// An address written with its subnet's prefix length (`10.32.0.5/12`), as the HTTP API and CNI
/// return it. Not a [`Cidr`], which is a network and has no host bits set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AddressCidr {
    pub address: Address,
    pub subnet: Cidr,
}

impl AddressCidr {
    pub fn prefix_len(&self) -> u8 {
        self.subnet.prefix_len()
    }
}

impl fmt::Display for AddressCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.subnet.prefix_len())
    }
}

/// Written as text (`10.32.0.5/12`), in JSON as everywhere else.
impl Serialize for AddressCidr {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Allocated(AddressCidr),
    Done,
    /// `count` addresses of `peer` are ours now.
    TookOver {
        count: u64,
        peer: PeerName,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    Reply {
        id: RequestId,
        result: Result<Reply, IpamError>,
    },
    /// Persist this before carrying out any later effect (the actor writes it synchronously, so
    /// a reply or a message after it is never lost on a crash). Always first in its list.
    Persist(PersistedState),
    /// To every peer (gossip broadcast on channel `ipam`).
    Broadcast(IpamMessage),
    Unicast {
        to: PeerName,
        msg: IpamMessage,
    },
    /// The ring gossiped by `peer` cannot merge with ours (different seeds or range): split
    /// brain. The actor logs it, counts it and closes/refuses the link.
    SplitBrain {
        peer: PeerName,
        reason: String,
    },
    /// Beyond Weave Net: our ring could not merge with `from`'s, but we had no allocations, so
    /// ours was dropped and theirs taken. For the log; nothing to do.
    Adopted {
        from: PeerName,
        note: String,
    },
    /// `peer`'s ring contradicts ours in a way gossip cannot settle (it gives away a range in
    /// which we have allocations, or it is malformed). Ours is kept. For the log and the
    /// metrics; the link may stay. Reported at most once per `CONFLICT_REPORT_INTERVAL` per peer.
    Conflict {
        peer: PeerName,
        reason: String,
    },
}

/// What must survive a restart. Written on every change, before any effect that depends on it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedState {
    /// `None` until the ring is made.
    pub ring: Option<RingState>,
    /// Ident → its addresses, in allocation order.
    pub owned: BTreeMap<String, Vec<Address>>,
    /// Consensus state while there is no ring, so that a restart keeps what we promised.
    pub paxos: Option<PaxosState>,
    /// The subnet of each owned address that was allocated or claimed outside the default
    /// subnet, for lookups (which print the subnet's prefix length).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub subnets: BTreeMap<Address, Cidr>,
}
