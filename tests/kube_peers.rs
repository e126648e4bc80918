//! The router's Kubernetes side against a real kube-apiserver v1.20.2 (tests/kubelab): routers
//! started with `--kube-peers` and no peers find each other through the Nodes, size IPAM's
//! consensus from them and mark their Nodes' network up; a new Node's router joins unasked; a
//! deleted Node's addresses are reclaimed by exactly one survivor (also when two race for it),
//! a stopped router whose Node exists is left alone, and an API server outage leaves the mesh and
//! the pods' traffic alone.

mod kubelab;
use weft_testkit::netlab;

use std::time::{Duration, Instant};

use kubelab::KubeApi;
use netlab::{Lab, Node, in_netns, tcp_works, wait_until};
use serde_json::Value;

/// The routers' allocations come from 10.32.0.0/16; pods get fixed addresses in 10.33.0.0/16,
/// inside the overlay's /12, so the two never collide.
const RANGE: &str = "10.32.0.0/16";
/// The reclaim timer, shortened (not zero) so that "not reclaimed" is tested over many rounds.
const RECLAIM_INTERVAL: &str = "1s";
/// Waits are generous: CI is a 2-core machine, and an API server shares it.
const CONVERGE: Duration = Duration::from_secs(60);

fn node_name(node: &Node) -> String {
    format!("node{}", node.index)
}

/// Starts a router in `node` that knows nothing but the API server. `log` names its log and its
/// database (a new name is a fresh router); `name_byte` makes its peer name.
fn kube_router(
    lab: &mut Lab,
    api: &KubeApi,
    node: &Node,
    node_name: &str,
    log: &str,
    name_byte: u8,
) {
    let name = format!("00:00:00:00:{name_byte:02x}:{:02x}", node.index);
    let extra = [
        "--kube-reclaim-interval",
        RECLAIM_INTERVAL,
        "--ipalloc-range",
        RANGE,
    ];
    api.start_router(lab, node, &name, node_name, log, &extra);
}

fn log_of(lab: &Lab, log: &str) -> String {
    std::fs::read_to_string(lab.dir().join(format!("{log}.log"))).unwrap_or_default()
}

/// Runs the CLI against the router of `node`.
fn weave(node: &Node, args: &[&str]) -> String {
    let output = in_netns(&node.ns, netlab::weft(), args);
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn curl(node: &Node, method: &str, path: &str) -> (bool, String) {
    let url = format!("http://127.0.0.1:6784{path}");
    let output = in_netns(
        &node.ns,
        "curl",
        &["-sS", "-f", "-m", "30", "-X", method, &url],
    );
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).trim().to_string(),
    )
}

fn established(node: &Node) -> usize {
    netlab::connections(node)
        .lines()
        .filter(|line| line.contains("established"))
        .count()
}

fn ipam_report(node: &Node) -> Option<Value> {
    let (ok, body) = curl(node, "GET", "/report");
    ok.then(|| serde_json::from_str::<Value>(&body).ok())
        .flatten()
        .map(|report| report["IPAM"].clone())
}

