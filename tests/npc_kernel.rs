//! `weft npc`'s rulesets in the real kernel, scenario by scenario in the upstream e2e model
//! (tests/npclab): each scenario's policies are compiled, applied to the node's `inet weft-npc`
//! table in one transaction, and every pod probes every other pod on TCP and UDP 80 and 81; the
//! observed matrix must equal the scenario's truth table, written by hand (and checked against
//! the reference evaluator too). Multi-step scenarios change policies and labels in place.

use weft_testkit::netlab;
mod npclab;

use npclab::{PolicyLab, Reachability, world};
use weft::npc::compile::compile;
use weft::npc::model::{Peer, Policy, PolicyPort, PortRef, Protocol, Rule, Selector, Target};
use weft::npc::nft::PolicyKernel;
use weft::npc::ranges::{parse_cidr, subtract};
use weft::npc::render::rule_count;

fn sel(key: &str, value: &str) -> Selector {
    Selector {
        match_labels: [(key.to_string(), value.to_string())].into_iter().collect(),
        expressions: vec![],
    }
}

fn policy(namespace: &str, name: &str, target: Selector) -> Policy {
    Policy {
        namespace: namespace.into(),
        name: name.into(),
        target: Target::Selector(target),
        ingress: None,
        egress: None,
        broken: None,
    }
}

fn with_ingress(mut policy: Policy, rules: Vec<Rule>) -> Policy {
    policy.ingress = Some(rules);
    policy
}

fn with_egress(mut policy: Policy, rules: Vec<Rule>) -> Policy {
    policy.egress = Some(rules);
    policy
}

fn rule(peers: Vec<Peer>, ports: Vec<PolicyPort>) -> Rule {
    Rule { peers, ports }
}

fn pods(namespaces: Option<Selector>, pods: Option<Selector>) -> Peer {
    Peer::Pods { namespaces, pods }
}

fn port(protocol: Protocol, port: u16) -> PolicyPort {
    PolicyPort {
        protocol,
        port: Some(PortRef::Number(port)),
        end_port: None,
    }
}

const TCP: Option<Protocol> = Some(Protocol::Tcp);
const UDP: Option<Protocol> = Some(Protocol::Udp);

