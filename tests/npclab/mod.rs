//! The upstream network-policy e2e model on namespaced pods, for `weft npc`'s kernel tests:
//! namespaces x, y, z (labelled `ns=<name>`) with pods a, b, c (labelled `pod=<name>`), every pod
//! serving TCP and UDP on ports 80 and 81 (container ports named `serve-<port>-<proto>`), all on
//! one node's `weave` bridge with br_netfilter on. A probe runs every (from, to, port, protocol)
//! at once with a short timeout and answers the reachability matrix, which a scenario compares
//! with its expected truth table. Everything is removed on drop.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use weft::npc::compile::compile;
use weft::npc::model::{ContainerPort, Labels, Namespace, Pod, Policy, Protocol, World};
use weft::npc::nft::{Nft, PolicyKernel};

use crate::netlab::{Lab, in_netns, ip, weft};

pub const NAMESPACES: [&str; 3] = ["x", "y", "z"];
pub const PODS: [&str; 3] = ["a", "b", "c"];
pub const PORTS: [u16; 2] = [80, 81];
pub const PROTOCOLS: [Protocol; 2] = [Protocol::Tcp, Protocol::Udp];
pub const NODE: &str = "node1";
pub const NODE2: &str = "node2";

/// Which node a namespace's pods run on: all on node1, or x on node1 and y, z on node2 (so that
/// every cross-namespace probe crosses the overlay, and egress and ingress are checked on
/// different nodes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    OneNode,
    TwoNodes { sleeve_only: bool },
}

impl Layout {
    pub fn node_of(self, namespace: &str) -> &'static str {
        match self {
            Layout::OneNode => NODE,
            Layout::TwoNodes { .. } if namespace == "x" => NODE,
            Layout::TwoNodes { .. } => NODE2,
        }
    }
}

/// A pod of the model, `x/a`.
pub fn pod_id(namespace: &str, pod: &str) -> String {
    format!("{namespace}/{pod}")
}

/// 10.40.<namespace>.<pod>: x/a is 10.40.1.1.
pub fn pod_ip(namespace: &str, pod: &str) -> Ipv4Addr {
    let n = NAMESPACES.iter().position(|ns| *ns == namespace).unwrap() as u8 + 1;
    let p = PODS.iter().position(|name| *name == pod).unwrap() as u8 + 1;
    Ipv4Addr::new(10, 40, n, p)
}

/// One probe: from, to, port, protocol.
pub type Probe = (String, String, u16, Protocol);

/// The truth table of a scenario: starts all allowed, as upstream's `NewReachability(all, true)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reachability {
    pub cells: BTreeMap<Probe, bool>,
}

impl Reachability {
    pub fn all(allowed: bool) -> Self {
        let mut cells = BTreeMap::new();
        for from in all_pods() {
            for to in all_pods() {
                if from == to {
                    continue;
                }
                for port in PORTS {
                    for protocol in PROTOCOLS {
                        cells.insert((from.clone(), to.clone(), port, protocol), allowed);
                    }
                }
            }
        }
        Self { cells }
    }

    /// Sets every cell whose from/to/port/protocol match (`None` matches anything; a pod id
    /// `x/*` matches the namespace).
    pub fn expect(
        &mut self,
        from: Option<&str>,
        to: Option<&str>,
        port: Option<u16>,
        protocol: Option<Protocol>,
        allowed: bool,
    ) -> &mut Self {
        let fits = |pattern: Option<&str>, pod: &str| match pattern {
            None => true,
            Some(pattern) => match pattern.strip_suffix("/*") {
                Some(namespace) => pod.starts_with(&format!("{namespace}/")),
                None => pattern == pod,
            },
        };
        for ((f, t, p, proto), cell) in &mut self.cells {
            if fits(from, f)
                && fits(to, t)
                && port.is_none_or(|x| x == *p)
                && protocol.is_none_or(|x| x == *proto)
            {
                *cell = allowed;
            }
        }
        self
    }

    /// "from -> to port/proto: expected X, got Y" for every differing cell.
    pub fn differences(&self, observed: &Reachability) -> Vec<String> {
        self.cells
            .iter()
            .filter(|(probe, expected)| observed.cells.get(*probe) != Some(expected))
            .map(|((f, t, p, proto), expected)| {
                format!(
                    "{f} -> {t} {p}/{}: expected {}, observed {:?}",
                    proto.as_str(),
                    if *expected { "allowed" } else { "blocked" },
                    observed.cells.get(&(f.clone(), t.clone(), *p, *proto))
                )
            })
            .collect()
    }
}

