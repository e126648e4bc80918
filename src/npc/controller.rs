//! The controller's state, without I/O: mirrors of the namespaces, pods and policies, the
//! ruleset last written, and which broken policies were already reported. The driver feeds it
//! watch events and asks what to write.
//!
//! One address, one pod: a pod's address goes back to IPAM when its sandbox is torn down, which
//! can be before its object is gone (a terminating pod waits for the kubelet's final delete), so
//! a new pod may show the address while the old object is still mirrored. The address is then
//! the new pod's alone, at once: the old object keeps no identity through it, neither as a
//! target of its policies nor as a peer its labels grant.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

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
    /// Per pod key, its address and when (in event order) it was first seen with it: of two
    /// pods showing one address, the later claim holds it.
    claims: BTreeMap<String, (Ipv4Addr, u64)>,
    next_claim: u64,
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
            claims: BTreeMap::new(),
            next_claim: 0,
        }
    }

    /// Applies an event; answers whether the world changed.
    pub fn apply(&mut self, event: ControllerEvent) -> bool {
        match event {
            ControllerEvent::Namespace(event) => self.namespaces.apply(event),
            ControllerEvent::Pod(event) => {
                let relisted = event == WatchEvent::Synced;
                match &event {
                    WatchEvent::Listed(key, pod) | WatchEvent::Applied(key, pod) => {
                        self.claim(key, pod.policy_ip());
                    }
                    WatchEvent::Deleted(key) => {
                        self.claims.remove(key);
                    }
                    WatchEvent::Relisting | WatchEvent::Synced => {}
                }
                let changed = self.pods.apply(event);
                if relisted {
                    // Pods missing from a complete list are gone, with their claims.
                    let pods = &self.pods;
                    self.claims.retain(|key, _| pods.contains(key));
                }
                changed
            }
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
            pods: one_pod_per_address(
                self.pods
                    .entries()
                    .map(|(key, pod)| (pod, self.claims.get(key).map_or(0, |claim| claim.1))),
            ),
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

    /// Records when `key` was first seen with `ip` (a new claim when the address changed).
    fn claim(&mut self, key: &str, ip: Option<Ipv4Addr>) {
        match ip {
            None => {
                self.claims.remove(key);
            }
            Some(ip) if self.claims.get(key).is_some_and(|claim| claim.0 == ip) => {}
            Some(ip) => {
                self.next_claim += 1;
                self.claims.insert(key.to_string(), (ip, self.next_claim));
            }
        }
    }

    pub fn written(&mut self, ruleset: Ruleset) {
        self.written = Some(ruleset);
    }

    /// The ruleset last written, to restore.
    pub fn last_written(&self) -> Option<&Ruleset> {
        self.written.as_ref()
    }
}

/// The pods, with every address held by one of them: a pod not being deleted before one that
/// is (its address can only have been reused after that one's sandbox went), then the latest
/// claim. The others lose the address, so they leave every set.
fn one_pod_per_address<'a>(pods: impl Iterator<Item = (&'a Pod, u64)>) -> Vec<Pod> {
    let pods: Vec<(&Pod, u64)> = pods.collect();
    let mut holders: HashMap<Ipv4Addr, (bool, u64, usize)> = HashMap::new();
    for (index, (pod, claim)) in pods.iter().enumerate() {
        if let Some(ip) = pod.policy_ip() {
            let rank = (!pod.terminating, *claim, index);
            holders
                .entry(ip)
                .and_modify(|holder| *holder = (*holder).max(rank))
                .or_insert(rank);
        }
    }
    pods.iter()
        .enumerate()
        .map(|(index, (pod, _))| {
            let mut pod = (*pod).clone();
            if let Some(ip) = pod.policy_ip()
                && holders.get(&ip).is_some_and(|holder| holder.2 != index)
            {
                pod.ip = None;
            }
            pod
        })
        .collect()
}

#[cfg(test)]
mod tests;
