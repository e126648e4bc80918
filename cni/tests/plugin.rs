//! The plugin as a runtime drives it, in network namespaces with real routers: ADD's result for
//! every supported version and pods reaching each other across nodes, idempotent ADD, CHECK
//! passing and then failing precisely, DEL twice, GC, and the error codes of bad config, bad
//! environment and a router that is down, each leaving nothing behind.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const VERSIONS: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// The bridge's address in `node` (the pods' gateway).
fn bridge_address(node: &str) -> String {
    let text = run(
        "ip",
        &["-n", node, "-4", "-o", "addr", "show", "dev", "weave"],
    );
    let cidr = text
        .split_whitespace()
        .skip_while(|word| *word != "inet")
        .nth(1)
        .unwrap_or_else(|| panic!("no address on the bridge: {text}"));
    cidr.split('/').next().unwrap_or_default().to_string()
}

/// Checks one ADD result's shape for `version`, returning the pod's address (without prefix).
fn check_shape(result: &Value, version: &str, id: &str, pod: &str, gateway: &str) -> String {
    assert_eq!(result["cniVersion"], version, "{result}");
    let interfaces = result["interfaces"].as_array().expect("interfaces");
    assert_eq!(interfaces.len(), 2, "{result}");
    let host = interfaces[0]["name"].as_str().expect("host veth name");
    assert!(
        host.starts_with("vethwepl") && host.len() == 15,
        "{id}: {host}"
    );
    assert!(
        interfaces[0].get("sandbox").is_none(),
        "host side has no sandbox"
    );
    assert_eq!(interfaces[1]["name"], "eth0");
    assert_eq!(interfaces[1]["sandbox"], netns_path(pod));
    let mac = interfaces[1]["mac"].as_str().expect("pod MAC");
    assert_eq!(mac.len(), 17, "{mac}");
    assert_eq!(
        interfaces[1].get("mtu").is_some(),
        version == "1.1.0",
        "MTU only from 1.1.0 on: {result}"
    );
    let ip = &result["ips"][0];
    assert_eq!(result["ips"].as_array().expect("ips").len(), 1);
    assert_eq!(
        ip.get("version").and_then(Value::as_str),
        (version < "1.0.0").then_some("4"),
        "the version field exists before 1.0.0 only: {result}"
    );
    assert_eq!(ip["interface"], 1);
    assert_eq!(ip["gateway"], gateway);
    assert_eq!(
        result["routes"],
        json!([{"dst": "0.0.0.0/0", "gw": gateway}])
    );
    let address = ip["address"].as_str().expect("address");
    assert!(
        address.ends_with("/12"),
        "the default subnet's prefix: {address}"
    );
    address.split('/').next().unwrap_or_default().to_string()
}

#[test]
fn add_results_fit_every_version_and_pods_reach_each_other_across_nodes() {
    let mut lab = Lab::new("xnode");
    let a = lab.netns("a");
    let b = lab.netns("b");
    lab.link(&a, "192.0.2.1/24", &b, "192.0.2.2/24");
    lab.router(&a, "00:00:00:00:c2:01", "192.0.2.1", 2, &[]);
    lab.router(&b, "00:00:00:00:c2:02", "192.0.2.2", 2, &["192.0.2.1"]);
    wait_ready(&a);
    wait_ready(&b);

    let pid = std::process::id();
    let mut pods = Vec::new();
    for (i, version) in VERSIONS.iter().enumerate() {
        let node = if i % 2 == 0 { &a } else { &b };
        let pod = lab.netns(&format!("p{i}"));
        let id = format!("{i}c{pid:07}");
        let path = netns_path(&pod);
        let answer = plugin(node, "ADD", &pod_env(&id, &path), &conf(version));
        let address = check_shape(answer.result(), version, &id, &pod, &bridge_address(node));
        pods.push((node.clone(), pod, id, address, answer.json.clone()));
    }

    // Pods on node a reach pods on node b, through the routers' VXLAN path.
    let (from, to) = (&pods[0], &pods[1]);
    assert!(
        wait_until(Duration::from_secs(20), || pings(&from.1, &to.3)),
        "{} could not reach {}",
        from.3,
        to.3
    );
    assert_eq!(
        tcp_peer(&to.1, &from.1, 7001, &from.3, 7001),
        Some(to.3.clone())
    );

    // ADD again with the same container and interface: the same result, no second veth.
    let (node, pod, id, _, first) = &pods[4];
    let veths = host_veths(node).len();
    let again = plugin(node, "ADD", &pod_env(id, &netns_path(pod)), &conf("1.1.0"));
    assert_eq!(again.result(), first, "ADD is idempotent");
    assert_eq!(host_veths(node).len(), veths);

    for (node, pod, id, _, result) in &pods {
        let del = plugin(
            node,
            "DEL",
            &pod_env(id, &netns_path(pod)),
            &with_prev(conf("1.0.0"), result),
        );
        assert!(del.ok, "{del:?}");
    }
    for node in [&a, &b] {
        assert!(host_veths(node).is_empty(), "{:?}", host_veths(node));
        let owned = owned_idents(node);
        assert!(owned.iter().all(|id| id == "weave:expose"), "{owned:?}");
    }
}