/// Scenarios of ingress isolation, on one lab (each replaces the ruleset of the one before).
#[test]
fn ingress_scenarios_on_one_node() {
    let lab = PolicyLab::new("npcin");

    lab.check(
        "no policies: everything open",
        &world(vec![]),
        &Reachability::all(true),
    );

    let deny_x = with_ingress(policy("x", "deny", Selector::default()), vec![]);
    let mut expected = Reachability::all(true);
    expected.expect(None, Some("x/*"), None, None, false);
    lab.check(
        "default-deny ingress in x",
        &world(vec![deny_x.clone()]),
        &expected,
    );

    let from_b = with_ingress(
        policy("x", "a-from-b", sel("pod", "a")),
        vec![rule(vec![pods(None, Some(sel("pod", "b")))], vec![])],
    );
    let mut expected = Reachability::all(true);
    expected.expect(None, Some("x/a"), None, None, false);
    expected.expect(Some("x/b"), Some("x/a"), None, None, true);
    lab.check(
        "a bare podSelector is the policy's namespace",
        &world(vec![from_b]),
        &expected,
    );

    let and = with_ingress(
        policy("x", "and", sel("pod", "a")),
        vec![rule(
            vec![pods(Some(sel("ns", "y")), Some(sel("pod", "b")))],
            vec![],
        )],
    );
    let mut expected = Reachability::all(true);
    expected.expect(None, Some("x/a"), None, None, false);
    expected.expect(Some("y/b"), Some("x/a"), None, None, true);
    lab.check(
        "namespaceSelector AND podSelector in one peer",
        &world(vec![and]),
        &expected,
    );

    let or = with_ingress(
        policy("x", "or", sel("pod", "a")),
        vec![rule(
            vec![
                pods(Some(sel("ns", "y")), None),
                pods(None, Some(sel("pod", "b"))),
            ],
            vec![],
        )],
    );
    let mut expected = Reachability::all(true);
    expected.expect(None, Some("x/a"), None, None, false);
    expected.expect(Some("y/*"), Some("x/a"), None, None, true);
    expected.expect(Some("x/b"), Some("x/a"), None, None, true);
    lab.check("two peers are OR", &world(vec![or]), &expected);

    let tcp80 = with_ingress(
        policy("x", "tcp80", sel("pod", "a")),
        vec![rule(vec![], vec![port(Protocol::Tcp, 80)])],
    );
    let mut expected = Reachability::all(true);
    expected.expect(None, Some("x/a"), None, None, false);
    expected.expect(None, Some("x/a"), Some(80), TCP, true);
    lab.check(
        "a port and protocol: nothing else",
        &world(vec![tcp80]),
        &expected,
    );

    let named = with_ingress(
        policy("x", "named", sel("pod", "a")),
        vec![rule(
            vec![],
            vec![PolicyPort {
                protocol: Protocol::Udp,
                port: Some(PortRef::Name("serve-81-udp".into())),
                end_port: None,
            }],
        )],
    );
    let mut expected = Reachability::all(true);
    expected.expect(None, Some("x/a"), None, None, false);
    expected.expect(None, Some("x/a"), Some(81), UDP, true);
    lab.check("a named port", &world(vec![named]), &expected);

    let range = with_ingress(
        policy("x", "range", sel("pod", "a")),
        vec![rule(
            vec![],
            vec![PolicyPort {
                protocol: Protocol::Tcp,
                port: Some(PortRef::Number(80)),
                end_port: Some(81),
            }],
        )],
    );
    let mut expected = Reachability::all(true);
    expected.expect(None, Some("x/a"), None, UDP, false);
    lab.check("endPort: 80 to 81", &world(vec![range]), &expected);

    let block = subtract(
        parse_cidr("10.40.0.0/16").unwrap(),
        &[parse_cidr("10.40.2.0/24").unwrap()],
    );
    let ip_block = with_ingress(
        policy("x", "block", sel("pod", "a")),
        vec![rule(vec![Peer::Block(block)], vec![])],
    );
    let mut expected = Reachability::all(true);
    expected.expect(Some("y/*"), Some("x/a"), None, None, false);
    lab.check("ipBlock with except", &world(vec![ip_block]), &expected);

    let mut open_to_z = with_ingress(
        policy("x", "z", Selector::default()),
        vec![rule(vec![pods(Some(sel("ns", "z")), None)], vec![])],
    );
    open_to_z.name = "from-z".into();
    let mut expected = Reachability::all(true);
    expected.expect(Some("x/*"), Some("x/*"), None, None, false);
    expected.expect(Some("y/*"), Some("x/*"), None, None, false);
    lab.check(
        "policies add up (deny + allow z)",
        &world(vec![deny_x, open_to_z]),
        &expected,
    );
}

