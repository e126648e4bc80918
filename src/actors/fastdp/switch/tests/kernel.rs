//! The fastdp heartbeat against the real kernel: two node namespaces joined by a veth underlay,
//! each with `setup_node`'s bridge and VXLAN device. Heartbeats cross at full MTU and are acked;
//! blocking UDP 6784 with nftables turns the peer unhealthy in the overlay switch within
//! seconds, and removing the rule brings it back; an underlay too small for full frames (DF)
//! gets no acks. Every packet stays inside the test's namespaces.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::actors::fastdp::switch::{HEARTBEAT_INTERVAL, LinkedPeer, OverlaySwitch};
use crate::actors::overlay::Overlay;
use crate::dataplane::fastdp_frame::{self, Frame, Kind};
use crate::dataplane::fastdp_heartbeat::*;
use crate::dataplane::link::LinkOps;
use crate::dataplane::netlink::NetlinkLinkOps;
use crate::dataplane::node::{NodeConfig, setup_node};
use crate::dataplane::testns::TestNs;
use crate::topology::PeerName;
use crate::wire::MacAddr;

const MESH_PORT: u16 = 6783;
const VNI: u32 = 42;
/// The overlay MTU both nodes are configured with; a 1500-byte underlay carries it exactly.
const OVERLAY_MTU: u32 = 1450;
const A_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const B_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// How long a healthy path may take to answer the first heartbeats (a few intervals).
const FIRST_ACKS_WITHIN: Duration = Duration::from_secs(5);

fn name(n: u8) -> PeerName {
    PeerName::from_bytes([0x7e, 0, 0, 0, 0, n])
}

/// The two nodes, joined by a veth pair whose MTU is `underlay_mtu`.
fn two_nodes(tag: &str, underlay_mtu: u32) -> (TestNs, TestNs) {
    let a = TestNs::new(&format!("{tag}a"));
    let b = TestNs::new(&format!("{tag}b"));
    let mtu = underlay_mtu.to_string();
    let out = Command::new("ip")
        .args(["link", "add", "ua", "mtu", &mtu, "netns", a.name()])
        .args(["type", "veth", "peer", "ub", "mtu", &mtu, "netns", b.name()])
        .output()
        .expect("run ip");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (ns, dev, ip) in [(&a, "ua", A_IP), (&b, "ub", B_IP)] {
        ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", dev]);
        ns.ip(&["link", "set", dev, "up"]);
        ns.ip(&["link", "set", "lo", "up"]);
    }
    (a, b)
}

/// Sets up the node's bridge and VXLAN device, points the peer's bridge MAC at its underlay
/// address, and opens the heartbeat socket on the VXLAN device.
fn node(ns: &TestNs, local: PeerName, peer: PeerName, peer_ip: Ipv4Addr) -> HeartbeatSocket {
    ns.run(move || async move {
        let ops = NetlinkLinkOps::new().expect("netlink");
        let mut cfg = NodeConfig::new(MacAddr(local.to_bytes()), MESH_PORT, VNI);
        cfg.mtu = Some(OVERLAY_MTU);
        let state = setup_node(&ops, &cfg).await.expect("setup node");
        ops.fdb_add(&cfg.vxlan_name, MacAddr(peer.to_bytes()), peer_ip)
            .await
            .expect("peer bridge MAC entry");
        HeartbeatSocket::open(&cfg.vxlan_name, state.vxlan.index).expect("heartbeat socket")
    })
}

/// Another heartbeat socket on the node's existing VXLAN device.
fn reopen(ns: &TestNs) -> HeartbeatSocket {
    ns.run(|| async {
        let ops = NetlinkLinkOps::new().expect("netlink");
        let vxlan = NodeConfig::new(MacAddr([0; 6]), MESH_PORT, VNI).vxlan_name;
        let link = ops.link(&vxlan).await.expect("look up").expect("vxlan");
        HeartbeatSocket::open(&vxlan, link.index).expect("heartbeat socket")
    })
}

/// Starts a heartbeater sending to `peer`; acks arrive on the returned channel.
fn start(
    socket: HeartbeatSocket,
    local: PeerName,
    peer: PeerName,
) -> (Heartbeater, mpsc::Receiver<(PeerName, Instant)>) {
    start_at(socket, local, peer, OVERLAY_MTU)
}

fn start_at(
    socket: HeartbeatSocket,
    local: PeerName,
    peer: PeerName,
    mtu: u32,
) -> (Heartbeater, mpsc::Receiver<(PeerName, Instant)>) {
    let (_tx, targets) = watch::channel(vec![peer]);
    let (acks_tx, acks) = mpsc::sync_channel(1024);
    let config = HeartbeatConfig {
        local,
        mtu,
        interval: HEARTBEAT_INTERVAL,
    };
    let hb = Heartbeater::spawn(socket, config, targets, move |peers| {
        for from in peers {
            let _ = acks_tx.try_send((from, Instant::now()));
        }
        Ok(())
    })
    .expect("spawn");
    (hb, acks)
}

