//! Weft installed the way users install it: `kubectl apply -f deploy/weave-net.yaml` on a real
//! Kubernetes v1.20.2 cluster of three nodes (see `clusterlab`), with only the image reference
//! and pull policy rewritten. One cluster, one test, steps in the order an operator meets them:
//! install, ordinary pods, network policy, pod churn, a rolling upgrade under traffic, a node
//! that dies and is deleted, and removal. Every wait is generous (a busy 2-core machine runs
//! three nodes here); on failure every log is kept (the path is printed).
//!
//! Needs root, the Kubernetes binaries (`WEFT_KUBE_BIN` or scripts/kube/build-binaries.sh),
//! containerd, runc, iptables, etcd, mmdebstrap and the Debian mirror for the image's root
//! filesystem (cached after the first build): scripts/test.sh installs them.

mod clusterlab;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use clusterlab::{Cluster, IMAGE, WAIT, both, stdout, wait_for};
use serde_json::Value;

const NODES: usize = 3;
/// The manifest's IPALLOC_RANGE, 10.32.0.0/12.
const RANGE_FIRST_OCTETS: (u8, std::ops::RangeInclusive<u8>) = (10, 32..=47);
/// The nodes' addresses (scripts/kube/cluster.sh): node I is 10.250.10.(10+I).
fn node_ip(index: usize) -> String {
    format!("10.250.10.{}", 10 + index)
}

#[test]
fn weave_net_from_the_manifest_installs_carries_pods_and_policy_upgrades_and_uninstalls() {
    let started = Instant::now();
    let cluster = Cluster::up(NODES);
    let step = |what: &str| eprintln!("cluster: {what} at {:.0?}", started.elapsed());
    let manifest = cluster.manifest("weave-net.yaml");

    let ready_after = install(&cluster, &manifest.display().to_string());
    eprintln!("cluster: kubectl apply -> all nodes Ready in {ready_after:?}");
    ordinary_pods(&cluster);
    step("ordinary pods checked");
    network_policy(&cluster);
    step("network policy checked");
    pod_churn(&cluster);
    step("pod churn checked");
    rolling_restart_under_traffic(&cluster);
    step("rolling restart checked");
    deleted_node_is_reclaimed(&cluster);
    step("node deletion checked");
    drain(&cluster);
    uninstall(&cluster, &manifest.display().to_string());
    step("uninstall checked");
    reset_nodes(&cluster);
    step("node reset checked");
}

// --- helpers ------------------------------------------------------------------------------------

/// The weave-net pod on node `index`.
fn weave_pod(cluster: &Cluster, index: usize) -> String {
    let pods = cluster.get(&[
        "pods",
        "-n",
        "kube-system",
        "-l",
        "name=weave-net",
        "--field-selector",
        &format!("spec.nodeName=node{index}"),
    ]);
    pods["items"]
        .as_array()
        .and_then(|items| {
            items
                .iter()
                .find(|pod| pod["metadata"]["deletionTimestamp"].is_null())
        })
        .and_then(|pod| pod["metadata"]["name"].as_str())
        .unwrap_or_else(|| panic!("no weave-net pod on node{index}: {pods}"))
        .to_string()
}

/// `weave ARGS` in the router container on node `index`, through `kubectl exec`.
fn weave(cluster: &Cluster, index: usize, args: &[&str]) -> String {
    let pod = weave_pod(cluster, index);
    let mut command = vec!["weave"];
    command.extend(args);
    both(&cluster.exec("kube-system", &pod, "weave", &command))
}

/// A shell command in a pod of Weft's image (busybox's applets by name).
fn sh(cluster: &Cluster, namespace: &str, pod: &str, script: &str) -> std::process::Output {
    cluster.exec(namespace, pod, "", &["sh", "-c", script])
}

/// What `GET url` answers from inside a pod within 5 s, or None. (Not `wget -T`: busybox 1.35
/// crashes with it.)
fn fetch(cluster: &Cluster, namespace: &str, pod: &str, url: &str) -> Option<String> {
    let output = sh(
        cluster,
        namespace,
        pod,
        &format!("busybox timeout 5 busybox wget -q -O - {url}"),
    );
    output
        .status
        .success()
        .then(|| stdout(&output).trim().to_string())
}

