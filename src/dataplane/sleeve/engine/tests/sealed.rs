//! The sealed sleeve against the real kernel: two nodes with keys carry pings, fragments and TCP
//! across a rekey and drop forged, replayed and plain datagrams; a node without a key for its
//! neighbour sends nothing.

use super::*;

/// Installs `key` for datagrams from `from` to `to`: opening at `to` first, as the link's
/// agreement does, then sealing at `from`.
fn agree(from: &Node, from_keys: &SleeveKeys, to: &Node, to_keys: &SleeveKeys, key: &SleeveKey) {
    let direction = if from.name < to.name {
        Direction::FromDialler
    } else {
        Direction::FromAcceptor
    };
    to_keys
        .install_opening(from.name, 1, direction, key)
        .unwrap();
    from_keys.install_sealing(to.name, 1, direction, key, Instant::now());
}

/// Sends `datagram` to `to`'s sleeve socket from a fresh socket in `from`'s namespace.
fn inject(from: &Node, to_ip: &str, datagram: Vec<u8>) {
    let target = SocketAddr::from((to_ip.parse::<Ipv4Addr>().unwrap(), MESH_PORT));
    from.ns.run(move || async move {
        let socket = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        socket.send_to(&datagram, target).unwrap();
    });
}

fn dropped(node: &Node, cause: DropCause) -> u64 {
    node.engine
        .as_ref()
        .unwrap()
        .stats()
        .snapshot()
        .dropped(cause)
}

#[test]
fn sealed_nodes_carry_pings_and_tcp_across_a_rekey_and_drop_forgeries_and_replays() {
    let (keys_a, keys_b) = (Arc::new(SleeveKeys::new()), Arc::new(SleeveKeys::new()));
    let a = node_with_keys("seal", 1, Ipv4Addr::new(10, 32, 0, 1), Some(keys_a.clone()));
    let b = node_with_keys("seal", 2, Ipv4Addr::new(10, 32, 0, 2), Some(keys_b.clone()));
    underlay(&a, "192.168.81.1", &b, "192.168.81.2", "se");
    let pods = [(a.pod_mac, a.name), (b.pod_mac, b.name)];
    publish_direct(&a, b.name, "192.168.81.2", &pods);
    publish_direct(&b, a.name, "192.168.81.1", &pods);
    let a_to_b = SleeveKey::from_bytes(0, [0x11; 32]);
    agree(&a, &keys_a, &b, &keys_b, &a_to_b);
    agree(
        &b,
        &keys_b,
        &a,
        &keys_a,
        &SleeveKey::from_bytes(0, [0x22; 32]),
    );

    ping(&a, b.pod_ip, "56", "do");
    // 1380 bytes of ICMP payload: a 1408-byte packet, within the sealed sleeve's 1413.
    ping(&a, b.pod_ip, "1380", "do");
    // A 1450-byte packet without DF crosses as sealed fragments, both ways.
    ping(&a, b.pod_ip, "1422", "dont");
    // With DF the pod learns the sealed path's MTU.
    ping_too_big_teaches_mtu(&a, &b, "1400", 1413);

    // A rekey in the middle of a transfer: B opens epoch 1 (keeping epoch 0 for what is in
    // flight) before A seals with it, as the links' agreement orders it.
    let transfer = std::thread::scope(|scope| {
        let transfer = scope.spawn(|| tcp_transfer(&a, &b, 16 << 20));
        std::thread::sleep(Duration::from_millis(300));
        agree(
            &a,
            &keys_a,
            &b,
            &keys_b,
            &SleeveKey::from_bytes(1, [0x33; 32]),
        );
        transfer.join()
    });
    transfer.expect("the transfer survived the rekey");
    tcp_transfer(&b, &a, 3 << 20);
    let (stats_a, stats_b) = (
        a.engine.as_ref().unwrap().stats().snapshot(),
        b.engine.as_ref().unwrap().stats().snapshot(),
    );
    assert!(stats_b.tap_bytes_out > 16 << 20, "{stats_b:?}");
    assert!(
        stats_a.fragmented > 0 && stats_b.reassembled > 0,
        "GSO trains crossed sealed"
    );
    for cause in [DropCause::Auth, DropCause::Replay, DropCause::NoKey] {
        assert_eq!(dropped(&a, cause) + dropped(&b, cause), 0, "{cause:?}");
    }

    // A plain heartbeat naming A: dropped unread, as auth.
    let mut plain = Vec::new();
    encode_control_datagram(a.name, Control::Heartbeat { connection_id: 1 }, &mut plain).unwrap();
    inject(&a, "192.168.81.2", plain.clone());
    // The same sealed under epoch 0's key with counter 0, which real traffic used: a replay,
    // refused before any decryption.
    let mut replay = SealingKey::new(&a_to_b, Direction::FromDialler, Instant::now());
    let mut sealed = Vec::new();
    replay.seal(&plain, &mut sealed).unwrap();
    inject(&a, "192.168.81.2", sealed.clone());
    // And the same moved to a counter far ahead of anything sent (the header is authenticated
    // data, so the tag no longer matches): a forgery, refused after the decryption failed.
    sealed[7..15].copy_from_slice(&(1u64 << 40).to_be_bytes());
    inject(&a, "192.168.81.2", sealed);
    let deadline = Instant::now() + Duration::from_secs(3);
    while (dropped(&b, DropCause::Auth) < 2 || dropped(&b, DropCause::Replay) < 1)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(dropped(&b, DropCause::Auth), 2);
    assert_eq!(dropped(&b, DropCause::Replay), 1);
    // Traffic goes on.
    ping(&a, b.pod_ip, "56", "do");
}

#[test]
fn a_sealed_node_without_a_key_for_its_neighbour_sends_nothing() {
    let keys_a = Arc::new(SleeveKeys::new());
    let a = node_with_keys("nokey", 1, Ipv4Addr::new(10, 32, 0, 1), Some(keys_a));
    let b = node("nokey", 2, Ipv4Addr::new(10, 32, 0, 2));
    underlay(&a, "192.168.82.1", &b, "192.168.82.2", "nk");
    let pods = [(a.pod_mac, a.name), (b.pod_mac, b.name)];
    publish_direct(&a, b.name, "192.168.82.2", &pods);
    let pinged = run(&[
        "ip",
        "netns",
        "exec",
        a.pod.name(),
        "/usr/bin/ping",
        "-c",
        "2",
        "-W",
        "1",
        &b.pod_ip.to_string(),
    ]);
    assert!(!pinged.status.success());
    assert!(dropped(&a, DropCause::NoKey) >= 1);
    let b_stats = b.engine.as_ref().unwrap().stats().snapshot();
    assert_eq!(b_stats.udp_datagrams_in, 0, "nothing left A unsealed");
}