pub fn all_pods() -> Vec<String> {
    NAMESPACES
        .iter()
        .flat_map(|ns| PODS.iter().map(move |pod| pod_id(ns, pod)))
        .collect()
}

/// The world of the model with `policies`, every pod on node1.
pub fn world(policies: Vec<Policy>) -> World {
    world_on(Layout::OneNode, policies)
}

/// The world of the model with `policies`, pods placed by `layout`.
pub fn world_on(layout: Layout, policies: Vec<Policy>) -> World {
    let labels = |key: &str, value: &str| -> Labels {
        [(key.to_string(), value.to_string())].into_iter().collect()
    };
    World {
        namespaces: NAMESPACES
            .iter()
            .map(|ns| {
                (
                    ns.to_string(),
                    Namespace {
                        name: ns.to_string(),
                        labels: labels("ns", ns),
                    },
                )
            })
            .collect(),
        pods: NAMESPACES
            .iter()
            .flat_map(move |ns| {
                PODS.iter().map(move |pod| Pod {
                    namespace: ns.to_string(),
                    name: pod.to_string(),
                    ip: Some(pod_ip(ns, pod)),
                    labels: labels("pod", pod),
                    node: Some(layout.node_of(ns).to_string()),
                    host_network: false,
                    terminating: false,
                    ports: PORTS
                        .iter()
                        .flat_map(|port| {
                            PROTOCOLS.iter().map(move |protocol| ContainerPort {
                                name: Some(format!("serve-{port}-{}", protocol.as_str())),
                                port: *port,
                                protocol: *protocol,
                            })
                        })
                        .collect(),
                })
            })
            .collect(),
        policies,
    }
}

