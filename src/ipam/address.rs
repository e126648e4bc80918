//! IPv4 arithmetic for IPAM: a single address, a half-open range of addresses and a CIDR
//! subnet. Everything is a plain `u32` underneath, so a /12 with a million addresses is handled
//! by arithmetic on its ends, never address by address.
//!
//! No range here may reach 255.255.255.255: an exclusive end must be representable as an
//! address, and that address is the limited broadcast, which no pod network uses. Parsing
//! rejects CIDRs that touch it, so sizes and ends never overflow.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::AddressError;

/// Smallest subnet an allocation range or a requested subnet may be: a /30. Anything smaller
/// has no host address left once the network and broadcast addresses are excluded (Weave Net's
/// `ParseCIDRSubnet` has the same rule).
pub const MIN_CIDR_SIZE: u32 = 4;

/// Longest prefix accepted, following from [`MIN_CIDR_SIZE`].
const MAX_PREFIX_LEN: u8 = 30;

/// The allocation range when none is configured: 10.32.0.0/12, Weave Net's `--ipalloc-range`
/// default, kept so that clusters moving from Weave Net keep their pods' address range.
pub const DEFAULT_RANGE: Cidr = Cidr {
    addr: Address(0x0A20_0000),
    prefix_len: 12,
};

/// One IPv4 address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Address(u32);

impl Address {
    pub const fn new(value: u32) -> Self {
        Self(value)
    }

    pub const fn as_u32(self) -> u32 {
        self.0
    }

    /// The address `count` places further on; `None` past 255.255.255.255.
    pub fn checked_add(self, count: u32) -> Option<Self> {
        self.0.checked_add(count).map(Self)
    }

    /// How many addresses lie from `earlier` (included) up to `self` (excluded); 0 when
    /// `earlier` is not before `self`.
    pub fn distance_from(self, earlier: Address) -> u32 {
        self.0.saturating_sub(earlier.0)
    }
}

impl From<u32> for Address {
    fn from(value: u32) -> Self {
        Self(value)
    }
}

impl From<Ipv4Addr> for Address {
    fn from(ip: Ipv4Addr) -> Self {
        Self(u32::from(ip))
    }
}

impl From<Address> for Ipv4Addr {
    fn from(address: Address) -> Self {
        Ipv4Addr::from(address.0)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&Ipv4Addr::from(self.0), f)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Address {
    type Err = AddressError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        input
            .parse::<Ipv4Addr>()
            .map(Self::from)
            .map_err(|_| AddressError::InvalidAddress {
                input: input.to_string(),
            })
    }
}

/// In JSON (reports, the HTTP API) an address is dotted-quad text, as operators read it; on the
/// wire and on disk (MessagePack) it is its number.
impl Serialize for Address {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            serializer.serialize_u32(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            text.parse().map_err(D::Error::custom)
        } else {
            u32::deserialize(deserializer).map(Self)
        }
    }
}

/// The addresses from `start` (included) to `end` (excluded). A range with `end <= start` is
/// empty; every method treats it so rather than failing.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AddressRange {
    pub start: Address,
    pub end: Address,
}

impl AddressRange {
    /// `[start, end)`; `None` when `end` is before `start`.
    pub fn new(start: Address, end: Address) -> Option<Self> {
        (start <= end).then_some(Self { start, end })
    }

    /// The range holding only `address`; `None` for 255.255.255.255, whose exclusive end would
    /// not be an address.
    pub fn single(address: Address) -> Option<Self> {
        address.checked_add(1).map(|end| Self {
            start: address,
            end,
        })
    }

    pub fn size(&self) -> u32 {
        self.end.distance_from(self.start)
    }

    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    pub fn contains(&self, address: Address) -> bool {
        self.start <= address && address < self.end
    }

    /// Whether every address of `other` is in `self` (an empty `other` always is).
    pub fn contains_range(&self, other: &AddressRange) -> bool {
        other.is_empty() || (self.start <= other.start && other.end <= self.end)
    }

    /// The addresses in both ranges; `None` when there are none.
    pub fn intersection(&self, other: &AddressRange) -> Option<AddressRange> {
        let start = self.start.max(other.start);
        let end = self.end.min(other.end);
        (start < end).then_some(AddressRange { start, end })
    }

    /// The range cut into the fewest CIDR-aligned blocks (each a power of two in size and
    /// starting at a multiple of its size), in address order. These are exactly the largest
    /// aligned blocks inside the range; there are at most 62 of them.
    pub fn aligned_blocks(&self) -> Vec<AddressRange> {
        let mut blocks = Vec::new();
        let mut start = self.start.as_u32();
        let end = self.end.as_u32();
        while start < end {
            let size = largest_aligned_size(start, end - start);
            blocks.push(AddressRange {
                start: Address(start),
                end: Address(start + size),
            });
            start += size;
        }
        blocks
    }