/// The IP of pod `namespace/name`, once it has one.
fn pod_ip(cluster: &Cluster, namespace: &str, name: &str) -> String {
    let pod = cluster.get(&["pod", "-n", namespace, name]);
    pod["status"]["podIP"]
        .as_str()
        .unwrap_or_else(|| panic!("{namespace}/{name} has no IP: {pod}"))
        .to_string()
}

fn in_cluster_range(ip: &str) -> bool {
    let octets: Vec<u8> = ip.split('.').filter_map(|o| o.parse().ok()).collect();
    octets.len() == 4
        && octets[0] == RANGE_FIRST_OCTETS.0
        && RANGE_FIRST_OCTETS.1.contains(&octets[1])
}

/// A pod of Weft's image pinned to node `index` running `script`, with `labels`
/// (`key: value` pairs, YAML flow style) and optionally a hostPort for port 8080.
fn pinned_pod(
    name: &str,
    namespace: &str,
    index: usize,
    labels: &str,
    script: &str,
    host_port: Option<u16>,
) -> String {
    let host_port = host_port
        .map(|port| format!("\n          hostPort: {port}"))
        .unwrap_or_default();
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: {namespace}
  labels: {{{labels}}}
spec:
  nodeName: node{index}
  terminationGracePeriodSeconds: 1
  # A crash fails the test instead of being hidden by a restart.
  restartPolicy: Never
  containers:
    - name: main
      image: {IMAGE}
      imagePullPolicy: Never
      command: [sh, -c, '{script}']
      ports:
        - containerPort: 8080{host_port}
"#
    )
}

/// busybox httpd on port 8080 answering `text`.
fn serve(text: &str) -> String {
    format!(
        "mkdir -p /tmp/www && echo \"{text}\" > /tmp/www/index.html && exec busybox httpd -f -p 8080 -h /tmp/www"
    )
}

fn wait_ready(cluster: &Cluster, namespace: &str, selector: &str) {
    cluster.kubectl(&[
        "wait",
        "-n",
        namespace,
        "--for=condition=Ready",
        "pod",
        "-l",
        selector,
        "--timeout=180s",
    ]);
}

/// The number of addresses the router on node `index` has handed out (its `/ip` list).
fn allocations(cluster: &Cluster, index: usize) -> usize {
    let output = cluster.on_node(
        index,
        &["curl", "-sf", "-m", "10", "http://127.0.0.1:6784/ip"],
    );
    let owned: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("GET /ip on node{index}: {}", both(&output)));
    owned["owned"].as_array().map_or(0, |entries| {
        entries
            .iter()
            .map(|entry| entry["addrs"].as_array().map_or(0, Vec::len))
            .sum()
    })
}

/// The number of pod veths (host ends) on node `index`.
fn pod_veths(cluster: &Cluster, index: usize) -> usize {
    let output = cluster.on_node(index, &["ip", "-o", "link", "show", "type", "veth"]);
    stdout(&output)
        .lines()
        .filter(|line| line.contains("vethwe"))
        .count()
}

