//! Fuzz target: the topology gossip payload (a list of peer records, the `topology` channel),
//! decoded with [`decode_topology`] and then merged into a topology and routed, as the gossip
//! actor does with every update a neighbour sends.
//!
//! Properties: an update that decodes round-trips; merging it twice changes nothing the second
//! time (the merge is idempotent, so re-gossip settles); the routes of the result compute.

#![no_main]

use std::collections::BTreeMap;
use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use weft::topology::{PeerName, PeerRecord, PeerUid, Routes, Topology};
use weft::wire::{decode_topology, encode_topology};

fuzz_target!(|data: &[u8]| {
    let Ok(records) = decode_topology(data) else {
        return;
    };
    let bytes = encode_topology(&records).expect("decoded records encode");
    assert_eq!(
        decode_topology(&bytes).expect("encoded records decode"),
        records
    );

    let local = PeerRecord {
        name: PeerName::from_u64(1).expect("fits 48 bits"),
        nickname: "local".into(),
        uid: PeerUid(1),
        // A wall clock in milliseconds, as the router starts its records.
        version: 1_700_000_000_000,
        listen_addr: SocketAddr::from(([0, 0, 0, 0], 6783)),
        conn_limit: 30,
        connections: BTreeMap::new(),
    };
    let mut topology = Topology::new(local);
    let first = topology.merge(records.clone());
    assert!(first.improved.len() + first.rejected <= records.len());
    let second = topology.merge(records);
    assert!(
        second.improved.is_empty(),
        "a second merge of the same update improves nothing"
    );
    assert!(
        !second.local_bumped,
        "our record already outranks the update"
    );
    topology.garbage_collect();
    let routes = Routes::compute(&topology);
    for peer in topology.peers() {
        let _ = routes.unicast(peer.name);
        let _ = routes.broadcast(peer.name);
    }
});
