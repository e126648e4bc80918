//! Making the ring, lazily, when the first allocation or claim needs it (or a peer asks for it):
//! at once from the seed list (`seed=`), by Paxos over broadcast gossip (`consensus`), or by
//! waiting for a peer's ring (`observer`). Also the consensus's retries and re-gossip on ticks.

use std::time::{Duration, Instant};

use rand::Rng;

use super::Allocator;
use crate::ipam::allocator::api::{AllocatorConfig, InitMode};
use crate::ipam::messages::IpamMessage;
use crate::ipam::paxos::{Paxos, PaxosState};
use crate::topology::PeerName;

/// A consensus that has not moved for this long is proposed again with a higher round (a
/// proposer died, or proposals duel). Weave Net re-proposes on every 5 s tick while awaiting
/// consensus (`ipam/allocator.go`); we wait for 5 s of no progress instead.
pub const PAXOS_REPROPOSE_AFTER: Duration = Duration::from_secs(5);
/// How long a proposer waits for promises from every expected elector before it settles for a
/// quorum (ours, not Weave Net's: Weave split the range among whichever majority answered first,
/// leaving the rest to beg for space by donation).
pub const CONSENSUS_PATIENCE: Duration = Duration::from_secs(10);

/// Up to this much random extra patience before re-proposing, drawn anew each time, so that
/// two stuck proposers do not keep outbidding each other in lockstep. Ours.
pub const PAXOS_REPROPOSE_JITTER: Duration = Duration::from_secs(5);

/// The consensus state is re-broadcast this often while there is no ring, for peers that lost
/// a message or just joined. Weave Net's tick interval (5 s).
pub const PAXOS_REGOSSIP_INTERVAL: Duration = Duration::from_secs(5);

/// An observer without a ring asks for one this often. Weave Net's tick interval (5 s).
pub const RING_REQUEST_INTERVAL: Duration = Duration::from_secs(5);

/// Where making the ring stands. Once the ring is made (here or by merging a peer's), only
/// `Established` follows.
#[derive(Clone)]
pub(super) enum Bootstrap {
    /// Nothing has needed the ring yet.
    Idle,
    /// Taking part in the consensus.
    Consensus(Box<ConsensusRun>),
    /// An observer that asked for the ring.
    AwaitingRing {
        last_request: Instant,
    },
    Established,
}

#[derive(Clone)]
pub(super) struct ConsensusRun {
    paxos: Paxos,
    /// When our consensus state last changed; `None` until the first tick after a restore.
    last_change: Option<Instant>,
    last_broadcast: Option<Instant>,
    /// How long to wait for progress before proposing again.
    patience: Duration,
    /// Until when a proposer waits for every expected elector (then a quorum will do).
    patience_until: Option<Instant>,
}

impl ConsensusRun {
    fn new(paxos: Paxos) -> Self {
        Self {
            paxos,
            last_change: None,
            last_broadcast: None,
            patience: PAXOS_REPROPOSE_AFTER,
            patience_until: None,
        }
    }
}

impl Bootstrap {
    /// What to continue with after a restart that found consensus state but no ring: the
    /// consensus, with what we knew (our earlier incarnation's claims included), if we are
    /// still an elector; otherwise the state no longer matters.
    pub(super) fn restored(config: &AllocatorConfig, state: &PaxosState) -> Self {
        match config.mode {
            InitMode::Consensus { quorum, .. } => {
                let mut paxos = Paxos::new(config.local, config.uid, quorum);
                paxos.merge(state);
                Self::Consensus(Box::new(ConsensusRun::new(paxos)))
            }
            InitMode::Seed(_) | InitMode::Observer => Self::Idle,
        }
    }

    /// The consensus in progress, if any.
    pub(super) fn paxos(&self) -> Option<&Paxos> {
        match self {
            Self::Consensus(run) => Some(&run.paxos),
            _ => None,
        }
    }
}

impl Allocator {
    /// Starts making the ring if there is none and nothing started it yet.
    pub(super) fn ensure_started(&mut self, now: Instant) {
        if !self.ring.is_empty() || !matches!(self.bootstrap, Bootstrap::Idle) {
            return;
        }
        match &self.config.mode {
            InitMode::Seed(peers) => {
                let peers = peers.clone();
                self.create_ring(&peers);
            }
            InitMode::Consensus { quorum, expected } => {
                let mut paxos = Paxos::new(self.config.local, self.config.uid, *quorum);
                paxos.expect_electors(*expected);
                let mut run = ConsensusRun::new(paxos);
                run.patience_until = Some(now + CONSENSUS_PATIENCE);
                self.bootstrap = Bootstrap::Consensus(Box::new(run));
                self.think(now);
            }
            InitMode::Observer => {
                self.bootstrap = Bootstrap::AwaitingRing { last_request: now };
                self.broadcast(IpamMessage::RingRequest);
            }
        }
    }

