use std::net::Ipv4Addr;

use super::controller::{Controller, ControllerEvent};
use super::mirror::WatchEvent;
use super::model::{Namespace, Pod, Policy, Selector, Target};

fn pod(name: &str, last_octet: u8) -> Pod {
    Pod {
        namespace: "x".into(),
        name: name.into(),
        ip: Some(Ipv4Addr::new(10, 0, 0, last_octet)),
        labels: Default::default(),
        node: Some("n1".into()),
        host_network: false,
        ports: vec![],
    }
}

fn deny_all(broken: Option<&str>) -> Policy {
    Policy {
        namespace: "x".into(),
        name: "deny".into(),
        target: Target::Selector(Selector::default()),
        ingress: Some(vec![]),
        egress: None,
        broken: broken.map(str::to_string),
    }
}

fn synced(controller: &mut Controller, pods: Vec<Pod>, policies: Vec<Policy>) {
    let namespace = Namespace {
        name: "x".into(),
        labels: Default::default(),
    };
    controller.apply(ControllerEvent::Namespace(WatchEvent::Relisting));
    controller.apply(ControllerEvent::Namespace(WatchEvent::Listed(
        "/x".into(),
        namespace,
    )));
    controller.apply(ControllerEvent::Namespace(WatchEvent::Synced));
    controller.apply(ControllerEvent::Pod(WatchEvent::Relisting));
    for pod in pods {
        controller.apply(ControllerEvent::Pod(WatchEvent::Listed(
            format!("x/{}", pod.name),
            pod,
        )));
    }
    controller.apply(ControllerEvent::Pod(WatchEvent::Synced));
    controller.apply(ControllerEvent::Policy(WatchEvent::Relisting));
    for policy in policies {
        controller.apply(ControllerEvent::Policy(WatchEvent::Listed(
            format!("x/{}", policy.name),
            policy,
        )));
    }
}

#[test]
fn nothing_is_written_until_every_kind_is_listed_then_only_changes() {
    let mut controller = Controller::new("n1");
    synced(&mut controller, vec![pod("a", 1)], vec![deny_all(None)]);
    assert_eq!(
        controller.plan(false),
        None,
        "policies not listed yet: the old table stays"
    );
    controller.apply(ControllerEvent::Policy(WatchEvent::Synced));
    let plan = controller.plan(false).unwrap();
    let ruleset = plan.ruleset.expect("a first ruleset");
    assert!(
        ruleset
            .ingress
            .isolated
            .contains(&Ipv4Addr::new(10, 0, 0, 1))
    );
    controller.written(ruleset);
    assert_eq!(
        controller.plan(false).unwrap().ruleset,
        None,
        "nothing changed"
    );
    assert!(
        controller.plan(true).unwrap().ruleset.is_some(),
        "a restore writes anyway"
    );
    // A pod's address going away takes it out of the sets.
    controller.apply(ControllerEvent::Pod(WatchEvent::Deleted("x/a".into())));
    let plan = controller.plan(false).unwrap().ruleset.unwrap();
    assert!(plan.ingress.isolated.is_empty());
}

#[test]
fn a_broken_policy_is_reported_once_until_it_changes() {
    let mut controller = Controller::new("n1");
    synced(
        &mut controller,
        vec![pod("a", 1)],
        vec![deny_all(Some("bad"))],
    );
    controller.apply(ControllerEvent::Policy(WatchEvent::Synced));
    let first = controller.plan(false).unwrap();
    assert_eq!((first.new_errors.len(), first.error_count), (1, 1));
    let again = controller.plan(false).unwrap();
    assert_eq!((again.new_errors.len(), again.error_count), (0, 1));
    controller.apply(ControllerEvent::Policy(WatchEvent::Applied(
        "x/deny".into(),
        deny_all(Some("worse")),
    )));
    assert_eq!(controller.plan(false).unwrap().new_errors.len(), 1);
    controller.apply(ControllerEvent::Policy(WatchEvent::Deleted(
        "x/deny".into(),
    )));
    assert_eq!(controller.plan(false).unwrap().error_count, 0);
}