/// The servers every pod runs: TCP answers "ok" and closes, UDP echoes.
const AGENT: &str = r#"
import socket, threading
def tcp(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(64)
    while True:
        c, _ = s.accept()
        try: c.sendall(b"ok")
        except OSError: pass
        c.close()
def udp(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", port))
    while True:
        data, peer = s.recvfrom(64); s.sendto(data, peer)
for port in (80, 81):
    threading.Thread(target=tcp, args=(port,), daemon=True).start()
    threading.Thread(target=udp, args=(port,), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"#;

/// Probes every target given on stdin ("ip port proto" lines) at once; prints "ip port proto 1|0".
const PROBER: &str = r#"
import socket, sys, threading
TIMEOUT = float(sys.argv[1])
targets = [line.split() for line in sys.stdin.read().splitlines() if line.strip()]
results = {}
def probe(ip, port, proto):
    ok = False
    try:
        if proto == "tcp":
            with socket.create_connection((ip, int(port)), timeout=TIMEOUT) as s:
                s.settimeout(TIMEOUT); ok = s.recv(2) == b"ok"
        else:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(TIMEOUT); s.connect((ip, int(port))); s.send(b"hi"); ok = s.recv(8) == b"hi"
    except OSError:
        ok = False
    results[(ip, port, proto)] = ok
threads = [threading.Thread(target=probe, args=t) for t in targets]
for t in threads: t.start()
for t in threads: t.join()
for (ip, port, proto), ok in results.items():
    print(ip, port, proto, 1 if ok else 0)
"#;

/// A denied TCP probe waits this long for its SYN's answer; an allowed one answers in
/// microseconds here, so a second is plenty even on a loaded 2-core machine.
const PROBE_TIMEOUT_SECS: &str = "1.0";

pub struct PolicyLab {
    pub lab: Lab,
    /// node1's namespace; it is on the lab's underlay (198.51.100.11), so that a controller
    /// in it reaches an API server there.
    pub node: String,
    pub kernel: Nft,
    pub layout: Layout,
    /// Each node's name and the `nft` of its namespace.
    pub kernels: Vec<(&'static str, Nft)>,
    /// What each node's table holds, as last written.
    written: std::cell::RefCell<BTreeMap<String, weft::npc::ruleset::Ruleset>>,
    /// Pod id → namespace name.
    pub pods: BTreeMap<String, String>,
    agents: Vec<Child>,
}

impl PolicyLab {
    pub fn new(tag: &str) -> Self {
        Self::with_layout(tag, Layout::OneNode)
    }

    /// The model's pods placed by `layout`. With two nodes, each runs a real `weft router`
    /// (fastdp, or sleeve only) that makes its `weave` bridge and links the two.
    pub fn with_layout(tag: &str, layout: Layout) -> Self {
        let mut lab = Lab::new(tag);
        let node1 = lab.node(1);
        let mut kernels = vec![(
            NODE,
            Nft {
                netns: Some(node1.ns.clone()),
            },
        )];
        let mut node_netns: BTreeMap<&str, String> = BTreeMap::from([(NODE, node1.ns.clone())]);
        match layout {
            Layout::OneNode => {
                ip(&["-n", &node1.ns, "link", "add", "weave", "type", "bridge"]);
                ip(&["-n", &node1.ns, "link", "set", "weave", "up"]);
            }
            Layout::TwoNodes { sleeve_only } => {
                let node2 = lab.node(2);
                // The pods' addresses are outside the routers' range: IPAM is not needed here.
                let mut extra = vec!["--ipalloc-range", ""];
                if sleeve_only {
                    extra.push("--no-fastdp");
                }
                lab.router(&node1, 0x70, &extra, &[]);
                lab.router(&node2, 0x70, &extra, &[&node1]);
                let overlay = if sleeve_only { "sleeve" } else { "fastdp" };
                assert!(
                    crate::netlab::wait_until(Duration::from_secs(60), || {
                        crate::netlab::links_using(&node1, overlay) == 1
                            && crate::netlab::links_using(&node2, overlay) == 1
                    }),
                    "no {overlay} link: {}",
                    crate::netlab::connections(&node1)
                );
                kernels.push((
                    NODE2,
                    Nft {
                        netns: Some(node2.ns.clone()),
                    },
                ));
                node_netns.insert(NODE2, node2.ns.clone());
            }
        }
        for netns in node_netns.values() {
            let sysctl = in_netns(
                netns,
                "sysctl",
                &["-qw", "net.bridge.bridge-nf-call-iptables=1"],
            );
            assert!(sysctl.status.success(), "{sysctl:?}");
        }
        let node = node1.ns.clone();
        let mut pods = BTreeMap::new();
        let mut agents = Vec::new();
        for ns in NAMESPACES {
            for pod in PODS {
                let netns = lab.netns(&format!("{ns}{pod}"));
                let address = format!("{}/16", pod_ip(ns, pod));
                let host = &node_netns[layout.node_of(ns)];
                let attached = in_netns(
                    host,
                    weft(),
                    &["attach", "--netns", &netns, "--ip", &address],
                );
                assert!(attached.status.success(), "attach {netns}: {attached:?}");
                let mut agent = Command::new("ip")
                    .args(["netns", "exec", &netns, "python3", "-u", "-c", AGENT])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("start a pod's servers");
                let mut ready = String::new();
                use std::io::BufRead;
                std::io::BufReader::new(agent.stdout.as_mut().unwrap())
                    .read_line(&mut ready)
                    .unwrap();
                assert_eq!(ready.trim(), "ready");
                agents.push(agent);
                pods.insert(pod_id(ns, pod), netns);
            }
        }
        let kernel = Nft {
            netns: Some(node.clone()),
        };
        Self {
            lab,
            node,
            kernel,
            layout,
            kernels,
            written: Default::default(),
            pods,
            agents,
        }
    }

    /// Compiles `world` for each node and applies it there.
    /// The first time the whole table, then only the elements that change, as the controller
    /// does.
    pub fn enforce(&self, world: &World) {
        let mut written = self.written.borrow_mut();
        for (node, kernel) in &self.kernels {
            let compiled = compile(world, node);
            match written.get(*node) {
                Some(previous) => kernel
                    .update(previous, &compiled.ruleset)
                    .expect("update the table"),
                None => kernel.apply(&compiled.ruleset).expect("write the table"),
            }
            written.insert(node.to_string(), compiled.ruleset);
        }
    }

    /// Forgets what was written, so that the next `enforce` writes whole tables.
    pub fn forget_written(&self) {
        self.written.borrow_mut().clear();
    }

    /// Probes until the matrix equals `expected` (a controller is writing the rules), or fails
    /// after `timeout` with the differences.
    pub fn wait_for(&self, name: &str, expected: &Reachability, timeout: Duration) -> Duration {
        let started = std::time::Instant::now();
        loop {
            let observed = self.probe();
            let wrong = expected.differences(&observed);
            if wrong.is_empty() {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < timeout,
                "{name}: {} cells differ: {wrong:#?}",
                wrong.len()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Every pair, port and protocol, probed at once.
    pub fn probe(&self) -> Reachability {
        let by_ip: BTreeMap<String, String> = all_pods()
            .into_iter()
            .map(|id| {
                let (ns, pod) = id.split_once('/').unwrap();
                (pod_ip(ns, pod).to_string(), id)
            })
            .collect();
        let probers: Vec<(String, Child)> = self
            .pods
            .iter()
            .map(|(from, netns)| {
                let mut targets = String::new();
                for (address, to) in &by_ip {
                    if to == from {
                        continue;
                    }
                    for port in PORTS {
                        for protocol in PROTOCOLS {
                            targets.push_str(&format!("{address} {port} {}\n", protocol.as_str()));
                        }
                    }
                }
                let mut child = Command::new("ip")
                    .args([
                        "netns",
                        "exec",
                        netns,
                        "python3",
                        "-c",
                        PROBER,
                        PROBE_TIMEOUT_SECS,
                    ])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("start a prober");
                use std::io::Write;
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(targets.as_bytes())
                    .unwrap();
                (from.clone(), child)
            })
            .collect();
        let mut observed = Reachability::all(false);
        for (from, child) in probers {
            let output = child.wait_with_output().expect("prober output");
            for line in String::from_utf8_lossy(&output.stdout).lines() {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let [address, port, protocol, ok] = fields[..] else {
                    continue;
                };
                let protocol = if protocol == "tcp" {
                    Protocol::Tcp
                } else {
                    Protocol::Udp
                };
                let to = by_ip[address].clone();
                observed.cells.insert(
                    (from.clone(), to, port.parse().unwrap(), protocol),
                    ok == "1",
                );
            }
        }
        observed
    }

    /// Enforces `world` and checks the probes against `expected` (and the reference evaluator
    /// against `expected`, so a wrong truth table or a wrong oracle shows up too). A probe that
    /// disagrees is retried once: a UDP datagram can be lost on a loaded machine.
    pub fn check(&self, name: &str, world: &World, expected: &Reachability) {
        self.enforce(world);
        let oracle = oracle_table(world);
        let wrong_oracle = expected.differences(&oracle);
        assert!(
            wrong_oracle.is_empty(),
            "{name}: the reference evaluator disagrees with the table: {wrong_oracle:#?}"
        );
        let mut observed = self.probe();
        if !expected.differences(&observed).is_empty() {
            std::thread::sleep(Duration::from_millis(200));
            observed = self.probe();
        }
        let wrong = expected.differences(&observed);
        assert!(
            wrong.is_empty(),
            "{name}: {} cells differ: {wrong:#?}\n{}",
            wrong.len(),
            self.tables()
        );
    }

    /// Every node's npc table and br_netfilter switch, for a failure's message.
    pub fn tables(&self) -> String {
        let mut text = String::new();
        for (node, kernel) in &self.kernels {
            let netns = kernel.netns.as_deref().unwrap_or_default();
            let table = in_netns(netns, "nft", &["list", "table", "inet", "weft-npc"]);
            let sysctl = in_netns(netns, "sysctl", &["net.bridge.bridge-nf-call-iptables"]);
            text.push_str(&format!(
                "--- {node} ({netns}): {}{}\n",
                String::from_utf8_lossy(&sysctl.stdout),
                String::from_utf8_lossy(&table.stdout)
            ));
        }
        text
    }
}

/// What the reference evaluator says of every cell.
pub fn oracle_table(world: &World) -> Reachability {
    use weft::npc::verdict::{Packet, verdict};
    let mut table = Reachability::all(false);
    for ((from, to, port, protocol), cell) in table.cells.iter_mut() {
        let ip_of = |id: &str| {
            let (ns, pod) = id.split_once('/').unwrap();
            pod_ip(ns, pod)
        };
        *cell = verdict(
            world,
            &Packet {
                src: ip_of(from),
                dst: ip_of(to),
                protocol: Some(*protocol),
                port: *port,
            },
        );
    }
    table
}

impl Drop for PolicyLab {
    fn drop(&mut self) {
        for agent in &mut self.agents {
            let _ = agent.kill();
            let _ = agent.wait();
        }
    }
}
