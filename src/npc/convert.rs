//! Kubernetes objects into the npc model: the only place that knows `k8s-openapi`'s types for
//! namespaces, pods and NetworkPolicies. A policy that cannot be read as written is not skipped
//! (Weave's npc skipped it, leaving the pods it meant to isolate open): it becomes a broken
//! policy that isolates what it can be seen to select and allows nothing.

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Namespace as KubeNamespace, Pod as KubePod};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::model::{
    ContainerPort, Labels, Namespace, Operator, Peer, Pod, Policy, PolicyPort, PortRef, Protocol,
    Requirement, Rule, Selector, Target,
};
use super::ranges::{parse_cidr, subtract};

/// The label the API server puts on every namespace from 1.21 on; older servers (and this
/// project's 1.20 test server) do not, so we add it ourselves: policies written for newer
/// clusters select namespaces by it.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

pub fn namespace(object: &KubeNamespace) -> Option<Namespace> {
    let name = object.metadata.name.clone()?;
    let mut labels: Labels = object.metadata.labels.clone().unwrap_or_default();
    labels
        .entry(NAMESPACE_NAME_LABEL.to_string())
        .or_insert_with(|| name.clone());
    Some(Namespace { name, labels })
}

pub fn pod(object: &KubePod) -> Option<Pod> {
    let name = object.metadata.name.clone()?;
    let namespace = object.metadata.namespace.clone()?;
    let spec = object.spec.as_ref();
    let status = object.status.as_ref();
    // A finished pod's address goes back to IPAM and may be another pod's soon: it must leave
    // every set now, not when the object is deleted.
    let finished = status
        .and_then(|status| status.phase.as_deref())
        .is_some_and(|phase| phase == "Succeeded" || phase == "Failed");
    let ip = status
        .and_then(|status| status.pod_ip.as_deref())
        .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
        .filter(|_| !finished);
    let ports = spec
        .map(|spec| {
            spec.containers
                .iter()
                .flat_map(|container| container.ports.iter().flatten())
                .filter_map(|port| {
                    Some(ContainerPort {
                        name: port.name.clone(),
                        port: u16::try_from(port.container_port).ok()?,
                        protocol: Protocol::parse(port.protocol.as_deref().unwrap_or("TCP"))?,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Some(Pod {
        namespace,
        name,
        ip,
        labels: object.metadata.labels.clone().unwrap_or_default(),
        node: spec.and_then(|spec| spec.node_name.clone()),
        host_network: spec.and_then(|spec| spec.host_network).unwrap_or(false),
        terminating: object.metadata.deletion_timestamp.is_some(),
        ports,
    })
}

fn selector(selector: &LabelSelector) -> Result<Selector, String> {
    let expressions = selector
        .match_expressions
        .iter()
        .flatten()
        .map(|expression| {
            let operator = match expression.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => return Err(format!("unknown selector operator {other:?}")),
            };
            Ok(Requirement {
                key: expression.key.clone(),
                operator,
                values: expression.values.iter().flatten().cloned().collect(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Selector {
        match_labels: selector.match_labels.clone().unwrap_or_default(),
        expressions,
    })
}

fn peer(peer: &NetworkPolicyPeer) -> Result<Peer, String> {
    if let Some(block) = &peer.ip_block {
        if peer.pod_selector.is_some() || peer.namespace_selector.is_some() {
            return Err("a peer has ipBlock and a selector".into());
        }
        // The pod network is IPv4: an IPv6 block names no address policies here can see.
        if block.cidr.contains(':') {
            return Ok(Peer::Block(Vec::new()));
        }
        let cidr = parse_cidr(&block.cidr)?;
        let except = block
            .except
            .iter()
            .flatten()
            .filter(|except| !except.contains(':'))
            .map(|except| parse_cidr(except))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Peer::Block(subtract(cidr, &except)));
    }
    if peer.pod_selector.is_none() && peer.namespace_selector.is_none() {
        return Err("a peer names neither pods, namespaces nor an ipBlock".into());
    }
    Ok(Peer::Pods {
        namespaces: peer.namespace_selector.as_ref().map(selector).transpose()?,
        pods: peer.pod_selector.as_ref().map(selector).transpose()?,
    })
}

fn port(port: &NetworkPolicyPort) -> Result<PolicyPort, String> {
    let protocol_name = port.protocol.as_deref().unwrap_or("TCP");
    let protocol = Protocol::parse(protocol_name)
        .ok_or_else(|| format!("unknown protocol {protocol_name:?}"))?;
    let number = |value: i32| u16::try_from(value).ok().filter(|port| *port > 0);
    let port_ref = match &port.port {
        None => None,
        Some(IntOrString::Int(value)) => Some(PortRef::Number(
            number(*value).ok_or_else(|| format!("port {value} is out of range"))?,
        )),
        Some(IntOrString::String(name)) => Some(PortRef::Name(name.clone())),
    };
    let end_port = match (port.end_port, &port_ref) {
        (None, _) => None,
        (Some(end), Some(PortRef::Number(start))) => {
            let end = number(end).ok_or_else(|| format!("endPort {end} is out of range"))?;
            if end < *start {
                return Err(format!("endPort {end} is below port {start}"));
            }
            Some(end)
        }
        (Some(_), _) => return Err("endPort needs a numeric port".into()),
    };
    Ok(PolicyPort {
        protocol,
        port: port_ref,
        end_port,
    })
}

fn rules<'a>(
    rules: impl Iterator<
        Item = (
            Option<&'a Vec<NetworkPolicyPeer>>,
            Option<&'a Vec<NetworkPolicyPort>>,
        ),
    >,
) -> Result<Vec<Rule>, String> {
    rules
        .map(|(peers, ports)| {
            Ok(Rule {
                peers: peers
                    .into_iter()
                    .flatten()
                    .map(peer)
                    .collect::<Result<_, _>>()?,
                ports: ports
                    .into_iter()
                    .flatten()
                    .map(port)
                    .collect::<Result<_, _>>()?,
            })
        })
        .collect()
}

pub fn policy(object: &NetworkPolicy) -> Option<Policy> {
    let name = object.metadata.name.clone()?;
    let namespace = object.metadata.namespace.clone()?;
    let spec = object.spec.clone().unwrap_or_default();
    let has_egress_rules = spec.egress.as_ref().is_some_and(|rules| !rules.is_empty());
    // policyTypes: as written, or Ingress plus Egress when there are egress rules.
    let types: Result<(bool, bool), String> = match &spec.policy_types {
        None => Ok((true, has_egress_rules)),
        Some(types) => types
            .iter()
            .try_fold((false, false), |(ingress, egress), kind| {
                match kind.as_str() {
                    "Ingress" => Ok((true, egress)),
                    "Egress" => Ok((ingress, true)),
                    other => Err(format!("unknown policyType {other:?}")),
                }
            }),
    };
    // An absent podSelector is the empty one: every pod of the namespace.
    let target = selector(&spec.pod_selector.clone().unwrap_or_default());
    let ingress = rules(
        spec.ingress
            .iter()
            .flatten()
            .map(|rule| (rule.from.as_ref(), rule.ports.as_ref())),
    );
    let egress = rules(
        spec.egress
            .iter()
            .flatten()
            .map(|rule| (rule.to.as_ref(), rule.ports.as_ref())),
    );
    let broken = [
        &types.as_ref().err(),
        &target.as_ref().err(),
        &ingress.as_ref().err(),
        &egress.as_ref().err(),
    ]
    .into_iter()
    .flatten()
    .next()
    .map(|reason| reason.to_string());
    let (isolates_ingress, isolates_egress) = types.unwrap_or((true, true));
    let target = target
        .map(Target::Selector)
        .unwrap_or(Target::WholeNamespace);
    let allowed = |isolates: bool, rules: Result<Vec<Rule>, String>| {
        isolates.then(|| {
            if broken.is_some() {
                Vec::new()
            } else {
                rules.unwrap_or_default()
            }
        })
    };
    Some(Policy {
        namespace,
        name,
        target,
        ingress: allowed(isolates_ingress, ingress),
        egress: allowed(isolates_egress, egress),
        broken,
    })
}

#[cfg(all(test, feature = "kube"))]
mod tests;
