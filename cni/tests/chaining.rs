//! The plugin with what surrounds it on a node: Debian's reference `portmap` chained after it
//! (a host port reaches the pod), Debian's `host-local` as delegated IPAM, and the router's
//! masquerading (a pod reaches a host outside the overlay under the node's address, and other
//! pods under its own).

mod common;

use common::*;
use serde_json::json;

/// The node's and the outside host's underlay addresses (RFC 5737 TEST-NET-1).
const NODE_IP: &str = "192.0.2.1";
const OUTSIDE_IP: &str = "192.0.2.2";

/// A node with a router, and an "outside" host on the node's underlay; the node forwards.
fn node_and_outside(lab: &mut Lab) -> (String, String) {
    let node = lab.single_node("node");
    let outside = lab.netns("outside");
    lab.link(&node, "192.0.2.1/24", &outside, "192.0.2.2/24");
    run(
        "ip",
        &[
            "netns",
            "exec",
            &node,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ],
    );
    (node, outside)
}

#[test]
fn portmap_chained_after_weave_net_maps_a_host_port_to_the_pod() {
    let portmap = format!("{REFERENCE_PLUGINS}/portmap");
    assert!(
        std::path::Path::new(&portmap).is_file(),
        "install containernetworking-plugins (Debian puts portmap in {REFERENCE_PLUGINS})"
    );
    let mut lab = Lab::new("portmap");
    let (node, outside) = node_and_outside(&mut lab);
    let pod = lab.netns("pod");
    let id = format!("pm{}", std::process::id());
    let path = netns_path(&pod);
    let env = pod_env(&id, &path);
    let ours = plugin(&node, "ADD", &env, &conf("1.0.0"));
    let pod_ip = ours.result()["ips"][0]["address"]
        .as_str()
        .and_then(|a| a.split('/').next())
        .expect("pod address")
        .to_string();

    // The conflist's second plugin, as the runtime runs it: same name and version, our result
    // as prevResult, the pod's port mappings as runtimeConfig.
    let portmap_conf = json!({
        "cniVersion": "1.0.0",
        "name": "weave",
        "type": "portmap",
        "capabilities": {"portMappings": true},
        "snat": true,
        "runtimeConfig": {"portMappings": [
            {"hostPort": 18080, "containerPort": 8080, "protocol": "tcp"}
        ]},
        "prevResult": ours.result(),
    });
    let chained = plugin_as(&portmap, &node, "ADD", &env, &portmap_conf);
    assert_eq!(
        chained.result()["ips"],
        ours.result()["ips"],
        "portmap passes our result on"
    );

    let seen = tcp_peer(&outside, &pod, 8080, NODE_IP, 18080);
    assert!(
        seen.is_some(),
        "the host port did not reach the pod at {pod_ip}"
    );

    assert!(plugin_as(&portmap, &node, "DEL", &env, &portmap_conf).ok);
    assert!(plugin(&node, "DEL", &env, &with_prev(conf("1.0.0"), ours.result())).ok);
    assert!(host_veths(&node).is_empty());
}

#[test]
fn pods_leave_the_overlay_masqueraded_and_meet_each_other_unmasqueraded() {
    let mut lab = Lab::new("egress");
    let (node, outside) = node_and_outside(&mut lab);
    // The outside host could route back to the pods: masquerading, not routing, decides what
    // source it sees.
    run(
        "ip",
        &[
            "-n",
            &outside,
            "route",
            "add",
            "10.32.0.0/12",
            "via",
            NODE_IP,
        ],
    );
    let pid = std::process::id();
    let mut pods = Vec::new();
    for i in 0..2 {
        let pod = lab.netns(&format!("pod{i}"));
        let id = format!("eg{i}x{pid}");
        let answer = plugin(
            &node,
            "ADD",
            &pod_env(&id, &netns_path(&pod)),
            &conf("1.0.0"),
        );
        let address = answer.result()["ips"][0]["address"]
            .as_str()
            .and_then(|a| a.split('/').next())
            .expect("address")
            .to_string();
        pods.push((pod, address));
    }
    let ((pod0, ip0), (pod1, ip1)) = (&pods[0], &pods[1]);

    assert_eq!(
        tcp_peer(pod0, &outside, 7100, OUTSIDE_IP, 7100).as_deref(),
        Some(NODE_IP),
        "leaving the overlay, the pod appears as the node"
    );
    assert_eq!(
        tcp_peer(pod0, pod1, 7101, ip1, 7101).as_deref(),
        Some(ip0.as_str()),
        "between pods, the pod's own address"
    );
    // Without our table the outside host sees the pod's address: the table is what did it.
    run(
        "ip",
        &[
            "netns", "exec", &node, "nft", "delete", "table", "ip", "weft",
        ],
    );
    assert_eq!(
        tcp_peer(pod0, &outside, 7102, OUTSIDE_IP, 7102).as_deref(),
        Some(ip0.as_str())
    );
}

#[test]
fn ipam_delegated_to_debians_host_local_is_used_checked_and_released() {
    let host_local = format!("{REFERENCE_PLUGINS}/host-local");
    assert!(
        std::path::Path::new(&host_local).is_file(),
        "install containernetworking-plugins"
    );
    let mut lab = Lab::new("delegate");
    let node = lab.single_node("node");
    let pod = lab.netns("pod");
    let id = format!("dl{}", std::process::id());
    let data_dir = lab.dir().join("host-local");
    let mut config = conf("1.0.0");
    config["ipam"] = json!({
        "type": "host-local",
        "ranges": [[{"subnet": "10.32.128.0/24"}]],
        "dataDir": data_dir,
    });
    let path = netns_path(&pod);
    let env = pod_env(&id, &path);
    let added = plugin(&node, "ADD", &env, &config);
    let result = added.result();
    let address = result["ips"][0]["address"].as_str().expect("address");
    assert!(
        address.starts_with("10.32.128."),
        "host-local's range: {result}"
    );
    assert_eq!(
        result["ips"][0]["gateway"], "10.32.128.1",
        "host-local's gateway"
    );
    let pod_addr = run("ip", &["-n", &pod, "-4", "-o", "addr", "show", "eth0"]);
    assert!(pod_addr.contains(address), "{pod_addr}");
    assert!(
        !owned_idents(&node).contains(&id),
        "the router was not asked"
    );
    let leases = || {
        std::fs::read_dir(data_dir.join("weave"))
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("10."))
                    .count()
            })
            .unwrap_or(0)
    };
    assert_eq!(leases(), 1, "host-local recorded the lease");

    let checked = with_prev(config.clone(), result);
    let check = plugin(&node, "CHECK", &env, &checked);
    assert!(check.ok, "CHECK, host-local's included: {check:?}");
    assert!(plugin(&node, "DEL", &env, &checked).ok);
    assert_eq!(leases(), 0, "host-local released it");
    assert!(host_veths(&node).is_empty());
}
