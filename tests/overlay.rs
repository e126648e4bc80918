//! The overlays end to end, on namespaced nodes with real routers: on three nodes with two pods
//! each, every link on fastdp, every pod opens TCP to every other pod; fastdp falls back to
//! sleeve when VXLAN's port is blocked and comes back when it opens, without breaking a pod's TCP
//! connection; pods on nodes that cannot link directly talk through a relay; a broadcast reaches
//! every pod exactly once; a link shows `established` only once an overlay carries pod frames, so
//! a pod that pings at once is answered.

use weft_testkit::netlab;

use std::time::Duration;

use netlab::{Lab, Node, Stream, in_netns, links_using, nft, tcp_all_pairs, tcp_works, wait_until};

/// Pods get addresses in 10.33.0.0/16 inside the overlay's /12, the routers allocate (the
/// bridges' addresses) from 10.32.0.0/16: the two never collide. Every router waits for all the
/// test's routers before the allocator starts: a router that started alone (the first one knows
/// no peers) would seed a ring of its own, and the others would refuse it as a split brain.
const TWO_ROUTERS: &[&str] = &[
    "--ipalloc-range",
    "10.32.0.0/16",
    "--ipalloc-init",
    "consensus=2",
];
const THREE_ROUTERS: &[&str] = &[
    "--ipalloc-range",
    "10.32.0.0/16",
    "--ipalloc-init",
    "consensus=3",
];

#[test]
fn fastdp_falls_back_to_sleeve_when_its_port_is_blocked_and_comes_back() {
    let mut lab = Lab::new("fallback");
    let node1 = lab.node(1);
    let node2 = lab.node(2);
    lab.router(&node1, 0xf1, TWO_ROUTERS, &[]);
    lab.router(&node2, 0xf1, TWO_ROUTERS, &[&node1]);
    let pod1 = lab.pod(&node1, "pod1", "10.33.0.1/12");
    let pod2 = lab.pod(&node2, "pod2", "10.33.0.2/12");
    assert!(
        wait_until(Duration::from_secs(30), || links_using(&node1, "fastdp")
            == 1
            && links_using(&node2, "fastdp") == 1),
        "no fastdp link: {} / {}",
        netlab::connections(&node1),
        netlab::connections(&node2)
    );
    assert!(
        wait_until(Duration::from_secs(20), || tcp_works(
            &pod1,
            &pod2,
            "10.33.0.2",
            7201
        )),
        "pods cannot talk over fastdp"
    );

    let stream = Stream::start(&pod1, &pod2, "10.33.0.2", 7202, 25);
    std::thread::sleep(Duration::from_secs(2));
    // VXLAN's port closed in node 1, both ways: the heartbeats stop, the switch moves to sleeve.
    nft(
        &node1.ns,
        "table inet weft_test_block {\n\
         chain input { type filter hook input priority 0; udp dport 6784 drop; }\n\
         chain output { type filter hook output priority 0; udp dport 6784 drop; }\n}\n",
    );
    assert!(
        wait_until(Duration::from_secs(15), || links_using(&node1, "sleeve")
            == 1
            && links_using(&node2, "sleeve") == 1),
        "no fall-back to sleeve: {} / {}",
        netlab::connections(&node1),
        netlab::connections(&node2)
    );
    assert!(
        tcp_works(&pod2, &pod1, "10.33.0.1", 7203),
        "a new connection over sleeve"
    );
    // On sleeve the link shows the path MTU its probes verified: 1500 - 63 bytes of sleeve.
    assert!(
        netlab::connections(&node1).contains("established sleeve")
            && netlab::connections(&node1).contains("mtu=1437"),
        "{}",
        netlab::connections(&node1)
    );
    nft(&node1.ns, "delete table inet weft_test_block\n");
    assert!(
        wait_until(Duration::from_secs(15), || links_using(&node1, "fastdp")
            == 1
            && links_using(&node2, "fastdp") == 1),
        "no return to fastdp: {} / {}",
        netlab::connections(&node1),
        netlab::connections(&node2)
    );
    let (sent, received) = stream.finish().expect("the TCP connection broke");
    assert!(
        sent > 0 && sent == received,
        "sent {sent}, received {received}"
    );
    for node in [&node1, &node2] {
        let log = lab.log(node);
        assert!(
            log.contains("overlay_switch ->[") && log.contains("using sleeve"),
            "{log}"
        );
        assert!(log.contains("using fastdp"), "{log}");
        assert!(
            log.contains("|00:00:00:00:f1:0") && log.contains("]: Effective MTU verified at 1437"),
            "{log}"
        );
    }
}

