use std::net::IpAddr;

use crate::kubernetes::nodes::{NodeEvent, NodeInfo};
use crate::kubernetes::state::{ApiTransition, KubeState, NetworkMark};

fn node(name: &str, address: &str, marked: bool) -> NodeInfo {
    NodeInfo {
        name: name.to_string(),
        address: Some(address.parse::<IpAddr>().unwrap()),
        network_marked_up: marked,
    }
}

fn synced(state: &mut KubeState, nodes: &[NodeInfo]) -> crate::kubernetes::state::Actions {
    state.on_event(NodeEvent::Relisting);
    for node in nodes {
        state.on_event(NodeEvent::Listed(node.clone()));
    }
    state.on_event(NodeEvent::Synced)
}

#[test]
fn targets_go_out_after_the_first_list_and_on_changes_only() {
    let mut state = KubeState::new("node1", "https://api:6443");
    state.on_event(NodeEvent::Relisting);
    let partial = state.on_event(NodeEvent::Listed(node("node2", "10.0.0.2", false)));
    assert_eq!(partial.targets, None);
    let first = state.on_event(NodeEvent::Synced);
    assert_eq!(first.targets, Some(vec!["10.0.0.2".to_string()]));
    assert!(
        first.reclaim,
        "the first list registers us and looks for dead peers"
    );
    // The same list again changes nothing.
    let again = synced(&mut state, &[node("node2", "10.0.0.2", false)]);
    assert_eq!(again.targets, None);
    assert!(!again.reclaim);
    let joined = state.on_event(NodeEvent::Applied(node("node4", "10.0.0.4", false)));
    assert_eq!(
        joined.targets,
        Some(vec!["10.0.0.2".to_string(), "10.0.0.4".to_string()])
    );
    let left = state.on_event(NodeEvent::Deleted("node2".into()));
    assert_eq!(left.targets, Some(vec!["10.0.0.4".to_string()]));
    assert!(left.reclaim);
}

#[test]
fn api_trouble_is_reported_once_per_change() {
    let mut state = KubeState::new("node1", "https://api:6443");
    assert_eq!(state.api_answered(), None);
    assert_eq!(
        state.api_failed("refused".into()),
        Some(ApiTransition::Lost("refused".into()))
    );
    assert_eq!(state.api_failed("refused again".into()), None);
    assert_eq!(state.status().error.as_deref(), Some("refused again"));
    assert_eq!(state.api_answered(), Some(ApiTransition::Regained));
    assert_eq!(state.api_answered(), None);
    assert_eq!(state.status().error, None);
}

#[test]
fn a_network_mark_that_never_asked_the_api_does_not_end_an_outage() {
    let mut state = KubeState::new("node1", "u");
    synced(&mut state, &[node("node1", "10.0.0.1", false)]);
    state.api_failed("refused".into());
    assert_eq!(state.network_mark_ended(NetworkMark::IpamNotReady), None);
    assert_eq!(state.status().error.as_deref(), Some("refused"));
    assert!(state.network_mark_due());
    assert_eq!(
        state.network_mark_ended(NetworkMark::Failed("refused again".into())),
        None
    );
    assert_eq!(
        state.network_mark_ended(NetworkMark::Set),
        Some(ApiTransition::Regained)
    );
    assert!(!state.network_mark_due());
    assert_eq!(
        state.network_mark_ended(NetworkMark::Failed("gone".into())),
        Some(ApiTransition::Lost("gone".into()))
    );
}

#[test]
fn the_network_condition_is_set_again_when_the_node_loses_it() {
    let mut state = KubeState::new("node1", "u");
    assert!(!state.network_mark_due(), "not before our Node is known");
    synced(&mut state, &[node("node1", "10.0.0.1", false)]);
    assert!(state.network_mark_due());
    state.network_mark_ended(NetworkMark::Set);
    state.on_event(NodeEvent::Applied(node("node1", "10.0.0.1", true)));
    assert!(!state.network_mark_due());
    // The Node was re-created, or someone reset the condition.
    state.on_event(NodeEvent::Applied(node("node1", "10.0.0.1", false)));
    assert!(state.network_mark_due());
}

#[test]
fn status_counts_the_nodes() {
    let mut state = KubeState::new("node1", "https://api:6443");
    assert!(!state.status().synced);
    synced(
        &mut state,
        &[
            node("node1", "10.0.0.1", false),
            node("node2", "10.0.0.2", false),
        ],
    );
    let status = state.status();
    assert_eq!((status.nodes, status.synced), (2, true));
}
