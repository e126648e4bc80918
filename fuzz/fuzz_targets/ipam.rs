//! Fuzz target: the allocator's gossip messages (channel `ipam`), decoded with
//! [`decode_message`], and what the allocator does first with the state they carry: a ring is
//! merged into ours, a consensus state joined into our elector's.
//!
//! Properties: a message that decodes round-trips; a ring merged into an empty ring over its
//! range is adopted as it is, and merging it again changes nothing; joining a consensus state a
//! second time teaches nothing.

#![no_main]

use libfuzzer_sys::fuzz_target;
use weft::ipam::{IpamMessage, Paxos, Ring, RingState, decode_message, encode_message};
use weft::topology::{PeerName, PeerUid};

fn local() -> PeerName {
    PeerName::from_u64(0x02_00_00_00_00_01).expect("fits 48 bits")
}

fn merge_ring(incoming: &RingState) {
    let mut ring = Ring::new(incoming.range(), local());
    let Ok(first) = ring.merge(incoming, |_| false) else {
        return;
    };
    assert_eq!(
        ring.state(),
        incoming,
        "an empty ring adopts a valid ring whole"
    );
    assert_eq!(
        first.changed,
        !incoming.entries().is_empty() || !incoming.seeds().is_empty()
    );
    let second = ring
        .merge(incoming, |_| false)
        .expect("a ring merged once merges again");
    assert!(!second.changed && second.gained.is_empty() && second.lost.is_empty());
}

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = decode_message(data) else {
        return;
    };
    let bytes = encode_message(&msg).expect("a decoded message encodes");
    assert_eq!(
        decode_message(&bytes).expect("an encoded message decodes"),
        msg
    );
    match &msg {
        IpamMessage::Ring(ring)
        | IpamMessage::SpaceGranted { ring, .. }
        | IpamMessage::ClaimGranted { ring, .. } => merge_ring(ring),
        IpamMessage::Paxos(state) => {
            let mut elector = Paxos::new(local(), PeerUid(1), 3);
            elector.merge(state);
            let before = elector.state().clone();
            assert!(!elector.merge(state), "a second join teaches nothing");
            assert_eq!(elector.state(), &before);
            // Then what the actor does after learning something: advance our own claims.
            elector.think();
        }
        IpamMessage::RingRequest
        | IpamMessage::SpaceRequest { .. }
        | IpamMessage::SpaceDenied { .. }
        | IpamMessage::ClaimRequest { .. }
        | IpamMessage::ClaimDenied { .. } => {}
    }
});