    /// Splits the range among `peers` and takes our share.
    fn create_ring(&mut self, peers: &[PeerName]) {
        // Cannot fail: the ring is empty (callers check) and the peer lists are not (consensus
        // values name at least the proposer; seed lists are checked in `new`).
        if self.ring.claim_for_peers(peers).is_ok() {
            let ours = self.ring.owned_ranges(self.config.local);
            self.space.add_ranges(&ours);
            self.ring_established();
            self.out.broadcast_ring = true;
        }
    }

    /// The ring exists now (made here or merged in): consensus and ring requests are over.
    pub(super) fn ring_established(&mut self) {
        if !matches!(self.bootstrap, Bootstrap::Established) {
            self.bootstrap = Bootstrap::Established;
            self.out.persist = true;
        }
    }

    /// Consensus state from a peer that has no ring yet.
    pub(super) fn receive_paxos(&mut self, from: PeerName, state: &PaxosState, now: Instant) {
        if !self.ring.is_empty() {
            self.send_ring(from);
            return;
        }
        match &self.config.mode {
            InitMode::Consensus { .. } => {
                self.ensure_started(now);
                if let Bootstrap::Consensus(run) = &mut self.bootstrap
                    && run.paxos.merge(state)
                {
                    run.last_change = Some(now);
                    self.think(now);
                }
            }
            // Peers configured differently: a seeded peer makes its ring (which the other
            // peers then merge), an observer waits for someone's ring.
            InitMode::Seed(_) => {
                self.ensure_started(now);
                self.send_ring(from);
            }
            InitMode::Observer => {}
        }
    }

    /// A peer without a ring asks for ours (an observer, or a peer that just started). Without
    /// one, an elector or seeded peer starts making it; an observer cannot help.
    pub(super) fn receive_ring_request(&mut self, from: PeerName, now: Instant) {
        if self.ring.is_empty() && !matches!(self.config.mode, InitMode::Observer) {
            self.ensure_started(now);
        }
        self.send_ring(from);
    }

    /// Applies the Paxos rules to what we know; gossips and persists our claims if they
    /// changed; makes the ring once there is consensus.
    fn think(&mut self, now: Instant) {
        let Bootstrap::Consensus(run) = &mut self.bootstrap else {
            return;
        };
        if run.paxos.think() {
            run.last_change = Some(now);
            run.last_broadcast = Some(now);
            let state = run.paxos.state().clone();
            self.out.persist = true;
            self.broadcast(IpamMessage::Paxos(state));
        }
        self.create_ring_on_consensus();
    }

    fn create_ring_on_consensus(&mut self) {
        if let Some(peers) = self.bootstrap.paxos().and_then(Paxos::consensus) {
            self.create_ring(&peers);
        }
    }

    /// Peers that just became reachable get what they need to join us: the ring, or while
    /// there is none, the consensus state or a request for the ring.
    pub(super) fn greet(&mut self, newcomers: &[PeerName], now: Instant) {
        if !self.ring.is_empty() {
            for &peer in newcomers {
                self.send_ring(peer);
            }
            return;
        }
        match &mut self.bootstrap {
            Bootstrap::Consensus(run) => {
                run.last_broadcast = Some(now);
                let state = run.paxos.state().clone();
                self.broadcast(IpamMessage::Paxos(state));
            }
            Bootstrap::AwaitingRing { last_request } => {
                *last_request = now;
                self.broadcast(IpamMessage::RingRequest);
            }
            Bootstrap::Idle | Bootstrap::Established => {}
        }
    }

    /// Keeps a stuck consensus or ring request going.
    pub(super) fn tick_bootstrap(&mut self, now: Instant) {
        if !self.ring.is_empty() {
            return;
        }
        let jitter = Duration::from_millis(
            self.rng
                .random_range(0..=duration_millis(PAXOS_REPROPOSE_JITTER)),
        );
        match &mut self.bootstrap {
            Bootstrap::Consensus(run) => {
                if run.patience_until.is_some_and(|until| now >= until) {
                    run.patience_until = None;
                    run.paxos.stop_waiting();
                }
                let last_change = *run.last_change.get_or_insert(now);
                if now.saturating_duration_since(last_change) >= run.patience {
                    run.patience = PAXOS_REPROPOSE_AFTER + jitter;
                    run.last_change = Some(now);
                    if run.paxos.propose_again() {
                        self.out.persist = true;
                    }
                    // Gossip the new proposal below, whether or not thinking changes more.
                    run.last_broadcast = None;
                }
            }
            Bootstrap::AwaitingRing { last_request } => {
                if now.saturating_duration_since(*last_request) >= RING_REQUEST_INTERVAL {
                    *last_request = now;
                    self.broadcast(IpamMessage::RingRequest);
                }
                return;
            }
            Bootstrap::Idle | Bootstrap::Established => return,
        }
        self.think(now);
        if let Bootstrap::Consensus(run) = &mut self.bootstrap
            && run
                .last_broadcast
                .is_none_or(|at| now.saturating_duration_since(at) >= PAXOS_REGOSSIP_INTERVAL)
        {
            run.last_broadcast = Some(now);
            let state = run.paxos.state().clone();
            self.broadcast(IpamMessage::Paxos(state));
        }
    }
}

/// A duration in whole milliseconds (the constants here are far below `u64::MAX` of them).
fn duration_millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
