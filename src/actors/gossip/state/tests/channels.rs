//! Tests of the gossip channels of other subsystems: neighbour gossip, unicast relayed along the
//! routes, broadcast along the source's tree, and the neighbour subset.

use super::*;

#[test]
fn gossip_of_another_channel_is_delivered_from_the_neighbour() {
    let t0 = Instant::now();
    let mut state = linked(1, &[(12, 2)], &[], t0);
    let msg = ProtocolMsg::Gossip {
        channel: "ipam".to_string(),
        payload: ByteBuf::from(vec![1, 2, 3]),
    };

    assert_eq!(
        state.receive(LinkId(12), msg, t0),
        Ok(vec![Effect::Deliver {
            channel: "ipam".to_string(),
            source: name(2),
            payload: vec![1, 2, 3],
        }])
    );
}

#[test]
fn unicast_for_us_is_delivered_and_for_another_peer_goes_to_the_next_hop() {
    let t0 = Instant::now();
    let unicast = |dest: u64| ProtocolMsg::GossipUnicast {
        channel: "ipam".to_string(),
        source: name(1),
        dest: name(dest),
        payload: ByteBuf::from(vec![7]),
    };
    let mut source = line_of_three(1, t0);
    assert_eq!(
        source.send_unicast("ipam", name(3), vec![7]),
        vec![Effect::Send {
            link: LinkId(12),
            msg: Arc::new(unicast(3)),
        }]
    );

    let mut middle = line_of_three(2, t0);
    assert_eq!(
        middle.receive(LinkId(21), unicast(2), t0),
        Ok(vec![Effect::Deliver {
            channel: "ipam".to_string(),
            source: name(1),
            payload: vec![7],
        }])
    );
    assert_eq!(
        middle.receive(LinkId(21), unicast(3), t0),
        Ok(vec![Effect::Send {
            link: LinkId(23),
            msg: Arc::new(unicast(3)),
        }])
    );
    // No route to an unknown peer: dropped, as a router drops what it cannot route.
    assert_eq!(middle.receive(LinkId(21), unicast(9), t0), Ok(vec![]));
}

#[test]
fn broadcast_is_delivered_and_relayed_to_tree_children_never_back() {
    let t0 = Instant::now();
    let broadcast = |source: u64| ProtocolMsg::GossipBroadcast {
        channel: "ipam".to_string(),
        source: name(source),
        payload: ByteBuf::from(vec![9]),
    };
    let delivered = |source: u64| Effect::Deliver {
        channel: "ipam".to_string(),
        source: name(source),
        payload: vec![9],
    };

    let mut end_1 = line_of_three(1, t0);
    let effects = end_1.send_broadcast("ipam", vec![9]);
    assert_eq!(
        effects,
        vec![Effect::Send {
            link: LinkId(12),
            msg: Arc::new(broadcast(1)),
        }]
    );

    let mut middle = line_of_three(2, t0);
    let effects = middle.receive(LinkId(21), broadcast(1), t0).unwrap();
    assert_eq!(sent_links(&effects), vec![LinkId(23)]);
    assert_eq!(deliveries(&effects), vec![&delivered(1)]);
    let effects = middle.receive(LinkId(23), broadcast(3), t0).unwrap();
    assert_eq!(sent_links(&effects), vec![LinkId(21)]);
    assert_eq!(deliveries(&effects), vec![&delivered(3)]);

    let mut end_3 = line_of_three(3, t0);
    let effects = end_3.receive(LinkId(32), broadcast(1), t0).unwrap();
    assert_eq!(effects, vec![delivered(1)]);
}

#[test]
fn channel_gossip_to_neighbours_goes_to_a_logarithmic_subset_on_its_channel() {
    let t0 = Instant::now();
    let neighbours: Vec<u64> = (2..=16).collect();
    let links: Vec<(u64, u64)> = neighbours.iter().map(|&n| (100 + n, n)).collect();
    let records: Vec<PeerRecord> = neighbours
        .iter()
        .map(|&n| record_listing(n, 3, &[1]))
        .collect();
    let mut state = linked(1, &links, &records, t0);

    let effects = state.send_to_neighbours("ipam", vec![1, 2, 3]);

    let chosen = sent_links(&effects);
    let distinct: BTreeSet<LinkId> = chosen.iter().copied().collect();
    assert_eq!(distinct.len(), chosen.len(), "each link at most once");
    assert!(
        (1..=8).contains(&chosen.len()),
        "sent on {} links",
        chosen.len()
    );
    for effect in &effects {
        let Effect::Send { msg, .. } = effect else {
            panic!("unexpected effect {effect:?}");
        };
        let ProtocolMsg::Gossip { channel, payload } = msg.as_ref() else {
            panic!("unexpected message {msg:?}");
        };
        assert_eq!(channel, "ipam");
        assert_eq!(payload.as_ref(), &[1, 2, 3]);
    }
    // One message for all of them, which the actor frames once.
    let messages: Vec<&Arc<ProtocolMsg>> = effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Send { msg, .. } => Some(msg),
            _ => None,
        })
        .collect();
    assert!(
        messages
            .windows(2)
            .all(|pair| Arc::ptr_eq(pair[0], pair[1]))
    );
}