fn metric(cluster: &Cluster, index: usize, port: u16, name_and_labels: &str) -> Option<f64> {
    let output = cluster.on_node(
        index,
        &[
            "curl",
            "-sf",
            "-m",
            "10",
            &format!("http://127.0.0.1:{port}/metrics"),
        ],
    );
    stdout(&output)
        .lines()
        .find(|line| line.starts_with(name_and_labels))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

/// Every weave-net pod Running with both containers ready and never restarted; a restarted
/// container's previous log in the failure message.
fn assert_no_restarts(cluster: &Cluster, when: &str) {
    let pods = cluster.get(&["pods", "-n", "kube-system", "-l", "name=weave-net"]);
    let items = pods["items"].as_array().expect("pod list");
    assert_eq!(items.len(), NODES, "{when}: {pods}");
    for pod in items {
        let name = pod["metadata"]["name"].as_str().unwrap_or_default();
        assert_eq!(pod["status"]["phase"], "Running", "{when}: {pod}");
        let containers = pod["status"]["containerStatuses"]
            .as_array()
            .expect("container statuses");
        assert_eq!(containers.len(), 2, "{when}: {pod}");
        for container in containers {
            let container_name = container["name"].as_str().unwrap_or_default();
            if container["restartCount"] != 0 {
                let previous = cluster.kubectl_output(&[
                    "logs",
                    "-n",
                    "kube-system",
                    name,
                    "-c",
                    container_name,
                    "--previous",
                ]);
                panic!(
                    "{when}: {name}/{container_name} restarted: {container}\nprevious log:\n{}",
                    both(&previous)
                );
            }
            assert_eq!(container["ready"], true, "{when}: {container}");
        }
    }
}

// --- the steps ----------------------------------------------------------------------------------

/// `kubectl apply`: every weave-net pod 2/2 Running with no restarts, every node Ready, the
/// logs telling the story, `weave status` and `weave status ipam` through `kubectl exec`.
fn install(cluster: &Cluster, manifest: &str) -> Duration {
    // Valid against the API server's schema and admission, before anything is created.
    let dry_run = cluster.kubectl(&["apply", "--dry-run=server", "-f", manifest]);
    assert!(
        dry_run.contains("daemonset.apps/weave-net created (server dry run)"),
        "{dry_run}"
    );
    let applied = Instant::now();
    let output = cluster.kubectl(&["apply", "-f", manifest]);
    for object in [
        "serviceaccount/weave-net",
        "clusterrole.rbac.authorization.k8s.io/weave-net",
        "clusterrolebinding.rbac.authorization.k8s.io/weave-net",
        "role.rbac.authorization.k8s.io/weave-net",
        "rolebinding.rbac.authorization.k8s.io/weave-net",
        "daemonset.apps/weave-net",
    ] {
        assert!(output.contains(&format!("{object} created")), "{output}");
    }
    cluster.kubectl(&[
        "rollout",
        "status",
        "-n",
        "kube-system",
        "ds/weave-net",
        "--timeout=180s",
    ]);
    cluster.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "node",
        "--all",
        "--timeout=180s",
    ]);
    let ready_after = applied.elapsed();

    assert_no_restarts(cluster, "install");

    for index in 1..=NODES {
        let pod = weave_pod(cluster, index);
        let logs = || cluster.kubectl(&["logs", "-n", "kube-system", &pod, "-c", "weave"]);
        wait_for(
            &format!("node{index}'s router log to tell the story"),
            WAIT,
            || {
                let logs = logs();
                [
                    format!("(node{index})").as_str(),
                    "Our name is",
                    "peers from Kubernetes Nodes",
                    "using fastdp",
                    "Effective MTU verified",
                    "set NetworkUnavailable=False",
                ]
                .iter()
                .all(|needle| logs.contains(needle))
                .then_some(())
            },
            logs,
        );
        let status = || weave(cluster, index, &["status"]);
        wait_for(
            &format!("node{index}'s router to see the whole mesh"),
            WAIT,
            || {
                let status = status();
                (status.contains(&format!("PeerDiscovery: kubernetes ({NODES} nodes)"))
                    && status.contains(&format!(
                        "Connections: {} ({} established)",
                        NODES - 1,
                        NODES - 1
                    )))
                .then_some(())
            },
            status,
        );
        let status = status();
        assert!(status.contains("Status: ready"), "{status}");
        assert!(status.contains("Range: 10.32.0.0/12"), "{status}");
        // Every node's router owns a share of the range.
        let ipam = weave(cluster, index, &["status", "ipam"]);
        for owner in 1..=NODES {
            assert!(ipam.contains(&format!("(node{owner})")), "{ipam}");
        }
    }
    // The label operators select on reaches both containers' logs.
    let all_logs = cluster.kubectl(&[
        "logs",
        "-n",
        "kube-system",
        "-l",
        "name=weave-net",
        "-c",
        "weave-npc",
    ]);
    assert!(
        all_logs.contains("table inet weft-npc written"),
        "{all_logs}"
    );
    ready_after
}

