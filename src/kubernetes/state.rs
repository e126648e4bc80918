//! The Kubernetes side's own state, without I/O: the Node set, what the connection maker was last
//! told, whether the API answers (so the log says each change once), and whether the node's
//! network condition is set. The actor feeds it events and carries out what it answers.

use super::nodes::{NodeEvent, NodeSet};
use crate::snapshot::KubeStatus;

/// What an event asks the actor to do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Actions {
    /// New direct targets for the connection maker.
    pub targets: Option<Vec<String>>,
    /// Look at the peer record now (a node went away, or the first list arrived).
    pub reclaim: bool,
}

/// How an attempt to set the node's network condition ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetworkMark {
    /// IPAM is not ready yet: the API was not asked, so this says nothing about it.
    IpamNotReady,
    Set,
    Failed(String),
}

/// A change of the API's reachability, to be logged once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiTransition {
    Lost(String),
    Regained,
}

#[derive(Debug)]
pub struct KubeState {
    own_node: String,
    api_url: String,
    nodes: NodeSet,
    sent_targets: Option<Vec<String>>,
    /// `None` while the API answers.
    api_error: Option<String>,
    /// Whether our node shows `NetworkUnavailable=False` set by us.
    network_marked: bool,
}

impl KubeState {
    pub fn new(own_node: &str, api_url: &str) -> Self {
        Self {
            own_node: own_node.to_string(),
            api_url: api_url.to_string(),
            nodes: NodeSet::default(),
            sent_targets: None,
            api_error: None,
            network_marked: false,
        }
    }

    pub fn nodes(&self) -> &NodeSet {
        &self.nodes
    }

    pub fn on_event(&mut self, event: NodeEvent) -> Actions {
        let first_sync = matches!(event, NodeEvent::Synced) && !self.nodes.synced();
        if let NodeEvent::Applied(node) | NodeEvent::Listed(node) = &event
            && node.name == self.own_node
        {
            // Someone (a re-created Node, a cloud controller) reset the condition: set it again.
            self.network_marked &= node.network_marked_up;
        }
        let change = self.nodes.apply(event);
        let mut actions = Actions {
            reclaim: change.removed || first_sync,
            targets: None,
        };
        // Targets only from a complete list: a partial one would drop live peers.
        if self.nodes.synced() && (change.membership || first_sync) {
            let targets = self.nodes.targets(&self.own_node);
            if self.sent_targets.as_ref() != Some(&targets) {
                self.sent_targets = Some(targets.clone());
                actions.targets = Some(targets);
            }
        }
        actions
    }

    /// An API call failed; answers the transition if the API was fine until now.
    pub fn api_failed(&mut self, error: String) -> Option<ApiTransition> {
        let was_up = self.api_error.is_none();
        self.api_error = Some(error.clone());
        was_up.then_some(ApiTransition::Lost(error))
    }

    /// An API call worked; answers the transition if it had been failing.
    pub fn api_answered(&mut self) -> Option<ApiTransition> {
        self.api_error.take().map(|_| ApiTransition::Regained)
    }

    /// Whether the network condition still needs setting.
    pub fn network_mark_due(&self) -> bool {
        !self.network_marked && self.nodes.contains(&self.own_node)
    }

    /// Records how setting the network condition went; answers the API's transition, if any.
    /// Only an attempt that reached the API says whether it answers: an outage seen by the
    /// watch must not look over just because IPAM was not ready yet.
    pub fn network_mark_ended(&mut self, mark: NetworkMark) -> Option<ApiTransition> {
        match mark {
            NetworkMark::IpamNotReady => None,
            NetworkMark::Set => {
                self.network_marked = true;
                self.api_answered()
            }
            NetworkMark::Failed(error) => self.api_failed(error),
        }
    }

    pub fn status(&self) -> KubeStatus {
        KubeStatus {
            api_url: self.api_url.clone(),
            node_name: self.own_node.clone(),
            nodes: self.nodes.len(),
            synced: self.nodes.synced(),
            error: self.api_error.clone(),
        }
    }
}

#[cfg(test)]
mod tests;
