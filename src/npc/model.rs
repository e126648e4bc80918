//! The world a policy controller sees, in our own types: namespaces, pods and NetworkPolicies as
//! networking.k8s.io/v1 defines them, already checked. The compiler and the reference evaluator
//! both read this, and nothing in it knows Kubernetes' API types.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;

use super::ranges::IpRange;
use crate::metrics::LabelValue;

pub type Labels = BTreeMap<String, String>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// The IP protocol number (`meta l4proto`).
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    pub fn from_number(number: u8) -> Option<Self> {
        [Protocol::Tcp, Protocol::Udp, Protocol::Sctp]
            .into_iter()
            .find(|protocol| protocol.number() == number)
    }
}

/// The `protocol` label of the blocked counter.
impl LabelValue for Protocol {
    fn label(self) -> &'static str {
        self.as_str()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    pub values: BTreeSet<String>,
}

/// A label selector; the empty one selects everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    pub match_labels: Labels,
    pub expressions: Vec<Requirement>,
}

impl Selector {
    pub fn matches(&self, labels: &Labels) -> bool {
        self.match_labels
            .iter()
            .all(|(key, value)| labels.get(key) == Some(value))
            && self.expressions.iter().all(|requirement| {
                let value = labels.get(&requirement.key);
                match requirement.operator {
                    Operator::In => value.is_some_and(|v| requirement.values.contains(v)),
                    Operator::NotIn => !value.is_some_and(|v| requirement.values.contains(v)),
                    Operator::Exists => value.is_some(),
                    Operator::DoesNotExist => value.is_none(),
                }
            })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespace {
    pub name: String,
    pub labels: Labels,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerPort {
    pub name: Option<String>,
    pub port: u16,
    pub protocol: Protocol,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    /// `None` until the pod has an address.
    pub ip: Option<Ipv4Addr>,
    pub labels: Labels,
    pub node: Option<String>,
    /// Host-network pods share their node's address: policies never apply to them.
    pub host_network: bool,
    /// Being deleted (`deletionTimestamp` set): still running and still enforced, but when
    /// another pod shows the same address, the address is that pod's (see `controller`).
    pub terminating: bool,
    pub ports: Vec<ContainerPort>,
}

impl Pod {
    /// The address policies see, if policies apply to this pod at all.
    pub fn policy_ip(&self) -> Option<Ipv4Addr> {
        if self.host_network { None } else { self.ip }
    }

    /// The port `name` resolves to on this pod for `protocol`.
    pub fn named_port(&self, name: &str, protocol: Protocol) -> Option<u16> {
        self.ports
            .iter()
            .find(|port| port.name.as_deref() == Some(name) && port.protocol == protocol)
            .map(|port| port.port)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortRef {
    Number(u16),
    Name(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyPort {
    pub protocol: Protocol,
    /// `None`: every port of the protocol.
    pub port: Option<PortRef>,
    /// With a numeric `port`: the range `port..=end_port`.
    pub end_port: Option<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peer {
    /// `podSelector` and/or `namespaceSelector` (both in one peer: AND). `namespaces: None` is
    /// the policy's own namespace; `pods: None` is every pod of the selected namespaces.
    Pods {
        namespaces: Option<Selector>,
        pods: Option<Selector>,
    },
    /// `ipBlock`: the CIDR minus the `except` CIDRs, as disjoint ranges.
    Block(Vec<IpRange>),
}

/// One ingress or egress rule: its peers and ports are ANDed; within each list, ORed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rule {
    /// Empty: every peer.
    pub peers: Vec<Peer>,
    /// Empty: every port and protocol.
    pub ports: Vec<PolicyPort>,
}

/// Which of a policy's selected pods it isolates, and in which directions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Selector(Selector),
    /// The policy's pod selector could not be read: to fail closed, it is taken to select every
    /// pod of its namespace.
    WholeNamespace,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub namespace: String,
    pub name: String,
    pub target: Target,
    /// `Some` when the policy isolates its pods for ingress (policyTypes has Ingress): the rules
    /// that allow; an empty list allows nothing.
    pub ingress: Option<Vec<Rule>>,
    pub egress: Option<Vec<Rule>>,
    /// Why the policy could not be read, if it could not: it then isolates its pods in the
    /// directions it names (both, when even those are unknown) and allows nothing there.
    pub broken: Option<String>,
}

impl Policy {
    pub fn selects(&self, pod: &Pod) -> bool {
        pod.namespace == self.namespace
            && pod.policy_ip().is_some()
            && match &self.target {
                Target::Selector(selector) => selector.matches(&pod.labels),
                Target::WholeNamespace => true,
            }
    }

    pub fn rules(&self, direction: Direction) -> Option<&[Rule]> {
        match direction {
            Direction::Ingress => self.ingress.as_deref(),
            Direction::Egress => self.egress.as_deref(),
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

/// The `direction` label of the per-policy blocked counter.
impl LabelValue for Direction {
    fn label(self) -> &'static str {
        self.as_str()
    }
}

/// Everything the controller knows of the cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct World {
    pub namespaces: BTreeMap<String, Namespace>,
    pub pods: Vec<Pod>,
    pub policies: Vec<Policy>,
}

impl World {
    /// The pod policies see at `address`.
    pub fn pod_at(&self, address: Ipv4Addr) -> Option<&Pod> {
        self.pods
            .iter()
            .find(|pod| pod.policy_ip() == Some(address))
    }

    pub fn namespace_labels(&self, namespace: &str) -> Option<&Labels> {
        self.namespaces.get(namespace).map(|ns| &ns.labels)
    }

    /// Whether `peer` (in a rule of a policy in `policy_namespace`) names `pod`.
    pub fn peer_selects_pod(&self, peer: &Peer, policy_namespace: &str, pod: &Pod) -> bool {
        match peer {
            Peer::Pods { namespaces, pods } => {
                let namespace_ok = match namespaces {
                    None => pod.namespace == policy_namespace,
                    Some(selector) => self
                        .namespace_labels(&pod.namespace)
                        .is_some_and(|labels| selector.matches(labels)),
                };
                namespace_ok
                    && pods
                        .as_ref()
                        .is_none_or(|selector| selector.matches(&pod.labels))
            }
            Peer::Block(ranges) => pod
                .policy_ip()
                .is_some_and(|ip| ranges.iter().any(|range| range.contains(u32::from(ip)))),
        }
    }
}
