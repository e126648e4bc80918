//! End to end over the kernel: two "nodes" (network namespaces on a shared underlay), a router
//! in each, a "pod" namespace attached to each node's bridge with `weft attach`, and TCP between
//! the pods over the VXLAN path the routers programmed (fastdp). Every namespace and process is
//! the test's own and is removed when the test ends, also on failure.

mod netlab;

use std::time::Duration;

use netlab::{Lab, WEFT, in_netns, tcp_works, wait_until};

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
            WEFT,
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
