//! The compiler against the reference evaluator: random worlds compiled per node and interpreted
//! must agree with `verdict` on every packet; golden cases for the traps of the semantics.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use proptest::prelude::*;

use crate::npc::compile::compile;
use crate::npc::model::*;
use crate::npc::ranges::{IpRange, parse_cidr, subtract};
use crate::npc::ruleset::Ruleset;
use crate::npc::verdict::{Packet, verdict};

const NODES: [&str; 2] = ["n1", "n2"];
const EXTERNAL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn selector(pairs: &[(&str, &str)]) -> Selector {
    Selector {
        match_labels: labels(pairs),
        expressions: vec![],
    }
}

/// The compiled rulesets of every node, interpreted: egress where the packet leaves, ingress
/// where it arrives.
fn compiled_verdict(world: &World, rulesets: &BTreeMap<String, Ruleset>, packet: &Packet) -> bool {
    let node_of = |ip: Ipv4Addr| world.pod_at(ip).and_then(|pod| pod.node.clone());
    let egress = node_of(packet.src)
        .and_then(|node| rulesets.get(&node))
        .is_none_or(|rules| rules.allows(Direction::Egress, packet));
    let ingress = node_of(packet.dst)
        .and_then(|node| rulesets.get(&node))
        .is_none_or(|rules| rules.allows(Direction::Ingress, packet));
    egress && ingress
}

fn rulesets(world: &World) -> BTreeMap<String, Ruleset> {
    NODES
        .iter()
        .map(|node| (node.to_string(), compile(world, node).ruleset))
        .collect()
}

// --- random worlds ---

fn arb_selector() -> impl Strategy<Value = Selector> {
    prop_oneof![
        Just(Selector::default()),
        prop::sample::select(vec!["a", "b", "c"]).prop_map(|v| selector(&[("pod", v)])),
        prop::sample::select(vec!["x", "y", "z"]).prop_map(|v| selector(&[("ns", v)])),
        (
            prop::sample::select(vec![
                Operator::In,
                Operator::NotIn,
                Operator::Exists,
                Operator::DoesNotExist
            ]),
            prop::sample::subsequence(vec!["a", "b", "x", "y"], 0..3),
            prop::sample::select(vec!["pod", "ns", "tier"]),
        )
            .prop_map(|(operator, values, key)| Selector {
                match_labels: Labels::new(),
                expressions: vec![Requirement {
                    key: key.to_string(),
                    operator,
                    values: values.into_iter().map(str::to_string).collect(),
                }],
            }),
    ]
}

fn arb_peer() -> impl Strategy<Value = Peer> {
    prop_oneof![
        (
            prop::option::of(arb_selector()),
            prop::option::of(arb_selector())
        )
            .prop_map(|(namespaces, pods)| Peer::Pods { namespaces, pods }),
        (
            prop::sample::select(vec![
                "10.0.0.0/28",
                "10.0.0.0/30",
                "10.0.0.4/30",
                "0.0.0.0/0",
                "192.0.2.0/24"
            ]),
            prop::sample::subsequence(vec!["10.0.0.2/32", "10.0.0.4/31", "10.0.0.8/29"], 0..2),
        )
            .prop_map(|(cidr, except)| {
                let except: Vec<IpRange> = except.iter().map(|c| parse_cidr(c).unwrap()).collect();
                Peer::Block(subtract(parse_cidr(cidr).unwrap(), &except))
            }),
    ]
}

fn arb_protocol() -> impl Strategy<Value = Protocol> {
    prop::sample::select(vec![Protocol::Tcp, Protocol::Udp, Protocol::Sctp])
}

fn arb_port() -> impl Strategy<Value = PolicyPort> {
    (
        arb_protocol(),
        prop_oneof![
            Just((None, None)),
            prop::sample::select(vec![80u16, 81, 8080])
                .prop_map(|p| (Some(PortRef::Number(p)), None)),
            (
                prop::sample::select(vec![79u16, 80]),
                prop::sample::select(vec![80u16, 81, 9000])
            )
                .prop_map(|(p, e)| (Some(PortRef::Number(p)), Some(e.max(p)))),
            prop::sample::select(vec!["http", "dns", "none"])
                .prop_map(|n| (Some(PortRef::Name(n.to_string())), None)),
        ],
    )
        .prop_map(|(protocol, (port, end_port))| PolicyPort {
            protocol,
            port,
            end_port,
        })
}

fn arb_rule() -> impl Strategy<Value = Rule> {
    (
        prop::collection::vec(arb_peer(), 0..3),
        prop::collection::vec(arb_port(), 0..3),
    )
        .prop_map(|(peers, ports)| Rule { peers, ports })
}