/// A, B, C on one underlay, but A and C cannot reach each other at all (a firewall in A).
fn partial_mesh(lab: &mut Lab, name_byte: u8) -> (Node, Node, Node) {
    let a = lab.node(1);
    let b = lab.node(2);
    let c = lab.node(3);
    nft(
        &a.ns,
        &format!(
            "table inet weft_test_partition {{\n\
             chain input {{ type filter hook input priority 0; ip saddr {c} drop; }}\n\
             chain output {{ type filter hook output priority 0; ip daddr {c} drop; }}\n}}\n",
            c = c.ip
        ),
    );
    lab.router(&a, name_byte, THREE_ROUTERS, &[]);
    lab.router(&b, name_byte, THREE_ROUTERS, &[&a]);
    lab.router(&c, name_byte, THREE_ROUTERS, &[&b]);
    assert!(
        wait_until(Duration::from_secs(30), || {
            netlab::connections(&b)
                .lines()
                .filter(|line| line.contains("established"))
                .count()
                == 2
        }),
        "B did not link with A and C: {}",
        netlab::connections(&b)
    );
    (a, b, c)
}

#[test]
fn pods_on_nodes_without_a_direct_link_talk_through_a_relay() {
    let mut lab = Lab::new("relay");
    let (a, _b, c) = partial_mesh(&mut lab, 0xf2);
    let pod_a = lab.pod(&a, "poda", "10.33.0.1/12");
    let pod_c = lab.pod(&c, "podc", "10.33.0.3/12");
    let direct = netlab::connections(&a)
        .lines()
        .any(|line| line.contains(&c.ip) && line.contains("established"));
    assert!(!direct, "A must not link with C directly");
    assert!(
        wait_until(Duration::from_secs(30), || tcp_works(
            &pod_a,
            &pod_c,
            "10.33.0.3",
            7301
        )),
        "pod A cannot reach pod C through B"
    );
    assert!(tcp_works(&pod_c, &pod_a, "10.33.0.1", 7302), "and back");
    let stream = Stream::start(&pod_a, &pod_c, "10.33.0.3", 7303, 3);
    let (sent, received) = stream.finish().expect("the relayed TCP connection broke");
    assert!(
        sent > 0 && sent == received,
        "sent {sent}, received {received}"
    );
}