/// Egress, and both ends having to allow.
#[test]
fn egress_scenarios_on_one_node() {
    let lab = PolicyLab::new("npceg");

    let deny = with_egress(policy("x", "deny-egress", sel("pod", "a")), vec![]);
    let mut expected = Reachability::all(true);
    expected.expect(Some("x/a"), None, None, None, false);
    lab.check(
        "egress deny: x/a sends nothing, still receives",
        &world(vec![deny]),
        &expected,
    );

    let to_y_udp = with_egress(
        policy("x", "to-y-udp80", sel("pod", "a")),
        vec![rule(
            vec![pods(Some(sel("ns", "y")), None)],
            vec![port(Protocol::Udp, 80)],
        )],
    );
    let mut expected = Reachability::all(true);
    expected.expect(Some("x/a"), None, None, None, false);
    expected.expect(Some("x/a"), Some("y/*"), Some(80), UDP, true);
    lab.check(
        "egress to one namespace on UDP 80",
        &world(vec![to_y_udp]),
        &expected,
    );

    let named_egress = with_egress(
        policy("x", "named-egress", sel("pod", "a")),
        vec![rule(
            vec![],
            vec![PolicyPort {
                protocol: Protocol::Tcp,
                port: Some(PortRef::Name("serve-80-tcp".into())),
                end_port: None,
            }],
        )],
    );
    let mut expected = Reachability::all(true);
    expected.expect(Some("x/a"), None, None, None, false);
    expected.expect(Some("x/a"), None, Some(80), TCP, true);
    lab.check(
        "egress named port, resolved on the peer",
        &world(vec![named_egress]),
        &expected,
    );

    // x/b may only send to z; x/a only accepts from x/b: x/b -> x/a needs both, so it is blocked.
    let b_to_z = with_egress(
        policy("x", "b-to-z", sel("pod", "b")),
        vec![rule(vec![pods(Some(sel("ns", "z")), None)], vec![])],
    );
    let a_from_b = with_ingress(
        policy("x", "a-from-b", sel("pod", "a")),
        vec![rule(vec![pods(None, Some(sel("pod", "b")))], vec![])],
    );
    let mut expected = Reachability::all(true);
    expected.expect(Some("x/b"), None, None, None, false);
    expected.expect(Some("x/b"), Some("z/*"), None, None, true);
    expected.expect(None, Some("x/a"), None, None, false);
    lab.check(
        "both ends must allow",
        &world(vec![b_to_z, a_from_b]),
        &expected,
    );
}

/// Multi-step: a policy added, changed, removed, and a pod's labels changed, on a live lab; the
/// table is replaced each time in one transaction, and a flushed table is told apart.
#[test]
fn policy_changes_and_label_changes_apply_in_place() {
    let lab = PolicyLab::new("npcsteps");
    // A connection that every step allows (z/a -> x/a: no step isolates x) carries traffic
    // across all the ruleset replacements.
    let stream = netlab::Stream::start(&lab.pods["z/a"], &lab.pods["x/a"], "10.40.1.1", 7400, 20);
    let allow_from_b = |target: &str| {
        with_ingress(
            policy("y", "from-b", sel("pod", target)),
            vec![rule(
                vec![pods(Some(Selector::default()), Some(sel("pod", "b")))],
                vec![],
            )],
        )
    };
    let mut world_now = world(vec![allow_from_b("a")]);
    let mut expected = Reachability::all(true);
    expected.expect(None, Some("y/a"), None, None, false);
    expected.expect(Some("x/b"), Some("y/a"), None, None, true);
    expected.expect(Some("z/b"), Some("y/a"), None, None, true);
    expected.expect(Some("y/b"), Some("y/a"), None, None, true);
    lab.check("added", &world_now, &expected);
    assert_eq!(
        lab.kernel.installed_rules().unwrap(),
        Some(rule_count(&compile(&world_now, npclab::NODE).ruleset))
    );

    world_now.policies = vec![allow_from_b("c")];
    let mut expected = Reachability::all(true);
    expected.expect(None, Some("y/c"), None, None, false);
    expected.expect(Some("x/b"), Some("y/c"), None, None, true);
    expected.expect(Some("z/b"), Some("y/c"), None, None, true);
    expected.expect(Some("y/b"), Some("y/c"), None, None, true);
    lab.check("changed to select y/c", &world_now, &expected);

    // x/c is labelled b now: it becomes an allowed peer.
    let xc = world_now
        .pods
        .iter_mut()
        .find(|p| p.namespace == "x" && p.name == "c")
        .unwrap();
    xc.labels.insert("pod".into(), "b".into());
    expected.expect(Some("x/c"), Some("y/c"), None, None, true);
    lab.check("a peer's labels changed", &world_now, &expected);

    // The same policy gains a port (its rules change in kind: its chain is rewritten in place)
    // and then an ipBlock peer besides the pods.
    world_now.policies[0].ingress.as_mut().unwrap()[0].ports = vec![port(Protocol::Tcp, 80)];
    expected.expect(None, Some("y/c"), None, None, false);
    for peer in ["x/b", "y/b", "z/b", "x/c"] {
        expected.expect(Some(peer), Some("y/c"), Some(80), TCP, true);
    }
    lab.check("the policy gained a port", &world_now, &expected);
    assert_eq!(
        lab.kernel.installed_rules().unwrap(),
        Some(rule_count(&compile(&world_now, npclab::NODE).ruleset))
    );
    world_now.policies[0].ingress.as_mut().unwrap()[0]
        .peers
        .push(Peer::Block(vec![parse_cidr("10.40.1.1/32").unwrap()]));
    expected.expect(Some("x/a"), Some("y/c"), Some(80), TCP, true);
    lab.check("the policy gained a block", &world_now, &expected);

    world_now.policies.clear();
    lab.check("removed", &world_now, &Reachability::all(true));
    let (sent, received) = stream.finish().expect("the stream across the changes");
    assert!(
        sent > 0 && sent == received,
        "sent {sent}, received {received}"
    );

    // An external flush empties our table: the controller sees the rules gone.
    let flushed = netlab::in_netns(&lab.node, "nft", &["flush", "table", "inet", "weft-npc"]);
    assert!(flushed.status.success());
    assert_eq!(lab.kernel.installed_rules().unwrap(), Some(0));
    assert!(lab.kernel.remove().unwrap());
    assert_eq!(lab.kernel.installed_rules().unwrap(), None);
    assert!(!lab.kernel.remove().unwrap());
    lab.forget_written();
}