fn arb_policy() -> impl Strategy<Value = Policy> {
    (
        prop::sample::select(vec!["x", "y", "z"]),
        arb_selector(),
        prop::option::of(prop::collection::vec(arb_rule(), 0..3)),
        prop::option::of(prop::collection::vec(arb_rule(), 0..3)),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(namespace, selector, ingress, egress, whole)| Policy {
            namespace: namespace.to_string(),
            name: "p".into(),
            target: if whole {
                Target::WholeNamespace
            } else {
                Target::Selector(selector)
            },
            ingress,
            egress,
            broken: None,
        })
}

fn arb_pod(index: u8) -> impl Strategy<Value = Pod> {
    (
        prop::sample::select(vec!["x", "y", "z"]),
        prop::sample::select(vec!["a", "b", "c"]),
        prop::option::of(prop::sample::select(vec!["web", "db"])),
        prop::sample::select(NODES.to_vec()),
        prop::bool::weighted(0.1),
        // The same name resolves to different ports on different pods.
        prop::sample::select(vec![80u16, 8080]),
        arb_protocol(),
    )
        .prop_map(
            move |(namespace, pod, tier, node, host_network, http, http_protocol)| {
                let mut pod_labels = labels(&[("pod", pod)]);
                if let Some(tier) = tier {
                    pod_labels.insert("tier".into(), tier.into());
                }
                Pod {
                    namespace: namespace.to_string(),
                    name: format!("{pod}{index}"),
                    ip: Some(Ipv4Addr::new(10, 0, 0, index + 1)),
                    labels: pod_labels,
                    node: Some(node.to_string()),
                    host_network,
                    terminating: false,
                    ports: vec![
                        ContainerPort {
                            name: Some("http".into()),
                            port: http,
                            protocol: http_protocol,
                        },
                        ContainerPort {
                            name: Some("dns".into()),
                            port: 53,
                            protocol: Protocol::Udp,
                        },
                        ContainerPort {
                            name: None,
                            port: 81,
                            protocol: Protocol::Tcp,
                        },
                    ],
                }
            },
        )
}

