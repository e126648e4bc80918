use std::net::IpAddr;

use proptest::prelude::*;

use crate::kubernetes::nodes::{Change, NodeEvent, NodeInfo, NodeSet};

fn node(name: &str, address: Option<&str>) -> NodeInfo {
    NodeInfo {
        name: name.to_string(),
        address: address.map(|a| a.parse::<IpAddr>().unwrap()),
        network_marked_up: false,
    }
}

fn listed(nodes: &[NodeInfo]) -> NodeSet {
    let mut set = NodeSet::default();
    set.apply(NodeEvent::Relisting);
    for node in nodes {
        set.apply(NodeEvent::Listed(node.clone()));
    }
    set.apply(NodeEvent::Synced);
    set
}

#[test]
fn targets_are_the_other_nodes_addresses_sorted() {
    let set = listed(&[
        node("node3", Some("198.51.100.13")),
        node("node1", Some("198.51.100.11")),
        node("node2", Some("198.51.100.12")),
        node("no-address-yet", None),
    ]);
    assert_eq!(set.targets("node1"), vec!["198.51.100.12", "198.51.100.13"]);
    assert_eq!(set.other_nodes("node1"), 3);
    // A node name that is not (yet) listed is not subtracted.
    assert_eq!(set.other_nodes("elsewhere"), 4);
}

#[test]
fn a_list_replaces_the_set_only_when_complete() {
    let mut set = listed(&[node("a", Some("10.0.0.1")), node("b", Some("10.0.0.2"))]);
    assert_eq!(set.apply(NodeEvent::Relisting), Change::default());
    set.apply(NodeEvent::Listed(node("a", Some("10.0.0.1"))));
    // Half a list says nothing about b.
    assert!(set.contains("b"));
    let change = set.apply(NodeEvent::Synced);
    assert!(change.removed && change.membership);
    assert!(!set.contains("b"));
}

#[test]
fn not_synced_until_the_first_list_completes() {
    let mut set = NodeSet::default();
    set.apply(NodeEvent::Relisting);
    set.apply(NodeEvent::Listed(node("a", None)));
    assert!(!set.synced());
    set.apply(NodeEvent::Synced);
    assert!(set.synced());
}

#[test]
fn deletions_and_address_changes_are_membership_changes() {
    let mut set = listed(&[node("a", Some("10.0.0.1"))]);
    assert!(
        !set.apply(NodeEvent::Applied(node("a", Some("10.0.0.1"))))
            .membership
    );
    assert!(
        set.apply(NodeEvent::Applied(node("a", Some("10.0.0.9"))))
            .membership
    );
    let deleted = set.apply(NodeEvent::Deleted("a".into()));
    assert!(deleted.removed && deleted.membership);
    assert_eq!(set.apply(NodeEvent::Deleted("a".into())), Change::default());
}

fn arb_event() -> impl Strategy<Value = NodeEvent> {
    let name = prop::sample::select(vec!["n0", "n1", "n2", "n3"]);
    let address = prop::option::of(prop::sample::select(vec![
        "10.0.0.1", "10.0.0.2", "10.0.0.3",
    ]));
    prop_oneof![
        Just(NodeEvent::Relisting),
        Just(NodeEvent::Synced),
        (name.clone(), address.clone()).prop_map(|(n, a)| NodeEvent::Listed(node(n, a))),
        (name.clone(), address).prop_map(|(n, a)| NodeEvent::Applied(node(n, a))),
        name.prop_map(|n| NodeEvent::Deleted(n.to_string())),
        Just(NodeEvent::Expired),
    ]
}

proptest! {
    /// Whatever the watch reports, the set agrees with a plain model (the last complete list,
    /// then the applies and deletes since, and deletes during a list), and a change is reported
    /// exactly when the targets or the members changed.
    #[test]
    fn the_set_follows_a_model_of_the_watch(events in prop::collection::vec(arb_event(), 0..40)) {
        use std::collections::BTreeMap;
        let mut set = NodeSet::default();
        let mut model: BTreeMap<String, Option<IpAddr>> = BTreeMap::new();
        let mut listing: Option<BTreeMap<String, Option<IpAddr>>> = None;
        for event in events {
            let before_targets = set.targets("n0");
            let before_names: Vec<String> = set.names().map(str::to_string).collect();
            let change = set.apply(event.clone());
            match event {
                NodeEvent::Relisting => listing = Some(BTreeMap::new()),
                NodeEvent::Listed(n) => match &mut listing {
                    Some(l) => { l.insert(n.name, n.address); }
                    None => { model.insert(n.name, n.address); }
                },
                NodeEvent::Synced => model = listing.take().unwrap_or_default(),
                NodeEvent::Applied(n) => { model.insert(n.name, n.address); }
                NodeEvent::Expired => {}
                NodeEvent::Deleted(name) => {
                    if let Some(l) = &mut listing { l.remove(&name); }
                    model.remove(&name);
                }
            }
            let names: Vec<String> = set.names().map(str::to_string).collect();
            prop_assert_eq!(&names, &model.keys().cloned().collect::<Vec<_>>());
            if set.targets("n0") != before_targets || names != before_names {
                prop_assert!(change.membership);
            }
            if before_names.iter().any(|n| !names.contains(n)) {
                prop_assert!(change.removed);
            }
        }
    }
}
