//! The Grafana dashboard `deploy/grafana/weft.json` against real data: its JSON is checked for
//! what an import needs (every panel with a title, a description, a datasource and queries,
//! unique ids, the `datasource` and `node` variables), then three Kubernetes nodes with real
//! routers (tests/kubelab, tests/netlab) carry pod traffic over fastdp and, on the links of a
//! node whose VXLAN port is blocked, over sleeve; `weft npc` on node1 drops a pod's connection by
//! policy; and Debian's `prometheus` in a namespace of the lab scrapes every router and npc each
//! second. Every query of every panel, with the variables substituted as Grafana would (all
//! nodes, then node1 alone), must return data from that Prometheus; the test names each panel
//! and query that returned nothing. Everything is killed and removed on drop, also on failure,
//! and the logs (Prometheus's among them) are printed then.

mod kubelab;
use weft_testkit::netlab;

use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kubelab::KubeApi;
use netlab::{Lab, Node, in_netns, links_using, nft, tcp_all_pairs, wait_until};
use serde_json::{Value, json};

const DASHBOARD: &str = "deploy/grafana/weft.json";
/// Debian's package `prometheus` (scripts/test.sh installs it).
const PROMETHEUS: &str = "/usr/bin/prometheus";
/// Prometheus's namespace on the underlay (the API server is .2, the nodes .11 and up).
const PROMETHEUS_ADDRESS: &str = "198.51.100.3";
const PROMETHEUS_PORT: u16 = 9090;
/// The router's and npc's metrics ports (Weave Net's).
const ROUTER_METRICS_PORT: u16 = 6782;
const NPC_METRICS_PORT: u16 = 6781;
/// The routers allocate from here; pods get their addresses from IPAM as the CNI plugin would.
const RANGE: &str = "10.32.0.0/16";
/// Every wait is generous: CI is a busy 2-core machine with an API server beside the routers.
const WAIT: Duration = Duration::from_secs(90);
/// What Grafana puts in for its interval variables: `$__rate_interval` is at least four scrape
/// intervals of the datasource (15 s by default), `$__range` the dashboard's time range.
const RATE_INTERVAL: &str = "1m";
const RANGE_DURATION: &str = "1h";

fn node_name(node: &Node) -> String {
    format!("node{}", node.index)
}

/// The dashboard as the repository has it.
fn dashboard() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DASHBOARD);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{DASHBOARD} is not JSON: {e}"))
}

/// A panel's title and its queries (expressions as written in the dashboard).
struct Panel {
    title: String,
    exprs: Vec<String>,
}

/// Every panel that queries (rows excluded, also panels nested in collapsed rows).
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    for panel in dashboard["panels"].as_array().expect("a panels array") {
        if panel["type"] == "row" {
            all.extend(panel["panels"].as_array().into_iter().flatten());
        } else {
            all.push(panel);
        }
    }
    all
}