fn nft(ns: &TestNs, script: &str) {
    let out = Command::new("ip")
        .args(["netns", "exec", ns.name(), "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(script.as_bytes())?;
            child.wait_with_output()
        })
        .expect("run nft (install nftables)");
    assert!(
        out.status.success(),
        "nft: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Feeds acks from `acks` and clock ticks into `switch` until the peer's overlay is `want`,
/// for at most `limit`; the time it took.
fn wait_for(
    switch: &mut OverlaySwitch,
    acks: &mpsc::Receiver<(PeerName, Instant)>,
    want: Overlay,
    limit: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok((from, at)) = acks.recv_timeout(Duration::from_millis(100)) {
            switch.on_ack(from, at);
        }
        switch.tick(Instant::now());
        let overlay = switch.peers().values().next().map(|peer| peer.overlay);
        if overlay == Some(want) {
            return Some(start.elapsed());
        }
    }
    None
}

#[test]
fn heartbeats_are_acked_at_full_mtu_and_blocking_udp_falls_back_then_recovers() {
    let (a, b) = two_nodes("hb", 1500);
    let (hb_a, acks_a) = start(node(&a, name(1), name(2), B_IP), name(1), name(2));
    let (hb_b, _acks_b) = start(node(&b, name(2), name(1), A_IP), name(2), name(1));
    let mut switch = OverlaySwitch::new(true);
    let link = LinkedPeer {
        name: name(2),
        nickname: "b".into(),
        ip: B_IP,
    };
    switch.set_links(&[link], &Default::default(), Instant::now());
    let up = wait_for(&mut switch, &acks_a, Overlay::Fastdp, FIRST_ACKS_WITHIN);
    assert!(
        up.is_some(),
        "no acks: {:?} / {:?}",
        hb_a.counters,
        hb_b.counters
    );
    // B counts an answer after sending it, so the ack that confirmed fastdp at A may be seen
    // before B's count of it: give the count a moment to catch up.
    let answered_by = Instant::now() + HEARTBEAT_INTERVAL;
    while hb_b.counters.answered.load(Ordering::Relaxed) < 3 && Instant::now() < answered_by {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(hb_b.counters.answered.load(Ordering::Relaxed) >= 3);

    // Drop the VXLAN traffic arriving at B: A's heartbeats no longer reach it.
    nft(
        &b,
        "table inet weft_test {\n chain input {\n type filter hook input priority 0\n \
         udp dport 6784 drop\n }\n}\n",
    );
    let down = wait_for(
        &mut switch,
        &acks_a,
        Overlay::Sleeve,
        Duration::from_secs(10),
    )
    .expect("falls back to sleeve within 10 s");
    eprintln!("fastdp fallback after blocking UDP 6784: {down:?}");
    assert!(down <= Duration::from_secs(6), "{down:?}");

    nft(&b, "delete table inet weft_test");
    let back = wait_for(
        &mut switch,
        &acks_a,
        Overlay::Fastdp,
        Duration::from_secs(10),
    )
    .expect("returns to fastdp within 10 s");
    eprintln!("fastdp recovery after unblocking: {back:?}");
    assert!(back <= Duration::from_secs(5), "{back:?}");
}

#[test]
fn an_underlay_too_small_for_full_frames_gets_no_acks() {
    // One byte short of the overlay MTU plus VXLAN's 50 bytes: with DF set, full-size
    // heartbeats can't cross, while smaller traffic still could.
    let (a, b) = two_nodes("hbmtu", OVERLAY_MTU + 50 - 1);
    let (hb_a, acks_a) = start(node(&a, name(1), name(2), B_IP), name(1), name(2));
    let (_hb_b, _acks_b) = start(node(&b, name(2), name(1), A_IP), name(2), name(1));
    std::thread::sleep(FIRST_ACKS_WITHIN);
    assert!(
        acks_a.try_recv().is_err(),
        "a full frame crossed a small underlay"
    );
    assert_eq!(hb_a.counters.acked.load(Ordering::Relaxed), 0);
    assert!(
        hb_a.counters.sent.load(Ordering::Relaxed)
            + hb_a.counters.send_errors.load(Ordering::Relaxed)
            >= 3,
        "heartbeats were attempted: {:?}",
        hb_a.counters
    );
    drop(hb_a);
    // The control: frames that fit the underlay cross it, so it was the size that failed.
    let (_small, small_acks) = start_at(reopen(&a), name(1), name(2), OVERLAY_MTU - 100);
    assert!(
        small_acks.recv_timeout(FIRST_ACKS_WITHIN).is_ok(),
        "smaller heartbeats should cross"
    );
}

#[test]
fn the_vxlan_device_learning_a_remote_mac_is_notified() {
    let (a, b) = two_nodes("learn", 1500);
    let socket_a = node(&a, name(1), name(2), B_IP);
    let _socket_b = node(&b, name(2), name(1), A_IP);
    let learned = b.run(move || async move {
        let ops = NetlinkLinkOps::new().expect("netlink");
        let vxlan = NodeConfig::new(MacAddr([0; 6]), MESH_PORT, VNI).vxlan_name;
        let link = ops.link(&vxlan).await.expect("look up").expect("vxlan");
        let mut watch = crate::dataplane::LearnedFdbWatch::new(link.index).expect("watch");
        // A frame from a pod MAC node B has never seen, sent by node A through its VXLAN device.
        let frame = Frame {
            dst: MacAddr(name(2).to_bytes()),
            src: POD_MAC,
            kind: Kind::Heartbeat,
            seq: 1,
            sender: name(1),
            size: 100,
        };
        socket_a
            .send(&fastdp_frame::encode(&frame))
            .expect("send from node A");
        let learned = tokio::time::timeout(Duration::from_secs(5), watch.next())
            .await
            .expect("notified within 5 s")
            .expect("subscription alive");
        let dumped = ops.fdb_learned(&vxlan).await.expect("dump");
        (learned, dumped)
    });
    let (notified, dumped) = learned;
    assert_eq!(notified.mac, POD_MAC);
    assert_eq!(notified.remote, A_IP);
    assert!(
        dumped.iter().any(|e| e.mac == POD_MAC && e.remote == A_IP),
        "{dumped:?}"
    );
}

/// A locally administered unicast MAC, as a pod's would be.
const POD_MAC: MacAddr = MacAddr([0x0a, 0x58, 0, 0, 0, 7]);

#[test]
fn the_filter_passes_heartbeat_frames_only() {
    let (a, b) = two_nodes("bpf", 1500);
    let socket_a = node(&a, name(1), name(2), B_IP);
    let socket_b = node(&b, name(2), name(1), A_IP);
    let heartbeat = fastdp_frame::encode(&Frame {
        dst: MacAddr(name(2).to_bytes()),
        src: MacAddr(name(1).to_bytes()),
        kind: Kind::Heartbeat,
        seq: 7,
        sender: name(1),
        size: 200,
    });
    // The same frame as IPv4 (ethertype 0x0800): what pod traffic looks like to the filter.
    let mut pod_frame = heartbeat.clone();
    pod_frame[12..14].copy_from_slice(&[0x08, 0x00]);
    for _ in 0..3 {
        socket_a.send(&pod_frame).expect("send pod-like frame");
    }
    socket_a.send(&heartbeat).expect("send heartbeat");
    let mut buffer = vec![0; 2048];
    let mut received = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        if let Some(len) = socket_b.recv(&mut buffer).expect("recv") {
            received.push(buffer[..len].to_vec());
        }
    }
    assert_eq!(
        received,
        vec![heartbeat],
        "only the heartbeat reaches userspace"
    );
    // The pod-like frames did cross: the filter, not the path, kept them out.
    let stats = b.run(|| async {
        let ops = NetlinkLinkOps::new().expect("netlink");
        let vxlan = NodeConfig::new(MacAddr([0; 6]), MESH_PORT, VNI).vxlan_name;
        ops.link_stats(&vxlan).await.expect("stats")
    });
    assert!(stats.rx_packets >= 4, "{stats:?}");
}

fn peers(count: u8) -> Vec<PeerName> {
    (1..=count).map(name).collect()
}

#[test]
fn acks_go_over_in_batches_each_peer_once_and_a_refused_batch_is_kept() {
    let start = Instant::now();
    let mut batch = AckBatch::default();
    assert!(!batch.due(start));
    // A round's acks from 30 peers, one of them twice, arriving within a few milliseconds.
    for (i, peer) in peers(30).into_iter().chain([name(7)]).enumerate() {
        batch.record(peer, start + Duration::from_micros(100 * i as u64));
    }
    assert!(!batch.due(start + ACK_BATCH_DELAY / 2));
    let later = start + ACK_BATCH_DELAY;
    assert!(batch.due(later));
    // The actor's mailbox is full: nothing is lost, the batch waits another delay.
    let delivered = std::cell::RefCell::new(Vec::new());
    batch.flush(later, &|refused| Err(refused));
    assert!(!batch.due(later + ACK_BATCH_DELAY / 2));
    assert!(batch.due(later + ACK_BATCH_DELAY));
    batch.flush(later + ACK_BATCH_DELAY, &|peers| {
        delivered.borrow_mut().push(peers);
        Ok(())
    });
    assert_eq!(
        *delivered.borrow(),
        vec![peers(30)],
        "one message, each peer once"
    );
    assert!(!batch.due(later + ACK_BATCH_DELAY * 10), "nothing pending");
}
