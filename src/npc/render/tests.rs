//! The rendered table against the ruleset: the rule count the flush check relies on, and what an
//! update touches.

use std::net::Ipv4Addr;

use nftables::schema::{NfCmd, NfListObject, NfObject, Nftables};

use crate::npc::render::{render, render_update, rule_count};
use crate::npc::ruleset::{PeerSets, PolicyRules, PortSets, RuleSets, Ruleset};

fn policy(targets: &[u8], rules: Vec<RuleSets>) -> PolicyRules {
    PolicyRules {
        name: "x/p".into(),
        targets: targets
            .iter()
            .map(|t| Ipv4Addr::new(10, 0, 0, *t))
            .collect(),
        rules,
    }
}

fn ruleset(policies: Vec<(&str, PolicyRules)>) -> Ruleset {
    let mut ruleset = Ruleset::default();
    for (id, policy) in policies {
        ruleset
            .ingress
            .isolated
            .extend(policy.targets.iter().copied());
        ruleset.ingress.policies.insert(id.into(), policy.clone());
        ruleset
            .egress
            .isolated
            .extend(policy.targets.iter().copied());
        ruleset.egress.policies.insert(id.into(), policy);
    }
    ruleset
}

fn rules_in(batch: &Nftables) -> usize {
    batch
        .objects
        .iter()
        .filter(|object| {
            matches!(
                object,
                NfObject::CmdObject(NfCmd::Add(NfListObject::Rule(_)))
            )
        })
        .count()
}

fn every_kind() -> Vec<RuleSets> {
    vec![
        RuleSets::default(),
        RuleSets {
            peers: Some(PeerSets::default()),
            ports: None,
        },
        RuleSets {
            peers: None,
            ports: Some(PortSets::default()),
        },
        RuleSets {
            peers: Some(PeerSets::default()),
            ports: Some(PortSets::default()),
        },
    ]
}

/// The flush check compares the kernel's rule count with this: it must be what is written.
#[test]
fn rule_count_is_the_number_of_rules_rendered() {
    for ruleset in [
        Ruleset::default(),
        ruleset(vec![("a", policy(&[1], vec![]))]),
        ruleset(vec![
            ("a", policy(&[1, 2], every_kind())),
            ("b", policy(&[3], every_kind())),
        ]),
    ] {
        assert_eq!(rules_in(&render(&ruleset)), rule_count(&ruleset));
    }
}

/// Nothing changed: nothing to write. Elements only: no rule is touched. A policy whose
/// rules changed in kind: only its chain is rewritten, the dispatch chains stay.
#[test]
fn an_update_touches_only_what_changed() {
    let old = ruleset(vec![
        ("a", policy(&[1], every_kind())),
        ("b", policy(&[2], vec![])),
    ]);
    assert!(render_update(&old, &old).objects.is_empty());
    let mut more_targets = old.clone();
    more_targets
        .ingress
        .policies
        .get_mut("a")
        .unwrap()
        .targets
        .insert(Ipv4Addr::new(10, 0, 0, 9));
    more_targets
        .ingress
        .isolated
        .insert(Ipv4Addr::new(10, 0, 0, 9));
    let update = render_update(&old, &more_targets);
    assert_eq!(rules_in(&update), 0);
    assert_eq!(update.objects.len(), 2, "{update:?}");
    let mut reshaped = old.clone();
    reshaped.ingress.policies.get_mut("b").unwrap().rules = vec![RuleSets::default()];
    let update = render_update(&old, &reshaped);
    assert_eq!(rules_in(&update), 1, "only b's new rule: {update:?}");
    let gone = ruleset(vec![("a", policy(&[1], every_kind()))]);
    let update = render_update(&old, &gone);
    // The dispatch chains are written again (their log and drop rules, ingress' accept of
    // pods it does not isolate, a's jumps); a's own chains stay.
    assert_eq!(
        rules_in(&update),
        2 + 1 + gone.egress.policies.len() + gone.ingress.policies.len() + 2,
        "{update:?}"
    );
}