fn expr(key: &str, operator: weft::npc::model::Operator, values: &[&str]) -> Selector {
    Selector {
        match_labels: Default::default(),
        expressions: vec![weft::npc::model::Requirement {
            key: key.into(),
            operator,
            values: values.iter().map(|v| v.to_string()).collect(),
        }],
    }
}

/// Selector expressions, stacked policies, allow-all and default-deny-all, in the upstream
/// suite's shapes.
#[test]
fn selector_and_stacking_scenarios_on_one_node() {
    use weft::npc::model::Operator::{In, NotIn};
    let lab = PolicyLab::new("npcsel");
    let x_a = || policy("x", "target", sel("pod", "a"));

    let in_b = with_ingress(
        x_a(),
        vec![rule(
            vec![pods(None, Some(expr("pod", In, &["b"])))],
            vec![],
        )],
    );
    let mut expected = Reachability::all(true);
    expected.expect(None, Some("x/a"), None, None, false);
    expected.expect(Some("x/b"), Some("x/a"), None, None, true);
    lab.check(
        "podSelector matchExpressions In",
        &world(vec![in_b]),
        &expected,
    );

    let not_x = with_ingress(
        x_a(),
        vec![rule(
            vec![pods(Some(expr("ns", NotIn, &["x"])), None)],
            vec![],
        )],
    );
    let mut expected = Reachability::all(true);
    expected.expect(Some("x/*"), Some("x/a"), None, None, false);
    lab.check(
        "namespaceSelector matchExpressions NotIn",
        &world(vec![not_x]),
        &expected,
    );

    let multiple = with_ingress(
        x_a(),
        vec![rule(
            vec![pods(
                Some(expr("ns", NotIn, &["x"])),
                Some(expr("pod", In, &["b", "c"])),
            )],
            vec![],
        )],
    );
    let mut expected = Reachability::all(true);
    expected.expect(None, Some("x/a"), None, None, false);
    for from in ["y/b", "y/c", "z/b", "z/c"] {
        expected.expect(Some(from), Some("x/a"), None, None, true);
    }
    lab.check(
        "multiple expressions in one peer",
        &world(vec![multiple]),
        &expected,
    );

    let any_of = with_ingress(
        x_a(),
        vec![rule(
            vec![
                pods(None, Some(sel("pod", "b"))),
                pods(None, Some(sel("pod", "c"))),
            ],
            vec![],
        )],
    );
    let mut expected = Reachability::all(true);
    expected.expect(None, Some("x/a"), None, None, false);
    expected.expect(Some("x/b"), Some("x/a"), None, None, true);
    expected.expect(Some("x/c"), Some("x/a"), None, None, true);
    lab.check(
        "any of several podSelectors",
        &world(vec![any_of]),
        &expected,
    );

    let only_other_ns = with_ingress(
        x_a(),
        vec![rule(vec![pods(Some(sel("ns", "y")), None)], vec![])],
    );
    let mut expected = Reachability::all(true);
    expected.expect(None, Some("x/a"), None, None, false);
    expected.expect(Some("y/*"), Some("x/a"), None, None, true);
    lab.check(
        "only from a different namespace",
        &world(vec![only_other_ns]),
        &expected,
    );

    let y_on_81 = with_ingress(
        x_a(),
        vec![rule(
            vec![pods(Some(sel("ns", "y")), None)],
            vec![port(Protocol::Tcp, 81)],
        )],
    );
    let mut expected = Reachability::all(true);
    expected.expect(None, Some("x/a"), None, None, false);
    expected.expect(Some("y/*"), Some("x/a"), Some(81), TCP, true);
    lab.check(
        "a namespace on one port",
        &world(vec![y_on_81.clone()]),
        &expected,
    );

    let mut y_on_80 = with_ingress(
        x_a(),
        vec![rule(
            vec![pods(Some(sel("ns", "y")), None)],
            vec![port(Protocol::Tcp, 80)],
        )],
    );
    y_on_80.name = "y-80".into();
    expected.expect(Some("y/*"), Some("x/a"), Some(80), TCP, true);
    lab.check(
        "stacked policies with overlapping podSelectors",
        &world(vec![y_on_81, y_on_80]),
        &expected,
    );

    let allow_all = with_ingress(
        policy("x", "allow-all", Selector::default()),
        vec![rule(vec![], vec![])],
    );
    let deny = with_ingress(policy("x", "deny", Selector::default()), vec![]);
    lab.check(
        "allow-all wins over deny",
        &world(vec![deny.clone(), allow_all]),
        &Reachability::all(true),
    );

    let deny_all = with_egress(
        with_ingress(policy("x", "deny-all", Selector::default()), vec![]),
        vec![],
    );
    let mut expected = Reachability::all(true);
    expected.expect(None, Some("x/*"), None, None, false);
    expected.expect(Some("x/*"), None, None, None, false);
    lab.check("default-deny-all in x", &world(vec![deny_all]), &expected);

    let from_all_x = with_ingress(
        policy("x", "from-x", Selector::default()),
        vec![rule(vec![pods(None, Some(Selector::default()))], vec![])],
    );
    let mut expected = Reachability::all(true);
    expected.expect(Some("y/*"), Some("x/*"), None, None, false);
    expected.expect(Some("z/*"), Some("x/*"), None, None, false);
    lab.check(
        "deny ingress from other namespaces",
        &world(vec![from_all_x]),
        &expected,
    );

    let by_default_label = with_ingress(
        x_a(),
        vec![rule(
            vec![pods(Some(sel("kubernetes.io/metadata.name", "y")), None)],
            vec![],
        )],
    );
    let mut expected = Reachability::all(true);
    expected.expect(None, Some("x/a"), None, None, false);
    let mut labelled = world(vec![by_default_label]);
    for namespace in labelled.namespaces.values_mut() {
        namespace
            .labels
            .insert("kubernetes.io/metadata.name".into(), namespace.name.clone());
    }
    expected.expect(Some("y/*"), Some("x/a"), None, None, true);
    lab.check(
        "namespaces by their default name label",
        &labelled,
        &expected,
    );
}

