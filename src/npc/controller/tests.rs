use std::net::Ipv4Addr;

use crate::npc::controller::{Controller, ControllerEvent};
use crate::npc::mirror::WatchEvent;
use crate::npc::model::{
    Direction, Namespace, Peer, Pod, Policy, Protocol, Rule, Selector, Target,
};
use crate::npc::verdict::{Packet, verdict};

fn pod(name: &str, last_octet: u8) -> Pod {
    Pod {
        namespace: "x".into(),
        name: name.into(),
        ip: Some(Ipv4Addr::new(10, 0, 0, last_octet)),
        labels: Default::default(),
        node: Some("n1".into()),
        host_network: false,
        terminating: false,
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

fn labelled(name: &str, last_octet: u8, app: &str) -> Pod {
    Pod {
        labels: [("app".to_string(), app.to_string())].into_iter().collect(),
        ..pod(name, last_octet)
    }
}

/// Isolates `app=old` pods for ingress (allowing nothing) and lets only `app=old` pods reach
/// `a`.
fn old_pods_policies() -> Vec<Policy> {
    let app_old = Selector {
        match_labels: [("app".to_string(), "old".to_string())]
            .into_iter()
            .collect(),
        expressions: vec![],
    };
    vec![
        Policy {
            name: "isolate-old".into(),
            target: Target::Selector(app_old.clone()),
            ..deny_all(None)
        },
        Policy {
            name: "a-from-old".into(),
            target: Target::Selector(Selector {
                match_labels: [("app".to_string(), "a".to_string())].into_iter().collect(),
                expressions: vec![],
            }),
            ingress: Some(vec![Rule {
                peers: vec![Peer::Pods {
                    namespaces: None,
                    pods: Some(app_old),
                }],
                ports: vec![],
            }]),
            ..deny_all(None)
        },
    ]
}

/// What the controller's current ruleset says of a new TCP connection to port 80.
fn allowed(controller: &mut Controller, src: u8, dst: u8) -> bool {
    let world = controller.world();
    let ruleset = controller.plan(true).unwrap().ruleset.unwrap();
    let packet = Packet {
        src: Ipv4Addr::new(10, 0, 0, src),
        dst: Ipv4Addr::new(10, 0, 0, dst),
        protocol: Some(Protocol::Tcp),
        port: 80,
    };
    let by_ruleset =
        ruleset.allows(Direction::Egress, &packet) && ruleset.allows(Direction::Ingress, &packet);
    assert_eq!(by_ruleset, verdict(&world, &packet), "{packet:?}");
    by_ruleset
}

#[test]
fn a_reused_address_is_the_new_pods_at_once_while_the_old_object_lingers() {
    let mut controller = Controller::new("n1");
    let old = labelled("old", 5, "old");
    synced(
        &mut controller,
        vec![labelled("a", 1, "a"), old.clone(), labelled("c", 3, "c")],
        old_pods_policies(),
    );
    controller.apply(ControllerEvent::Policy(WatchEvent::Synced));
    assert!(allowed(&mut controller, 5, 1), "old may reach a");
    assert!(!allowed(&mut controller, 3, 5), "old is isolated");
    // The old pod is being deleted; its sandbox is gone and IPAM gives 10.0.0.5 to a new pod
    // before the old object's final delete arrives.
    controller.apply(ControllerEvent::Pod(WatchEvent::Applied(
        "x/old".into(),
        Pod {
            terminating: true,
            ..old.clone()
        },
    )));
    controller.apply(ControllerEvent::Pod(WatchEvent::Applied(
        "x/new".into(),
        labelled("new", 5, "new"),
    )));
    let world = controller.world();
    assert_eq!(
        world.pod_at(Ipv4Addr::new(10, 0, 0, 5)).unwrap().name,
        "new"
    );
    assert!(
        !allowed(&mut controller, 5, 1),
        "new is not granted old's access"
    );
    assert!(
        allowed(&mut controller, 3, 5),
        "new is not isolated as old was"
    );
    let ruleset = controller.plan(true).unwrap().ruleset.unwrap();
    assert!(
        !ruleset
            .ingress
            .isolated
            .contains(&Ipv4Addr::new(10, 0, 0, 5))
    );
    // Even when the old object shows no sign of going (an update of it after the new pod's),
    // the later claim keeps the address.
    controller.apply(ControllerEvent::Pod(WatchEvent::Applied(
        "x/old".into(),
        Pod {
            terminating: false,
            labels: [
                ("app".to_string(), "old".to_string()),
                ("v".to_string(), "2".to_string()),
            ]
            .into_iter()
            .collect(),
            ..old.clone()
        },
    )));
    assert!(!allowed(&mut controller, 5, 1));
    controller.apply(ControllerEvent::Pod(WatchEvent::Deleted("x/old".into())));
    assert!(!allowed(&mut controller, 5, 1));
    assert!(allowed(&mut controller, 3, 5));
}

#[test]
fn after_a_relist_a_reused_address_belongs_to_the_pod_not_being_deleted() {
    let mut controller = Controller::new("n1");
    // Listed in key order: "x/zombie" (terminating) is listed after "x/new" and so would be
    // the later claim; being deleted, it yields the address.
    synced(
        &mut controller,
        vec![
            labelled("a", 1, "a"),
            labelled("new", 5, "new"),
            Pod {
                terminating: true,
                ..labelled("zombie", 5, "old")
            },
            labelled("c", 3, "c"),
        ],
        old_pods_policies(),
    );
    controller.apply(ControllerEvent::Policy(WatchEvent::Synced));
    assert_eq!(
        controller
            .world()
            .pod_at(Ipv4Addr::new(10, 0, 0, 5))
            .unwrap()
            .name,
        "new"
    );
    assert!(!allowed(&mut controller, 5, 1));
    assert!(allowed(&mut controller, 3, 5));
}
