//! The byte form of the allocator's messages: round trips, the size bound, and that decoding
//! anything never panics.

use proptest::prelude::*;

use super::*;
use crate::ipam::Ring;
use crate::topology::PeerName;

fn peer(n: u64) -> PeerName {
    PeerName::from_u64(n).expect("fits")
}

fn ring_state(peers: &[PeerName]) -> RingState {
    let mut ring = Ring::new("10.32.0.0/12".parse().expect("valid"), peers[0]);
    ring.claim_for_peers(peers).expect("peers given");
    ring.state().clone()
}

fn message() -> impl Strategy<Value = IpamMessage> {
    let subnet = (0u32..4096)
        .prop_map(|n| Cidr::new(Address::new(0x0A20_0000 + n * 256), 24).expect("aligned /24"));
    let address = any::<u32>().prop_map(|n| Address::new(n >> 1));
    let ring = prop::collection::btree_set(1u64..1000, 1..6).prop_map(|names| {
        let peers: Vec<PeerName> = names.into_iter().map(peer).collect();
        ring_state(&peers)
    });
    prop_oneof![
        ring.clone().prop_map(IpamMessage::Ring),
        Just(IpamMessage::Paxos(Default::default())),
        Just(IpamMessage::RingRequest),
        subnet
            .clone()
            .prop_map(|subnet| IpamMessage::SpaceRequest { subnet }),
        (subnet.clone(), ring.clone())
            .prop_map(|(subnet, ring)| IpamMessage::SpaceGranted { subnet, ring }),
        subnet.prop_map(|subnet| IpamMessage::SpaceDenied { subnet }),
        address
            .clone()
            .prop_map(|address| IpamMessage::ClaimRequest { address }),
        (address.clone(), ring)
            .prop_map(|(address, ring)| IpamMessage::ClaimGranted { address, ring }),
        (address, any::<bool>()).prop_map(|(address, in_use)| IpamMessage::ClaimDenied {
            address,
            reason: if in_use {
                ClaimDenial::InUse
            } else {
                ClaimDenial::NotOwner
            },
        }),
    ]
}

#[test]
fn oversized_payloads_are_refused_before_decoding() {
    let bytes = vec![0u8; MAX_MESSAGE_BYTES + 1];
    assert!(matches!(
        decode_message(&bytes),
        Err(IpamError::MessageTooLarge { len, .. }) if len == MAX_MESSAGE_BYTES + 1
    ));
}

#[test]
fn a_malformed_cidr_inside_a_message_is_a_decode_error() {
    // A space request for 10.0.0.1/24 (host bits set), hand-encoded.
    let bytes = rmp_serde::to_vec_named(&serde_json::json!({
        "SpaceRequest": { "subnet": [0x0A00_0001u32, 24u8] }
    }))
    .expect("encodes");
    assert!(matches!(
        decode_message(&bytes),
        Err(IpamError::DecodeMessage { .. })
    ));
}

proptest! {
    #[test]
    fn messages_round_trip(msg in message()) {
        let bytes = encode_message(&msg).expect("encodes");
        prop_assert_eq!(decode_message(&bytes).expect("decodes"), msg);
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_message(&bytes);
    }

    #[test]
    fn decoding_damaged_messages_never_panics(msg in message(), flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut bytes = encode_message(&msg).expect("encodes");
        for (index, value) in flips {
            let at = index.index(bytes.len());
            bytes[at] = value;
        }
        let _ = decode_message(&bytes);
    }
}
