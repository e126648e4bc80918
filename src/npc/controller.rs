//! The controller's state, without I/O: mirrors of the namespaces, pods and policies, the
//! ruleset last written, and which broken policies were already reported. The driver feeds it
//! watch events and asks what to write.

use std::collections::BTreeSet;

use super::compile::{PolicyError, compile};
use super::mirror::{Mirror, WatchEvent};
use super::model::{Namespace, Pod, Policy, World};
use super::ruleset::Ruleset;

/// A watch event of any of the three kinds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControllerEvent {
    Namespace(WatchEvent<Namespace>),
    Pod(WatchEvent<Pod>),
    Policy(WatchEvent<Policy>),
}

#[derive(Debug)]
pub struct Controller {
    node: String,
    namespaces: Mirror<Namespace>,
    pods: Mirror<Pod>,
    policies: Mirror<Policy>,
    written: Option<Ruleset>,
    reported: BTreeSet<PolicyErrorKey>,
}

type PolicyErrorKey = (String, String);

/// What a sync should do.
#[derive(Debug, PartialEq, Eq)]
pub struct Plan {
    /// The ruleset to write; `None` when the kernel has it already.
    pub ruleset: Option<Ruleset>,
    /// Broken policies not reported before (each is logged once, until it changes).
    pub new_errors: Vec<PolicyError>,
    /// All broken policies now.
    pub error_count: usize,
}

impl Controller {
    pub fn new(node: &str) -> Self {
        Self {
            node: node.to_string(),
            namespaces: Mirror::default(),
            pods: Mirror::default(),
            policies: Mirror::default(),
            written: None,
            reported: BTreeSet::new(),
        }
    }

    /// Applies an event; answers whether the world changed.
    pub fn apply(&mut self, event: ControllerEvent) -> bool {
        match event {
            ControllerEvent::Namespace(event) => self.namespaces.apply(event),
            ControllerEvent::Pod(event) => self.pods.apply(event),
            ControllerEvent::Policy(event) => self.policies.apply(event),
        }
    }

    /// All three kinds have been listed completely: before that, a ruleset would be built from
    /// half a world (an allow-all or deny-all window), so the table of the previous run stays.
    pub fn synced(&self) -> bool {
        self.namespaces.synced() && self.pods.synced() && self.policies.synced()
    }

    pub fn world(&self) -> World {
        World {
            namespaces: self
                .namespaces
                .values()
                .map(|namespace| (namespace.name.clone(), namespace.clone()))
                .collect(),
            pods: self.pods.values().cloned().collect(),
            policies: self.policies.values().cloned().collect(),
        }
    }

    /// What to write (a ruleset that differs from the one written, or any with `force`, to
    /// restore a table someone flushed) and what to report; `None` until synced.
    pub fn plan(&mut self, force: bool) -> Option<Plan> {
        if !self.synced() {
            return None;
        }
        let compiled = compile(&self.world(), &self.node);
        let now: BTreeSet<PolicyErrorKey> = compiled
            .errors
            .iter()
            .map(|error| (error.policy.clone(), error.reason.clone()))
            .collect();
        let new_errors = compiled
            .errors
            .iter()
            .filter(|error| {
                !self
                    .reported
                    .contains(&(error.policy.clone(), error.reason.clone()))
            })
            .cloned()
            .collect();
        let error_count = now.len();
        self.reported = now;
        let unchanged = !force && self.written.as_ref() == Some(&compiled.ruleset);
        Some(Plan {
            ruleset: (!unchanged).then_some(compiled.ruleset),
            new_errors,
            error_count,
        })
    }

    pub fn written(&mut self, ruleset: Ruleset) {
        self.written = Some(ruleset);
    }

    /// The ruleset last written, to restore.
    pub fn last_written(&self) -> Option<&Ruleset> {
        self.written.as_ref()
    }
}
