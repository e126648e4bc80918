//! IPv4 address ranges for policy peers: an `ipBlock` is its CIDR minus its `except` CIDRs,
//! which is not a CIDR any more, so every peer becomes a list of disjoint inclusive ranges, the
//! form nftables' interval sets take.

use std::fmt;
use std::net::Ipv4Addr;

/// `first..=last`, inclusive, so that 0.0.0.0/0 and a single /32 both fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpRange {
    pub first: u32,
    pub last: u32,
}

impl IpRange {
    pub const ALL: IpRange = IpRange {
        first: 0,
        last: u32::MAX,
    };

    pub fn single(address: Ipv4Addr) -> Self {
        let address = u32::from(address);
        Self {
            first: address,
            last: address,
        }
    }

    pub fn contains(&self, address: u32) -> bool {
        self.first <= address && address <= self.last
    }

    pub fn overlaps(&self, other: &IpRange) -> bool {
        self.first <= other.last && other.first <= self.last
    }

    pub fn first_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.first)
    }

    pub fn last_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.last)
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first_addr())
        } else {
            write!(f, "{}-{}", self.first_addr(), self.last_addr())
        }
    }
}

/// Parses `a.b.c.d/len` (IPv4 only: the pod network is IPv4). Host bits are ignored, as Go's
/// `net.ParseCIDR` ignores them: the API server accepts `10.0.0.1/16` and every other
/// implementation enforces it as `10.0.0.0/16`.
pub fn parse_cidr(text: &str) -> Result<IpRange, String> {
    let (address, len) = text
        .split_once('/')
        .ok_or_else(|| format!("{text:?} is not a CIDR (address/length)"))?;
    let address: Ipv4Addr = address
        .parse()
        .map_err(|_| format!("{text:?}: {address:?} is not an IPv4 address"))?;
    // One or two digits: no sign, no spaces, no absurdly long numbers.
    let len: u32 = match len.parse() {
        Ok(value)
            if value <= 32
                && (1..=2).contains(&len.len())
                && len.bytes().all(|b| b.is_ascii_digit()) =>
        {
            value
        }
        _ => return Err(format!("{text:?}: prefix length must be 0 to 32")),
    };
    let host_bits = u32::MAX.checked_shr(len).unwrap_or(0);
    let first = u32::from(address) & !host_bits;
    Ok(IpRange {
        first,
        last: first | host_bits,
    })
}

/// `block` minus every range of `except`, as sorted disjoint ranges.
pub fn subtract(block: IpRange, except: &[IpRange]) -> Vec<IpRange> {
    let mut left = vec![block];
    for cut in except {
        let mut next = Vec::with_capacity(left.len() + 1);
        for range in left {
            if !range.overlaps(cut) {
                next.push(range);
                continue;
            }
            if range.first < cut.first {
                next.push(IpRange {
                    first: range.first,
                    last: cut.first - 1,
                });
            }
            if cut.last < range.last {
                next.push(IpRange {
                    first: cut.last + 1,
                    last: range.last,
                });
            }
        }
        left = next;
    }
    left.sort();
    left
}

/// An inclusive range of ordered values (addresses, ports), for [`merge`].
pub trait Inclusive: Ord + Copy {
    fn bounds(&self) -> (u64, u64);
    fn set_last(&mut self, last: u64);
}

impl Inclusive for IpRange {
    fn bounds(&self) -> (u64, u64) {
        (u64::from(self.first), u64::from(self.last))
    }

    fn set_last(&mut self, last: u64) {
        self.last = u32::try_from(last).expect("a merged end is one of the ends");
    }
}

/// Sorted, disjoint, with touching ranges joined.
pub fn merge<R: Inclusive>(mut ranges: Vec<R>) -> Vec<R> {
    ranges.sort();
    let mut merged: Vec<R> = Vec::with_capacity(ranges.len());
    for range in ranges {
        let (first, last) = range.bounds();
        match merged.last_mut() {
            Some(previous) if first <= previous.bounds().1 + 1 => {
                let end = previous.bounds().1.max(last);
                previous.set_last(end);
            }
            _ => merged.push(range),
        }
    }
    merged
}
