//! A blocked connection as the kernel reports it over NFLOG: the log prefix our rules set (which
//! direction dropped it) and the start of the packet; and what the log line and the per-policy
//! counter say of it (the policies isolating the end that dropped it). Parsing is
//! check-then-parse on borrowed bytes, bounded by the copy range the socket asks for, and never
//! panics on any input.

use std::net::Ipv4Addr;

use super::model::{Direction, Protocol, World};
use super::nft::TABLE;

/// Bytes of each dropped packet the kernel copies to us: an IPv4 header with options (at most
/// 60 bytes) and the ports after it.
pub const COPY_RANGE: u32 = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Blocked {
    pub direction: Direction,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// `None` for a protocol without ports (ICMP and others).
    pub protocol: Option<Protocol>,
    pub sport: u16,
    pub dport: u16,
}

/// The prefix our drop rules log with, for `direction` (see `nft::render`).
pub fn log_prefix(direction: Direction) -> String {
    format!("{TABLE} {} ", direction.as_str())
}

/// Reads one logged packet; `None` for anything that is not an IPv4 packet logged by our rules.
pub fn parse(prefix: &[u8], packet: &[u8]) -> Option<Blocked> {
    let prefix = std::str::from_utf8(prefix).ok()?.trim_end_matches('\0');
    let direction = [Direction::Ingress, Direction::Egress]
        .into_iter()
        .find(|direction| prefix == log_prefix(*direction))?;
    let version_and_length = *packet.first()?;
    if version_and_length >> 4 != 4 {
        return None;
    }
    let header_length = usize::from(version_and_length & 0x0f) * 4;
    if header_length < 20 || packet.len() < header_length {
        return None;
    }
    let protocol_number = packet[9];
    let src = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
    let dst = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
    let protocol = Protocol::from_number(protocol_number);
    let (sport, dport) = match protocol {
        Some(_) => {
            let ports = packet.get(header_length..header_length + 4)?;
            (
                u16::from_be_bytes([ports[0], ports[1]]),
                u16::from_be_bytes([ports[2], ports[3]]),
            )
        }
        None => (0, 0),
    };
    Some(Blocked {
        direction,
        src,
        dst,
        protocol,
        sport,
        dport,
    })
}

/// Which blocked packets get a log line: a client retransmits its SYN several times, and each is
/// a new packet the kernel logs, but it is one blocked connection. Memory is bounded: past
/// `capacity` connections seen within the window, the oldest are forgotten.
pub struct FirstSightings {
    seen: std::collections::HashMap<Blocked, std::time::Instant>,
    window: std::time::Duration,
    capacity: usize,
}

impl FirstSightings {
    pub fn new(window: std::time::Duration, capacity: usize) -> Self {
        Self {
            seen: std::collections::HashMap::new(),
            window,
            capacity,
        }
    }

    /// Whether `blocked` is a connection not seen within the window.
    pub fn first(&mut self, blocked: Blocked, now: std::time::Instant) -> bool {
        if let Some(seen) = self.seen.get(&blocked)
            && now.duration_since(*seen) < self.window
        {
            return false;
        }
        if self.seen.len() >= self.capacity {
            self.seen
                .retain(|_, seen| now.duration_since(*seen) < self.window);
            if self.seen.len() >= self.capacity
                && let Some(oldest) = self
                    .seen
                    .iter()
                    .min_by_key(|(_, seen)| **seen)
                    .map(|(key, _)| *key)
            {
                self.seen.remove(&oldest);
            }
        }
        self.seen.insert(blocked, now);
        true
    }
}