fn arb_world() -> impl Strategy<Value = World> {
    (
        (0u8..7).prop_flat_map(|count| (0..count).map(arb_pod).collect::<Vec<_>>()),
        prop::collection::vec(arb_policy(), 0..4),
        prop::sample::select(vec!["a", "b"]),
    )
        .prop_map(|(pods, policies, team)| World {
            namespaces: ["x", "y", "z"]
                .iter()
                .map(|name| {
                    let mut ns_labels = labels(&[("ns", name)]);
                    if *name == "y" {
                        ns_labels.insert("team".into(), team.into());
                    }
                    (
                        name.to_string(),
                        Namespace {
                            name: name.to_string(),
                            labels: ns_labels,
                        },
                    )
                })
                .collect(),
            pods,
            policies,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The compiled rulesets of both nodes, interpreted, decide every packet as the reference
    /// evaluator does: every pair of pods and an outside address, every protocol, ports that
    /// rules name and ports they do not.
    #[test]
    fn compiled_rulesets_agree_with_the_reference_evaluator(world in arb_world()) {
        let rulesets = rulesets(&world);
        let mut addresses: Vec<Ipv4Addr> = world.pods.iter().filter_map(|pod| pod.ip).collect();
        addresses.push(EXTERNAL);
        for &src in &addresses {
            for &dst in &addresses {
                if src == dst {
                    continue;
                }
                for protocol in [None, Some(Protocol::Tcp), Some(Protocol::Udp), Some(Protocol::Sctp)] {
                    for port in [53u16, 79, 80, 81, 8080, 9000, 9001] {
                        let packet = Packet { src, dst, protocol, port };
                        prop_assert_eq!(
                            compiled_verdict(&world, &rulesets, &packet),
                            verdict(&world, &packet),
                            "{:?}", packet
                        );
                    }
                }
            }
        }
    }

    /// Whatever the input, interval elements come out sorted and disjoint (the kernel refuses
    /// overlapping ones), and every isolated pod is some policy's target and back.
    #[test]
    fn compiled_elements_never_overlap(world in arb_world()) {
        for node in NODES {
            let ruleset = compile(&world, node).ruleset;
            for rules in [&ruleset.ingress, &ruleset.egress] {
                let targets: BTreeSet<Ipv4Addr> = rules
                    .policies
                    .values()
                    .flat_map(|policy| policy.targets.iter().copied())
                    .collect();
                prop_assert_eq!(&targets, &rules.isolated);
                for policy in rules.policies.values() {
                    prop_assert!(!policy.targets.is_empty());
                    for rule in &policy.rules {
                        if let Some(peers) = &rule.peers {
                            for pair in peers.blocks.windows(2) {
                                prop_assert!(pair[0].last < pair[1].first, "{:?}", pair);
                            }
                        }
                        if let Some(ports) = &rule.ports {
                            for pair in ports.numeric.windows(2) {
                                prop_assert!(
                                    pair[0].protocol < pair[1].protocol
                                        || (pair[0].protocol == pair[1].protocol
                                            && pair[0].ports.last < pair[1].ports.first),
                                    "{:?}", pair
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

// --- golden cases ---

fn pod(namespace: &str, name: &str, last_octet: u8, node: &str) -> Pod {
    Pod {
        namespace: namespace.into(),
        name: name.into(),
        ip: Some(Ipv4Addr::new(10, 0, 0, last_octet)),
        labels: labels(&[("pod", name)]),
        node: Some(node.into()),
        host_network: false,
        terminating: false,
        ports: vec![],
    }
}

fn world(pods: Vec<Pod>, policies: Vec<Policy>) -> World {
    World {
        namespaces: ["x", "y"]
            .iter()
            .map(|n| {
                (
                    n.to_string(),
                    Namespace {
                        name: n.to_string(),
                        labels: labels(&[("ns", n)]),
                    },
                )
            })
            .collect(),
        pods,
        policies,
    }
}

fn ingress_policy(namespace: &str, target: Selector, rules: Vec<Rule>) -> Policy {
    Policy {
        namespace: namespace.into(),
        name: "test".into(),
        target: Target::Selector(target),
        ingress: Some(rules),
        egress: None,
        broken: None,
    }
}

fn tcp(src: u8, dst: u8, port: u16) -> Packet {
    Packet {
        src: Ipv4Addr::new(10, 0, 0, src),
        dst: Ipv4Addr::new(10, 0, 0, dst),
        protocol: Some(Protocol::Tcp),
        port,
    }
}

fn both_agree(world: &World, packet: Packet) -> bool {
    let by_compiler = compiled_verdict(world, &rulesets(world), &packet);
    let by_reference = verdict(world, &packet);
    assert_eq!(by_compiler, by_reference, "{packet:?}");
    by_reference
}

#[test]
fn namespace_and_pod_selector_in_one_peer_is_and_in_two_peers_is_or() {
    let pods = vec![
        pod("x", "a", 1, "n1"),
        pod("y", "b", 2, "n2"),
        pod("x", "b", 3, "n2"),
        pod("y", "c", 4, "n1"),
    ];
    let and = Rule {
        peers: vec![Peer::Pods {
            namespaces: Some(selector(&[("ns", "y")])),
            pods: Some(selector(&[("pod", "b")])),
        }],
        ports: vec![],
    };
    let or = Rule {
        peers: vec![
            Peer::Pods {
                namespaces: Some(selector(&[("ns", "y")])),
                pods: None,
            },
            Peer::Pods {
                namespaces: None,
                pods: Some(selector(&[("pod", "b")])),
            },
        ],
        ports: vec![],
    };
    let target = selector(&[("pod", "a")]);
    let w = world(
        pods.clone(),
        vec![ingress_policy("x", target.clone(), vec![and])],
    );
    assert!(both_agree(&w, tcp(2, 1, 80)), "y/b is in y and is b");
    assert!(!both_agree(&w, tcp(3, 1, 80)), "x/b is b but not in y");
    assert!(!both_agree(&w, tcp(4, 1, 80)), "y/c is in y but not b");
    let w = world(pods, vec![ingress_policy("x", target, vec![or])]);
    assert!(both_agree(&w, tcp(2, 1, 80)));
    assert!(
        both_agree(&w, tcp(3, 1, 80)),
        "a bare podSelector is the policy's namespace"
    );
    assert!(both_agree(&w, tcp(4, 1, 80)));
}

#[test]
fn ip_block_except_and_end_port() {
    let pods = vec![
        pod("x", "a", 1, "n1"),
        pod("x", "b", 2, "n1"),
        pod("x", "c", 5, "n2"),
    ];
    let block = subtract(
        parse_cidr("10.0.0.0/29").unwrap(),
        &[parse_cidr("10.0.0.4/30").unwrap()],
    );
    let rule = Rule {
        peers: vec![Peer::Block(block)],
        ports: vec![PolicyPort {
            protocol: Protocol::Tcp,
            port: Some(PortRef::Number(80)),
            end_port: Some(82),
        }],
    };
    let w = world(
        pods,
        vec![ingress_policy("x", selector(&[("pod", "a")]), vec![rule])],
    );
    assert!(both_agree(&w, tcp(2, 1, 80)));
    assert!(both_agree(&w, tcp(2, 1, 82)));
    assert!(!both_agree(&w, tcp(2, 1, 83)));
    assert!(!both_agree(&w, tcp(5, 1, 80)), "10.0.0.5 is in the except");
}

#[test]
fn named_ports_resolve_on_each_destination_pod() {
    let mut a = pod("x", "a", 1, "n1");
    let mut b = pod("x", "b", 2, "n1");
    a.ports = vec![ContainerPort {
        name: Some("http".into()),
        port: 80,
        protocol: Protocol::Tcp,
    }];
    b.ports = vec![ContainerPort {
        name: Some("http".into()),
        port: 8080,
        protocol: Protocol::Tcp,
    }];
    let c = pod("x", "c", 3, "n2");
    let http = PolicyPort {
        protocol: Protocol::Tcp,
        port: Some(PortRef::Name("http".into())),
        end_port: None,
    };
    // Ingress to every pod of x on "http": 80 on a, 8080 on b.
    let w = world(
        vec![a.clone(), b.clone(), c.clone()],
        vec![ingress_policy(
            "x",
            Selector::default(),
            vec![Rule {
                peers: vec![],
                ports: vec![http.clone()],
            }],
        )],
    );
    assert!(both_agree(&w, tcp(3, 1, 80)));
    assert!(!both_agree(&w, tcp(3, 1, 8080)));
    assert!(both_agree(&w, tcp(3, 2, 8080)));
    assert!(!both_agree(&w, tcp(3, 2, 80)));
    // Egress from c on "http": resolved on the peer.
    let egress = Policy {
        namespace: "x".into(),
        name: "egress".into(),
        target: Target::Selector(selector(&[("pod", "c")])),
        ingress: None,
        egress: Some(vec![Rule {
            peers: vec![],
            ports: vec![http],
        }]),
        broken: None,
    };
    let w = world(vec![a, b, c], vec![egress]);
    assert!(both_agree(&w, tcp(3, 1, 80)));
    assert!(!both_agree(&w, tcp(3, 1, 8080)));
    assert!(both_agree(&w, tcp(3, 2, 8080)));
}

#[test]
fn egress_only_isolation_leaves_ingress_open_and_empty_rules_deny() {
    let pods = vec![pod("x", "a", 1, "n1"), pod("x", "b", 2, "n2")];
    let deny_egress = Policy {
        namespace: "x".into(),
        name: "deny-egress".into(),
        target: Target::Selector(selector(&[("pod", "a")])),
        ingress: None,
        egress: Some(vec![]),
        broken: None,
    };
    let w = world(pods, vec![deny_egress]);
    assert!(!both_agree(&w, tcp(1, 2, 80)), "a may not send");
    assert!(both_agree(&w, tcp(2, 1, 80)), "a may still receive");
}

#[test]
fn an_empty_peer_selector_means_every_pod_and_policies_add_up() {
    let pods = vec![
        pod("x", "a", 1, "n1"),
        pod("y", "b", 2, "n2"),
        pod("x", "c", 3, "n2"),
    ];
    let all_in_x = Rule {
        peers: vec![Peer::Pods {
            namespaces: None,
            pods: Some(Selector::default()),
        }],
        ports: vec![],
    };
    let all_namespaces = Rule {
        peers: vec![Peer::Pods {
            namespaces: Some(Selector::default()),
            pods: None,
        }],
        ports: vec![PolicyPort {
            protocol: Protocol::Udp,
            port: None,
            end_port: None,
        }],
    };
    let w = world(
        pods,
        vec![
            ingress_policy("x", selector(&[("pod", "a")]), vec![all_in_x]),
            ingress_policy("x", selector(&[("pod", "a")]), vec![all_namespaces]),
        ],
    );
    assert!(both_agree(&w, tcp(3, 1, 80)));
    assert!(
        !both_agree(&w, tcp(2, 1, 80)),
        "y/b only by the second policy, which is UDP"
    );
    let udp = Packet {
        protocol: Some(Protocol::Udp),
        ..tcp(2, 1, 5353)
    };
    assert!(both_agree(&w, udp));
    let icmp = Packet {
        protocol: None,
        ..tcp(3, 1, 0)
    };
    assert!(
        both_agree(&w, icmp),
        "a rule without ports allows every protocol"
    );
}

#[test]
fn host_network_pods_and_unselected_pods_stay_open() {
    let mut host = pod("x", "h", 9, "n1");
    host.host_network = true;
    let pods = vec![pod("x", "a", 1, "n1"), host, pod("y", "b", 2, "n2")];
    let w = world(pods, vec![ingress_policy("x", Selector::default(), vec![])]);
    assert!(!both_agree(&w, tcp(2, 1, 80)));
    assert!(both_agree(&w, tcp(1, 2, 80)), "y/b is selected by nothing");
    assert!(
        both_agree(&w, tcp(2, 9, 80)),
        "a host-network pod is the node"
    );
}