#[test]
fn check_passes_then_names_the_removed_route_and_del_twice_succeeds() {
    let mut lab = Lab::new("check");
    let node = lab.single_node("node");
    let pod = lab.netns("pod");
    let id = format!("chk{}", std::process::id());
    let path = netns_path(&pod);
    let env = pod_env(&id, &path);
    let mut config = conf("1.0.0");
    config["mtu"] = json!(1400);
    let added = plugin(&node, "ADD", &env, &config);
    let checked = with_prev(config, added.result());
    // The configured MTU, and hairpin mode on by default.
    let pod_link = run("ip", &["-n", &pod, "link", "show", "eth0"]);
    assert!(pod_link.contains("mtu 1400"), "{pod_link}");
    let veth = added.result()["interfaces"][0]["name"]
        .as_str()
        .expect("host veth")
        .to_string();
    let port = run("ip", &["-n", &node, "-d", "link", "show", &veth]);
    assert!(port.contains("hairpin on"), "{port}");

    let check = plugin(&node, "CHECK", &env, &checked);
    assert!(check.ok, "{check:?}");
    assert_eq!(check.json, Value::Null, "CHECK prints nothing on success");
    assert_eq!(
        plugin(
            &node,
            "CHECK",
            &env,
            &with_prev(conf("0.3.1"), added.result())
        )
        .code(),
        1
    );

    run("ip", &["-n", &pod, "route", "del", "default"]);
    let check = plugin(&node, "CHECK", &env, &checked);
    assert_eq!(check.code(), 102, "{check:?}");
    let gateway = bridge_address(&node);
    assert_eq!(
        check.msg(),
        format!("CHECK failed: the pod has no route to 0.0.0.0/0 via {gateway}")
    );

    // DEL as containerd sends it: with prevResult, then again without a namespace.
    assert!(plugin(&node, "DEL", &env, &checked).ok);
    let mut second = env.clone();
    second[1] = ("CNI_NETNS", "");
    let again = plugin(&node, "DEL", &second, &conf("1.0.0"));
    assert!(again.ok, "{again:?}");
    assert!(host_veths(&node).is_empty());
    assert!(!owned_idents(&node).contains(&id));
    // CHECK after DEL says what is missing.
    let gone = plugin(&node, "CHECK", &env, &checked);
    assert_eq!(gone.code(), 102);
    assert!(gone.msg().contains("interface eth0 is missing"), "{gone:?}");
}

#[test]
fn gc_frees_exactly_the_attachments_that_are_not_valid_any_more() {
    let mut lab = Lab::new("gc");
    let node = lab.single_node("node");
    // IPAM-only mode: the same binary started as weave-ipam.
    let ipam = lab.dir().join("weave-ipam");
    std::os::unix::fs::symlink(PLUGIN, &ipam).expect("link weave-ipam");
    let ipam = ipam.to_string_lossy().into_owned();
    let pid = std::process::id();
    let ids: Vec<String> = (1..=3).map(|i| format!("gc{i}x{pid}")).collect();
    for id in &ids {
        let answer = plugin_as(
            &ipam,
            &node,
            "ADD",
            &pod_env(id, "/nonexistent"),
            &conf("1.1.0"),
        );
        let result = answer.result();
        assert!(
            result["interfaces"].as_array().expect("list").is_empty(),
            "{result}"
        );
        assert!(
            result["ips"][0]["address"]
                .as_str()
                .expect("address")
                .ends_with("/12")
        );
    }
    let mut owned = owned_idents(&node);
    owned.sort();
    assert_eq!(owned.len(), 4, "three pods and the bridge: {owned:?}");

    let mut gc = conf("1.1.0");
    gc["cni.dev/valid-attachments"] = json!([
        {"containerID": ids[0], "ifname": "eth0"},
        {"containerID": ids[2], "ifname": "eth0"},
    ]);
    let answer = plugin(&node, "GC", &[], &gc);
    assert!(answer.ok, "{answer:?}");
    let mut owned = owned_idents(&node);
    owned.sort();
    let mut expected = vec![ids[0].clone(), ids[2].clone(), "weave:expose".to_string()];
    expected.sort();
    assert_eq!(owned, expected, "only {} was freed", ids[1]);
    // GC needs 1.1.0: older configs are refused.
    assert_eq!(plugin(&node, "GC", &[], &conf("1.0.0")).code(), 1);
}