/// The owners of the ring with their address counts, as `node` sees it.
fn ring_owners(node: &Node) -> Vec<(String, u64)> {
    let Some(ipam) = ipam_report(node) else {
        return Vec::new();
    };
    let mut owners: Vec<(String, u64)> = ipam["Entries"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|entry| {
            (
                entry["Peer"].as_str().unwrap_or_default().to_string(),
                entry["Addresses"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    owners.sort();
    owners
}

fn node_condition(api: &KubeApi, name: &str) -> Option<(String, String)> {
    let node = api.node(name)?;
    node["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|condition| condition["type"] == "NetworkUnavailable")
        .map(|condition| {
            (
                condition["status"].as_str().unwrap_or_default().to_string(),
                condition["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
}

/// The peer record the routers keep in kube-system/weave-net.
fn recorded_peers(api: &KubeApi) -> String {
    api.configmap("kube-system", "weave-net")
        .and_then(|config_map| {
            config_map["metadata"]["annotations"]["weft.works/peers"]
                .as_str()
                .map(str::to_string)
        })
        .unwrap_or_default()
}

fn reclaim_lines(lab: &Lab, logs: &[&str], peer: &str) -> Vec<String> {
    logs.iter()
        .flat_map(|log| {
            log_of(lab, log)
                .lines()
                .filter(|line| line.contains("reclaimed ") && line.contains(peer))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A lab with an API server, the router RBAC granted, and `count` nodes whose Nodes exist.
fn cluster(tag: &str, count: u8) -> (Lab, KubeApi, Vec<Node>) {
    let mut lab = Lab::new(tag);
    let api = KubeApi::new(&mut lab);
    api.grant_router_rbac();
    let nodes: Vec<Node> = (1..=count).map(|index| lab.node(index)).collect();
    for node in &nodes {
        api.create_node(&node_name(node), &node.ip);
    }
    (lab, api, nodes)
}

fn start_routers(lab: &mut Lab, api: &KubeApi, nodes: &[Node], name_byte: u8) {
    for node in nodes {
        let name = node_name(node);
        kube_router(lab, api, node, &name, &name, name_byte);
    }
}

#[test]
fn routers_find_each_other_through_nodes_and_a_new_node_joins_unasked() {
    let (mut lab, api, nodes) = cluster("kpeers", 3);
    start_routers(&mut lab, &api, &nodes, 0xa1);
    assert!(
        wait_until(CONVERGE, || nodes.iter().all(|node| established(node) == 2)),
        "no full mesh from the Nodes: {:?}",
        nodes.iter().map(netlab::connections).collect::<Vec<_>>()
    );
    // consensus=3 from the Node count: every router allocates, none waits for a fourth.
    for node in &nodes {
        let (ok, address) = curl(node, "POST", &format!("/ip/first-{}", node.index));
        assert!(
            ok && address.starts_with("10.32."),
            "{}: {address}",
            node.ns
        );
        let log = log_of(&lab, &node_name(node));
        assert!(log.contains("expected: 3"), "{}: {log}", node.ns);
    }
    for node in &nodes {
        let name = node_name(node);
        assert!(
            wait_until(CONVERGE, || node_condition(&api, &name)
                == Some(("False".into(), "WeaveIsUp".into()))),
            "{name}: {:?}",
            api.node(&name)
        );
        let status = weave(node, &["status"]);
        assert!(
            status.contains("PeerDiscovery: kubernetes (3 nodes)"),
            "{status}"
        );
    }
    // Every router recorded its peer name next to its node's.
    let record = recorded_peers(&api);
    for node in &nodes {
        let entry = format!(
            "{{\"peerName\":\"00:00:00:00:a1:{:02x}\",\"nodeName\":\"{}\"}}",
            node.index,
            node_name(node)
        );
        assert!(record.contains(&entry), "{record}");
    }

    // A fourth Node: the others dial it without being told.
    let node4 = lab.node(4);
    let created = Instant::now();
    api.create_node("node4", &node4.ip);
    kube_router(&mut lab, &api, &node4, "node4", "node4", 0xa1);
    assert!(
        wait_until(CONVERGE, || nodes.iter().all(|node| established(node) == 3)
            && established(&node4) == 3),
        "node4 did not join: {:?}",
        nodes.iter().map(netlab::connections).collect::<Vec<_>>()
    );
    eprintln!(
        "kube_peers: Node creation to a full mesh of 4: {:.1} s",
        created.elapsed().as_secs_f64()
    );
    let targets = weave(&nodes[0], &["status", "targets"]);
    assert!(targets.contains(&node4.ip), "{targets}");
    let metrics = in_netns(&nodes[0].ns, "curl", &["-sS", "127.0.0.1:6782/metrics"]);
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    assert!(metrics.contains("weft_kube_nodes 4"), "{metrics}");
}

#[test]
fn a_deleted_nodes_addresses_are_reclaimed_once_and_a_stopped_routers_never() {
    let (mut lab, api, nodes) = cluster("kreclaim", 3);
    start_routers(&mut lab, &api, &nodes, 0xb1);
    let [node1, node2, node3] = [&nodes[0], &nodes[1], &nodes[2]];
    assert!(
        wait_until(CONVERGE, || nodes.iter().all(|node| established(node) == 2)),
        "no full mesh: {:?}",
        nodes.iter().map(netlab::connections).collect::<Vec<_>>()
    );
    let dead_peer = "00:00:00:00:b1:03";
    let mut held = Vec::new();
    for i in 0..50 {
        let (ok, address) = curl(node3, "POST", &format!("/ip/pod-{i}"));
        assert!(ok, "allocation {i} on node3: {address}");
        held.push(address);
    }
    for node in [node1, node2] {
        assert!(curl(node, "POST", &format!("/ip/own-{}", node.index)).0);
    }
    assert!(
        wait_until(CONVERGE, || recorded_peers(&api).contains(dead_peer)),
        "node3 never recorded its peer: {}",
        recorded_peers(&api)
    );

    // node3's router dies; its Node stays: it is down, not gone, and nobody may take its space.
    lab.kill_router(2);
    std::thread::sleep(Duration::from_secs(20));
    assert!(
        reclaim_lines(&lab, &["node1", "node2"], dead_peer).is_empty(),
        "a stopped router's addresses were reclaimed while its Node exists"
    );
    assert!(ring_owners(node1).iter().any(|(peer, _)| peer == dead_peer));

    let deleted = Instant::now();
    api.delete_node("node3");
    assert!(
        wait_until(CONVERGE, || !reclaim_lines(
            &lab,
            &["node1", "node2"],
            dead_peer
        )
        .is_empty()),
        "nobody reclaimed node3 within 60 s"
    );
    eprintln!(
        "kube_peers: Node deletion to reclaim: {:.1} s",
        deleted.elapsed().as_secs_f64()
    );
    // Give a second reclaimer every chance to show up.
    std::thread::sleep(Duration::from_secs(5));
    let lines = reclaim_lines(&lab, &["node1", "node2"], dead_peer);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains(&format!("of {dead_peer}(node3): node deleted")),
        "{}",
        lines[0]
    );
    let reclaimer = if log_of(&lab, "node1").contains("reclaimed ") {
        node1
    } else {
        node2
    };
    // The record forgot it, both survivors' rings agree and no longer name it.
    assert!(
        wait_until(CONVERGE, || !recorded_peers(&api).contains(dead_peer)),
        "{}",
        recorded_peers(&api)
    );
    assert!(
        wait_until(CONVERGE, || {
            let (one, two) = (ring_owners(node1), ring_owners(node2));
            one == two && !one.is_empty() && one.iter().all(|(peer, _)| peer != dead_peer)
        }),
        "{:?} / {:?}",
        ring_owners(node1),
        ring_owners(node2)
    );
    let status = weave(node1, &["status", "ipam"]);
    assert!(
        !status.contains(dead_peer) && !status.contains("node3"),
        "{status}"
    );
    // node3's 50 addresses are free again: the reclaimer claims every one of them (a claim of an
    // address someone holds fails), and the survivors' own are untouched.
    for (i, address) in held.iter().enumerate() {
        let (ip, prefix) = address.split_once('/').unwrap();
        let (ok, answer) = curl(reclaimer, "PUT", &format!("/ip/again-{i}/{ip}/{prefix}"));
        assert!(ok, "{address} is not allocatable again: {answer}");
    }
    for node in [node1, node2] {
        assert!(curl(node, "GET", &format!("/ip/own-{}", node.index)).0);
    }
    let metrics = in_netns(&reclaimer.ns, "curl", &["-sS", "127.0.0.1:6782/metrics"]);
    assert!(String::from_utf8_lossy(&metrics.stdout).contains("weft_kube_reclaims_total 1"));
}

#[test]
fn two_survivors_racing_for_a_deleted_node_reclaim_it_once_each_time() {
    const ROUNDS: u8 = 10;
    let (mut lab, api, nodes) = cluster("krace", 2);
    start_routers(&mut lab, &api, &nodes, 0xc1);
    assert!(
        wait_until(CONVERGE, || nodes.iter().all(|node| established(node) == 1)),
        "no mesh: {:?}",
        nodes.iter().map(netlab::connections).collect::<Vec<_>>()
    );
    assert!(curl(&nodes[0], "POST", "/ip/seed").0);
    let node3 = lab.node(3);
    let mut delays = Vec::new();
    // Each round a new router (a new peer name, a fresh database) on a new Node, which takes
    // space, dies, and has its Node deleted while both survivors are up.
    for round in 0..ROUNDS {
        let name = format!("node3-r{round}");
        let peer = format!("00:00:00:00:{:02x}:03", 0xd0 + round);
        api.create_node(&name, &node3.ip);
        kube_router(&mut lab, &api, &node3, &name, &name, 0xd0 + round);
        assert!(
            wait_until(CONVERGE, || established(&node3) == 2
                && recorded_peers(&api).contains(&peer)),
            "round {round}: {name} did not join: {}",
            netlab::connections(&node3)
        );
        for i in 0..5 {
            let (ok, answer) = curl(&node3, "POST", &format!("/ip/r{round}-{i}"));
            assert!(ok, "round {round}: {answer}");
        }
        lab.kill_router(2 + usize::from(round));
        let deleted = Instant::now();
        api.delete_node(&name);
        assert!(
            wait_until(CONVERGE, || !reclaim_lines(
                &lab,
                &["node1", "node2"],
                &peer
            )
            .is_empty()),
            "round {round}: {peer} not reclaimed"
        );
        delays.push(deleted.elapsed().as_secs_f64());
        assert!(
            wait_until(CONVERGE, || !recorded_peers(&api).contains(&peer)),
            "round {round}: {}",
            recorded_peers(&api)
        );
    }
    std::thread::sleep(Duration::from_secs(3));
    for round in 0..ROUNDS {
        let peer = format!("00:00:00:00:{:02x}:03", 0xd0 + round);
        let lines = reclaim_lines(&lab, &["node1", "node2"], &peer);
        assert_eq!(lines.len(), 1, "round {round}: {lines:?}");
    }
    delays.sort_by(f64::total_cmp);
    eprintln!(
        "kube_peers: Node deletion to reclaim over {ROUNDS} rounds: median {:.1} s, max {:.1} s",
        delays[delays.len() / 2],
        delays[delays.len() - 1]
    );
    // Both survivors agree on the ring, and no dead peer is left in it.
    assert!(
        wait_until(CONVERGE, || {
            let (one, two) = (ring_owners(&nodes[0]), ring_owners(&nodes[1]));
            one == two && one.len() == 2
        }),
        "{:?} / {:?}",
        ring_owners(&nodes[0]),
        ring_owners(&nodes[1])
    );
}

#[test]
fn an_api_server_outage_leaves_the_mesh_and_pods_alone() {
    let (mut lab, mut api, nodes) = cluster("koutage", 2);
    start_routers(&mut lab, &api, &nodes, 0xe1);
    let [node1, node2] = [&nodes[0], &nodes[1]];
    assert!(
        wait_until(CONVERGE, || established(node1) == 1
            && established(node2) == 1),
        "no mesh"
    );
    let pod1 = lab.pod(node1, "pod1", "10.33.0.1/12");
    let pod2 = lab.pod(node2, "pod2", "10.33.0.2/12");
    assert!(
        wait_until(CONVERGE, || tcp_works(&pod1, &pod2, "10.33.0.2", 7301)),
        "pods cannot talk before the outage"
    );

    api.stop();
    let outage = Instant::now();
    let mut port = 7302;
    while outage.elapsed() < Duration::from_secs(30) {
        assert!(
            tcp_works(&pod1, &pod2, "10.33.0.2", port),
            "pods lost each other during the outage"
        );
        assert_eq!(established(node1), 1, "{}", netlab::connections(node1));
        port += 1;
        std::thread::sleep(Duration::from_secs(3));
    }
    for node in &nodes {
        let status = weave(node, &["status"]);
        assert!(status.contains("waiting for the API at"), "{status}");
    }
    api.start();
    // Created as soon as the API is back, before the routers' back-off brings their watch back.
    let node3 = lab.node(3);
    api.create_node("node3", &node3.ip);
    let created = Instant::now();
    assert!(
        wait_until(CONVERGE, || weave(node1, &["status", "targets"])
            .contains(&node3.ip)),
        "the Node made after the outage is not a target"
    );
    eprintln!(
        "kube_peers: a Node made as the API server came back was a target {:.1} s later",
        created.elapsed().as_secs_f64()
    );
    assert!(tcp_works(&pod2, &pod1, "10.33.0.1", port));
    for node in &nodes {
        // Each router's watch comes back on its own back-off (at most 30 s apart).
        assert!(
            wait_until(CONVERGE, || weave(node, &["status"])
                .contains("PeerDiscovery: kubernetes (3 nodes)")),
            "{}",
            weave(node, &["status"])
        );
    }
    for node in &nodes {
        let log = log_of(&lab, &node_name(node));
        assert_eq!(
            log.matches("waiting for the Kubernetes API at").count(),
            1,
            "{}: {log}",
            node.ns
        );
        // Once at start, once when it came back.
        assert_eq!(
            log.matches("connected to the Kubernetes API").count(),
            2,
            "{log}"
        );
    }
}

#[test]
fn a_fresh_router_waits_for_the_api_server_and_says_so_on_its_api() {
    let (mut lab, mut api, nodes) = cluster("kfresh", 1);
    let node1 = &nodes[0];
    api.stop();
    kube_router(&mut lab, &api, node1, "node1", "node1", 0xf1);
    let status = || {
        let output = in_netns(&node1.ns, netlab::weft(), &["status"]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    };
    assert!(
        wait_until(CONVERGE, || status().contains("not ready yet")
            && status().contains(
                "waiting for the Kubernetes API at https://198.51.100.2:6443/"
            )),
        "{}",
        status()
    );
    // Not ready, but alive: the DaemonSet's liveness probe must not restart a patient router.
    assert_eq!(
        curl(node1, "GET", "/healthz"),
        (true, "starting".to_string())
    );
    assert!(!curl(node1, "GET", "/status").0, "ready while waiting");
    api.start();
    assert!(
        wait_until(CONVERGE, || status()
            .contains("PeerDiscovery: kubernetes (1 nodes)")),
        "{}",
        status()
    );
    // A single node allocates at once: consensus over the one Node there is.
    let (ok, address) = curl(node1, "POST", "/ip/alone");
    assert!(ok, "{address}");
    let log = log_of(&lab, "node1");
    assert_eq!(
        log.matches("waiting for the Kubernetes API at").count(),
        1,
        "{log}"
    );
    assert!(log.contains("expected: 1"), "{log}");
    assert_eq!(curl(node1, "GET", "/healthz"), (true, "ok".to_string()));
}
