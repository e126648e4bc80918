//! The sleeve engine against the real kernel: node namespaces joined by veth underlays, each with
//! a bridge, the sleeve TAP and a running [`SleeveEngine`] forwarding by a hand-built table (no
//! routers), and a pod namespace per node attached with `attach_pod`. Pods ping, move megabytes
//! over TCP (partial checksums and TSO super-frames included), talk across a relay, and count
//! broadcasts. Every namespace is unique per test and removed on drop, also after a failure.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::mpsc;

use crate::dataplane::attach::{AttachRequest, attach_pod};
use crate::dataplane::link::{LinkKind, LinkOps, MacAddr};
use crate::dataplane::mac_table::{Location, MacTable};
use crate::dataplane::netlink::NetlinkLinkOps;
use crate::dataplane::node::reset_node;
use crate::dataplane::sleeve::{
    DropCause, EngineQueue, ForwardingTable, Neighbour, QueueSockets, SleeveEngine, SleeveEvent,
    SleeveKeys, ensure_sleeve_tap, sleeve_tap_name,
};
use crate::dataplane::testns::TestNs;
use crate::topology::{PeerName, Routes};
use crate::wire::sleeve::datagram_payload_limit;
use crate::wire::sleeve::seal::{Direction, SealingKey, SleeveKey};
use crate::wire::sleeve::{Control, encode_control_datagram};

const MESH_PORT: u16 = 6783;
const BRIDGE: &str = "weave";
/// The bridge MTU: fastdp's 1450 on a 1500-byte underlay, above sleeve's 1437, so full-size
/// frames take the ICMP or fragment paths as they do after a fallback from fastdp.
const BRIDGE_MTU: u32 = 1450;
const UNDERLAY_MTU: u32 = 1500;

/// One node: its namespace, its pod's namespace, the engine and what it reported.
struct Node {
    // Fields drop in order: the engine stops before its namespaces go.
    engine: Option<SleeveEngine>,
    events: mpsc::Receiver<SleeveEvent>,
    table: Arc<ArcSwap<ForwardingTable>>,
    name: PeerName,
    pod_ip: Ipv4Addr,
    pod_mac: MacAddr,
    pod: TestNs,
    ns: TestNs,
}

fn peer(index: u8) -> PeerName {
    PeerName::from_bytes([0x02, 0x5e, 0, 0, 0, index])
}

fn run(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn must(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A veth pair between two node namespaces, addressed `a_ip`/`b_ip` in a /24.
fn underlay(a: &Node, a_ip: &str, b: &Node, b_ip: &str, tag: &str) {
    let (a_if, b_if) = (format!("ul-{tag}-a"), format!("ul-{tag}-b"));
    must(&[
        "ip",
        "link",
        "add",
        &a_if,
        "netns",
        a.ns.name(),
        "mtu",
        "1500",
        "type",
        "veth",
        "peer",
        "name",
        &b_if,
        "netns",
        b.ns.name(),
        "mtu",
        "1500",
    ]);
    for (node, ifname, ip) in [(a, &a_if, a_ip), (b, &b_if, b_ip)] {
        node.ns
            .ip(&["addr", "add", &format!("{ip}/24"), "dev", ifname]);
        node.ns.ip(&["link", "set", ifname, "up"]);
    }
}

/// Queues each test node's TAP has: more than one, as on any router with two CPUs or more, so
/// every test crosses flows spread over queues, sockets and threads.
const QUEUES: usize = 2;

/// Makes a node: bridge, TAP, sockets, a pod at `pod_ip`, an engine with a lone table.
fn node(tag: &str, index: u8, pod_ip: Ipv4Addr) -> Node {
    node_with_keys(tag, index, pod_ip, None)
}

/// [`node`] with a mesh password: the engine seals and opens with `keys`.
fn node_with_keys(tag: &str, index: u8, pod_ip: Ipv4Addr, keys: Option<Arc<SleeveKeys>>) -> Node {
    let ns = TestNs::new(&format!("sl{tag}{index}"));
    let pod = TestNs::new(&format!("sl{tag}{index}p"));
    ns.ip(&["link", "set", "lo", "up"]);
    let name = peer(index);
    let pod_path = pod.path();
    let (taps, sockets, pod_mac) = ns.run(move || async move {
        let ops = NetlinkLinkOps::new().unwrap();
        ops.ensure_bridge(BRIDGE, MacAddr(name.to_bytes()), BRIDGE_MTU)
            .await
            .unwrap();
        let (taps, link) = ensure_sleeve_tap(&ops, BRIDGE, &sleeve_tap_name(MESH_PORT), QUEUES)
            .await
            .unwrap();
        assert_eq!(link.mtu, BRIDGE_MTU);
        assert!(link.up);
        let sockets =
            QueueSockets::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, MESH_PORT), QUEUES)
                .unwrap();
        let mut request = AttachRequest::new(pod_path);
        request.address = Some((pod_ip, 24));
        request.bridge = BRIDGE.to_string();
        let attachment = attach_pod(&ops, &request).await.unwrap();
        (taps, sockets, attachment.pod.mac.unwrap())
    });
    let queues = taps
        .into_iter()
        .zip(sockets)
        .map(|(tap, sockets)| EngineQueue { tap, sockets })
        .collect();
    let table = Arc::new(ArcSwap::from_pointee(ForwardingTable::alone(name)));
    let (sender, events) = mpsc::channel(1024);
    let engine = SleeveEngine::start(queues, Arc::clone(&table), sender, keys).unwrap();
    Node {
        engine: Some(engine),
        events,
        table,
        name,
        pod_ip,
        pod_mac,
        pod,
        ns,
    }
}