/// Nothing of the container is left on the node or in the pod.
fn assert_nothing_left(node: &str, pod: &str, id: &str) {
    assert!(host_veths(node).is_empty(), "{:?}", host_veths(node));
    let links = run("ip", &["-n", pod, "-o", "link", "show"]);
    assert!(!links.contains("eth0@"), "{links}");
    assert!(!owned_idents(node).contains(&id.to_string()));
}

#[test]
fn bad_config_bad_env_and_a_down_router_give_spec_codes_and_leave_nothing() {
    let mut lab = Lab::new("errors");
    let node = lab.single_node("node");
    let pod = lab.netns("pod");
    let id = format!("err{}", std::process::id());
    let path = netns_path(&pod);
    let env = pod_env(&id, &path);

    let bad_json = plugin(&node, "ADD", &env, &json!("{not json"));
    assert_eq!(bad_json.code(), 6, "{bad_json:?}");
    let cases = [
        (json!({"name": "weave"}), 7, "cniVersion is missing"),
        (json!({"cniVersion": "0.2.0", "name": "weave"}), 1, "0.2.0"),
        (
            json!({"cniVersion": "1.0.0", "name": "weave", "mtu": 20}),
            7,
            "mtu 20",
        ),
        (
            json!({"cniVersion": "1.0.0", "name": "weave", "ipam": {"type": "nope"}}),
            7,
            "nope",
        ),
    ];
    for (config, code, words) in cases {
        let answer = plugin(&node, "ADD", &env, &config);
        assert_eq!(answer.code(), code, "{config}: {answer:?}");
        assert!(answer.msg().contains(words), "{answer:?}");
        assert_nothing_left(&node, &pod, &id);
    }
    for missing in ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"] {
        let partial: Vec<_> = env.iter().filter(|(k, _)| *k != missing).copied().collect();
        let answer = plugin(&node, "ADD", &partial, &conf("1.0.0"));
        assert_eq!(answer.code(), 4, "{answer:?}");
        assert!(answer.msg().contains(missing), "{answer:?}");
        assert_nothing_left(&node, &pod, &id);
    }

    // A failure after the address was allocated: the pod already has an eth0.
    run("ip", &["-n", &pod, "link", "add", "eth0", "type", "bridge"]);
    let clash = plugin(&node, "ADD", &env, &conf("1.0.0"));
    assert_eq!(clash.code(), 100, "{clash:?}");
    assert!(clash.msg().contains("File exists"), "{clash:?}");
    assert!(host_veths(&node).is_empty());
    assert!(
        !owned_idents(&node).contains(&id),
        "the address was given back"
    );
    run("ip", &["-n", &pod, "link", "del", "eth0"]);

    lab.stop_routers();
    let down = plugin(&node, "ADD", &env, &conf("1.0.0"));
    assert_eq!(down.code(), 11, "{down:?}");
    assert!(down.msg().contains("cannot reach the router"), "{down:?}");
    assert!(host_veths(&node).is_empty());
    let status = plugin(&node, "STATUS", &[], &conf("1.1.0"));
    assert_eq!(status.code(), 50, "{status:?}");
    // DEL can't free the address without the router: the runtime must retry.
    assert_eq!(plugin(&node, "DEL", &env, &conf("1.0.0")).code(), 11);
}

#[test]
fn version_answers_without_a_router() {
    let mut lab = Lab::new("version");
    let node = lab.netns("node");
    let answer = plugin(&node, "VERSION", &[], &json!({"cniVersion": "0.4.0"}));
    assert_eq!(
        answer.result(),
        &json!({"cniVersion": "0.4.0", "supportedVersions": VERSIONS})
    );
}