/// A Deployment spread over the nodes behind a Service, and one pinned pod per node with a
/// hostPort: addresses from the range, pod to pod on one node and across nodes (ping and TCP),
/// pod to ClusterIP Service, node to pod, and the hostPort through the chained portmap.
fn ordinary_pods(cluster: &Cluster) {
    let deployment = format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      topologySpreadConstraints:
        - maxSkew: 1
          topologyKey: kubernetes.io/hostname
          whenUnsatisfiable: DoNotSchedule
          labelSelector:
            matchLabels: {{app: web}}
      containers:
        - name: httpd
          image: {IMAGE}
          imagePullPolicy: Never
          command: [sh, -c, 'mkdir -p /tmp/www && echo "web $(busybox hostname)" > /tmp/www/index.html && exec busybox httpd -f -p 8080 -h /tmp/www']
          ports:
            - containerPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: default
spec:
  selector: {{app: web}}
  ports:
    - port: 80
      targetPort: 8080
"#,
        replicas = 2 * NODES
    );
    cluster.apply(&deployment);
    for index in 1..=NODES {
        cluster.apply(&pinned_pod(
            &format!("pinned-node{index}"),
            "default",
            index,
            "app: pinned",
            &serve(&format!("pinned node{index}")),
            Some(18080),
        ));
    }
    cluster.kubectl(&["rollout", "status", "deploy/web", "--timeout=180s"]);
    wait_ready(cluster, "default", "app=pinned");

    let pods = cluster.get(&["pods", "-n", "default"]);
    let mut web_on_node1 = None;
    for pod in pods["items"].as_array().expect("pods") {
        let ip = pod["status"]["podIP"].as_str().unwrap_or_default();
        assert!(in_cluster_range(ip), "pod outside 10.32.0.0/12: {pod}");
        if pod["metadata"]["labels"]["app"] == "web" && pod["spec"]["nodeName"] == "node1" {
            web_on_node1 = Some(ip.to_string());
        }
    }
    let pinned: Vec<String> = (1..=NODES)
        .map(|index| pod_ip(cluster, "default", &format!("pinned-node{index}")))
        .collect();

    // Same node.
    let web_on_node1 = web_on_node1.expect("a web pod on node1 (spread constraint)");
    let answer = fetch(
        cluster,
        "default",
        "pinned-node1",
        &format!("http://{web_on_node1}:8080/"),
    );
    assert!(
        answer.as_deref().is_some_and(|a| a.starts_with("web ")),
        "{answer:?}"
    );
    // Across nodes, every pair of nodes one way: ping and TCP.
    for (from, to) in [(1, 2), (2, 3), (3, 1)] {
        let target = &pinned[to - 1];
        let ping = sh(
            cluster,
            "default",
            &format!("pinned-node{from}"),
            &format!("busybox ping -c 3 -W 2 {target}"),
        );
        assert!(
            stdout(&ping).contains("3 packets received"),
            "node{from} -> node{to}: {}",
            both(&ping)
        );
        let answer = fetch(
            cluster,
            "default",
            &format!("pinned-node{from}"),
            &format!("http://{target}:8080/"),
        );
        assert_eq!(answer.as_deref(), Some(format!("pinned node{to}").as_str()));
    }
    // The Service's ClusterIP, through kube-proxy, reaches backends on more than one node.
    let service = cluster.get(&["service", "web"]);
    let cluster_ip = service["spec"]["clusterIP"].as_str().expect("cluster IP");
    let mut backends = BTreeSet::new();
    for _ in 0..12 {
        let answer = fetch(
            cluster,
            "default",
            "pinned-node1",
            &format!("http://{cluster_ip}/"),
        );
        let answer = answer.unwrap_or_else(|| panic!("no answer from the Service {cluster_ip}"));
        assert!(answer.starts_with("web "), "{answer}");
        backends.insert(answer);
    }
    assert!(backends.len() >= 2, "one backend only: {backends:?}");
    // Node to pod, on another node.
    let output = cluster.on_node(
        1,
        &[
            "curl",
            "-sf",
            "-m",
            "5",
            &format!("http://{}:8080/", pinned[1]),
        ],
    );
    assert_eq!(stdout(&output).trim(), "pinned node2", "{}", both(&output));
    // hostPort: from another node, and from a pod on another node.
    let host_port = format!("http://{}:18080/", node_ip(1));
    let output = cluster.on_node(2, &["curl", "-sf", "-m", "5", &host_port]);
    assert_eq!(stdout(&output).trim(), "pinned node1", "{}", both(&output));
    let answer = fetch(cluster, "default", "pinned-node3", &host_port);
    assert_eq!(answer.as_deref(), Some("pinned node1"));
}

/// Whether `from` (namespace/pod) reaches `to_ip`:8080 within the fetch's timeout.
fn reaches(cluster: &Cluster, from: (&str, &str), to_ip: &str) -> bool {
    fetch(cluster, from.0, from.1, &format!("http://{to_ip}:8080/")).is_some()
}

