//! Peer identity: the 48-bit peer name (written like a MAC address, as Weave Net does) and the
//! per-process random uid that tells one incarnation of a peer from the next.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A peer's stable 48-bit name, written `aa:bb:cc:dd:ee:ff`.
///
/// The bridge's MAC address is set to this name, so the name is also an Ethernet address; the
/// ordering (numeric) is what route computation sorts by, so it must be identical on every peer.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerName(u64);

/// On the wire (MessagePack) a name is its number; in JSON (the report) it is written like a MAC
/// address, as operators read it.
impl Serialize for PeerName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            serializer.serialize_u64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for PeerName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            text.parse().map_err(D::Error::custom)
        } else {
            let value = u64::deserialize(deserializer)?;
            PeerName::try_from(value).map_err(D::Error::custom)
        }
    }
}

/// Largest value a 48-bit peer name can hold.
const PEER_NAME_MAX: u64 = (1 << 48) - 1;

impl PeerName {
    /// A name from its numeric value; `None` when it needs more than 48 bits.
    pub const fn from_u64(value: u64) -> Option<Self> {
        if value > PEER_NAME_MAX {
            None
        } else {
            Some(Self(value))
        }
    }

    pub const fn as_u64(self) -> u64 {
        self.0
    }

    pub fn from_bytes(bytes: [u8; 6]) -> Self {
        let mut wide = [0u8; 8];
        wide[2..].copy_from_slice(&bytes);
        Self(u64::from_be_bytes(wide))
    }

    pub fn to_bytes(self) -> [u8; 6] {
        let wide = self.0.to_be_bytes();
        let mut out = [0u8; 6];
        out.copy_from_slice(&wide[2..]);
        out
    }
}

impl TryFrom<u64> for PeerName {
    type Error = PeerNameError;
    fn try_from(value: u64) -> Result<Self, Self::Error> {
        Self::from_u64(value).ok_or(PeerNameError::TooLarge(value))
    }
}

impl From<PeerName> for u64 {
    fn from(name: PeerName) -> u64 {
        name.0
    }
}

impl fmt::Display for PeerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.to_bytes();
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for PeerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerNameError {
    #[error("peer name {0:#x} does not fit in 48 bits")]
    TooLarge(u64),
    #[error("invalid peer name {input:?}: {why}")]
    Invalid { input: String, why: &'static str },
}

impl FromStr for PeerName {
    type Err = PeerNameError;

    /// Accepts the full form `aa:bb:cc:dd:ee:ff` and, like Weave Net, the `::` shorthand for a
    /// run of zero groups (`::1` is `00:00:00:00:00:01`).
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let invalid = |why| PeerNameError::Invalid {
            input: input.to_string(),
            why,
        };
        let groups: Vec<&str> = match input.split_once("::") {
            None => input.split(':').collect(),
            Some((head, tail)) => {
                let head: Vec<&str> = if head.is_empty() {
                    vec![]
                } else {
                    head.split(':').collect()
                };
                let tail: Vec<&str> = if tail.is_empty() {
                    vec![]
                } else {
                    tail.split(':').collect()
                };
                if head.len() + tail.len() > 5 {
                    return Err(invalid("too many groups around '::'"));
                }
                let zeros = 6 - head.len() - tail.len();
                head.into_iter()
                    .chain(std::iter::repeat_n("0", zeros))
                    .chain(tail)
                    .collect()
            }
        };
        if groups.len() != 6 {
            return Err(invalid("expected six ':'-separated hex groups"));
        }
        let mut bytes = [0u8; 6];
        for (byte, group) in bytes.iter_mut().zip(groups) {
            if group.is_empty() || group.len() > 2 {
                return Err(invalid("each group is one or two hex digits"));
            }
            *byte = u8::from_str_radix(group, 16).map_err(|_| invalid("not a hex digit"))?;
        }
        Ok(Self::from_bytes(bytes))
    }
}

/// Random identity of one process start: a restarted peer keeps its name but gets a new uid, which
/// is how the mesh tells a restart from a name collision.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Debug)]
pub struct PeerUid(pub u64);

impl PeerUid {
    pub fn random() -> Self {
        Self(rand::random())
    }
}

impl fmt::Display for PeerUid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_full_and_shorthand_forms() {
        let full: PeerName = "00:00:00:00:00:01".parse().unwrap();
        assert_eq!(full.as_u64(), 1);
        assert_eq!("::1".parse::<PeerName>().unwrap(), full);
        assert_eq!("1::".parse::<PeerName>().unwrap().as_u64(), 1 << 40);
        assert_eq!(
            "ce:31::2".parse::<PeerName>().unwrap().to_string(),
            "ce:31:00:00:00:02"
        );
    }

    #[test]
    fn rejects_malformed_names() {
        for bad in [
            "",
            "1:2:3",
            "1:2:3:4:5:6:7",
            "zz::",
            "123::",
            "1::2::3",
            "1:2:3:4:5::6",
        ] {
            assert!(bad.parse::<PeerName>().is_err(), "{bad:?} should not parse");
        }
        assert!(PeerName::from_u64(1 << 48).is_none());
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(value in 0u64..=PEER_NAME_MAX) {
            let name = PeerName::from_u64(value).unwrap();
            prop_assert_eq!(name.to_string().parse::<PeerName>().unwrap(), name);
            prop_assert_eq!(PeerName::from_bytes(name.to_bytes()), name);
        }

        #[test]
        fn serde_round_trips_in_json_and_messagepack(value in 0u64..=PEER_NAME_MAX) {
            let name = PeerName::from_u64(value).unwrap();
            let json = serde_json::to_string(&name).unwrap();
            prop_assert_eq!(&json, &format!("\"{name}\""));
            prop_assert_eq!(serde_json::from_str::<PeerName>(&json).unwrap(), name);
            let packed = rmp_serde::to_vec(&name).unwrap();
            prop_assert_eq!(rmp_serde::from_slice::<PeerName>(&packed).unwrap(), name);
        }

        #[test]
        fn parse_never_panics(input in ".{0,40}") {
            let _ = input.parse::<PeerName>();
        }
    }
}