/// Publishes a table for `node` whose one neighbour is `peer`, at `peer_ip` on the underlay,
/// reached directly, and where every pod MAC is.
fn publish_direct(node: &Node, peer: PeerName, peer_ip: &str, pods: &[(MacAddr, PeerName)]) {
    publish(node, &[(peer, peer_ip)], &[(node.name, peer)], pods);
}

/// Publishes a table for `node`: `neighbours` by (peer, underlay address), the routes the
/// gossip would compute over the mesh's `links`, and where every pod MAC is.
fn publish(
    node: &Node,
    neighbours: &[(PeerName, &str)],
    links: &[(PeerName, PeerName)],
    pods: &[(MacAddr, PeerName)],
) {
    let mut table = ForwardingTable::alone(node.name);
    for &(peer, ip) in neighbours {
        table.neighbours.insert(
            peer,
            Neighbour {
                udp_addr: SocketAddr::from((ip.parse::<Ipv4Addr>().unwrap(), MESH_PORT)),
                payload_limit: datagram_payload_limit(UNDERLAY_MTU),
                fastdp: false,
                draining: false,
            },
        );
    }
    let routes = Routes::from_links(node.name, links);
    table.next_hops = routes.unicast.into_iter().collect();
    table.broadcast = routes.broadcast;
    let mut macs = MacTable::new();
    for &(mac, at) in pods {
        let location = if at == node.name {
            Location::Local
        } else {
            Location::Remote(at)
        };
        macs.observe(mac, location, Instant::now());
    }
    table.macs = macs.snapshot();
    node.table.store(Arc::new(table));
}

/// Pings `to` from `from`'s pod with `size` bytes of payload and `-M pmtudisc` (do: DF set,
/// dont: DF clear) until one answers (ARP first), at most ~10 s.
fn ping(from: &Node, to: Ipv4Addr, size: &str, pmtudisc: &str) {
    let target = to.to_string();
    let args = pod_ping(from, &target, "2", size, pmtudisc);
    for _ in 0..5 {
        if run(&args).status.success() {
            return;
        }
    }
    must(&args);
}

/// The command that pings `target` from `from`'s pod: `count` echoes of `size` bytes, 1 s each,
/// with `-M pmtudisc`.
fn pod_ping<'a>(
    from: &'a Node,
    target: &'a str,
    count: &'a str,
    size: &'a str,
    pmtudisc: &'a str,
) -> [&'a str; 14] {
    [
        "ip",
        "netns",
        "exec",
        from.pod.name(),
        "/usr/bin/ping",
        "-c",
        count,
        "-W",
        "1",
        "-s",
        size,
        "-M",
        pmtudisc,
        target,
    ]
}

const TCP_SERVER: &str = "import socket,hashlib,sys
s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)
s.bind(('0.0.0.0',int(sys.argv[1])));s.listen(1);s.settimeout(30)
c,_=s.accept();c.settimeout(30);h=hashlib.sha256();n=0
while True:
    b=c.recv(1<<20)
    if not b: break
    h.update(b);n+=len(b)
print(n,h.hexdigest())\n";