/// Waits until each `from` reaching `to_ip` is `expected` (policy changes take a moment to
/// land); the probes run side by side, each failing one names itself.
fn expect_reach(cluster: &Cluster, expectations: &[((&str, &str), &str, bool)]) {
    std::thread::scope(|scope| {
        for &(from, to_ip, expected) in expectations {
            scope.spawn(move || {
                wait_for(
                    &format!(
                        "{}/{} -> {to_ip} to be {}",
                        from.0,
                        from.1,
                        if expected { "allowed" } else { "blocked" }
                    ),
                    Duration::from_secs(60),
                    || (reaches(cluster, from, to_ip) == expected).then_some(()),
                    || npc_tables(cluster),
                )
            });
        }
    });
}

fn npc_tables(cluster: &Cluster) -> String {
    let mut tables = String::new();
    for index in 1..=NODES {
        let output = cluster.on_node(index, &["nft", "list", "table", "inet", "weft-npc"]);
        tables.push_str(&format!("node{index}:\n{}\n", both(&output)));
    }
    tables
}

/// Default-deny ingress in a namespace, then an allow by podSelector, then by
/// namespaceSelector; enforced on the server's node for clients on the same and other nodes;
/// the blocked connection in weave-npc's log and metric.
fn network_policy(cluster: &Cluster) {
    cluster.apply(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: np-a\n---\n\
         apiVersion: v1\nkind: Namespace\nmetadata:\n  name: np-b\n  labels: {team: friends}\n",
    );
    let mut pods = String::new();
    for (name, namespace, index, labels) in [
        ("server-node1", "np-a", 1, "app: server"),
        ("server-node2", "np-a", 2, "app: server"),
        ("client-node1", "np-a", 1, "role: client"),
        ("client-node2", "np-a", 2, "role: client"),
        ("stranger", "np-a", 3, "role: stranger"),
        ("friend", "np-b", 3, "role: friend"),
    ] {
        pods.push_str(&pinned_pod(
            name,
            namespace,
            index,
            labels,
            &serve(name),
            None,
        ));
        pods.push_str("---\n");
    }
    cluster.apply(&pods);
    wait_ready(cluster, "np-a", "app=server");
    wait_ready(cluster, "np-a", "role");
    wait_ready(cluster, "np-b", "role");
    let server1 = pod_ip(cluster, "np-a", "server-node1");
    let server2 = pod_ip(cluster, "np-a", "server-node2");
    let client1 = ("np-a", "client-node1");
    let client2 = ("np-a", "client-node2");
    let stranger = ("np-a", "stranger");
    let friend = ("np-b", "friend");

    // No policy: everyone reaches everyone.
    let everyone: Vec<_> = [client1, client2, stranger, friend]
        .into_iter()
        .flat_map(|from| {
            [
                (from, server1.as_str(), true),
                (from, server2.as_str(), true),
            ]
        })
        .collect();
    expect_reach(cluster, &everyone);

    // Each policy added on top of the ones before, and what must hold once it is enforced.
    let default_deny = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: default-deny\n  namespace: np-a\n\
         spec:\n  podSelector: {}\n  policyTypes: [Ingress]\n";
    let allow_clients = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: allow-clients\n  namespace: np-a\n\
         spec:\n  podSelector:\n    matchLabels: {app: server}\n  ingress:\n    - from:\n        - podSelector:\n            matchLabels: {role: client}\n";
    let allow_friends = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: allow-friends\n  namespace: np-a\n\
         spec:\n  podSelector:\n    matchLabels: {app: server}\n  ingress:\n    - from:\n        - namespaceSelector:\n            matchLabels: {team: friends}\n";
    let steps = [
        (
            default_deny,
            vec![
                (client1, server1.as_str(), false), // same node
                (client1, server2.as_str(), false), // across nodes
                (friend, server2.as_str(), false),
            ],
        ),
        (
            allow_clients,
            vec![
                (client1, server1.as_str(), true),
                (client1, server2.as_str(), true),
                (client2, server1.as_str(), true),
                (stranger, server2.as_str(), false),
                (friend, server2.as_str(), false),
            ],
        ),
        (
            allow_friends,
            vec![
                (friend, server1.as_str(), true),
                (friend, server2.as_str(), true),
                (stranger, server1.as_str(), false),
            ],
        ),
    ];
    for (policy, expectations) in steps {
        let applied = Instant::now();
        cluster.apply(policy);
        expect_reach(cluster, &expectations);
        eprintln!("cluster: policy step checked in {:.0?}", applied.elapsed());
    }

    // The stranger's attempts were dropped on server-node2's node: weave-npc there logs them,
    // naming both ends and the policy that isolates the server, and counts them.
    assert!(!reaches(cluster, stranger, &server2));
    let npc = weave_pod(cluster, 2);
    let logs = || cluster.kubectl(&["logs", "-n", "kube-system", &npc, "-c", "weave-npc"]);
    wait_for(
        "the blocked connection in weave-npc's log",
        Duration::from_secs(60),
        || {
            logs()
                .lines()
                .any(|line| {
                    line.contains("blocked by network policy: np-a/stranger")
                        && line.contains(&format!("np-a/server-node2 ({server2}):8080/tcp"))
                        && line.contains("np-a/default-deny")
                })
                .then_some(())
        },
        logs,
    );
    let blocked = metric(
        cluster,
        2,
        6781,
        "weavenpc_blocked_connections_total{protocol=\"tcp\",dport=\"8080\"}",
    );
    assert!(blocked.is_some_and(|count| count >= 1.0), "{blocked:?}");
    let deleting = Instant::now();
    cluster.kubectl(&["delete", "namespace", "np-a", "np-b", "--timeout=180s"]);
    eprintln!("cluster: namespaces deleted in {:.0?}", deleting.elapsed());
}

