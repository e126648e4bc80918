//! Ethernet MAC addresses: one type for the MAC learner, the bridge and the sleeve frames.

use std::fmt;
use std::str::FromStr;

/// A 48-bit Ethernet address, written `aa:bb:cc:dd:ee:ff`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: Self = Self([0xff; 6]);
    pub const ZERO: Self = Self([0; 6]);

    /// Group address (the I/G bit, the lowest bit of the first octet): multicast, broadcast, or
    /// link-local control such as STP's 01:80:c2:00:00:00.
    pub const fn is_multicast(self) -> bool {
        self.0[0] & 1 == 1
    }

    pub fn is_broadcast(self) -> bool {
        self == Self::BROADCAST
    }

    /// Whether a frame with this source address may teach us where the address lives. A group
    /// address never sources a valid frame, and neither does 00:00:00:00:00:00; the Linux bridge
    /// refuses to learn both (`is_valid_ether_addr`), and learning them would send every frame
    /// to that group to one peer.
    pub fn is_learnable(self) -> bool {
        !self.is_multicast() && self != Self::ZERO
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {input:?}: {why}")]
pub struct MacAddrError {
    pub input: String,
    pub why: &'static str,
}

impl FromStr for MacAddr {
    type Err = MacAddrError;

    /// Six pairs of hex digits separated by `:` (or `-`, as `ip link` users sometimes paste).
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let invalid = |why| MacAddrError {
            input: input.to_string(),
            why,
        };
        let separator = if input.contains('-') { '-' } else { ':' };
        let groups: Vec<&str> = input.split(separator).collect();
        if groups.len() != 6 {
            return Err(invalid("expected six hex pairs separated by ':' or '-'"));
        }
        let mut bytes = [0u8; 6];
        for (byte, group) in bytes.iter_mut().zip(groups) {
            // Checked by hand: `from_str_radix` would also take a sign ("+f").
            if group.len() != 2 || !group.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid("each group is two hex digits"));
            }
            *byte = u8::from_str_radix(group, 16).map_err(|_| invalid("not a hex pair"))?;
        }
        Ok(Self(bytes))
    }
}