#[test]
fn add_while_ipam_awaits_consensus_is_try_again_later_and_status_says_why() {
    let mut lab = Lab::new("quorum");
    let node = lab.netns("node");
    // consensus=2 and no second peer: the ring never forms.
    lab.router(&node, "00:00:00:00:c4:01", "127.0.0.1", 2, &[]);
    let waiting = wait_until(Duration::from_secs(30), || {
        let status = plugin(&node, "STATUS", &[], &conf("1.1.0"));
        !status.ok && status.msg().contains("awaiting consensus")
    });
    assert!(waiting, "STATUS never said the allocator awaits consensus");
    assert_eq!(plugin(&node, "STATUS", &[], &conf("1.1.0")).code(), 50);

    let pod = lab.netns("pod");
    let id = format!("quo{}", std::process::id());
    let add = plugin(
        &node,
        "ADD",
        &pod_env(&id, &netns_path(&pod)),
        &conf("1.0.0"),
    );
    assert_eq!(add.code(), 11, "{add:?}");
    assert!(add.msg().contains("awaiting consensus"), "{add:?}");
    assert_nothing_left(&node, &pod, &id);
}

/// The node's links and IPv4 routes, to compare before and after.
fn node_wiring(node: &str) -> (String, String) {
    (
        run("ip", &["-n", node, "-o", "link", "show"]),
        run("ip", &["-n", node, "-4", "route", "show", "table", "all"]),
    )
}

#[test]
fn the_nodes_own_namespace_is_refused_and_the_node_is_left_alone() {
    let mut lab = Lab::new("ownns");
    let node = lab.single_node("node");
    let id = format!("own{}", std::process::id());
    let before = node_wiring(&node);
    // The plugin runs in the node: both name the namespace it is in.
    for own in ["/proc/self/ns/net".to_string(), netns_path(&node)] {
        let env = pod_env(&id, &own);
        let add = plugin(&node, "ADD", &env, &conf("1.0.0"));
        assert_eq!(add.code(), 4, "{own}: {add:?}");
        assert!(add.msg().contains("CNI_NETNS"), "{add:?}");
        assert!(add.msg().contains("the node's own"), "{add:?}");
        assert_eq!(node_wiring(&node), before, "ADD {own} changed the node");
        assert!(!owned_idents(&node).contains(&id));
        // DEL cleans up what it can without touching the node's own interfaces.
        let del = plugin(&node, "DEL", &env, &conf("1.0.0"));
        assert!(del.ok, "{own}: {del:?}");
        assert_eq!(node_wiring(&node), before, "DEL {own} changed the node");
    }
}

#[test]
fn ids_sharing_a_prefix_and_second_interfaces_get_their_own_host_veths() {
    let mut lab = Lab::new("vethname");
    let node = lab.single_node("node");
    let pid = std::process::id();
    // Runtimes' ids differ at the end as often as at the start.
    let ids = [format!("abcdef0{pid}a"), format!("abcdef0{pid}b")];
    let pods = [lab.netns("p1"), lab.netns("p2")];
    let mut names = BTreeSet::new();
    for (id, pod) in ids.iter().zip(&pods) {
        let add = plugin(&node, "ADD", &pod_env(id, &netns_path(pod)), &conf("1.0.0"));
        names.insert(add.result()["interfaces"][0]["name"].to_string());
    }
    // A second network of the first pod (Multus-style): CNI_IFNAME=net1.
    let path = netns_path(&pods[0]);
    let mut second = pod_env(&ids[0], &path);
    second[2] = ("CNI_IFNAME", "net1");
    let add = plugin(&node, "ADD", &second, &conf("1.0.0"));
    names.insert(add.result()["interfaces"][0]["name"].to_string());
    assert_eq!(names.len(), 3, "{names:?}");
    assert_eq!(host_veths(&node).len(), 3);
    let del = plugin(&node, "DEL", &second, &conf("1.0.0"));
    assert!(del.ok, "{del:?}");
    assert_eq!(host_veths(&node).len(), 2);

    // A name taken by something else (a hash collision, a stale device) is detected and named.
    let pod = lab.netns("p3");
    let id = format!("clash{pid}");
    let path = netns_path(&pod);
    let env = pod_env(&id, &path);
    let add = plugin(&node, "ADD", &env, &conf("1.0.0"));
    let taken = add.result()["interfaces"][0]["name"]
        .as_str()
        .expect("host veth")
        .to_string();
    assert!(plugin(&node, "DEL", &env, &conf("1.0.0")).ok);
    run(
        "ip",
        &[
            "-n",
            &node,
            "link",
            "add",
            &taken,
            "type",
            "veth",
            "peer",
            "name",
            "weftclash0",
        ],
    );
    let clash = plugin(&node, "ADD", &env, &conf("1.0.0"));
    assert_eq!(clash.code(), 100, "{clash:?}");
    assert!(clash.msg().contains(&taken), "{clash:?}");
    assert!(
        !clash.msg().contains("reset"),
        "never advise wiping the node: {clash:?}"
    );
    assert!(
        !owned_idents(&node).contains(&id),
        "the address was given back"
    );
    assert!(
        host_veths(&node).contains(&taken),
        "what was there is left alone"
    );
    // A veth of the pod's interface name in the pod is not proof either: it must be the pair.
    run(
        "ip",
        &[
            "-n", &pod, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0peer",
        ],
    );
    let clash = plugin(&node, "ADD", &env, &conf("1.0.0"));
    assert_eq!(clash.code(), 100, "{clash:?}");
    assert!(clash.msg().contains(&taken), "{clash:?}");
    assert!(
        !owned_idents(&node).contains(&id),
        "the address was given back"
    );
}

