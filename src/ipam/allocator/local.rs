//! Requests from the local HTTP API: allocate, claim, free, `rmpeer` and `reset`. Each checks
//! its input, then either answers at once or leaves a pending request (see
//! `allocator_pending.rs`).

use std::time::Instant;

use super::Allocator;
use super::bootstrap::Bootstrap;
use crate::ipam::allocator::api::{AddressCidr, Reply, RequestId};
use crate::ipam::{Address, Cidr, IpamError, Ring};
use crate::topology::PeerName;

impl Allocator {
    pub(super) fn allocate(&mut self, id: RequestId, ident: String, subnet: Cidr, now: Instant) {
        if let Err(error) = self.check_subnet(subnet) {
            self.reply(id, Err(error));
            return;
        }
        if let Some(address) = self.address_of(&ident, subnet) {
            self.reply(id, Ok(Reply::Allocated(AddressCidr { address, subnet })));
            return;
        }
        self.pending.add_allocate(id, ident, subnet);
        self.ensure_started(now);
        self.process_pending(now);
    }

    pub(super) fn claim(
        &mut self,
        id: RequestId,
        ident: String,
        address: Address,
        subnet: Cidr,
        now: Instant,
    ) {
        if let Err(error) = self.check_claim(address, subnet) {
            self.reply(id, Err(error));
            return;
        }
        self.pending.add_claim(id, ident, address, subnet);
        self.ensure_started(now);
        self.process_pending(now);
    }

    fn check_subnet(&self, subnet: Cidr) -> Result<(), IpamError> {
        let range = self.config.universe;
        if range.range().contains_range(&subnet.range()) {
            Ok(())
        } else {
            Err(IpamError::SubnetOutsideRange { subnet, range })
        }
    }

    /// A claimed address must be a host address of its subnet, inside the range.
    fn check_claim(&self, address: Address, subnet: Cidr) -> Result<(), IpamError> {
        let range = self.config.universe;
        if !range.contains(address) {
            return Err(IpamError::AddressOutsideRange { address, range });
        }
        self.check_subnet(subnet)?;
        if !subnet.host_range().contains(address) {
            return Err(IpamError::AddressOutsideSubnet { address, subnet });
        }
        Ok(())
    }

    /// Frees every address of `ident` and cancels its waiting requests (a CNI DEL after a
    /// timed-out ADD must not leave an allocation behind for a pod that is gone).
    pub(super) fn free(&mut self, id: RequestId, ident: &str, now: Instant) {
        for cancelled in self.pending.take_requests_of(ident, None) {
            self.reply_cancelled(cancelled, ident, "its addresses were freed");
        }
        if let Some(addresses) = self.owned.remove(ident) {
            for address in addresses {
                self.release_address(address);
            }
            self.out.persist = true;
        }
        self.reply(id, Ok(Reply::Done));
        // Freed space may be what other requests wait for.
        self.process_pending(now);
    }

    /// Frees one address: fine if nobody holds it, refused if another ident does.
    pub(super) fn free_address(
        &mut self,
        id: RequestId,
        ident: &str,
        address: Address,
        now: Instant,
    ) {
        for cancelled in self.pending.take_requests_of(ident, Some(address)) {
            self.reply_cancelled(cancelled, ident, "the address was freed");
        }
        let result = match self.holder_of(address) {
            None => Ok(Reply::Done),
            Some(holder) if holder != ident => Err(IpamError::AddressHeldByOther {
                address,
                ident: ident.to_string(),
                holder: holder.to_string(),
            }),
            Some(_) => {
                if let Some(addresses) = self.owned.get_mut(ident) {
                    addresses.retain(|&held| held != address);
                    if addresses.is_empty() {
                        self.owned.remove(ident);
                    }
                }
                self.release_address(address);
                self.out.persist = true;
                Ok(Reply::Done)
            }
        };
        self.reply(id, result);
        self.process_pending(now);
    }

    /// Returns an address no ident holds any more to the free pool.
    fn release_address(&mut self, address: Address) {
        self.subnets.remove(&address);
        // Every held address is allocated in the space (restore and `hold` ensure it), so
        // this cannot fail; if it did, the address would simply stay unusable.
        let _ = self.space.free(address);
    }

    fn reply_cancelled(&mut self, id: RequestId, ident: &str, why: &'static str) {
        let ident = ident.to_string();
        self.reply(id, Err(IpamError::Cancelled { ident, why }));
    }

    /// `weave rmpeer`: takes over every range of a peer that is gone for good. Must be done on
    /// one peer only (two would both own its ranges), hence the refusal for reachable peers.
    pub(super) fn remove_peer(&mut self, id: RequestId, input: &str, now: Instant) {
        let result = self.resolve_peer(input).and_then(|peer| {
            if peer == self.config.local {
                return Err(IpamError::CannotRemoveSelf { peer });
            }
            if self.is_live(peer) {
                return Err(IpamError::PeerIsLive { peer });
            }
            let gained = self.ring.remove_peer(peer);
            self.space.add_ranges(&gained);
            let count: u64 = gained.iter().map(|range| u64::from(range.size())).sum();
            if count > 0 {
                self.out.persist = true;
                self.out.broadcast_ring = true;
            }
            Ok(Reply::TookOver { count, peer })
        });
        self.reply(id, result);
        self.process_pending(now);
    }

    /// A peer by name (`aa:bb:cc:dd:ee:ff`, `::1`) or by nickname.
    fn resolve_peer(&self, input: &str) -> Result<PeerName, IpamError> {
        if let Ok(peer) = input.parse::<PeerName>() {
            return Ok(peer);
        }
        if input == self.config.nickname {
            return Ok(self.config.local);
        }
        let named: Vec<PeerName> = self
            .nicknames
            .iter()
            .filter(|(_, nickname)| nickname.as_str() == input)
            .map(|(&peer, _)| peer)
            .collect();
        match named.as_slice() {
            [] => Err(IpamError::UnknownPeer {
                input: input.to_string(),
            }),
            [peer] => Ok(*peer),
            _ => Err(IpamError::AmbiguousNickname {
                nickname: input.to_string(),
                peers: named,
            }),
        }
    }

    /// `weave reset`: hands all our ranges to a reachable peer (preferably one already in the
    /// ring) and forgets our allocations. Alone in the ring, there is nobody to hand to and
    /// nobody to confuse: the ring itself is forgotten.
    pub(super) fn reset(&mut self, id: RequestId) {
        let local = self.config.local;
        let heir = self
            .ring
            .pick_peer_for_transfer(|peer| self.live.contains(&peer))
            .or_else(|| self.live.first().copied());
        let others: Vec<PeerName> = self
            .ring
            .peers()
            .into_iter()
            .filter(|&peer| peer != local)
            .collect();
        match heir {
            _ if self.ring.is_empty() || others.is_empty() => {
                self.ring = Ring::new(self.config.universe, local);
                self.bootstrap = Bootstrap::Idle;
            }
            Some(heir) => {
                self.ring.transfer(local, heir);
                self.out.broadcast_ring = true;
            }
            None => {
                self.reply(id, Err(IpamError::NoLiveHeir { owners: others }));
                return;
            }
        }
        for (cancelled, ident) in self.pending.take_all() {
            self.reply_cancelled(cancelled, &ident, "this peer was reset");
        }
        self.space.clear();
        self.owned.clear();
        self.subnets.clear();
        self.out.persist = true;
        self.reply(id, Ok(Reply::Done));
    }
}