/// Fails with every structural problem at once; returns the panels to query.
fn check_structure(dashboard: &Value) -> Vec<Panel> {
    let mut problems = Vec::new();
    let schema = dashboard["schemaVersion"].as_u64().unwrap_or(0);
    if !(36..=39).contains(&schema) {
        problems.push(format!("schemaVersion {schema}, expected about 38"));
    }
    let variables = dashboard["templating"]["list"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let variable = |name: &str| variables.iter().find(|v| v["name"] == name).cloned();
    let has_input = dashboard["__inputs"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|input| input["name"] == "DS_PROMETHEUS" && input["pluginId"] == "prometheus");
    let datasource_variable = variable("datasource")
        .is_some_and(|v| v["type"] == "datasource" && v["query"] == "prometheus");
    if !has_input || !datasource_variable {
        problems.push("no DS_PROMETHEUS input and prometheus `datasource` variable".into());
    }
    match variable("node") {
        Some(node) => {
            let query = node["query"]["query"].as_str().or(node["query"].as_str());
            if query != Some("label_values(weave_connections, instance)")
                || node["multi"] != true
                || node["includeAll"] != true
                || node["allValue"] != ".*"
            {
                problems.push(format!("variable node: {node}"));
            }
        }
        None => problems.push("no variable `node`".into()),
    }
    let mut seen = HashSet::new();
    let mut result = Vec::new();
    for panel in panels(dashboard) {
        let title = panel["title"].as_str().unwrap_or_default().to_string();
        let id = panel["id"].as_u64();
        if title.trim().is_empty() {
            problems.push(format!("panel {id:?} has no title"));
        }
        match id {
            Some(id) if !seen.insert(id) => problems.push(format!("panel id {id} twice")),
            Some(_) => {}
            None => problems.push(format!("{title:?} has no id")),
        }
        if panel["description"].as_str().is_none_or(str::is_empty) {
            problems.push(format!("{title:?} has no description"));
        }
        if panel["datasource"]["type"] != "prometheus" || panel["datasource"]["uid"].is_null() {
            problems.push(format!("{title:?} has no prometheus datasource"));
        }
        if panel["gridPos"]["w"].as_u64().is_none() || panel["gridPos"]["h"].as_u64().is_none() {
            problems.push(format!("{title:?} has no gridPos"));
        }
        let exprs: Vec<String> = panel["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|target| target["expr"].as_str().map(str::to_string))
            .collect();
        if exprs.is_empty() {
            problems.push(format!("{title:?} has no query"));
        }
        for expr in &exprs {
            // Every panel can be looked at per node.
            if !expr.contains("instance=~\"$node:.*\"") {
                problems.push(format!("{title:?}: {expr} is not filtered by $node"));
            }
        }
        result.push(Panel { title, exprs });
    }
    // Rows have ids too, and they must not collide with panels'.
    let row_ids: Vec<u64> = dashboard["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|panel| panel["type"] == "row")
        .filter_map(|row| row["id"].as_u64())
        .collect();
    for id in row_ids {
        if !seen.insert(id) {
            problems.push(format!("row id {id} is also a panel's"));
        }
    }
    assert!(problems.is_empty(), "{DASHBOARD}:\n{}", problems.join("\n"));
    result
}

/// The query Grafana sends for `expr` with node selection `node` (a regular expression: `.*`
/// for All, an escaped address for one node).
fn substitute(expr: &str, node: &str) -> String {
    expr.replace("$node", node)
        .replace("$__rate_interval", RATE_INTERVAL)
        .replace("$__interval", "15s")
        .replace("$__range", RANGE_DURATION)
}

/// Debian's Prometheus in a namespace of the lab, scraping `targets` every second; killed on
/// drop. Its log is `prometheus.log` in the lab's directory, printed with the lab's on failure.
struct Prometheus {
    ns: String,
    child: Option<Child>,
}

impl Prometheus {
    fn start(lab: &mut Lab, targets: &[String]) -> Self {
        assert!(
            Path::new(PROMETHEUS).is_file(),
            "{PROMETHEUS} missing: apt-get install prometheus (scripts/test.sh does)"
        );
        let ns = lab.host("prom", PROMETHEUS_ADDRESS);
        let dir = lab.dir().join("prometheus");
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let quoted: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: weft\n    static_configs:\n      - targets: [{}]\n",
            quoted.join(", ")
        );
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(lab.dir().join("prometheus.log")).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &ns, PROMETHEUS])
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!(
                "--web.listen-address={PROMETHEUS_ADDRESS}:{PROMETHEUS_PORT}"
            ))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let mut prometheus = Self {
            ns,
            child: Some(child),
        };
        let ready = wait_until(WAIT, || {
            if let Some(child) = prometheus.child.as_mut() {
                assert!(
                    child.try_wait().ok().flatten().is_none(),
                    "prometheus exited: see prometheus.log"
                );
            }
            prometheus.get("/-/ready").is_some()
        });
        assert!(ready, "prometheus not ready in {} s", WAIT.as_secs());
        prometheus
    }

    /// GET `path` (with query parameters to URL-encode), from Prometheus's own namespace; the
    /// body if the answer was a success.
    fn get_with(&self, path: &str, params: &[(&str, &str)]) -> Option<String> {
        let url = format!("http://{PROMETHEUS_ADDRESS}:{PROMETHEUS_PORT}{path}");
        let encoded: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut args = vec!["-sSf", "-m", "10", "--get"];
        for param in &encoded {
            args.extend(["--data-urlencode", param.as_str()]);
        }
        args.push(&url);
        let output = in_netns(&self.ns, "curl", &args);
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn get(&self, path: &str) -> Option<String> {
        self.get_with(path, &[])
    }

    /// The result vector of an instant query, or why there is none.
    fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let body = self
            .get_with("/api/v1/query", &[("query", expr)])
            .ok_or("the query failed (HTTP error or no answer)")?;
        let answer: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        if answer["status"] != "success" {
            return Err(format!("{answer}"));
        }
        Ok(answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// The scrape targets' `instance` → health.
    fn targets(&self) -> Vec<(String, String)> {
        let Some(body) = self.get("/api/v1/targets") else {
            return Vec::new();
        };
        let answer: Value = serde_json::from_str(&body).unwrap_or_default();
        answer["data"]["activeTargets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|target| {
                (
                    target["labels"]["instance"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    target["health"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A process killed (and reaped) on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A router that finds its peers through the API server's Nodes, as in a cluster, with metrics
/// on the underlay for Prometheus.
fn kube_router(lab: &mut Lab, api: &KubeApi, node: &Node) {
    let name = format!("00:00:00:00:da:{:02x}", node.index);
    let nickname = node_name(node);
    api.start_router(
        lab,
        node,
        &name,
        &nickname,
        &nickname,
        &["--ipalloc-range", RANGE],
    );
}

/// An address for pod `id` from the router of `node`, as the CNI plugin asks for one.
fn allocate(node: &Node, id: &str) -> String {
    let url = format!("http://127.0.0.1:6784/ip/{id}");
    let mut address = String::new();
    let allocated = wait_until(WAIT, || {
        let output = in_netns(&node.ns, "curl", &["-sSf", "-m", "30", "-X", "POST", &url]);
        address = String::from_utf8_lossy(&output.stdout).trim().to_string();
        output.status.success() && address.starts_with("10.32.")
    });
    assert!(allocated, "no address for {id} from {}: {address}", node.ns);
    address
}

fn create(api: &KubeApi, path: &str, object: &Value) {
    let (status, body) = api.request("POST", path, Some(object));
    assert!(
        status == 201 || status == 200,
        "POST {path}: {status} {body}"
    );
}

/// Pod `name` of namespace `dash` running on `node` with `ip`, as a kubelet would report it.
fn kube_pod(api: &KubeApi, name: &str, node: &str, ip: &str) {
    let object = json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "nodeName": node,
            "automountServiceAccountToken": false,
            "containers": [{"name": "serve", "image": "localhost/none",
                            "ports": [{"name": "http", "containerPort": 80}]}],
        },
    });
    create(api, "/api/v1/namespaces/dash/pods", &object);
    let status = json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}});
    let (code, body) = api.request(
        "PATCH",
        &format!("/api/v1/namespaces/dash/pods/{name}/status"),
        Some(&status),
    );
    assert_eq!(code, 200, "{body}");
}

fn npc_metrics(node: &Node) -> String {
    let url = format!("http://127.0.0.1:{NPC_METRICS_PORT}/metrics");
    let output = in_netns(&node.ns, "curl", &["-sS", "-m", "10", &url]);
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Whether a series of an instant query's result has a value Grafana can draw: NaN is what a
/// quantile of an idle histogram gives, or a ratio of zeros, and shows as a gap.
fn has_a_number(series: &Value) -> bool {
    series["value"][1]
        .as_str()
        .and_then(|value| value.parse::<f64>().ok())
        .is_some_and(f64::is_finite)
}

/// Queries every panel's every expression with `$node` = each of `nodes` until each has
/// returned data once (a finite value), or [`WAIT`] has passed: then the panels and queries that
/// never did. All at once, so that a slow panel does not age the others' windows.
fn empty_queries(prometheus: &Prometheus, panels: &[Panel], nodes: &[&str]) -> Vec<String> {
    let mut pending: Vec<(String, String)> = nodes
        .iter()
        .flat_map(|node| {
            panels.iter().flat_map(move |panel| {
                panel
                    .exprs
                    .iter()
                    .map(move |expr| (panel.title.clone(), substitute(expr, node)))
            })
        })
        .collect();
    let mut last_answer = std::collections::HashMap::new();
    let deadline = Instant::now() + WAIT;
    loop {
        pending.retain(|(title, query)| match prometheus.query(query) {
            Ok(result) if result.iter().any(has_a_number) => false,
            Ok(result) => {
                let answer = if result.is_empty() {
                    "an empty result".to_string()
                } else {
                    format!("no finite value (Grafana draws nothing): {result:?}")
                };
                last_answer.insert((title.clone(), query.clone()), answer);
                true
            }
            Err(err) => {
                last_answer.insert((title.clone(), query.clone()), err);
                true
            }
        });
        if pending.is_empty() || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    pending
        .into_iter()
        .map(|(title, query)| {
            let answer = &last_answer[&(title.clone(), query.clone())];
            format!("panel {title:?}: {query}  => {answer}")
        })
        .collect()
}

#[test]
fn every_panel_of_the_dashboard_shows_data_from_real_routers_and_npc() {
    let started = Instant::now();
    let panels = check_structure(&dashboard());

    let mut lab = Lab::new("dash");
    lab.serve_metrics_on(&format!("0.0.0.0:{ROUTER_METRICS_PORT}"));
    let api = KubeApi::new(&mut lab);
    api.grant_router_rbac();
    let nodes: Vec<Node> = (1..=3).map(|index| lab.node(index)).collect();
    for node in &nodes {
        api.create_node(&node_name(node), &node.ip);
    }
    let node1 = nodes[0].clone();
    let mut targets: Vec<String> = nodes
        .iter()
        .map(|node| format!("{}:{ROUTER_METRICS_PORT}", node.ip))
        .collect();
    targets.push(format!("{}:{NPC_METRICS_PORT}", node1.ip));
    // Started first, so that it has scraped for a while when the queries run.
    let prometheus = Prometheus::start(&mut lab, &targets);
    for node in &nodes {
        kube_router(&mut lab, &api, node);
    }
    // Links start on sleeve and move to fastdp once its heartbeats are acked.
    assert!(
        wait_until(WAIT, || nodes
            .iter()
            .all(|node| links_using(node, "fastdp") == 2)),
        "no full mesh on fastdp: {:?}",
        nodes.iter().map(netlab::connections).collect::<Vec<_>>()
    );

    // VXLAN's port closed in node3: its two links fall back to sleeve (a real fallback for the
    // fallbacks panel), node1-node2 stays on
    // fastdp, so both overlays carry pod traffic.
    nft(
        &nodes[2].ns,
        "table inet weft_dash_block {\n\
         chain input { type filter hook input priority 0; udp dport 6784 drop; }\n\
         chain output { type filter hook output priority 0; udp dport 6784 drop; }\n}\n",
    );
    assert!(
        wait_until(WAIT, || links_using(&nodes[2], "sleeve") == 2
            && links_using(&nodes[0], "fastdp") == 1),
        "node3 not on sleeve: {} / {}",
        netlab::connections(&nodes[2]),
        netlab::connections(&nodes[0])
    );

    // A pod on each node, addressed by IPAM; every pod reaches every other one.
    let mut pods = Vec::new();
    for node in &nodes {
        let cidr = allocate(node, &format!("dash-pod{}", node.index));
        let pod = lab.pod(node, &format!("pod{}", node.index), &cidr);
        let ip = cidr.split('/').next().unwrap().to_string();
        pods.push((pod, ip));
    }
    let mut failed = Vec::new();
    assert!(
        wait_until(WAIT, || {
            failed = tcp_all_pairs(&pods, 7601);
            failed.is_empty()
        }),
        "no TCP between {failed:?}"
    );

    // npc on node1 isolates pod1 (policy `locked`, below): pod2's connections to it are dropped.
    create(
        &api,
        "/api/v1/namespaces",
        &json!({"metadata": {"name": "dash"}}),
    );
    create(
        &api,
        "/api/v1/namespaces/dash/serviceaccounts",
        &json!({"metadata": {"name": "default"}}),
    );
    kube_pod(&api, "server", &node_name(&node1), &pods[0].1);
    kube_pod(&api, "client", &node_name(&nodes[1]), &pods[1].1);
    let sysctl = in_netns(
        &node1.ns,
        "sysctl",
        &["-qw", "net.bridge.bridge-nf-call-iptables=1"],
    );
    assert!(sysctl.status.success(), "{sysctl:?}");
    let npc_log = std::fs::File::create(lab.dir().join("npc.log")).unwrap();
    let kubeconfig = api.router_kubeconfig();
    let _npc = Killed(
        Command::new("ip")
            .args(["netns", "exec", &node1.ns, netlab::weft(), "npc"])
            .args(["--node-name", &node_name(&node1)])
            .args(["--kubeconfig", kubeconfig.to_str().unwrap()])
            .args(["--metrics-addr", &format!("0.0.0.0:{NPC_METRICS_PORT}")])
            .stdout(Stdio::null())
            .stderr(npc_log)
            .spawn()
            .expect("start weft npc"),
    );
    let healthz = format!("http://127.0.0.1:{NPC_METRICS_PORT}/healthz");
    assert!(
        wait_until(WAIT, || {
            let output = in_netns(&node1.ns, "curl", &["-sS", "-m", "10", &healthz]);
            String::from_utf8_lossy(&output.stdout).trim() == "ok"
        }),
        "npc not healthy"
    );
    // The policy comes once Prometheus has seen npc's first table write: the policy's write is
    // then an increase of the duration histogram, recent when the queries run, so the
    // write-duration panel (a rate over the last minute) has a value.
    let first_write = format!(
        "weft_npc_syncs_total{{result=\"ok\", instance=\"{}:{NPC_METRICS_PORT}\"}} > 0",
        node1.ip
    );
    assert!(
        wait_until(WAIT, || prometheus
            .query(&first_write)
            .is_ok_and(|result| !result.is_empty())),
        "prometheus did not see npc's first write: {first_write}"
    );
    create(
        &api,
        "/apis/networking.k8s.io/v1/namespaces/dash/networkpolicies",
        &json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "locked"},
            "spec": {"podSelector": {"matchLabels": {"app": "server"}}, "policyTypes": ["Ingress"]},
        }),
    );
    let (server_ip, client_pod) = (pods[0].1.clone(), pods[1].0.clone());
    let attempt = format!(
        "import socket\ntry: socket.create_connection(('{server_ip}', 80), timeout=1)\nexcept OSError: pass"
    );
    assert!(
        wait_until(WAIT, || {
            in_netns(&client_pod, "python3", &["-c", &attempt]);
            npc_metrics(&node1).contains("weavenpc_blocked_connections_total{protocol=\"tcp\"")
        }),
        "no connection blocked: {}",
        npc_metrics(&node1)
    );

    assert!(
        wait_until(WAIT, || {
            let health = prometheus.targets();
            health.len() == targets.len() && health.iter().all(|(_, h)| h == "up")
        }),
        "not every target is up: {:?}",
        prometheus.targets()
    );
    // The `node` variable: the instances of weave_connections cut to the address by the
    // variable's regex, applied here by Prometheus itself (RE2, anchored, as Grafana's).
    let variable = dashboard()["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "node")
        .cloned()
        .unwrap();
    let regex = variable["regex"].as_str().unwrap_or_default();
    let regex = regex
        .strip_prefix('/')
        .and_then(|r| r.strip_suffix('/'))
        .unwrap_or(regex);
    let hosts_query = format!(
        "count by (host) (label_replace(weave_connections, \"host\", \"$1\", \"instance\", \"{regex}\"))"
    );
    let hosts: BTreeSet<String> = prometheus
        .query(&hosts_query)
        .unwrap_or_else(|e| panic!("{hosts_query}: {e}"))
        .iter()
        .filter_map(|series| series["metric"]["host"].as_str().map(str::to_string))
        .collect();
    let expected: BTreeSet<String> = nodes.iter().map(|node| node.ip.clone()).collect();
    assert_eq!(hosts, expected, "the node variable's values");

    // The data is the lab's, not only 0 lines: node3's fallback was counted.
    let fallbacks = format!(
        "weft_overlay_fallbacks_total{{instance=\"{}:{ROUTER_METRICS_PORT}\"}} >= 1",
        nodes[2].ip
    );
    assert!(
        wait_until(WAIT, || prometheus
            .query(&fallbacks)
            .is_ok_and(|result| !result.is_empty())),
        "node3's fallback not counted: {fallbacks}"
    );

    // All nodes, then node1 alone as Grafana escapes one selected value: node1 runs npc too,
    // so every panel has data for it.
    let node1_regex = node1.ip.replace('.', "\\\\.");
    let failures = empty_queries(&prometheus, &panels, &[".*", &node1_regex]);
    assert!(
        failures.is_empty(),
        "{} of {} queries returned nothing:\n{}",
        failures.len(),
        2 * panels.iter().map(|p| p.exprs.len()).sum::<usize>(),
        failures.join("\n")
    );
    eprintln!(
        "dashboard: {} panels, every query answered, {:.1} s in all",
        panels.len(),
        started.elapsed().as_secs_f64()
    );
}
