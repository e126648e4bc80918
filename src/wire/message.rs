//! The messages carried in frames: the first one (`Hello`: who we are, or why we refuse) and then
//! the control messages of an established link. MessagePack with named fields, so a newer peer can
//! add fields that an older one ignores.

use std::net::SocketAddr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::WireError;
use super::link_id::LinkCommitment;
use crate::topology::{PeerName, PeerUid};

/// Overlay list of a router started with `--no-dataplane`.
pub const OVERLAYS_NONE: &[&str] = &[];

/// What a peer says about itself in its first message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Features {
    pub name: PeerName,
    pub nickname: String,
    pub uid: PeerUid,
    /// Commitment to this side's random contribution to the link id, revealed in the next
    /// message (see [`super::Reveal`]); the link id settles simultaneous connects.
    pub conn_commit: LinkCommitment,
    /// Overlays this peer can carry traffic over, most preferred first (`fastdp`, `sleeve`).
    pub overlays: Vec<String>,
    /// The TCP port this peer listens on for mesh connections.
    pub listen_port: u16,
}

/// Why an accepting peer turned a connection away, sent instead of its features.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefusalReason {
    /// The accepting peer already holds its `--conn-limit` connections.
    ConnectionLimit { limit: u32 },
    /// The accepting peer is shutting down.
    ShuttingDown,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub reason: RefusalReason,
    /// Other peers' mesh addresses the refused peer may try instead, so that a newcomer that only
    /// knows one full peer still finds a way into the mesh.
    pub alternatives: Vec<SocketAddr>,
}

/// The first message each side sends after the protocol header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Hello {
    Features(Features),
    Refused(Refusal),
}

/// Messages of an established link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProtocolMsg {
    Heartbeat,
    /// Gossip for the neighbour only (topology deltas, anti-entropy, full state on connect).
    Gossip {
        channel: String,
        payload: ByteBuf,
    },
    /// Gossip for one peer, relayed hop by hop along unicast routes.
    GossipUnicast {
        channel: String,
        source: PeerName,
        dest: PeerName,
        payload: ByteBuf,
    },
    /// Gossip for every peer, relayed along the source's broadcast tree.
    GossipBroadcast {
        channel: String,
        source: PeerName,
        payload: ByteBuf,
    },
    /// With a mesh password: the key the sender will seal its sleeve datagrams to us with, from
    /// the epoch it names, as [`crate::wire::sleeve::seal::SleeveKey::encode`] wrote it. Only
    /// ever inside the link's Noise channel. The receiver installs it, then acknowledges.
    SleeveKey {
        key: SleeveKeyBytes,
    },
    /// The receiver installed the sleeve key of `epoch`: the sender may seal with it now.
    SleeveKeyAck {
        epoch: u32,
    },
}

/// An encoded sleeve key on its way through the Noise channel: wiped on drop, never shown by
/// `Debug` (links log their outputs in tests and traces).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SleeveKeyBytes(ByteBuf);

impl SleeveKeyBytes {
    pub fn new(bytes: &[u8]) -> Self {
        Self(ByteBuf::from(bytes.to_vec()))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for SleeveKeyBytes {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(self.0.as_mut_slice());
    }
}

impl std::fmt::Debug for SleeveKeyBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SleeveKeyBytes(<{} bytes redacted>)", self.0.len())
    }
}

pub fn encode_message<T: Serialize>(what: &'static str, message: &T) -> Result<Vec<u8>, WireError> {
    rmp_serde::to_vec_named(message).map_err(|source| WireError::Encode { what, source })
}

pub fn decode_message<T: DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, WireError> {
    rmp_serde::from_slice(bytes).map_err(|source| WireError::Decode { what, source })
}

#[cfg(test)]
pub(crate) mod strategies {
    use super::*;
    use proptest::prelude::*;

    pub fn peer_name() -> impl Strategy<Value = PeerName> {
        (0u64..(1 << 48)).prop_map(|v| PeerName::from_u64(v).unwrap())
    }