#[test]
fn del_frees_the_address_when_the_namespace_file_is_left_empty() {
    let mut lab = Lab::new("emptyns");
    let node = lab.single_node("node");
    let pod = lab.netns("pod");
    let id = format!("gone{}", std::process::id());
    let path = netns_path(&pod);
    let env = pod_env(&id, &path);
    let added = plugin(&node, "ADD", &env, &conf("1.0.0"));
    // What a runtime leaves once the namespace was unmounted: an empty file at the path.
    run("umount", &[&path]);
    assert_eq!(std::fs::metadata(&path).expect("the file stays").len(), 0);
    for _ in 0..2 {
        let del = plugin(
            &node,
            "DEL",
            &env,
            &with_prev(conf("1.0.0"), added.result()),
        );
        assert!(del.ok, "{del:?}");
    }
    assert!(!owned_idents(&node).contains(&id), "the address was freed");
    assert!(
        wait_until(Duration::from_secs(10), || host_veths(&node).is_empty()),
        "{:?}",
        host_veths(&node)
    );
}

/// `ip -n <netns> neigh show <address>`.
fn neighbour_entry(netns: &str, address: &str) -> String {
    run("ip", &["-n", netns, "neigh", "show", address])
}

#[test]
fn a_reused_address_is_announced_to_the_node_and_the_pods_beside_it() {
    let mut lab = Lab::new("announce");
    let node = lab.single_node("node");
    let pid = std::process::id();
    let (neighbour, first, second) = (lab.netns("nb"), lab.netns("first"), lab.netns("second"));
    let add = |pod: &str, id: &str| {
        let answer = plugin(&node, "ADD", &pod_env(id, &netns_path(pod)), &conf("1.0.0"));
        assert!(answer.ok, "{answer:?}");
        answer.json.clone()
    };
    add(&neighbour, &format!("nb{pid}"));
    let first_id = format!("first{pid}");
    let first_result = add(&first, &first_id);
    let address = first_result["ips"][0]["address"]
        .as_str()
        .expect("an address");
    let address = address
        .split('/')
        .next()
        .expect("ADDRESS/PREFIX")
        .to_string();
    // The node and the neighbour pod knew the address at the first pod's MAC.
    assert!(pings(&neighbour, &address), "the first pod answers");
    run(
        "ip",
        &[
            "-n",
            &node,
            "neigh",
            "replace",
            &address,
            "lladdr",
            "02:00:00:00:00:99",
            "dev",
            "weave",
            "nud",
            "stale",
        ],
    );
    let del = plugin(
        &node,
        "DEL",
        &pod_env(&first_id, &netns_path(&first)),
        &with_prev(conf("1.0.0"), &first_result),
    );
    assert!(del.ok, "{del:?}");

    // The next pod gets the freed address: both must learn its MAC at once, not when their
    // entry goes stale.
    let second_result = add(&second, &format!("second{pid}"));
    assert_eq!(
        second_result["ips"][0]["address"]
            .as_str()
            .map(|a| a.starts_with(&format!("{address}/"))),
        Some(true),
        "the freed address is handed out again: {second_result}"
    );
    let mac = second_result["interfaces"][1]["mac"]
        .as_str()
        .expect("the pod's MAC")
        .to_string();
    for netns in [&node, &neighbour] {
        assert!(
            wait_until(Duration::from_secs(3), || neighbour_entry(netns, &address)
                .contains(&mac)),
            "{netns}: {} (the second pod is {mac})",
            neighbour_entry(netns, &address)
        );
    }
}
