//! Reading the IPAM flags (`--ipalloc-range`, `--ipalloc-default-subnet`, `--ipalloc-init`) into
//! the allocator's configuration.

use crate::ipam::{AllocatorConfig, Cidr, InitMode, quorum_for};
use crate::topology::{PeerName, PeerUid};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IpamConfigError {
    #[error("invalid --ipalloc-range {value:?}: {why}")]
    Range { value: String, why: String },
    #[error("invalid --ipalloc-default-subnet {value:?}: {why}")]
    DefaultSubnet { value: String, why: String },
    #[error(
        "invalid --ipalloc-init {value:?}: {why} (use consensus[=N], seed=<name>,<name>... or observer)"
    )]
    Init { value: String, why: String },
}

/// Parses `--ipalloc-init`. Without it, consensus among the initial peers and ourselves, so that a
/// router started alone allocates at once.
pub fn parse_init(value: Option<&str>, initial_peers: usize) -> Result<InitMode, IpamConfigError> {
    let fail = |why: &str| IpamConfigError::Init {
        value: value.unwrap_or_default().to_string(),
        why: why.to_string(),
    };
    let default_quorum = || quorum_for(initial_peers + 1);
    let default_expected = initial_peers + 1;
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(InitMode::Consensus {
            quorum: default_quorum(),
            expected: default_expected,
        });
    };
    if value == "observer" {
        return Ok(InitMode::Observer);
    }
    if value == "consensus" {
        return Ok(InitMode::Consensus {
            quorum: default_quorum(),
            expected: default_expected,
        });
    }
    if let Some(count) = value.strip_prefix("consensus=") {
        let count: usize = count
            .parse()
            .map_err(|_| fail("the peer count is not a number"))?;
        if count == 0 {
            return Err(fail("consensus needs at least one peer"));
        }
        return Ok(InitMode::Consensus {
            quorum: quorum_for(count),
            expected: count,
        });
    }
    if let Some(names) = value.strip_prefix("seed=") {
        let seeds = names
            .split(',')
            .map(|name| name.trim().parse::<PeerName>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| fail(&err.to_string()))?;
        if seeds.is_empty() {
            return Err(fail("no seed peers"));
        }
        return Ok(InitMode::Seed(seeds));
    }
    Err(fail("unknown mode"))
}

/// The allocator's configuration, or `None` when IPAM is off (`--ipalloc-range ""`).
pub fn allocator_config(
    local: PeerName,
    uid: PeerUid,
    nickname: &str,
    range: &str,
    default_subnet: Option<&str>,
    init: Option<&str>,
    initial_peers: usize,
) -> Result<Option<AllocatorConfig>, IpamConfigError> {
    if range.trim().is_empty() {
        return Ok(None);
    }
    let universe: Cidr = range.trim().parse().map_err(|err| IpamConfigError::Range {
        value: range.to_string(),
        why: format!("{err}"),
    })?;
    let default_subnet = match default_subnet.map(str::trim).filter(|v| !v.is_empty()) {
        None => universe,
        Some(value) => {
            let subnet: Cidr = value
                .parse()
                .map_err(|err| IpamConfigError::DefaultSubnet {
                    value: value.to_string(),
                    why: format!("{err}"),
                })?;
            let inside = universe.contains(subnet.start()) || subnet.contains(universe.start());
            if !inside {
                return Err(IpamConfigError::DefaultSubnet {
                    value: value.to_string(),
                    why: format!("it does not overlap the range {universe}"),
                });
            }
            subnet
        }
    };
    Ok(Some(AllocatorConfig {
        local,
        uid,
        nickname: nickname.to_string(),
        universe,
        default_subnet,
        mode: parse_init(init, initial_peers)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_modes_parse_like_weave_nets() {
        assert_eq!(
            parse_init(None, 0).unwrap(),
            InitMode::Consensus {
                quorum: 1,
                expected: 1
            }
        );
        assert_eq!(
            parse_init(None, 2).unwrap(),
            InitMode::Consensus {
                quorum: 2,
                expected: 3
            }
        );
        assert_eq!(
            parse_init(Some("consensus=3"), 0).unwrap(),
            InitMode::Consensus {
                quorum: 2,
                expected: 3
            }
        );
        assert_eq!(parse_init(Some("observer"), 5).unwrap(), InitMode::Observer);
        assert_eq!(
            parse_init(Some("seed=::1,::2"), 0).unwrap(),
            InitMode::Seed(vec!["::1".parse().unwrap(), "::2".parse().unwrap()])
        );
        for bad in ["consensus=x", "consensus=0", "seed=", "seed=zz", "leader"] {
            let err = parse_init(Some(bad), 0).unwrap_err();
            assert!(err.to_string().contains("--ipalloc-init"), "{err}");
        }
    }

    #[test]
    fn range_and_default_subnet_are_checked() {
        let name: PeerName = "::1".parse().unwrap();
        let config = allocator_config(name, PeerUid(1), "n", "10.32.0.0/12", None, None, 0)
            .unwrap()
            .unwrap();
        assert_eq!(config.default_subnet, config.universe);
        assert!(
            allocator_config(name, PeerUid(1), "n", "", None, None, 0)
                .unwrap()
                .is_none()
        );
        assert!(allocator_config(name, PeerUid(1), "n", "10.32.0.1/12", None, None, 0).is_err());
        let outside = allocator_config(
            name,
            PeerUid(1),
            "n",
            "10.32.0.0/12",
            Some("192.168.0.0/24"),
            None,
            0,
        );
        assert!(matches!(
            outside,
            Err(IpamConfigError::DefaultSubnet { .. })
        ));
    }
}