/// The policies isolating the end that dropped `blocked` (`<namespace>/<name>`): none of them
/// allowed it.
pub fn isolating_policies(world: &World, blocked: &Blocked) -> Vec<String> {
    let subject = match blocked.direction {
        Direction::Ingress => blocked.dst,
        Direction::Egress => blocked.src,
    };
    world
        .pod_at(subject)
        .map(|pod| {
            world
                .policies
                .iter()
                .filter(|policy| policy.selects(pod) && policy.rules(blocked.direction).is_some())
                .map(|policy| policy.to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// `blocked by network policy: x/b (10.40.1.2) -> x/a (10.40.1.1):80/tcp`, and which policies
/// isolate the end that dropped it.
pub fn describe_blocked(world: &World, blocked: &Blocked, isolating: &[String]) -> String {
    let end = |ip: Ipv4Addr| match world.pod_at(ip) {
        Some(pod) => format!("{}/{} ({ip})", pod.namespace, pod.name),
        None => ip.to_string(),
    };
    let protocol = blocked
        .protocol
        .map_or("other", |protocol| protocol.as_str());
    format!(
        "blocked by network policy: {} -> {}:{}/{protocol} ({} isolated by {})",
        end(blocked.src),
        end(blocked.dst),
        blocked.dport,
        blocked.direction.as_str(),
        isolating.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn tcp_syn(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let mut packet = vec![0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0];
        packet.extend_from_slice(&src);
        packet.extend_from_slice(&dst);
        packet.extend_from_slice(&sport.to_be_bytes());
        packet.extend_from_slice(&dport.to_be_bytes());
        packet.extend_from_slice(&[0; 16]);
        packet
    }

    #[test]
    fn a_logged_syn_reads_back() {
        let packet = tcp_syn([10, 40, 3, 1], [10, 40, 1, 1], 40000, 80);
        let blocked = parse(b"weft-npc ingress \0", &packet).unwrap();
        assert_eq!(
            blocked,
            Blocked {
                direction: Direction::Ingress,
                src: Ipv4Addr::new(10, 40, 3, 1),
                dst: Ipv4Addr::new(10, 40, 1, 1),
                protocol: Some(Protocol::Tcp),
                sport: 40000,
                dport: 80,
            }
        );
        assert_eq!(parse(b"someone else ", &packet), None);
        assert_eq!(
            parse(b"weft-npc egress ", &packet[..22]),
            None,
            "ports cut off"
        );
        let mut icmp = packet.clone();
        icmp[9] = 1;
        assert_eq!(
            parse(b"weft-npc egress ", &icmp[..20]).unwrap().protocol,
            None
        );
    }

    #[test]
    fn a_connection_is_logged_once_per_window_and_memory_stays_bounded() {
        let start = std::time::Instant::now();
        let mut sightings = FirstSightings::new(std::time::Duration::from_secs(10), 3);
        let syn = parse(
            b"weft-npc ingress ",
            &tcp_syn([10, 0, 0, 1], [10, 0, 0, 2], 40000, 80),
        )
        .unwrap();
        assert!(sightings.first(syn, start));
        assert!(
            !sightings.first(syn, start + std::time::Duration::from_secs(3)),
            "a retransmitted SYN"
        );
        assert!(sightings.first(syn, start + std::time::Duration::from_secs(11)));
        for sport in 1..100 {
            let other = Blocked { sport, ..syn };
            assert!(sightings.first(other, start + std::time::Duration::from_secs(12)));
            assert!(sightings.seen.len() <= 3);
        }
    }

    #[test]
    fn a_blocked_connection_names_the_policies_isolating_the_end_that_dropped_it() {
        use crate::npc::model::{Namespace, Pod, Policy, Selector, Target};
        let pod = |namespace: &str, name: &str, ip: [u8; 4]| Pod {
            namespace: namespace.into(),
            name: name.into(),
            ip: Some(Ipv4Addr::from(ip)),
            labels: Default::default(),
            node: Some("n1".into()),
            host_network: false,
            terminating: false,
            ports: vec![],
        };
        let policy = |namespace: &str, name: &str, ingress: bool, egress: bool| Policy {
            namespace: namespace.into(),
            name: name.into(),
            target: Target::Selector(Selector::default()),
            ingress: ingress.then(Vec::new),
            egress: egress.then(Vec::new),
            broken: None,
        };
        let world = World {
            namespaces: ["x", "y"]
                .into_iter()
                .map(|name| {
                    (
                        name.to_string(),
                        Namespace {
                            name: name.into(),
                            labels: Default::default(),
                        },
                    )
                })
                .collect(),
            pods: vec![pod("x", "a", [10, 40, 1, 1]), pod("y", "b", [10, 40, 2, 1])],
            policies: vec![
                policy("x", "deny-ingress", true, false),
                policy("x", "deny-all", true, true),
                policy("y", "elsewhere", true, true),
            ],
        };
        let syn = parse(
            b"weft-npc ingress ",
            &tcp_syn([10, 40, 2, 1], [10, 40, 1, 1], 40000, 80),
        )
        .unwrap();
        let isolating = isolating_policies(&world, &syn);
        assert_eq!(isolating, ["x/deny-ingress", "x/deny-all"]);
        assert_eq!(
            describe_blocked(&world, &syn, &isolating),
            "blocked by network policy: y/b (10.40.2.1) -> x/a (10.40.1.1):80/tcp (ingress isolated by x/deny-ingress, x/deny-all)"
        );
        let out = Blocked {
            direction: Direction::Egress,
            ..syn
        };
        assert_eq!(isolating_policies(&world, &out), ["y/elsewhere"]);
        let unknown = Blocked {
            dst: Ipv4Addr::new(10, 99, 0, 1),
            ..syn
        };
        assert!(isolating_policies(&world, &unknown).is_empty());
    }

    proptest! {
        #[test]
        fn parsing_never_panics(prefix in prop::collection::vec(any::<u8>(), 0..24), packet in prop::collection::vec(any::<u8>(), 0..80)) {
            let _ = parse(&prefix, &packet);
            let _ = parse(b"weft-npc ingress ", &packet);
        }

        #[test]
        fn any_tcp_or_udp_header_round_trips(src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(), sport in any::<u16>(), dport in any::<u16>(), udp in any::<bool>()) {
            let mut packet = tcp_syn(src, dst, sport, dport);
            if udp { packet[9] = 17; }
            let blocked = parse(b"weft-npc egress ", &packet).unwrap();
            prop_assert_eq!((blocked.src.octets(), blocked.dst.octets(), blocked.sport, blocked.dport), (src, dst, sport, dport));
            prop_assert_eq!(blocked.protocol, Some(if udp { Protocol::Udp } else { Protocol::Tcp }));
        }
    }
}