    /// Serde writes an address as ip and port only (no IPv6 flow info or scope id).
    fn socket_addr() -> impl Strategy<Value = SocketAddr> {
        (any::<std::net::IpAddr>(), any::<u16>()).prop_map(SocketAddr::from)
    }

    pub fn features() -> impl Strategy<Value = Features> {
        (
            peer_name(),
            ".{0,20}",
            any::<u64>(),
            any::<[u8; 32]>(),
            prop::collection::vec("[a-z]{1,8}", 0..3),
            any::<u16>(),
        )
            .prop_map(
                |(name, nickname, uid, commit, overlays, listen_port)| Features {
                    name,
                    nickname,
                    uid: PeerUid(uid),
                    conn_commit: LinkCommitment(commit),
                    overlays,
                    listen_port,
                },
            )
    }

    pub fn hello() -> impl Strategy<Value = Hello> {
        prop_oneof![
            features().prop_map(Hello::Features),
            (any::<u32>(), prop::collection::vec(socket_addr(), 0..5)).prop_map(
                |(limit, alternatives)| Hello::Refused(Refusal {
                    reason: RefusalReason::ConnectionLimit { limit },
                    alternatives,
                })
            ),
            Just(Hello::Refused(Refusal {
                reason: RefusalReason::ShuttingDown,
                alternatives: vec![],
            })),
        ]
    }

    pub fn protocol_msg() -> impl Strategy<Value = ProtocolMsg> {
        let payload = prop::collection::vec(any::<u8>(), 0..200).prop_map(ByteBuf::from);
        prop_oneof![
            Just(ProtocolMsg::Heartbeat),
            ("[a-z]{1,12}", payload.clone())
                .prop_map(|(channel, payload)| ProtocolMsg::Gossip { channel, payload }),
            ("[a-z]{1,12}", peer_name(), peer_name(), payload.clone()).prop_map(
                |(channel, source, dest, payload)| ProtocolMsg::GossipUnicast {
                    channel,
                    source,
                    dest,
                    payload
                }
            ),
            ("[a-z]{1,12}", peer_name(), payload.clone()).prop_map(|(channel, source, payload)| {
                ProtocolMsg::GossipBroadcast {
                    channel,
                    source,
                    payload,
                }
            }),
            payload.prop_map(|key| ProtocolMsg::SleeveKey {
                key: SleeveKeyBytes::new(&key)
            }),
            any::<u32>().prop_map(|epoch| ProtocolMsg::SleeveKeyAck { epoch }),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::strategies::*;
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_sleeve_key_message_never_shows_its_key() {
        let msg = ProtocolMsg::SleeveKey {
            key: SleeveKeyBytes::new(&[0xab; 50]),
        };
        let shown = format!("{msg:?}");
        assert!(shown.contains("50 bytes redacted"), "{shown}");
        assert!(!shown.contains("171"), "{shown}");
    }

    #[test]
    fn peer_name_over_48_bits_is_rejected() {
        let bytes = rmp_serde::to_vec(&(1u64 << 50)).unwrap();
        assert!(decode_message::<PeerName>("peer name", &bytes).is_err());
    }

    proptest! {
        #[test]
        fn hello_round_trips(hello in hello()) {
            let bytes = encode_message("hello", &hello).unwrap();
            prop_assert_eq!(decode_message::<Hello>("hello", &bytes).unwrap(), hello);
        }

        #[test]
        fn protocol_msg_round_trips(msg in protocol_msg()) {
            let bytes = encode_message("message", &msg).unwrap();
            prop_assert_eq!(decode_message::<ProtocolMsg>("message", &bytes).unwrap(), msg);
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_message::<Hello>("hello", &bytes);
            let _ = decode_message::<ProtocolMsg>("message", &bytes);
        }

        #[test]
        fn decoding_mutated_messages_never_panics(msg in protocol_msg(), flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)) {
            let mut bytes = encode_message("message", &msg).unwrap();
            for (index, value) in flips {
                let i = index.index(bytes.len());
                bytes[i] = value;
            }
            let _ = decode_message::<ProtocolMsg>("message", &bytes);
        }
    }
}
