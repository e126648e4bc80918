//! Kubernetes objects into the model: defaults as the API defines them, and policies that cannot
//! be read as written failing closed.

use k8s_openapi::api::networking::v1::NetworkPolicy;

use crate::npc::convert::policy;
use crate::npc::model::{Peer, PortRef, Protocol, Target};

fn parse(spec: serde_json::Value) -> crate::npc::model::Policy {
    let object: NetworkPolicy = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p", "namespace": "x"},
        "spec": spec,
    }))
    .expect("a NetworkPolicy");
    policy(&object).expect("named and namespaced")
}

#[test]
fn policy_types_default_to_ingress_plus_egress_when_there_are_egress_rules() {
    let ingress_only = parse(serde_json::json!({"podSelector": {}}));
    assert_eq!(ingress_only.ingress, Some(vec![]));
    assert_eq!(ingress_only.egress, None);
    let both = parse(serde_json::json!({"podSelector": {}, "egress": [{}]}));
    assert!(both.ingress.is_some() && both.egress.as_ref().is_some_and(|rules| rules.len() == 1));
    let egress_only =
        parse(serde_json::json!({"podSelector": {}, "policyTypes": ["Egress"], "ingress": [{}]}));
    assert_eq!(
        egress_only.ingress, None,
        "ingress rules without the Ingress type are ignored"
    );
    assert_eq!(egress_only.egress, Some(vec![]));
}

#[test]
fn ports_default_to_tcp_and_keep_names_and_ranges() {
    let p = parse(
        serde_json::json!({"podSelector": {}, "ingress": [{"ports": [
            {"port": 80}, {"protocol": "UDP", "port": "dns"}, {"port": 1000, "endPort": 2000}, {"protocol": "SCTP"}
        ]}]}),
    );
    let ports = &p.ingress.unwrap()[0].ports;
    assert_eq!(
        (ports[0].protocol, &ports[0].port),
        (Protocol::Tcp, &Some(PortRef::Number(80)))
    );
    assert_eq!(
        (ports[1].protocol, &ports[1].port),
        (Protocol::Udp, &Some(PortRef::Name("dns".into())))
    );
    assert_eq!(ports[2].end_port, Some(2000));
    assert_eq!((ports[3].protocol, &ports[3].port), (Protocol::Sctp, &None));
    assert_eq!(p.broken, None);
}

#[test]
fn ip_blocks_become_ranges_and_ipv6_blocks_match_nothing() {
    let p = parse(serde_json::json!({"podSelector": {}, "ingress": [{"from": [
        {"ipBlock": {"cidr": "10.0.0.0/24", "except": ["10.0.0.128/25"]}},
        {"ipBlock": {"cidr": "fd00::/64"}},
    ]}]}));
    let peers = &p.ingress.unwrap()[0].peers;
    let Peer::Block(ranges) = &peers[0] else {
        panic!("{peers:?}")
    };
    assert_eq!(ranges.len(), 1);
    assert_eq!(ranges[0].to_string(), "10.0.0.0-10.0.0.127");
    assert_eq!(peers[1], Peer::Block(vec![]));
}

#[test]
fn unreadable_policies_fail_closed_for_what_they_select() {
    for (why, spec) in [
        (
            "unknown operator",
            serde_json::json!({"podSelector": {"matchExpressions": [{"key": "a", "operator": "Near"}]}, "egress": [{}]}),
        ),
        (
            "unknown protocol",
            serde_json::json!({"podSelector": {}, "ingress": [{"ports": [{"protocol": "ICMP"}]}]}),
        ),
        (
            "endPort without a number",
            serde_json::json!({"podSelector": {}, "ingress": [{"ports": [{"port": "http", "endPort": 90}]}]}),
        ),
        (
            "endPort below port",
            serde_json::json!({"podSelector": {}, "ingress": [{"ports": [{"port": 90, "endPort": 80}]}]}),
        ),
        (
            "an empty peer",
            serde_json::json!({"podSelector": {}, "ingress": [{"from": [{}]}]}),
        ),
        (
            "a bad CIDR",
            serde_json::json!({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/40"}}]}]}),
        ),
        (
            "unknown policy type",
            serde_json::json!({"podSelector": {}, "policyTypes": ["Sideways"], "ingress": [{}]}),
        ),
    ] {
        let p = parse(spec);
        assert!(p.broken.is_some(), "{why}: {p:?}");
        // Isolated, allowing nothing, in every direction it names (or both when unknown).
        assert!(
            p.ingress.iter().chain(p.egress.iter()).all(Vec::is_empty),
            "{why}: {p:?}"
        );
        assert!(p.ingress.is_some() || p.egress.is_some(), "{why}: {p:?}");
    }
    let unknown_selector = parse(
        serde_json::json!({"podSelector": {"matchExpressions": [{"key": "a", "operator": "Near"}]}}),
    );
    assert_eq!(unknown_selector.target, Target::WholeNamespace);
    let unknown_type = parse(serde_json::json!({"podSelector": {}, "policyTypes": ["Sideways"]}));
    assert!(unknown_type.ingress.is_some() && unknown_type.egress.is_some());
}
