//! Which peers the kernel's VXLAN path (fastdp) may carry at all, before its health is asked:
//! without a mesh password every peer; with one, only peers whose underlay address lies in
//! `--trusted-subnets`, because this kernel cannot encrypt the VXLAN path (no ESP, no
//! WireGuard) and a router with a password must not send pod frames in the clear to an
//! untrusted network. The others are forced onto the encrypted sleeve, with the reason shown in
//! the log and `weave status connections`. A kernel with ESP would add a third policy (encrypt
//! fastdp) here without touching the switch.

use std::net::Ipv4Addr;
use std::str::FromStr;

/// Why a peer outside the trusted subnets is on sleeve, word for word in logs and status.
pub const NO_ESP_REASON: &str = "encrypted sleeve: this kernel has no ESP";

/// An IPv4 subnet of `--trusted-subnets`, `a.b.c.d/len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrustedSubnet {
    network: Ipv4Addr,
    prefix: u8,
}

/// Why a `--trusted-subnets` entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("trusted subnet {given:?} is not an IPv4 CIDR (a.b.c.d/0-32): {reason}")]
pub struct SubnetError {
    given: String,
    reason: &'static str,
}

impl TrustedSubnet {
    fn mask(self) -> u32 {
        u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0)
    }

    pub fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network) & self.mask()
    }
}

impl FromStr for TrustedSubnet {
    type Err = SubnetError;

    fn from_str(given: &str) -> Result<Self, SubnetError> {
        let error = |reason| SubnetError {
            given: given.to_string(),
            reason,
        };
        let (address, prefix) = given.trim().split_once('/').ok_or(error("no /length"))?;
        let network: Ipv4Addr = address.parse().map_err(|_| error("bad address"))?;
        let prefix: u8 = prefix.parse().map_err(|_| error("bad length"))?;
        if prefix > 32 {
            return Err(error("length above 32"));
        }
        Ok(Self { network, prefix })
    }
}

impl std::fmt::Display for TrustedSubnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The peers fastdp may carry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum FastdpPolicy {
    /// No password: any peer whose heartbeats are healthy.
    #[default]
    Any,
    /// A password and no kernel encryption: only peers in these subnets.
    TrustedOnly(Vec<TrustedSubnet>),
}

impl FastdpPolicy {
    /// The policy of a router with or without a mesh password.
    pub fn new(password: bool, trusted: Vec<TrustedSubnet>) -> Self {
        if password {
            FastdpPolicy::TrustedOnly(trusted)
        } else {
            FastdpPolicy::Any
        }
    }

    /// Why the peer at `ip` must stay on the (encrypted) sleeve, if it must.
    pub fn forced_sleeve(&self, ip: Ipv4Addr) -> Option<&'static str> {
        match self {
            FastdpPolicy::Any => None,
            FastdpPolicy::TrustedOnly(trusted) => {
                (!trusted.iter().any(|subnet| subnet.contains(ip))).then_some(NO_ESP_REASON)
            }
        }
    }
}

#[cfg(test)]
mod tests;
