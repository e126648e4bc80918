//! Requests that cannot be answered yet: allocations waiting for the ring or for space, claims
//! waiting for the ring or for the address's owner. This module owns retrying them after every
//! event that may help (gossip, topology, ticks), asking donors for space (weighted random by
//! their free space, one request in flight per subnet) and owners for single addresses.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rand::Rng;

use super::Allocator;
use crate::ipam::allocator::api::{AddressCidr, Reply, RequestId};
use crate::ipam::messages::IpamMessage;
use crate::ipam::{Address, Cidr, IpamError, SpaceError};
use crate::topology::PeerName;

/// A space request without an answer for this long is taken as lost, and space is asked for
/// again (maybe from another donor). Weave Net retries pending allocations on its 5 s tick.
pub const SPACE_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A donor that denied us space in a subnet is not asked again in it for this long (its free
/// count in our ring was stale; its next report will tell). Weave Net's tick interval (5 s).
pub const SPACE_DENIAL_BACKOFF: Duration = Duration::from_secs(5);

/// A claim request to an address's owner is repeated this often until answered. Weave Net's
/// tick interval (5 s).
pub const CLAIM_RETRY_INTERVAL: Duration = Duration::from_secs(5);

/// A claim fails after this many attempts found the owner unreachable, as Weave Net's claim
/// does after 5 failed sends (`ipam/claim.go`).
pub const CLAIM_UNREACHABLE_ATTEMPTS: u32 = 5;

#[derive(Clone)]
pub(super) struct PendingAllocate {
    id: RequestId,
    ident: String,
    subnet: Cidr,
}

#[derive(Clone)]
pub(super) struct PendingClaim {
    id: RequestId,
    ident: String,
    address: Address,
    subnet: Cidr,
    /// The owner last asked, and when.
    asked: Option<(PeerName, Instant)>,
    unreachable_attempts: u32,
}

/// A space request in flight.
#[derive(Clone)]
struct SpaceRequest {
    donor: PeerName,
    sent_at: Instant,
}

#[derive(Clone, Default)]
pub(super) struct Pending {
    allocates: Vec<PendingAllocate>,
    claims: Vec<PendingClaim>,
    /// At most one request in flight per subnet, shared by all allocations waiting in it.
    space_requests: BTreeMap<Cidr, SpaceRequest>,
    /// Donors that recently denied us space, per subnet.
    denials: BTreeMap<Cidr, BTreeMap<PeerName, Instant>>,
}

impl Pending {
    pub(super) fn allocate_count(&self) -> usize {
        self.allocates.len()
    }

    pub(super) fn claim_count(&self) -> usize {
        self.claims.len()
    }

    pub(super) fn add_allocate(&mut self, id: RequestId, ident: String, subnet: Cidr) {
        self.allocates.push(PendingAllocate { id, ident, subnet });
    }

    pub(super) fn add_claim(
        &mut self,
        id: RequestId,
        ident: String,
        address: Address,
        subnet: Cidr,
    ) {
        self.claims.push(PendingClaim {
            id,
            ident,
            address,
            subnet,
            asked: None,
            unreachable_attempts: 0,
        });
    }

    /// Drops request `id` (its client went away).
    pub(super) fn remove_request(&mut self, id: RequestId) {
        self.allocates.retain(|op| op.id != id);
        self.claims.retain(|op| op.id != id);
    }

    /// Removes the requests of `ident` (those claiming `only` if given); returns their ids.
    pub(super) fn take_requests_of(
        &mut self,
        ident: &str,
        only: Option<Address>,
    ) -> Vec<RequestId> {
        let mut ids = Vec::new();
        if only.is_none() {
            self.allocates.retain(|op| {
                let keep = op.ident != ident;
                if !keep {
                    ids.push(op.id);
                }
                keep
            });
        }
        self.claims.retain(|op| {
            let keep = op.ident != ident || only.is_some_and(|address| op.address != address);
            if !keep {
                ids.push(op.id);
            }
            keep
        });
        ids
    }

    /// Removes every request; returns their ids and idents.
    pub(super) fn take_all(&mut self) -> Vec<(RequestId, String)> {
        self.space_requests.clear();
        self.denials.clear();
        let allocates = std::mem::take(&mut self.allocates);
        let claims = std::mem::take(&mut self.claims);
        allocates
            .into_iter()
            .map(|op| (op.id, op.ident))
            .chain(claims.into_iter().map(|op| (op.id, op.ident)))
            .collect()
    }

    /// Space requests in flight are forgotten (our ring was replaced).
    pub(super) fn forget_space_requests(&mut self) {
        self.space_requests.clear();
        self.denials.clear();
    }

    /// The answer to our space request in `subnet` came from `donor`.
    pub(super) fn space_answered(
        &mut self,
        subnet: Cidr,
        donor: PeerName,
        denied_at: Option<Instant>,
    ) {
        if self
            .space_requests
            .get(&subnet)
            .is_some_and(|request| request.donor == donor)
        {
            self.space_requests.remove(&subnet);
        }
        if let Some(at) = denied_at {
            self.denials.entry(subnet).or_default().insert(donor, at);
        }
    }

    /// Space requests to donors that are no longer reachable will not be answered.
    pub(super) fn forget_requests_to_unreachable(&mut self, live: &BTreeSet<PeerName>) {
        self.space_requests
            .retain(|_, request| live.contains(&request.donor));
    }

    pub(super) fn expire_denials(&mut self, now: Instant) {
        for denied in self.denials.values_mut() {
            denied.retain(|_, at| now.saturating_duration_since(*at) < SPACE_DENIAL_BACKOFF);
        }
        self.denials.retain(|_, denied| !denied.is_empty());
    }

    /// The claims waiting for `address` from `owner`, removed; their ids.
    fn take_claims_asking(&mut self, address: Address, owner: PeerName) -> Vec<RequestId> {
        let mut ids = Vec::new();
        self.claims.retain(|op| {
            let asking = op.address == address && op.asked.is_some_and(|(asked, _)| asked == owner);
            if asking {
                ids.push(op.id);
            }
            !asking
        });
        ids
    }
}

impl Allocator {
    /// Answers every waiting request that can be answered now, and asks peers for what the
    /// others need. Claims go first: an address just granted to us for a claim must not be
    /// taken by an allocation.
    pub(super) fn process_pending(&mut self, now: Instant) {
        if self.ring.is_empty() {
            return;
        }
        for claim in std::mem::take(&mut self.pending.claims) {
            if let Some(waiting) = self.try_claim(claim, now) {
                self.pending.claims.push(waiting);
            }
        }
        let mut lacking = BTreeSet::new();
        for op in std::mem::take(&mut self.pending.allocates) {
            let found = self.address_of(&op.ident, op.subnet).or_else(|| {
                let address = self.space.allocate(op.subnet)?;
                self.hold(&op.ident, address, op.subnet);
                Some(address)
            });
            match found {
                Some(address) => {
                    let subnet = op.subnet;
                    self.reply(op.id, Ok(Reply::Allocated(AddressCidr { address, subnet })));
                }
                None => {
                    lacking.insert(op.subnet);
                    self.pending.allocates.push(op);
                }
            }
        }
        // Requests for subnets nobody waits on any more are not followed up.
        self.pending
            .space_requests
            .retain(|subnet, _| lacking.contains(subnet));
        for subnet in lacking {
            self.ask_for_space(subnet, now);
        }
    }

    /// Asks a donor for space in `subnet`, unless a request is in flight and not yet overdue.
    /// With no donor to ask, allocations wait (retried on ticks, and whenever gossip arrives).
    fn ask_for_space(&mut self, subnet: Cidr, now: Instant) {
        if let Some(request) = self.pending.space_requests.get(&subnet)
            && now.saturating_duration_since(request.sent_at) < SPACE_REQUEST_TIMEOUT
        {
            return;
        }
        self.pending.space_requests.remove(&subnet);
        if let Some(donor) = self.choose_donor(subnet) {
            self.pending.space_requests.insert(
                subnet,
                SpaceRequest {
                    donor,
                    sent_at: now,
                },
            );
            self.unicast(donor, IpamMessage::SpaceRequest { subnet });
        }
    }

    /// A reachable peer with free space in `subnet` that has not just denied us, chosen at
    /// random weighted by its free space (Weave Net's `ChoosePeersToAskForSpace`), so that
    /// many askers spread over many donors.
    fn choose_donor(&mut self, subnet: Cidr) -> Option<PeerName> {
        let denied = self.pending.denials.get(&subnet);
        let candidates: Vec<(PeerName, u64)> = self
            .ring
            .peers_with_free_space_in(subnet.host_range())
            .into_iter()
            .filter(|&(peer, _)| {
                self.live.contains(&peer) && !denied.is_some_and(|d| d.contains_key(&peer))
            })
            .map(|(peer, free)| (peer, u64::from(free)))
            .collect();
        let total: u64 = candidates.iter().map(|&(_, free)| free).sum();
        if total == 0 {
            return None;
        }
        let mut pick = self.rng.random_range(0..total);
        for (peer, free) in candidates {
            if pick < free {
                return Some(peer);
            }
            pick -= free;
        }
        None
    }

    /// One attempt at a claim; gives it back if it must keep waiting.
    fn try_claim(&mut self, mut claim: PendingClaim, now: Instant) -> Option<PendingClaim> {
        let address = claim.address;
        if let Some(holder) = self.holder_of(address) {
            let result = if holder == claim.ident {
                Ok(Reply::Done)
            } else {
                Err(IpamError::AddressInUse {
                    address,
                    ident: holder.to_string(),
                })
            };
            self.reply(claim.id, result);
            return None;
        }
        // Claims are checked to lie in the range, which the ring covers entirely.
        let Some(owner) = self.ring.owner(address) else {
            return Some(claim);
        };
        if owner == self.config.local {
            let result = match self.space.claim(address) {
                Ok(()) => {
                    self.hold(&claim.ident, address, claim.subnet);
                    Ok(Reply::Done)
                }
                // Allocated yet held by nobody, or owned by the ring and not the space: the
                // two are kept in step, so this does not happen; refuse rather than guess.
                Err(SpaceError::AlreadyAllocated { .. }) => Err(IpamError::AddressInUse {
                    address,
                    ident: "an unknown ident".to_string(),
                }),
                Err(_) => return Some(claim),
            };
            self.reply(claim.id, result);
            return None;
        }
        let due = claim.asked.is_none_or(|(asked, at)| {
            asked != owner || now.saturating_duration_since(at) >= CLAIM_RETRY_INTERVAL
        });
        if !due {
            return Some(claim);
        }
        claim.asked = Some((owner, now));
        if self.is_live(owner) {
            self.unicast(owner, IpamMessage::ClaimRequest { address });
            return Some(claim);
        }
        claim.unreachable_attempts += 1;
        if claim.unreachable_attempts >= CLAIM_UNREACHABLE_ATTEMPTS {
            let error = IpamError::OwnerUnreachable {
                address,
                peer: owner,
                attempts: claim.unreachable_attempts,
            };
            self.reply(claim.id, Err(error));
            return None;
        }
        Some(claim)
    }

    /// The owner of `address` says it is in use: the claims that asked it fail.
    pub(super) fn claim_refused_in_use(&mut self, address: Address, owner: PeerName) {
        for id in self.pending.take_claims_asking(address, owner) {
            let error = IpamError::OwnedByOtherPeerInUse {
                address,
                peer: owner,
            };
            self.reply(id, Err(error));
        }
    }
}