    /// The largest CIDR-aligned block inside the range (the highest one when several have that
    /// size); `None` for an empty range.
    pub fn largest_aligned_block(&self) -> Option<AddressRange> {
        // `max_by_key` keeps the last of equal maxima, which in address order is the highest.
        self.aligned_blocks()
            .into_iter()
            .max_by_key(AddressRange::size)
    }
}

/// The size of the largest aligned block starting at `start` and no longer than `room` (> 0).
fn largest_aligned_size(start: u32, room: u32) -> u32 {
    // Alignment allows blocks up to 2^(trailing zeros of start); address 0 allows any size.
    let alignment_limit = if start == 0 {
        u32::MAX
    } else {
        1u32 << start.trailing_zeros()
    };
    // The largest power of two that fits in `room`.
    let room_limit = 1u32 << (31 - room.leading_zeros());
    alignment_limit.min(room_limit)
}

/// Written `[start, end)` so the exclusive end is not mistaken for an owned address.
impl fmt::Display for AddressRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}, {})", self.start, self.end)
    }
}

impl fmt::Debug for AddressRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A subnet `addr/prefix_len` with no host bits set, at least [`MIN_CIDR_SIZE`] addresses, and
/// not reaching 255.255.255.255. The fields are private so that every `Cidr` keeps those rules.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    addr: Address,
    prefix_len: u8,
}

impl Cidr {
    pub fn new(addr: Address, prefix_len: u8) -> Result<Self, AddressError> {
        if prefix_len > 32 {
            return Err(AddressError::PrefixTooLong { prefix_len });
        }
        let network = Address(addr.0 & network_mask(prefix_len));
        if network != addr {
            return Err(AddressError::HostBitsSet {
                addr,
                prefix_len,
                network,
            });
        }
        if prefix_len > MAX_PREFIX_LEN {
            return Err(AddressError::TooSmall { prefix_len });
        }
        let end = u64::from(addr.0) + (1u64 << (32 - prefix_len));
        if end > u64::from(u32::MAX) {
            return Err(AddressError::ReachesTopOfAddressSpace { addr, prefix_len });
        }
        Ok(Self { addr, prefix_len })
    }

    /// The subnet of length `prefix_len` that holds `addr` (whose host bits may be set, as a
    /// claimed pod address's are). Checks the length first: the mask needs 0..=32.
    pub fn enclosing(addr: Address, prefix_len: u8) -> Result<Self, AddressError> {
        if prefix_len > 32 {
            return Err(AddressError::PrefixTooLong { prefix_len });
        }
        Self::new(Address(addr.0 & network_mask(prefix_len)), prefix_len)
    }

    /// The network address.
    pub fn addr(&self) -> Address {
        self.addr
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// Number of addresses, network and broadcast included.
    pub fn size(&self) -> u32 {
        1u32 << (32 - self.prefix_len)
    }

    /// The network address (the first one).
    pub fn start(&self) -> Address {
        self.addr
    }

    /// The address just after the subnet (the exclusive end). `new` guarantees it exists.
    pub fn end(&self) -> Address {
        Address(self.addr.0 + self.size())
    }

    /// All addresses of the subnet, network and broadcast included.
    pub fn range(&self) -> AddressRange {
        AddressRange {
            start: self.start(),
            end: self.end(),
        }
    }

    /// The addresses a pod may get: all but the network (first) and broadcast (last) address.
    /// Never empty, as a subnet has at least four addresses.
    pub fn host_range(&self) -> AddressRange {
        AddressRange {
            start: Address(self.addr.0 + 1),
            end: Address(self.end().0 - 1),
        }
    }

    pub fn contains(&self, address: Address) -> bool {
        self.range().contains(address)
    }
}

/// The mask keeping the network bits of a `prefix_len` (0..=32).
fn network_mask(prefix_len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix_len))
        .unwrap_or(0)
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl fmt::Debug for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Cidr {
    type Err = AddressError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let invalid = |why| AddressError::InvalidCidr {
            input: input.to_string(),
            why,
        };
        let (addr, prefix_len) = input
            .split_once('/')
            .ok_or_else(|| invalid("expected address/prefix-length"))?;
        let addr: Address = addr
            .parse()
            .map_err(|_| invalid("not a dotted-quad IPv4 address"))?;
        // At most two decimal digits: rejects signs, spaces and absurdly long numbers alike.
        if prefix_len.is_empty()
            || prefix_len.len() > 2
            || !prefix_len.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(invalid("prefix length must be a number from 0 to 32"));
        }
        let prefix_len: u8 = prefix_len
            .parse()
            .map_err(|_| invalid("prefix length must be a number from 0 to 32"))?;
        Self::new(addr, prefix_len)
    }
}

/// Text (`10.32.0.0/12`) in JSON; `(network as u32, prefix length)` in MessagePack. Both forms
/// are checked again when read.
impl Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            (self.addr.0, self.prefix_len).serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            text.parse().map_err(D::Error::custom)
        } else {
            let (addr, prefix_len) = <(u32, u8)>::deserialize(deserializer)?;
            Cidr::new(Address(addr), prefix_len).map_err(D::Error::custom)
        }
    }
}

#[cfg(test)]
mod tests;
