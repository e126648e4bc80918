//! `weft npc`'s rulesets in the real kernel, scenario by scenario in the upstream e2e model
//! (tests/npclab): each scenario's policies are compiled, applied to the node's `inet weft-npc`
//! table in one transaction, and every pod probes every other pod on TCP and UDP 80 and 81; the
//! observed matrix must equal the scenario's truth table, written by hand (and checked against
//! the reference evaluator too). Multi-step scenarios change policies and labels in place.

mod netlab;
mod npclab;

use npclab::{PolicyLab, Reachability, world};
use weft::npc::model::{Peer, Policy, PolicyPort, PortRef, Protocol, Rule, Selector, Target};
use weft::npc::nft::{PolicyKernel, RULE_COUNT};
use weft::npc::ranges::{parse_cidr, subtract};

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
    assert_eq!(lab.kernel.installed_rules().unwrap(), Some(RULE_COUNT));

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

    world_now.policies.clear();
    lab.check("removed", &world_now, &Reachability::all(true));

    // An external flush empties our table: the controller sees the rules gone.
    let flushed = netlab::in_netns(&lab.node, "nft", &["flush", "table", "inet", "weft-npc"]);
    assert!(flushed.status.success());
    assert_eq!(lab.kernel.installed_rules().unwrap(), Some(0));
    assert!(lab.kernel.remove().unwrap());
    assert_eq!(lab.kernel.installed_rules().unwrap(), None);
    assert!(!lab.kernel.remove().unwrap());
}