/// Counts the UDP broadcasts each listening pod receives while `sender` sends one.
fn broadcast_counts(sender: &str, listeners: &[String], port: u16) -> Vec<String> {
    let listen = format!(
        "import socket,time\n\
         s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
         s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
         s.bind(('',{port}));s.settimeout(0.2);n=0;end=time.time()+4\n\
         while time.time()<end:\n\
         \x20 try:\n\
         \x20   d,_=s.recvfrom(100)\n\
         \x20   n+=d==b'weft-broadcast'\n\
         \x20 except socket.timeout: pass\n\
         print(n)\n"
    );
    let children: Vec<_> = listeners
        .iter()
        .map(|pod| {
            std::process::Command::new("ip")
                .args(["netns", "exec", pod, "python3", "-c", &listen])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(800));
    let send = format!(
        "import socket\n\
         s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
         s.setsockopt(socket.SOL_SOCKET,socket.SO_BROADCAST,1)\n\
         s.setsockopt(socket.SOL_SOCKET,socket.SO_BINDTODEVICE,b'eth0')\n\
         s.sendto(b'weft-broadcast',('255.255.255.255',{port}))\n"
    );
    let output = in_netns(sender, "python3", &["-c", &send]);
    assert!(output.status.success(), "send a broadcast: {output:?}");
    children
        .into_iter()
        .map(|child| {
            let output = child.wait_with_output().unwrap();
            String::from_utf8_lossy(&output.stdout).trim().to_string()
        })
        .collect()
}

#[test]
fn every_pod_reaches_every_pod_and_a_broadcast_reaches_each_exactly_once() {
    let mut lab = Lab::new("bcast");
    // Full mesh: the kernel floods to every node, sleeve must add no copies.
    let nodes: Vec<Node> = (1..=3).map(|i| lab.node(i)).collect();
    lab.router(&nodes[0], 0xf3, THREE_ROUTERS, &[]);
    lab.router(&nodes[1], 0xf3, THREE_ROUTERS, &[&nodes[0]]);
    lab.router(&nodes[2], 0xf3, THREE_ROUTERS, &[&nodes[0]]);
    let mut pods = Vec::new();
    let mut addressed = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        for j in 1..=2 {
            let address = format!("10.33.{i}.{j}");
            let pod = lab.pod(node, &format!("pod{i}{j}"), &format!("{address}/12"));
            addressed.push((pod.clone(), address));
            pods.push(pod);
        }
    }
    assert!(
        wait_until(Duration::from_secs(30), || nodes
            .iter()
            .all(|node| links_using(node, "fastdp") == 2)),
        "the mesh is not all fastdp"
    );
    // Every pod reaches every other pod, on its node and across nodes.
    let failed = tcp_all_pairs(&addressed, 7400);
    assert!(failed.is_empty(), "no TCP between {failed:?}");
    let counts = broadcast_counts(&pods[0], &pods[1..], 7401);
    assert_eq!(counts, vec!["1"; 5], "copies per pod (full mesh, fastdp)");

    // The same over a partial mesh, where sleeve relays what the kernel cannot.
    let mut lab = Lab::new("bcastpart");
    let (a, b, c) = partial_mesh(&mut lab, 0xf4);
    let sender = lab.pod(&a, "sender", "10.33.1.1/12");
    let listeners = vec![
        lab.pod(&a, "la", "10.33.1.2/12"),
        lab.pod(&b, "lb", "10.33.1.3/12"),
        lab.pod(&c, "lc", "10.33.1.4/12"),
    ];
    std::thread::sleep(Duration::from_secs(3));
    let counts = broadcast_counts(&sender, &listeners, 7402);
    assert_eq!(counts, vec!["1"; 3], "copies per pod (partial mesh)");
}

#[test]
fn with_no_fastdp_pods_talk_over_sleeve_and_a_deleted_tap_is_rebuilt() {
    let mut lab = Lab::new("sleeveonly");
    let node1 = lab.node(1);
    let node2 = lab.node(2);
    let sleeve_only: Vec<&str> = TWO_ROUTERS.iter().copied().chain(["--no-fastdp"]).collect();
    // Node 1's TAP has two queues, node 2's one: a peer's queue count is its own business, and
    // the rebuild below must bring back every queue.
    let two_queues: Vec<&str> = sleeve_only
        .iter()
        .copied()
        .chain(["--sleeve-queues", "2"])
        .collect();
    lab.router(&node1, 0xf5, &two_queues, &[]);
    lab.router(&node2, 0xf5, &sleeve_only, &[&node1]);
    let pod1 = lab.pod(&node1, "pod1", "10.33.0.1/12");
    let pod2 = lab.pod(&node2, "pod2", "10.33.0.2/12");
    assert!(
        wait_until(Duration::from_secs(30), || links_using(&node1, "sleeve")
            == 1
            && links_using(&node2, "sleeve") == 1),
        "no sleeve link: {}",
        netlab::connections(&node1)
    );
    assert!(
        wait_until(Duration::from_secs(20), || tcp_works(
            &pod1,
            &pod2,
            "10.33.0.2",
            7501
        )),
        "pods cannot talk over sleeve"
    );
    let stream = Stream::start(&pod1, &pod2, "10.33.0.2", 7502, 3);
    let (sent, received) = stream
        .finish()
        .expect("the TCP connection over sleeve broke");
    assert!(
        sent > 0 && sent == received,
        "sent {sent}, received {received}"
    );
    let vxlan_tx = |node: &Node| {
        let output = in_netns(
            &node.ns,
            "cat",
            &["/sys/class/net/vxlan-6784/statistics/tx_packets"],
        );
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse::<u64>()
            .unwrap_or(0)
    };
    assert_eq!(
        vxlan_tx(&node1),
        0,
        "with --no-fastdp nothing goes by VXLAN"
    );

    // Someone deletes the TAP under the running router: the sleeve comes back on a new one.
    netlab::ip(&["-n", &node1.ns, "link", "del", "sleeve-6783"]);
    assert!(
        wait_until(Duration::from_secs(20), || tcp_works(
            &pod2,
            &pod1,
            "10.33.0.1",
            7503
        )),
        "pods did not talk again after the TAP was deleted"
    );
    let log = lab.log(&node1);
    assert!(
        log.contains("restarting the sleeve") && log.contains("sleeve: restarted on sleeve-6783"),
        "{log}"
    );
    let tap = in_netns(&node1.ns, "ip", &["-d", "link", "show", "sleeve-6783"]);
    let tap = String::from_utf8_lossy(&tap.stdout);
    assert!(tap.contains("multi_queue numqueues 2"), "{tap}");
}