/// 50 pods created and deleted leave every router's allocation count and every node's veths
/// where they were: containerd's two DELs free the address and remove the veth.
fn pod_churn(cluster: &Cluster) {
    let before: Vec<(usize, usize)> = (1..=NODES)
        .map(|index| (allocations(cluster, index), pod_veths(cluster, index)))
        .collect();
    cluster.apply(&format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: churn
  namespace: default
spec:
  replicas: 50
  selector:
    matchLabels: {{app: churn}}
  template:
    metadata:
      labels: {{app: churn}}
    spec:
      terminationGracePeriodSeconds: 0
      containers:
        - name: sleep
          image: {IMAGE}
          imagePullPolicy: Never
          command: [sleep, "3600"]
"#
    ));
    cluster.kubectl(&["rollout", "status", "deploy/churn", "--timeout=300s"]);
    let during: usize = (1..=NODES).map(|index| allocations(cluster, index)).sum();
    let before_total: usize = before.iter().map(|(allocated, _)| allocated).sum();
    assert_eq!(during, before_total + 50, "allocations with 50 more pods");
    cluster.kubectl(&["delete", "deploy/churn", "--timeout=180s"]);
    cluster.kubectl(&[
        "wait",
        "--for=delete",
        "pod",
        "-l",
        "app=churn",
        "--timeout=180s",
    ]);
    let now = || -> Vec<(usize, usize)> {
        (1..=NODES)
            .map(|index| (allocations(cluster, index), pod_veths(cluster, index)))
            .collect()
    };
    wait_for(
        "allocations and veths back where they were",
        Duration::from_secs(120),
        || (now() == before).then_some(()),
        || format!("before {before:?}, now {:?}", now()),
    );
}