/// Egress, ipBlocks and protocols in the upstream suite's shapes.
#[test]
fn egress_block_and_protocol_scenarios_on_one_node() {
    let lab = PolicyLab::new("npcblk");

    let egress_cidr = with_egress(
        policy("x", "to-y-cidr", sel("pod", "a")),
        vec![rule(
            vec![Peer::Block(vec![parse_cidr("10.40.2.0/24").unwrap()])],
            vec![],
        )],
    );
    let mut expected = Reachability::all(true);
    expected.expect(Some("x/a"), None, None, None, false);
    expected.expect(Some("x/a"), Some("y/*"), None, None, true);
    lab.check(
        "egress to a CIDR block",
        &world(vec![egress_cidr]),
        &expected,
    );

    let block = subtract(
        parse_cidr("10.40.2.0/24").unwrap(),
        &[parse_cidr("10.40.2.2/32").unwrap()],
    );
    let egress_except = with_egress(
        policy("x", "except", sel("pod", "a")),
        vec![rule(vec![Peer::Block(block)], vec![])],
    );
    expected.expect(Some("x/a"), Some("y/b"), None, None, false);
    lab.check(
        "egress to a CIDR block except one pod",
        &world(vec![egress_except.clone()]),
        &expected,
    );

    let mut only_y_b = with_egress(
        policy("x", "only-y-b", sel("pod", "a")),
        vec![rule(
            vec![Peer::Block(vec![parse_cidr("10.40.2.2/32").unwrap()])],
            vec![],
        )],
    );
    only_y_b.name = "y-b".into();
    expected.expect(Some("x/a"), Some("y/b"), None, None, true);
    lab.check(
        "an address in one policy's except and another's block is allowed",
        &world(vec![egress_except, only_y_b]),
        &expected,
    );

    let udp_only = with_ingress(
        policy("x", "udp", sel("pod", "a")),
        vec![rule(
            vec![],
            vec![PolicyPort {
                protocol: Protocol::Udp,
                port: None,
                end_port: None,
            }],
        )],
    );
    let mut expected = Reachability::all(true);
    expected.expect(None, Some("x/a"), None, TCP, false);
    lab.check(
        "a protocol without a port: every UDP port, no TCP",
        &world(vec![udp_only]),
        &expected,
    );

    let sctp_only = with_ingress(
        policy("x", "sctp", sel("pod", "a")),
        vec![rule(
            vec![],
            vec![PolicyPort {
                protocol: Protocol::Sctp,
                port: Some(PortRef::Number(80)),
                end_port: None,
            }],
        )],
    );
    let mut expected = Reachability::all(true);
    expected.expect(None, Some("x/a"), None, None, false);
    lab.check(
        "SCTP rules neither open TCP nor UDP, and isolate",
        &world(vec![sctp_only]),
        &expected,
    );

    let both = with_egress(
        with_ingress(
            policy("x", "both", sel("pod", "a")),
            vec![rule(vec![pods(Some(sel("ns", "y")), None)], vec![])],
        ),
        vec![rule(vec![pods(Some(sel("ns", "z")), None)], vec![])],
    );
    let mut expected = Reachability::all(true);
    expected.expect(None, Some("x/a"), None, None, false);
    expected.expect(Some("y/*"), Some("x/a"), None, None, true);
    expected.expect(Some("x/a"), None, None, None, false);
    expected.expect(Some("x/a"), Some("z/*"), None, None, true);
    lab.check("Ingress and Egress together", &world(vec![both]), &expected);

    let client_denies = with_egress(policy("y", "no-egress", sel("pod", "b")), vec![]);
    let server_allows = with_ingress(
        policy("x", "allow-y-b", sel("pod", "a")),
        vec![rule(
            vec![pods(Some(sel("ns", "y")), Some(sel("pod", "b")))],
            vec![],
        )],
    );
    let mut expected = Reachability::all(true);
    expected.expect(None, Some("x/a"), None, None, false);
    expected.expect(Some("y/b"), None, None, None, false);
    lab.check(
        "the client's egress denies what the server allows",
        &world(vec![client_denies, server_allows]),
        &expected,
    );

    let egress_allow_all = with_egress(
        policy("x", "allow-all-egress", Selector::default()),
        vec![rule(vec![], vec![])],
    );
    let egress_deny = with_egress(policy("x", "deny-egress", Selector::default()), vec![]);
    lab.check(
        "egress allow-all wins over deny",
        &world(vec![egress_deny, egress_allow_all]),
        &Reachability::all(true),
    );
}

