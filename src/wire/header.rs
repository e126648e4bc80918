//! The fixed protocol header both ends send first: magic and the range of protocol versions the
//! sender speaks. Six bytes, so a peer (or a port scanner) that is not weft is told apart before
//! anything else is read. The magic also says whether the sender's mesh has a password: `weft`,
//! and the link continues in the clear (frames); `WEFT`, and it continues in Noise records
//! (`record.rs`). Both ends must say the same, or the link ends before anything else is sent.

use super::WireError;

/// ASCII magic; deliberately not Weave Net's `weave`, since the two protocols do not interoperate.
pub const MAGIC: [u8; 4] = *b"weft";
/// The magic of a router with a mesh password. A router without one (or built before passwords
/// existed) takes it for a foreign protocol, which it is: nothing but Noise follows.
pub const MAGIC_SEALED: [u8; 4] = *b"WEFT";
/// Version 2: the dialler speaks first and the link id is committed to before it is revealed
/// (version 1 sent it in the clear). No version-1 deployment exists, so 2 is the only one spoken.
pub const PROTOCOL_MIN_VERSION: u8 = 2;
pub const PROTOCOL_MAX_VERSION: u8 = 2;
/// Magic (4 bytes) + min version + max version.
pub const HEADER_LEN: usize = 6;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtocolHeader {
    pub min_version: u8,
    pub max_version: u8,
}

/// What follows the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Security {
    /// Frames in the clear: the mesh has no password.
    Clear,
    /// A Noise `NNpsk2` handshake keyed by the mesh password, then transport records.
    Sealed,
}

impl Security {
    pub const fn magic(self) -> [u8; 4] {
        match self {
            Security::Clear => MAGIC,
            Security::Sealed => MAGIC_SEALED,
        }
    }
}

impl ProtocolHeader {
    pub const OURS: ProtocolHeader = ProtocolHeader {
        min_version: PROTOCOL_MIN_VERSION,
        max_version: PROTOCOL_MAX_VERSION,
    };

    /// The header of a link in the clear.
    pub fn encode(self) -> [u8; HEADER_LEN] {
        self.encode_for(Security::Clear)
    }

    pub fn encode_for(self, security: Security) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..4].copy_from_slice(&security.magic());
        out[4] = self.min_version;
        out[5] = self.max_version;
        out
    }

    pub fn decode(bytes: &[u8; HEADER_LEN]) -> Result<(Self, Security), WireError> {
        let mut magic = [0u8; 4];
        magic.copy_from_slice(&bytes[..4]);
        let security = match magic {
            MAGIC => Security::Clear,
            MAGIC_SEALED => Security::Sealed,
            found => return Err(WireError::BadMagic { found }),
        };
        let header = Self {
            min_version: bytes[4],
            max_version: bytes[5],
        };
        Ok((header, security))
    }
}

/// The version both ends will speak: the highest version in both ranges.
pub fn negotiate(ours: ProtocolHeader, theirs: ProtocolHeader) -> Result<u8, WireError> {
    let version = ours.max_version.min(theirs.max_version);
    let floor = ours.min_version.max(theirs.min_version);
    if theirs.min_version > theirs.max_version || version < floor {
        return Err(WireError::IncompatibleVersion {
            remote_min: theirs.min_version,
            remote_max: theirs.max_version,
            ours_min: ours.min_version,
            ours_max: ours.max_version,
        });
    }
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn negotiates_highest_common_version() {
        let ours = ProtocolHeader {
            min_version: 1,
            max_version: 3,
        };
        let theirs = ProtocolHeader {
            min_version: 2,
            max_version: 5,
        };
        assert_eq!(negotiate(ours, theirs).unwrap(), 3);
    }

    #[test]
    fn rejects_disjoint_ranges_and_bad_magic() {
        let ours = ProtocolHeader {
            min_version: 1,
            max_version: 1,
        };
        let theirs = ProtocolHeader {
            min_version: 2,
            max_version: 2,
        };
        assert!(matches!(
            negotiate(ours, theirs),
            Err(WireError::IncompatibleVersion { .. })
        ));
        assert!(matches!(
            ProtocolHeader::decode(b"weave\x01"),
            Err(WireError::BadMagic { .. })
        ));
    }

    #[test]
    fn known_bytes_of_both_magics() {
        assert_eq!(&ProtocolHeader::OURS.encode(), b"weft\x02\x02");
        assert_eq!(
            &ProtocolHeader::OURS.encode_for(Security::Sealed),
            b"WEFT\x02\x02"
        );
        assert_eq!(
            ProtocolHeader::decode(b"WEFT\x02\x02").unwrap(),
            (ProtocolHeader::OURS, Security::Sealed)
        );
    }

    proptest! {
        #[test]
        fn header_round_trips(min in any::<u8>(), max in any::<u8>(), sealed in any::<bool>()) {
            let header = ProtocolHeader { min_version: min, max_version: max };
            let security = if sealed { Security::Sealed } else { Security::Clear };
            prop_assert_eq!(
                ProtocolHeader::decode(&header.encode_for(security)).unwrap(),
                (header, security)
            );
        }

        #[test]
        fn decode_never_panics(bytes in any::<[u8; HEADER_LEN]>()) {
            if let Ok((header, _)) = ProtocolHeader::decode(&bytes) {
                let _ = negotiate(ProtocolHeader::OURS, header);
            }
        }
    }
}