/// `kubectl rollout restart ds/weave-net` and then an image change, while a TCP stream runs
/// from a pod on node1 to a pod on node2: the one connection survives both rolls.
fn rolling_restart_under_traffic(cluster: &Cluster) {
    cluster.apply(&pinned_pod(
        "stream-server",
        "default",
        2,
        "app: stream",
        // One connection only (no -k): if it broke, nothing could take its place. nc ends
        // when its stdin does, so it gets one that stays open.
        "busybox sleep 100000 | busybox nc -l -p 9000 > /tmp/received",
        None,
    ));
    wait_ready(cluster, "default", "app=stream");
    let server = pod_ip(cluster, "default", "stream-server");
    cluster.apply(&pinned_pod(
        "stream-client",
        "default",
        1,
        "app: stream-client",
        &format!(
            "i=0; while [ $i -lt 200000 ]; do echo $i; i=$((i+1)); busybox usleep 20000; done \
             | busybox nc {server} 9000; echo \"nc exited $?\" > /tmp/ended; sleep 3600"
        ),
        None,
    ));
    wait_ready(cluster, "default", "app=stream-client");
    // (complete lines received, how many of them are not the number of their position): the
    // client sends 0, 1, 2, ... one per line, so a gap or a restart would show.
    let received = || -> (usize, usize) {
        let output = sh(
            cluster,
            "default",
            "stream-server",
            "n=$(busybox wc -l < /tmp/received); busybox head -n \"$n\" /tmp/received \
             | busybox awk 'NR - 1 != $1 { bad++ } END { print NR, bad + 0 }'",
        );
        let text = stdout(&output);
        let mut numbers = text.split_whitespace().filter_map(|n| n.parse().ok());
        (
            numbers.next().unwrap_or(0),
            numbers.next().unwrap_or(usize::MAX),
        )
    };
    wait_for(
        "the stream to flow",
        WAIT,
        || (received().0 >= 50).then_some(()),
        || format!("{:?}", received()),
    );

    let roll = |what: &str, args: &[&str]| {
        let old: BTreeSet<String> = (1..=NODES).map(|index| weave_pod(cluster, index)).collect();
        cluster.kubectl(args);
        cluster.kubectl(&[
            "rollout",
            "status",
            "-n",
            "kube-system",
            "ds/weave-net",
            "--timeout=300s",
        ]);
        let new: BTreeSet<String> = (1..=NODES).map(|index| weave_pod(cluster, index)).collect();
        assert!(
            old.is_disjoint(&new),
            "{what}: pods not replaced: {old:?} {new:?}"
        );
        assert_no_restarts(cluster, what);
        let (count_after, _) = received();
        wait_for(
            &format!("the stream to go on after the {what}"),
            Duration::from_secs(60),
            || (received().0 > count_after + 20).then_some(()),
            || format!("{:?}", received()),
        );
        let ended = sh(
            cluster,
            "default",
            "stream-client",
            "cat /tmp/ended 2>/dev/null",
        );
        assert!(
            stdout(&ended).is_empty(),
            "{what}: the stream ended: {}",
            stdout(&ended)
        );
        // Every line arrived, in order, on the one connection.
        let (count, out_of_place) = received();
        assert_eq!(
            out_of_place, 0,
            "{what}: {count} lines, {out_of_place} out of place"
        );
    };
    roll(
        "rollout restart",
        &["rollout", "restart", "-n", "kube-system", "ds/weave-net"],
    );
    // An upgrade: the same image under a new tag, as a new release would be.
    for index in 1..=NODES {
        let output = cluster.on_node(
            index,
            &[
                "ctr",
                "-n",
                "k8s.io",
                "images",
                "tag",
                IMAGE,
                "localhost/weft:ci-next",
            ],
        );
        assert!(output.status.success(), "{}", both(&output));
    }
    roll(
        "image change",
        &[
            "set",
            "image",
            "-n",
            "kube-system",
            "ds/weave-net",
            "weave-init=localhost/weft:ci-next",
            "weave=localhost/weft:ci-next",
            "weave-npc=localhost/weft:ci-next",
        ],
    );
    cluster.kubectl(&[
        "delete",
        "pod",
        "stream-client",
        "stream-server",
        "--timeout=180s",
    ]);
}

/// Node 3 loses power and an operator deletes it: a survivor reclaims its addresses.
fn deleted_node_is_reclaimed(cluster: &Cluster) {
    let ipam = weave(cluster, 1, &["status", "ipam"]);
    assert!(ipam.contains("(node3)"), "{ipam}");
    cluster.power_off(3);
    cluster.kubectl(&["delete", "node", "node3", "--timeout=180s"]);
    let ipam = || weave(cluster, 1, &["status", "ipam"]);
    wait_for(
        "node3's ranges to be reclaimed",
        WAIT,
        || (!ipam().contains("(node3)")).then_some(()),
        ipam,
    );
    let unreachable = metric(cluster, 1, 6782, "weave_ipam_unreachable_percentage");
    assert_eq!(unreachable, Some(0.0));
    // The survivors still talk.
    let target = pod_ip(cluster, "default", "pinned-node2");
    assert!(
        fetch(
            cluster,
            "default",
            "pinned-node1",
            &format!("http://{target}:8080/")
        )
        .is_some()
    );
}

