//! The local peer's own address space: which addresses it owns (as the ring says) and which of
//! those it has handed out. This module owns the choice of the next address (the lowest free one
//! of the requested subnet), claims of specific addresses, and how much space to give a peer
//! that asks for some. It knows nothing of the ring: the caller keeps the two in step (see
//! [`crate::ipam`] for the rules).

use super::range_set::RangeSet;
use super::{Address, AddressRange, Cidr, SpaceError};

/// Owned and allocated addresses of this peer. Invariant: every allocated address is owned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Space {
    owned: RangeSet,
    allocated: RangeSet,
}

impl Space {
    /// A space owning nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes ownership of `ranges` (space granted or transferred to us). Addresses already owned
    /// stay as they are, allocations included.
    pub fn add_ranges(&mut self, ranges: &[AddressRange]) {
        for &range in ranges {
            self.owned.insert(range);
        }
    }

    /// Gives up ownership of `range`, which must be entirely owned and free: for a single
    /// address another peer claimed from us, and for ranges the ring says we lost.
    pub fn release(&mut self, range: AddressRange) -> Result<(), SpaceError> {
        if let Some(address) = self.allocated.within(range).next().map(|part| part.start) {
            return Err(SpaceError::RangeHasAllocations { range, address });
        }
        if let Some(&gap) = self.owned.gaps_within(range).first() {
            return Err(SpaceError::RangeNotOwned {
                range,
                address: gap.start,
            });
        }
        self.owned.remove(range);
        Ok(())
    }

    /// Gives up everything, allocations included: for `weave reset`, once our ranges have been
    /// transferred to another peer.
    pub fn clear(&mut self) {
        *self = Self::new();
    }

    /// Allocates the lowest free address we own among the host addresses of `within` (never its
    /// network or broadcast address). `None` when we own no free host address there.
    pub fn allocate(&mut self, within: Cidr) -> Option<Address> {
        let address = self
            .owned
            .within(within.host_range())
            .find_map(|part| self.allocated.first_gap_within(part))?;
        self.mark_allocated(address);
        Some(address)
    }

    /// Allocates a specific address, which must be owned and free.
    pub fn claim(&mut self, address: Address) -> Result<(), SpaceError> {
        if !self.owned.contains(address) {
            return Err(SpaceError::NotOwned { address });
        }
        if self.allocated.contains(address) {
            return Err(SpaceError::AlreadyAllocated { address });
        }
        self.mark_allocated(address);
        Ok(())
    }

    /// Returns an allocated address to the free pool.
    pub fn free(&mut self, address: Address) -> Result<(), SpaceError> {
        if !self.owned.contains(address) {
            return Err(SpaceError::NotOwned { address });
        }
        match AddressRange::single(address) {
            Some(single) if self.allocated.contains(address) => {
                self.allocated.remove(single);
                Ok(())
            }
            _ => Err(SpaceError::NotAllocated { address }),
        }
    }

    pub fn is_allocated(&self, address: Address) -> bool {
        self.allocated.contains(address)
    }

    pub fn owns(&self, address: Address) -> bool {
        self.owned.contains(address)
    }

    /// Whether any address in `range` is allocated: the predicate [`super::Ring::merge`] needs.
    pub fn has_allocations_in(&self, range: AddressRange) -> bool {
        self.allocated.within(range).next().is_some()
    }

    /// Number of owned addresses, free or not.
    pub fn owned_count(&self) -> u32 {
        self.owned.len()
    }

    pub fn allocated_count(&self) -> u32 {
        self.allocated.len()
    }

    /// Owned addresses not allocated. Network and broadcast addresses of subnets count as free
    /// here (the space does not know the subnets), as in Weave Net's free counts.
    pub fn free_count(&self) -> u32 {
        self.owned.len() - self.allocated.len()
    }

    /// Owned, unallocated addresses inside `range`: what [`super::Ring::report_free`] asks for.
    pub fn free_in(&self, range: AddressRange) -> u32 {
        self.owned.count_within(range) - self.allocated.count_within(range)
    }

    /// What we own, as maximal ranges in address order.
    pub fn owned(&self) -> Vec<AddressRange> {
        self.owned.ranges().collect()
    }

    /// Allocated addresses as maximal runs, in address order.
    pub fn allocated_ranges(&self) -> Vec<AddressRange> {
        self.allocated.ranges().collect()
    }

    /// Picks space to give a peer that asked for some in `within`, and gives up ownership of it.
    ///
    /// The donation is the largest CIDR-aligned block of free host addresses of `within` (the
    /// highest one on a tie, keeping low addresses, which we allocate first, for ourselves), but
    /// no more than half of our free host addresses there: when the block is bigger, its upper
    /// half goes, which is still aligned. Half is rounded up, so a peer with a single free
    /// address gives that one away: the asker has none at all, and a peer holding back its last
    /// address could leave the asker waiting forever. `None` when we have nothing free there.
    ///
    /// Only host addresses count, so that a donation always lets the asker allocate; the network
    /// and broadcast addresses stay with whoever owns them, unused.
    pub fn donate(&mut self, within: Cidr) -> Option<AddressRange> {
        let free_chunks: Vec<AddressRange> = self
            .owned
            .within(within.host_range())
            .flat_map(|part| self.allocated.gaps_within(part))
            .collect();
        let free_total: u32 = free_chunks.iter().map(AddressRange::size).sum();
        // `max_by_key` keeps the last of equal maxima: the highest block.
        let mut block = free_chunks
            .iter()
            .filter_map(AddressRange::largest_aligned_block)
            .max_by_key(AddressRange::size)?;
        if block.size() > free_total / 2 {
            // Halving an aligned block of size >= 2 leaves aligned halves; a single address
            // (size / 2 == 0) is given whole.
            block.start = Address::new(block.start.as_u32() + block.size() / 2);
        }
        self.owned.remove(block);
        Some(block)
    }

    fn mark_allocated(&mut self, address: Address) {
        if let Some(single) = AddressRange::single(address) {
            self.allocated.insert(single);
        }
    }
}

#[cfg(test)]
mod tests;