const TCP_CLIENT: &str = "import socket,hashlib,sys,time
data=bytes((i*7+i//251)&255 for i in range(int(sys.argv[3])))
for _ in range(50):
    try:
        c=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=30);break
    except OSError: time.sleep(0.1)
c.sendall(data);c.close();print(len(data),hashlib.sha256(data).hexdigest())\n";

/// A ping of `size` bytes with DF from `from`'s pod to `to`'s fails, and the pod has learnt
/// `mtu` for the path from the ICMP "fragmentation needed" the sleeve answered.
fn ping_too_big_teaches_mtu(from: &Node, to: &Node, size: &str, mtu: u32) {
    let target = to.pod_ip.to_string();
    let too_big = run(&pod_ping(from, &target, "1", size, "do"));
    assert!(!too_big.status.success());
    let route = from.pod.ip(&["route", "get", &to.pod_ip.to_string()]);
    assert!(route.contains(&format!("mtu {mtu}")), "{route}");
}

/// Sends `bytes` over TCP from `from`'s pod to `to`'s pod; both ends must agree on length and
/// SHA-256.
fn tcp_transfer(from: &Node, to: &Node, bytes: usize) {
    let server = Command::new("ip")
        .args([
            "netns",
            "exec",
            to.pod.name(),
            "timeout",
            "60",
            "python3",
            "-c",
            TCP_SERVER,
            "5001",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let sent = must(&[
        "ip",
        "netns",
        "exec",
        from.pod.name(),
        "timeout",
        "60",
        "python3",
        "-c",
        TCP_CLIENT,
        &to.pod_ip.to_string(),
        "5001",
        &bytes.to_string(),
    ]);
    let received = server.wait_with_output().unwrap();
    assert!(
        received.status.success(),
        "server: {}",
        String::from_utf8_lossy(&received.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&received.stdout), sent);
    assert!(sent.starts_with(&format!("{bytes} ")), "{sent}");
}

/// The MACs an engine reported as seen, draining its events.
fn reported(node: &mut Node) -> Vec<(MacAddr, Location)> {
    let mut seen = Vec::new();
    while let Ok(event) = node.events.try_recv() {
        if let SleeveEvent::MacsSeen(macs) = event {
            seen.extend(macs);
        }
    }
    seen
}

#[test]
fn two_nodes_ping_and_move_megabytes_over_tcp() {
    let mut a = node("pair", 1, Ipv4Addr::new(10, 32, 0, 1));
    let mut b = node("pair", 2, Ipv4Addr::new(10, 32, 0, 2));
    underlay(&a, "192.168.77.1", &b, "192.168.77.2", "pr");
    let pods = [(a.pod_mac, a.name), (b.pod_mac, b.name)];
    publish_direct(&a, b.name, "192.168.77.2", &pods);
    publish_direct(&b, a.name, "192.168.77.1", &pods);
    ping(&a, b.pod_ip, "56", "do");
    ping(&b, a.pod_ip, "56", "do");
    // 1400 bytes of ICMP payload: a 1428-byte packet, within sleeve's 1437.
    ping(&a, b.pod_ip, "1400", "do");
    // A full-size 1450-byte packet without DF crosses as fragments (both ways: the reply too).
    ping(&a, b.pod_ip, "1422", "dont");
    let fragmented = a.engine.as_ref().unwrap().stats().snapshot().fragmented;
    assert!(fragmented >= 1, "{fragmented}");
    // With DF, the pod is told the path's MTU (ICMP fragmentation needed) and remembers it.
    ping_too_big_teaches_mtu(&a, &b, "1422", 1437);
    assert!(
        a.engine
            .as_ref()
            .unwrap()
            .stats()
            .snapshot()
            .frag_needed_sent
            >= 1
    );
    tcp_transfer(&a, &b, 8 << 20);
    tcp_transfer(&b, &a, 3 << 20);

    let stats_a = a.engine.as_ref().unwrap().stats().snapshot();
    let stats_b = b.engine.as_ref().unwrap().stats().snapshot();
    assert!(stats_a.tap_bytes_in > 8 << 20, "{stats_a:?}");
    assert!(stats_b.tap_bytes_out > 8 << 20, "{stats_b:?}");
    // TSO handed over super-frames, which crossed as fragment trains.
    assert!(
        stats_a.fragmented > 0 && stats_b.reassembled > 0,
        "{stats_a:?} {stats_b:?}"
    );
    let seen_b = reported(&mut b);
    assert!(
        seen_b.contains(&(a.pod_mac, Location::Remote(a.name))),
        "{seen_b:?}"
    );
    assert!(seen_b.contains(&(b.pod_mac, Location::Local)), "{seen_b:?}");

    // The TAP is an isolated bridge port that does not learn (the router programs the FDB).
    let port = must(&[
        "bridge",
        "-n",
        a.ns.name(),
        "-d",
        "link",
        "show",
        "dev",
        &sleeve_tap_name(MESH_PORT),
    ]);
    assert!(
        port.contains("learning off") && port.contains("isolated on"),
        "{port}"
    );

    // Stopping is prompt and the TAP persists for the next router to adopt; reset removes it.
    let started = Instant::now();
    a.engine.take().unwrap().stop();
    assert!(started.elapsed() < Duration::from_secs(2));
    a.ns.run(|| async {
        let ops = NetlinkLinkOps::new().unwrap();
        let tap = ops
            .link(&sleeve_tap_name(MESH_PORT))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(tap.kind, Some(LinkKind::Tun));
        let (_again, link) = ensure_sleeve_tap(&ops, BRIDGE, &sleeve_tap_name(MESH_PORT), 1)
            .await
            .unwrap();
        assert_eq!(link.index, tap.index, "adopted, not recreated");
        drop(_again);
        let removed = reset_node(&ops, BRIDGE, "vxlan-6784").await.unwrap();
        assert!(removed.contains(&sleeve_tap_name(MESH_PORT)), "{removed:?}");
        assert!(
            ops.link(&sleeve_tap_name(MESH_PORT))
                .await
                .unwrap()
                .is_none()
        );
    });
}

const UDP_COUNTER: &str = "import socket,sys,time
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);s.bind(('',int(sys.argv[1])))
s.settimeout(0.2);n=0;end=time.time()+float(sys.argv[2])
while time.time()<end:
    try:
        if s.recv(100)==b'weft-broadcast': n+=1
    except socket.timeout: pass
print(n)\n";

const UDP_BROADCASTER: &str = "import socket,sys,time
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET,socket.SO_BROADCAST,1)
for _ in range(int(sys.argv[2])):
    s.sendto(b'weft-broadcast',(sys.argv[1],5002));time.sleep(0.05)\n";

#[test]
fn a_chain_relays_unicast_and_delivers_each_broadcast_once() {
    let a = node("chain", 1, Ipv4Addr::new(10, 32, 0, 1));
    let b = node("chain", 2, Ipv4Addr::new(10, 32, 0, 2));
    let c = node("chain", 3, Ipv4Addr::new(10, 32, 0, 3));
    // A and C share no underlay at all: everything between them crosses B.
    underlay(&a, "192.168.78.1", &b, "192.168.78.2", "ab");
    underlay(&b, "192.168.79.2", &c, "192.168.79.3", "bc");
    let pods = [
        (a.pod_mac, a.name),
        (b.pod_mac, b.name),
        (c.pod_mac, c.name),
    ];
    let chain = [(a.name, b.name), (b.name, c.name)];
    publish(&a, &[(b.name, "192.168.78.2")], &chain, &pods);
    publish(
        &b,
        &[(a.name, "192.168.78.1"), (c.name, "192.168.79.3")],
        &chain,
        &pods,
    );
    publish(&c, &[(b.name, "192.168.79.2")], &chain, &pods);
    ping(&a, c.pod_ip, "56", "do");
    ping(&c, a.pod_ip, "56", "do");
    tcp_transfer(&a, &c, 2 << 20);
    let relay = b.engine.as_ref().unwrap().stats().snapshot();
    assert!(relay.relayed > 100, "B relayed the transfer: {relay:?}");

    // Five UDP broadcasts from A's pod: B's and C's pods each count exactly five (a duplicate
    // along the tree would make ten, a gap fewer), and A's own pod none from the overlay.
    let counters: Vec<_> = [&b, &c]
        .iter()
        .map(|node| {
            Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    node.pod.name(),
                    "python3",
                    "-c",
                    UDP_COUNTER,
                    "5002",
                    "3",
                ])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(700));
    must(&[
        "ip",
        "netns",
        "exec",
        a.pod.name(),
        "python3",
        "-c",
        UDP_BROADCASTER,
        "10.32.0.255",
        "5",
    ]);
    for counter in counters {
        let out = counter.wait_with_output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "5");
    }
}

#[test]
fn a_deleted_tap_ends_the_tx_thread_with_an_event() {
    let mut lone = node("gone", 1, Ipv4Addr::new(10, 32, 0, 1));
    lone.ns.ip(&["link", "del", &sleeve_tap_name(MESH_PORT)]);
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut failed = None;
    while failed.is_none() && Instant::now() < deadline {
        match lone.events.try_recv() {
            Ok(SleeveEvent::Failed { thread, error }) => failed = Some((thread, error)),
            Ok(_) => {}
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    let (thread, error) = failed.expect("no Failed event within 3 s");
    assert!(thread.starts_with("sleeve-tx-"), "{thread}");
    assert!(error.contains("sleeve-6783"), "{error}");
    // The other thread still stops promptly.
    let started = Instant::now();
    lone.engine.take().unwrap().stop();
    assert!(started.elapsed() < Duration::from_secs(2));
}

mod sealed;