/// The workloads go before the network, as an operator removes them: a pod's sandbox cannot be
/// torn down without the router that gave it its address (containerd retries the CNI DEL until
/// a router answers, so that no address leaks across a router restart). The deployment goes in
/// the foreground, its pods with it: deleted in the background, its replica set lived on for a
/// moment and replaced the pods deleted next, and such a pod, torn down by the garbage
/// collector after the routers had gone, stayed terminating (seen once, 2026-12-08).
fn drain(cluster: &Cluster) {
    cluster.kubectl(&[
        "delete",
        "deploy/web",
        "service/web",
        "--cascade=foreground",
        "--timeout=180s",
    ]);
    cluster.kubectl(&["delete", "pods", "--all", "--timeout=180s"]);
}

/// `kubectl delete -f deploy/weave-net.yaml`: every object gone, no pod stuck.
fn uninstall(cluster: &Cluster, manifest: &str) {
    cluster.kubectl(&["delete", "-f", manifest, "--timeout=180s"]);
    wait_for(
        "the weave-net pods to go",
        WAIT,
        || {
            let pods = cluster.get(&["pods", "-n", "kube-system", "-l", "name=weave-net"]);
            pods["items"]
                .as_array()
                .is_some_and(Vec::is_empty)
                .then_some(())
        },
        || cluster.kubectl(&["get", "pods", "-A", "-o", "wide"]),
    );
    let left = cluster.kubectl(&[
        "get",
        "serviceaccount,role,rolebinding,daemonset",
        "-n",
        "kube-system",
        "-l",
        "name=weave-net",
        "-o",
        "name",
    ]);
    assert!(left.trim().is_empty(), "{left}");
    let left = cluster.kubectl(&[
        "get",
        "clusterrole,clusterrolebinding",
        "-l",
        "name=weave-net",
        "-o",
        "name",
    ]);
    assert!(left.trim().is_empty(), "{left}");
    let pods = cluster.get(&["pods", "-A"]);
    for pod in pods["items"].as_array().expect("pods") {
        assert!(
            pod["metadata"]["deletionTimestamp"].is_null(),
            "pod stuck terminating: {}",
            pod["metadata"]["name"]
        );
    }
}

/// What a node keeps of Weft: (device or table, present).
fn leftovers(cluster: &Cluster, index: usize) -> Vec<(&'static str, bool)> {
    let exists = |command: &[&str]| cluster.on_node(index, command).status.success();
    vec![
        ("bridge weave", exists(&["ip", "link", "show", "weave"])),
        ("vxlan-6784", exists(&["ip", "link", "show", "vxlan-6784"])),
        (
            "table ip weft",
            exists(&["nft", "list", "table", "ip", "weft"]),
        ),
        (
            "table inet weft-npc",
            exists(&["nft", "list", "table", "inet", "weft-npc"]),
        ),
        (
            "10-weave.conflist",
            exists(&["test", "-e", "/etc/cni/net.d/10-weave.conflist"]),
        ),
        (
            "the CNI plugin",
            exists(&["test", "-e", "/opt/cni/bin/weave-net"]),
        ),
        (
            "the database",
            exists(&["test", "-e", "/var/lib/weave/weave-netdata.db"]),
        ),
    ]
}

/// After removal the nodes keep Weft's devices, tables and files (the pods still running
/// there depend on them); `deploy/weave-reset.yaml` cleans every node.
fn reset_nodes(cluster: &Cluster) {
    let survivors = 1..=NODES - 1;
    for index in survivors.clone() {
        let left = leftovers(cluster, index);
        assert!(
            left.iter().all(|(_, present)| *present),
            "node{index}: {left:?}"
        );
    }
    let reset = cluster.manifest("weave-reset.yaml").display().to_string();
    cluster.kubectl(&["apply", "-f", &reset]);
    cluster.kubectl(&[
        "rollout",
        "status",
        "-n",
        "kube-system",
        "ds/weave-reset",
        "--timeout=180s",
    ]);
    for index in survivors {
        let left = leftovers(cluster, index);
        assert!(
            left.iter().all(|(_, present)| !*present),
            "node{index}: {left:?}"
        );
    }
    let logs = cluster.kubectl(&[
        "logs",
        "-n",
        "kube-system",
        "-l",
        "name=weave-reset",
        "-c",
        "reset",
    ]);
    assert!(logs.contains("removed weave\n"), "{logs}");
    cluster.kubectl(&["delete", "-f", &reset, "--timeout=180s"]);
}