/// The `established` lines of a node's `weave status connections`.
fn established_links(node: &Node) -> usize {
    netlab::connections(node)
        .lines()
        .filter(|line| line.contains("established"))
        .count()
}

/// A link once said `established` before any overlay carried traffic, and a pod that pinged at
/// once lost its first ping in 2 runs of 3. Now `established` means an overlay
/// proved the path (the sleeve acked and routing to the peer, or the kernel flooding to it on
/// fastdp): a fresh three-node cluster, two pods attached and one ping at once, 20 times in a
/// row, none lost.
#[test]
fn the_first_ping_after_every_link_is_established_arrives_20_times_in_a_row() {
    for run in 1..=20 {
        let mut lab = Lab::new("firstping");
        let nodes: Vec<Node> = (1..=3).map(|i| lab.node(i)).collect();
        lab.router(&nodes[0], 0xf6, THREE_ROUTERS, &[]);
        lab.router(&nodes[1], 0xf6, THREE_ROUTERS, &[&nodes[0]]);
        lab.router(&nodes[2], 0xf6, THREE_ROUTERS, &[&nodes[0], &nodes[1]]);
        assert!(
            wait_until(Duration::from_secs(30), || nodes
                .iter()
                .all(|node| established_links(node) == 2)),
            "run {run}: not every link established: {}",
            nodes.iter().map(netlab::connections).collect::<String>()
        );
        let pod1 = lab.pod(&nodes[0], "pod1", "10.33.0.1/12");
        let _pod2 = lab.pod(&nodes[1], "pod2", "10.33.0.2/12");
        let ping = in_netns(&pod1, "ping", &["-c", "1", "-W", "2", "10.33.0.2"]);
        assert!(
            ping.status.success(),
            "run {run}: the first ping was lost: {}{}\n{}",
            String::from_utf8_lossy(&ping.stdout),
            String::from_utf8_lossy(&ping.stderr),
            nodes.iter().map(netlab::connections).collect::<String>()
        );
    }
}

/// The switch from sleeve to fastdp under a pod's traffic: pings every 10 ms from the moment the
/// link is established until well after it moved to fastdp, none lost. (At every 100 ms a ping
/// lost at the switch showed once in many runs; at every 10 ms, once in four before the fix.)
#[test]
fn pings_from_the_first_moment_cross_the_switch_to_fastdp_without_loss() {
    let mut lab = Lab::new("switchping");
    let node1 = lab.node(1);
    let node2 = lab.node(2);
    lab.router(&node1, 0xf7, TWO_ROUTERS, &[]);
    lab.router(&node2, 0xf7, TWO_ROUTERS, &[&node1]);
    assert!(
        wait_until(Duration::from_secs(30), || established_links(&node1) == 1
            && established_links(&node2) == 1),
        "the link is not established: {} / {}",
        netlab::connections(&node1),
        netlab::connections(&node2)
    );
    let pod1 = lab.pod(&node1, "pod1", "10.33.0.1/12");
    let _pod2 = lab.pod(&node2, "pod2", "10.33.0.2/12");
    let before = netlab::connections(&node1);
    // 8 s at 100 pings a second (root may ping that fast): the switch moves the peer to fastdp
    // after 3 heartbeat acks, about 3 s after the link.
    let ping = in_netns(
        &pod1,
        "ping",
        &["-c", "800", "-i", "0.01", "-W", "2", "10.33.0.2"],
    );
    let after = netlab::connections(&node1);
    assert!(
        before.contains("established sleeve") && after.contains("established fastdp"),
        "the pings did not span the switch: {before} / {after}"
    );
    let summary = String::from_utf8_lossy(&ping.stdout);
    assert!(
        ping.status.success() && summary.contains(" 0% packet loss"),
        "{summary}"
    );
}
