//! The published view: sent when the topology or the links change, and only then.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use super::{channel, publish_if_changed};
use crate::actors::gossip::state::{GossipState, NewLink};
use crate::mesh::LinkId;
use crate::topology::{PeerName, PeerRecord, PeerUid};

fn name(n: u64) -> PeerName {
    PeerName::from_u64(n).expect("a 48-bit name")
}

fn record(n: u64) -> PeerRecord {
    PeerRecord {
        name: name(n),
        nickname: format!("peer-{n}"),
        uid: PeerUid(1_000 + n),
        version: 1,
        listen_addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 6783),
        conn_limit: 30,
        connections: Default::default(),
    }
}

fn link_to(n: u64) -> NewLink {
    NewLink {
        id: LinkId(n),
        remote: name(n),
        remote_nickname: format!("peer-{n}"),
        remote_uid: PeerUid(1_000 + n),
        conn_uid: 77,
        outbound: true,
        remote_addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, n as u8)), 6783),
    }
}

#[test]
fn the_view_is_published_when_links_or_records_change_and_only_then() {
    let t0 = Instant::now();
    let mut state = GossipState::new(record(1), t0, 1);
    let (sender, mut view) = channel();
    view.borrow_and_update();

    publish_if_changed(&mut state, &sender);
    assert!(view.has_changed().unwrap(), "our own record is news");
    assert_eq!(view.borrow_and_update().peers, vec![record(1)]);
    publish_if_changed(&mut state, &sender);
    assert!(!view.has_changed().unwrap(), "nothing changed");

    state.register_link(link_to(2), t0).expect("a first link");
    publish_if_changed(&mut state, &sender);
    assert!(view.has_changed().unwrap(), "a new link");
    let links = view.borrow_and_update().links.clone();
    assert_eq!(links.len(), 1);
    assert!(!links[0].established);

    state.link_established(LinkId(2), t0).unwrap();
    publish_if_changed(&mut state, &sender);
    let published = view.borrow_and_update().clone();
    assert!(
        published.links[0].established,
        "the link's heartbeat arrived"
    );
    assert_eq!(published.links, state.links());
    assert_eq!(published.peers, state.topology().full_state());
    publish_if_changed(&mut state, &sender);
    assert!(!view.has_changed().unwrap());
}
