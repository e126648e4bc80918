//! `weft npc` at scale, on one namespaced node (root; not run in CI):
//!
//! - a world of 1,000 pods in 50 namespaces and 200 policies of mixed shapes (pod and namespace
//!   selectors, both in one peer, ipBlocks with except, numeric and named ports, port ranges,
//!   egress), every pod on this node;
//! - full sync: compile the world and write the table in one transaction (median of 5);
//! - one policy changed, 40 times: compile + write of what changed, p50 and p99, and the nft
//!   transaction alone (what the controller adds to the API server's watch latency between a
//!   change and its enforcement);
//! - single-stream TCP throughput (iperf3, 5 s, median of 3) between two pods on the node's
//!   bridge with br_netfilter on: without the table, then with the table enforcing the world
//!   (the two pods selected by default-allow policies, so every packet walks the chains and set
//!   lookups), as a ratio.
//!
//!     cargo run --release --example npc_bench [-- PODS POLICIES]

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use weft::npc::compile::compile;
use weft::npc::model::*;
use weft::npc::nft::{Nft, PolicyKernel};
use weft::npc::ranges::{parse_cidr, subtract};

const NODE: &str = "node1";
const NAMESPACES: usize = 50;

fn labels(pairs: &[(&str, String)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn selector(key: &str, value: String) -> Selector {
    Selector {
        match_labels: labels(&[(key, value)]),
        expressions: vec![],
    }
}

fn pod_ip(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 60, (index / 250) as u8, (index % 250 + 1) as u8)
}

fn world(pods: usize, policies: usize, variant: usize) -> World {
    let namespaces = (0..NAMESPACES)
        .map(|n| {
            let name = format!("ns{n}");
            (
                name.clone(),
                Namespace {
                    name: name.clone(),
                    labels: labels(&[("team", format!("t{}", n % 5))]),
                },
            )
        })
        .collect();
    let pods = (0..pods)
        .map(|i| Pod {
            namespace: format!("ns{}", i % NAMESPACES),
            name: format!("p{i}"),
            ip: Some(pod_ip(i)),
            labels: labels(&[
                ("app", format!("a{}", i % 20)),
                ("tier", format!("t{}", i % 3)),
            ]),
            node: Some(NODE.into()),
            host_network: false,
            terminating: false,
            ports: vec![ContainerPort {
                name: Some("http".into()),
                port: 8000 + (i % 4) as u16,
                protocol: Protocol::Tcp,
            }],
        })
        .collect();
    let policies = (0..policies)
        .map(|i| {
            let namespace = format!("ns{}", i % NAMESPACES);
            let shape = (i + variant) % 5;
            let peers = match shape {
                0 => vec![Peer::Pods {
                    namespaces: None,
                    pods: Some(selector("app", format!("a{}", i % 20))),
                }],
                1 => vec![Peer::Pods {
                    namespaces: Some(selector("team", format!("t{}", i % 5))),
                    pods: None,
                }],
                2 => vec![Peer::Pods {
                    namespaces: Some(selector("team", format!("t{}", (i + 1) % 5))),
                    pods: Some(selector("tier", format!("t{}", i % 3))),
                }],
                3 => vec![Peer::Block(subtract(
                    parse_cidr("10.60.0.0/16").unwrap(),
                    &[parse_cidr("10.60.2.0/24").unwrap()],
                ))],
                _ => vec![],
            };
            let ports = match shape {
                0 => vec![PolicyPort {
                    protocol: Protocol::Tcp,
                    port: Some(PortRef::Number(80)),
                    end_port: None,
                }],
                1 => vec![PolicyPort {
                    protocol: Protocol::Tcp,
                    port: Some(PortRef::Name("http".into())),
                    end_port: None,
                }],
                2 => vec![PolicyPort {
                    protocol: Protocol::Udp,
                    port: Some(PortRef::Number(5000)),
                    end_port: Some(5100),
                }],
                _ => vec![],
            };
            let rules = vec![Rule { peers, ports }];
            Policy {
                namespace,
                name: format!("pol{i}"),
                target: Target::Selector(selector("app", format!("a{}", i % 20))),
                ingress: Some(rules.clone()),
                egress: (shape == 4).then_some(rules),
                broken: None,
            }
        })
        .collect();
    World {
        namespaces,
        pods,
        policies,
    }
}

fn run(program: &str, args: &[&str]) {
    let status = Command::new(program).args(args).status().expect(program);
    assert!(status.success(), "{program} {args:?}");
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn iperf(netns_client: &str, netns_server: &str, server_ip: &str) -> f64 {
    let mut results = Vec::new();
    for _ in 0..3 {
        let mut server = Command::new("ip")
            .args(["netns", "exec", netns_server, "iperf3", "-s", "-1"])
            .stdout(Stdio::null())
            .spawn()
            .expect("iperf3 server");
        std::thread::sleep(Duration::from_millis(300));
        let output = Command::new("ip")
            .args([
                "netns",
                "exec",
                netns_client,
                "iperf3",
                "-c",
                server_ip,
                "-t",
                "5",
                "-J",
            ])
            .output()
            .expect("iperf3 client");
        let _ = server.wait();
        let report: serde_json::Value =
            serde_json::from_slice(&output.stdout).expect("iperf3 JSON");
        results.push(
            report["end"]["sum_received"]["bits_per_second"]
                .as_f64()
                .unwrap_or(0.0)
                / 1e9,
        );
    }
    results.sort_by(f64::total_cmp);
    results[1]
}

struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for netns in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", netns]).status();
        }
    }
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (pods, policies) = (
        args.first().copied().unwrap_or(1000),
        args.get(1).copied().unwrap_or(200),
    );
    let pid = std::process::id();
    let node = format!("weft-npcbench-node-{pid}");
    let (client, server) = (
        format!("weft-npcbench-c-{pid}"),
        format!("weft-npcbench-s-{pid}"),
    );
    let _cleanup = Cleanup(vec![node.clone(), client.clone(), server.clone()]);
    for netns in [&node, &client, &server] {
        run("ip", &["netns", "add", netns]);
    }
    run(
        "ip",
        &["-n", &node, "link", "add", "weave", "type", "bridge"],
    );
    run("ip", &["-n", &node, "link", "set", "weave", "up"]);
    run(
        "ip",
        &[
            "netns",
            "exec",
            &node,
            "sysctl",
            "-qw",
            "net.bridge.bridge-nf-call-iptables=1",
        ],
    );
    // The two measured pods are pods 0 and 1 of the world (10.60.0.1 and .2).
    for (netns, index) in [(&client, 0), (&server, 1)] {
        let address = format!("{}/16", pod_ip(index));
        let weft = std::env::var("WEFT").unwrap_or_else(|_| "target/release/weft".into());
        run(
            "ip",
            &[
                "netns", "exec", &node, &weft, "attach", "--netns", netns, "--ip", &address,
            ],
        );
    }
    let kernel = Nft {
        netns: Some(node.clone()),
    };

    let base = world(pods, policies, 0);
    let mut full = Vec::new();
    let mut elements = 0;
    for _ in 0..5 {
        let started = Instant::now();
        let compiled = compile(&base, NODE);
        let compiled_in = started.elapsed();
        kernel.apply(&compiled.ruleset).expect("write the table");
        full.push((compiled_in, started.elapsed()));
        elements = compiled.ruleset.element_count();
    }
    full.sort();
    let (compile_median, total_median) = full[2];

    let mut changes = Vec::new();
    let mut writes = Vec::new();
    let mut current = base.clone();
    let mut written = compile(&base, NODE).ruleset;
    for change in 0..40 {
        // One policy changes shape (as an edit in the API would).
        let index = change % policies;
        let changed = world(pods, policies, change + 1).policies[index].clone();
        current.policies[index] = changed;
        let started = Instant::now();
        let compiled = compile(&current, NODE);
        let compiled_in = started.elapsed();
        kernel
            .update(&written, &compiled.ruleset)
            .expect("update the table");
        changes.push(started.elapsed());
        writes.push(started.elapsed() - compiled_in);
        written = compiled.ruleset;
    }
    changes.sort();
    writes.sort();

    let has_iperf = Command::new("iperf3")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let throughput = has_iperf.then(|| {
        // Every pod open (default-allow for the two measured ones): packets still walk the chains.
        let mut allow_world = base.clone();
        for name in ["p0", "p1"] {
            let pod = allow_world
                .pods
                .iter()
                .find(|p| p.name == name)
                .unwrap()
                .clone();
            allow_world.policies.push(Policy {
                namespace: pod.namespace.clone(),
                name: format!("allow-{name}"),
                target: Target::Selector(Selector {
                    match_labels: pod.labels.clone(),
                    expressions: vec![],
                }),
                ingress: Some(vec![Rule::default()]),
                egress: Some(vec![Rule::default()]),
                broken: None,
            });
        }
        kernel.remove().expect("remove the table");
        let without = iperf(&client, &server, &pod_ip(1).to_string());
        kernel
            .apply(&compile(&allow_world, NODE).ruleset)
            .expect("write the table");
        let with = iperf(&client, &server, &pod_ip(1).to_string());
        (without, with)
    });
    let _ = kernel.remove();

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("npc_bench: {pods} pods, {policies} policies, one node; {elements} set elements");
    println!(
        "  full sync (compile + one nft transaction), median of 5: {:.1} ms (compile {:.1} ms)",
        ms(total_median),
        ms(compile_median)
    );
    println!(
        "  one policy changed (compile + write of what changed), 40 changes: p50 {:.1} ms, p99 {:.1} ms",
        ms(percentile(&changes, 0.5)),
        ms(percentile(&changes, 0.99))
    );
    println!(
        "    of which the nft transaction: p50 {:.1} ms, p99 {:.1} ms",
        ms(percentile(&writes, 0.5)),
        ms(percentile(&writes, 0.99))
    );
    match throughput {
        Some((without, with)) => println!(
            "  single-stream TCP pod to pod on the bridge: {without:.2} Gbit/s without npc, {with:.2} Gbit/s with the table ({:.3}x)",
            with / without
        ),
        None => println!("  throughput: skipped (install iperf3)"),
    }
}
