//! The cluster's Nodes as the router knows them: a set kept from the watch's events (a re-list
//! replaces it only once complete, so a half-finished list never looks like deleted nodes), and
//! the mesh targets it implies.

use std::collections::BTreeMap;
use std::net::IpAddr;

/// What the router needs of a Node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    /// InternalIP, else ExternalIP; `None` until the kubelet reports one.
    pub address: Option<IpAddr>,
    /// Whether the Node carries `NetworkUnavailable=False` with our reason.
    pub network_marked_up: bool,
}

/// One step of the watch, already reduced to [`NodeInfo`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeEvent {
    /// A (re-)list starts: the nodes that follow replace the set once it is complete.
    Relisting,
    Listed(NodeInfo),
    /// The list is complete.
    Synced,
    Applied(NodeInfo),
    Deleted(String),
    /// The watch's resource version expired (after every API server restart): a re-list
    /// follows. Nothing changes until it completes.
    Expired,
}

/// What an event changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Change {
    /// Names or addresses changed: the targets must be recomputed.
    pub membership: bool,
    /// Some node disappeared: a reclaim may be due.
    pub removed: bool,
}

#[derive(Debug, Default)]
pub struct NodeSet {
    nodes: BTreeMap<String, NodeInfo>,
    /// The list under way, if any.
    listing: Option<BTreeMap<String, NodeInfo>>,
    /// A complete list has been seen: until then the set says nothing about deletions.
    synced: bool,
}

impl NodeSet {
    pub fn apply(&mut self, event: NodeEvent) -> Change {
        match event {
            NodeEvent::Relisting => {
                self.listing = Some(BTreeMap::new());
                Change::default()
            }
            NodeEvent::Listed(node) => {
                // A list item without a list under way (never sent by the watcher) still counts.
                match &mut self.listing {
                    Some(listing) => {
                        listing.insert(node.name.clone(), node);
                        Change::default()
                    }
                    None => self.upsert(node),
                }
            }
            NodeEvent::Synced => {
                let listed = self.listing.take().unwrap_or_default();
                let removed = self.nodes.keys().any(|name| !listed.contains_key(name));
                let membership = removed
                    || listed.len() != self.nodes.len()
                    || listed.iter().any(|(name, node)| {
                        self.nodes.get(name).map(|n| n.address) != Some(node.address)
                    });
                self.nodes = listed;
                self.synced = true;
                Change {
                    membership,
                    removed,
                }
            }
            NodeEvent::Applied(node) => self.upsert(node),
            NodeEvent::Expired => Change::default(),
            NodeEvent::Deleted(name) => {
                if let Some(listing) = &mut self.listing {
                    listing.remove(&name);
                }
                let removed = self.nodes.remove(&name).is_some();
                Change {
                    membership: removed,
                    removed,
                }
            }
        }
    }

    fn upsert(&mut self, node: NodeInfo) -> Change {
        let membership =
            self.nodes.get(&node.name).map(|known| known.address) != Some(node.address);
        self.nodes.insert(node.name.clone(), node);
        Change {
            membership,
            removed: false,
        }
    }

    /// A complete list has been seen.
    pub fn synced(&self) -> bool {
        self.synced
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn get(&self, name: &str) -> Option<&NodeInfo> {
        self.nodes.get(name)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.nodes.contains_key(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.nodes.keys().map(String::as_str)
    }

    /// Every other node's address, sorted: the connection maker's direct targets.
    pub fn targets(&self, own_node: &str) -> Vec<String> {
        let mut targets: Vec<String> = self
            .nodes
            .values()
            .filter(|node| node.name != own_node)
            .filter_map(|node| node.address.map(|address| address.to_string()))
            .collect();
        targets.sort();
        targets.dedup();
        targets
    }

    /// The number of peers a fresh IPAM consensus waits for, besides ourselves: every other
    /// node (a node that is not yet in the list is not counted twice, nor are we).
    pub fn other_nodes(&self, own_node: &str) -> usize {
        self.nodes.keys().filter(|name| *name != own_node).count()
    }
}

#[cfg(test)]
mod tests;
