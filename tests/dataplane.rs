//! End to end over the kernel: two "nodes" (network namespaces on a shared underlay), a router
//! in each, a "pod" namespace attached to each node's bridge with `weft attach`, and TCP between
//! the pods over the VXLAN path the routers programmed (fastdp). Every namespace and process is
//! the test's own and is removed when the test ends, also on failure.

use weft_testkit::netlab;

use std::time::{Duration, Instant};

use netlab::{Lab, in_netns, nft, tcp_works, wait_until, weft};

/// A device's MAC address in a namespace, as `ip link` prints it.
fn mac_of(netns: &str, dev: &str) -> String {
    let output = in_netns(netns, "ip", &["link", "show", dev]);
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    text.split_whitespace()
        .skip_while(|word| *word != "link/ether")
        .nth(1)
        .unwrap_or_else(|| panic!("no MAC in {text}"))
        .to_string()
}

#[test]
fn pods_on_two_nodes_talk_over_fastdp() {
    let mut lab = Lab::new("dp");
    let node1 = lab.node(1);
    let node2 = lab.node(2);
    let (node_a, node_b) = (node1.ns.clone(), node2.ns.clone());
    lab.router(&node1, 0x0d, &["--ipalloc-init", "consensus=2"], &[]);
    lab.router(&node2, 0x0d, &["--ipalloc-init", "consensus=2"], &[&node1]);
    let status = |node: &str| {
        let output = in_netns(
            node,
            weft(),
            &["--http-addr", "127.0.0.1:6784", "status", "connections"],
        );
        String::from_utf8_lossy(&output.stdout).to_string()
    };
    assert!(
        wait_until(Duration::from_secs(30), || status(&node_a)
            .contains("established")),
        "the routers did not link up"
    );
    // Both ends show the link carried by fastdp, at the overlay MTU.
    assert!(
        wait_until(Duration::from_secs(10), || {
            [&node_a, &node_b].iter().all(|node| {
                status(node).contains("established fastdp") && status(node).contains("mtu=1450")
            })
        }),
        "connections: {} / {}",
        status(&node_a),
        status(&node_b)
    );
    let metrics = in_netns(&node_a, "curl", &["-sf", "127.0.0.1:6782/metrics"]);
    assert!(
        String::from_utf8_lossy(&metrics.stdout)
            .contains("weave_connections{state=\"established\",type=\"fastdp\",encryption=\"\"} 1"),
        "{metrics:?}"
    );
    // The bridge took the underlay MTU minus the VXLAN overhead.
    let link = in_netns(&node_a, "ip", &["-d", "link", "show", "weave"]);
    assert!(
        String::from_utf8_lossy(&link.stdout).contains("mtu 1450"),
        "{link:?}"
    );

    let pod_a = lab.pod(&node1, "pod-a", "10.32.0.2/12");
    let pod_b = lab.pod(&node2, "pod-b", "10.32.0.3/12");
    assert!(
        wait_until(Duration::from_secs(20), || tcp_works(
            &pod_a,
            &pod_b,
            "10.32.0.3",
            7101
        )),
        "pod A cannot reach pod B over the overlay"
    );
    assert!(tcp_works(&pod_b, &pod_a, "10.32.0.2", 7102), "and back");

    // MAC learning: node A learned pod B's MAC from the kernel's VXLAN learning (it shows in
    // the report's MAC table at node B), and the bridge now sends it to the VXLAN port.
    let pod_b_mac = mac_of(&pod_b, "eth0");
    let report = |node: &str| {
        let output = in_netns(node, "curl", &["-sf", "127.0.0.1:6784/report"]);
        String::from_utf8_lossy(&output.stdout).to_string()
    };
    let fdb = |node: &str| {
        let output = in_netns(node, "bridge", &["fdb", "show", "dev", "vxlan-6784"]);
        String::from_utf8_lossy(&output.stdout).to_string()
    };
    assert!(
        wait_until(Duration::from_secs(10), || report(&node_a).contains(
            &format!("\"Mac\":\"{pod_b_mac}\",\"Name\":\"00:00:00:00:0d:02\"")
        )),
        "pod B's MAC is not in node A's table: {}",
        report(&node_a)
    );
    // The report shows the switch's view of the link: fastdp, heartbeats acked.
    assert!(
        report(&node_a).contains("\"Overlay\":\"fastdp\",\"FastdpHealthy\":true"),
        "{}",
        report(&node_a)
    );
    let on_vxlan = format!("{pod_b_mac} master weave static");
    assert!(
        wait_until(Duration::from_secs(5), || fdb(&node_a).contains(&on_vxlan)),
        "{}",
        fdb(&node_a)
    );

    // Block fastdp (UDP 6784) into node B: both ends fall back to sleeve within seconds, and
    // return to fastdp once the rule goes.
    nft(
        &node_b,
        "table inet weft_test {\n chain input {\n type filter hook input priority 0\n \
         udp dport 6784 drop\n }\n}\n",
    );
    let blocked = Instant::now();
    let both = |overlay: &str| {
        let wanted = format!("established {overlay}");
        [&node_a, &node_b]
            .iter()
            .all(|node| status(node).contains(&wanted))
    };
    assert!(
        wait_until(Duration::from_secs(10), || both("sleeve")),
        "no fallback: {} / {}",
        status(&node_a),
        status(&node_b)
    );
    eprintln!(
        "both ends on sleeve {:?} after blocking UDP 6784",
        blocked.elapsed()
    );
    let metrics = in_netns(&node_a, "curl", &["-sf", "127.0.0.1:6782/metrics"]);
    let metrics = String::from_utf8_lossy(&metrics.stdout).to_string();
    assert!(
        metrics.contains("weft_overlay_fallbacks_total 1"),
        "{metrics}"
    );
    assert!(
        metrics
            .contains("weave_connections{state=\"established\",type=\"sleeve\",encryption=\"\"} 1"),
        "{metrics}"
    );
    // The kernel no longer sends pod B's MAC over VXLAN (no sleeve TAP in this test: it floods).
    assert!(
        wait_until(Duration::from_secs(2), || !fdb(&node_a).contains(&on_vxlan)),
        "{}",
        fdb(&node_a)
    );
    nft(&node_b, "delete table inet weft_test");
    let unblocked = Instant::now();
    assert!(
        wait_until(Duration::from_secs(10), || both("fastdp")),
        "no recovery: {} / {}",
        status(&node_a),
        status(&node_b)
    );
    eprintln!(
        "both ends on fastdp {:?} after unblocking",
        unblocked.elapsed()
    );
    assert!(
        wait_until(Duration::from_secs(10), || tcp_works(
            &pod_a,
            &pod_b,
            "10.32.0.3",
            7104
        )),
        "pods talk over fastdp again"
    );
    let logs = lab.logs();
    for line in [
        "overlay_switch ->[00:00:00:00:0d:02(node2)] using",
        "] using sleeve",
        "] using fastdp",
        &format!("Discovered remote MAC {pod_b_mac} at 00:00:00:00:0d:02("),
    ] {
        assert!(logs.contains(line), "{line:?} not logged");
    }

    // The bridge got its address from IPAM (weave:expose) once the two routers agreed.
    assert!(
        wait_until(Duration::from_secs(20), || {
            let addresses = in_netns(&node_b, "ip", &["-4", "addr", "show", "weave"]);
            String::from_utf8_lossy(&addresses.stdout).contains("inet 10.")
        }),
        "the bridge has no address from IPAM"
    );

    // The kernel carries the traffic: it keeps flowing while the router of node A is down (and
    // node B keeps its entry towards A, since links come back).
    lab.kill_router(0);
    // Long enough for node B to notice the dead link and reconcile its FDB more than once.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        tcp_works(&pod_a, &pod_b, "10.32.0.3", 7103),
        "traffic stops with the router"
    );
}