/// Scenarios whose probes cross the overlay: x on node1, y and z on node2, each node enforcing
/// its own pods (egress where a packet leaves, ingress where it arrives).
fn cross_node_scenarios(lab: &PolicyLab) {
    let layout = lab.layout;
    lab.check(
        "open",
        &npclab::world_on(layout, vec![]),
        &Reachability::all(true),
    );

    let deny_x = with_ingress(policy("x", "deny", Selector::default()), vec![]);
    let mut expected = Reachability::all(true);
    expected.expect(None, Some("x/*"), None, None, false);
    lab.check(
        "default-deny ingress on node1",
        &npclab::world_on(layout, vec![deny_x]),
        &expected,
    );

    let y_from_x = with_ingress(
        policy("y", "from-x", sel("pod", "a")),
        vec![rule(
            vec![pods(Some(sel("ns", "x")), None)],
            vec![port(Protocol::Tcp, 80)],
        )],
    );
    let mut expected = Reachability::all(true);
    expected.expect(None, Some("y/a"), None, None, false);
    expected.expect(Some("x/*"), Some("y/a"), Some(80), TCP, true);
    lab.check(
        "ingress on node2 from node1 on one port",
        &npclab::world_on(layout, vec![y_from_x]),
        &expected,
    );

    let x_a_to_z = with_egress(
        policy("x", "to-z", sel("pod", "a")),
        vec![rule(
            vec![pods(Some(sel("ns", "z")), None)],
            vec![PolicyPort {
                protocol: Protocol::Udp,
                port: Some(PortRef::Name("serve-81-udp".into())),
                end_port: None,
            }],
        )],
    );
    let mut expected = Reachability::all(true);
    expected.expect(Some("x/a"), None, None, None, false);
    expected.expect(Some("x/a"), Some("z/*"), Some(81), UDP, true);
    lab.check(
        "egress on node1 to node2 on a named port",
        &npclab::world_on(layout, vec![x_a_to_z]),
        &expected,
    );

    let z_no_egress = with_egress(policy("z", "no-egress", sel("pod", "b")), vec![]);
    let x_allows = with_ingress(
        policy("x", "from-z-b", sel("pod", "c")),
        vec![rule(
            vec![pods(Some(sel("ns", "z")), Some(sel("pod", "b")))],
            vec![],
        )],
    );
    let mut expected = Reachability::all(true);
    expected.expect(Some("z/b"), None, None, None, false);
    expected.expect(None, Some("x/c"), None, None, false);
    lab.check(
        "egress on node2 denies what ingress on node1 allows",
        &npclab::world_on(layout, vec![z_no_egress, x_allows]),
        &expected,
    );
}

#[test]
fn cross_node_scenarios_over_fastdp() {
    let lab = PolicyLab::with_layout("npcfdp", npclab::Layout::TwoNodes { sleeve_only: false });
    cross_node_scenarios(&lab);
}

#[test]
fn cross_node_scenarios_over_sleeve() {
    let lab = PolicyLab::with_layout("npcslv", npclab::Layout::TwoNodes { sleeve_only: true });
    cross_node_scenarios(&lab);
}
