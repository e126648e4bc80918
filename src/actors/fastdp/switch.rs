//! The overlay switch: for each established direct peer, whether the kernel's VXLAN path
//! (fastdp) or the router's UDP sleeve carries our frames to it, decided by fastdp heartbeats.
//! Pure and time-injected: the actor feeds it links, acks and ticks and acts on the switches it
//! returns (log line, metric, FDB reconcile, `FastdpPeers` to the sleeve).
//!
//! Timers: Weave Net gave a fastdp path 60 s of missed heartbeats before falling back, so a
//! blocked port stalled traffic for a minute. Here a peer falls back after [`UNHEALTHY_AFTER`]
//! without an ack, and returns only after [`HEALTHY_AFTER_ACKS`] acks in a row, so a path that
//! drops one heartbeat in two does not flap (Weave Net issues #3619, #3856).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::switch_policy::FastdpPolicy;
use crate::actors::overlay::Overlay;
use crate::topology::PeerName;

/// Period of the heartbeats sent to every linked peer, fastdp or not (a peer on sleeve must be
/// probed to come back).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// A healthy peer without an ack for this long falls back to sleeve: four heartbeats lost.
pub const UNHEALTHY_AFTER: Duration = Duration::from_secs(4);
/// Acks in a row (each within [`ACK_GAP`] of the previous) before a peer is healthy again.
pub const HEALTHY_AFTER_ACKS: u32 = 3;
/// Two acks further apart than this are not "in a row": more than one heartbeat went missing.
pub const ACK_GAP: Duration = Duration::from_millis(2500);

/// An established direct link, as the switch needs it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct LinkedPeer {
    pub name: PeerName,
    pub nickname: String,
    /// The underlay address the VXLAN device sends to (the link's remote IP).
    pub ip: Ipv4Addr,
}

/// The overlay for one peer changed (or was chosen for a new link).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Switched {
    pub peer: PeerName,
    pub nickname: String,
    pub to: Overlay,
    /// From fastdp to sleeve: a fallback, counted in the metric.
    pub fallback: bool,
    /// Why the peer is on sleeve whatever its fastdp health ([`FastdpPolicy`]).
    pub reason: Option<&'static str>,
}

impl Switched {
    /// Weave Net's wording: `overlay_switch ->[7e:..(node-b)] using fastdp`.
    pub fn log_line(&self) -> String {
        let line = format!(
            "overlay_switch ->[{}({})] using {}",
            self.peer, self.nickname, self.to
        );
        match self.reason {
            Some(reason) => format!("{line} ({reason})"),
            None => line,
        }
    }
}

/// What `/report` and `weave status connections` show for a peer.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PeerOverlay {
    pub nickname: String,
    pub ip: Ipv4Addr,
    pub overlay: Overlay,
    /// The fastdp heartbeat is healthy (false with fastdp disabled).
    pub healthy: bool,
    /// When the last ack arrived.
    pub last_ack: Option<Instant>,
    /// Why the peer is on sleeve whatever its fastdp health, if it must be.
    pub reason: Option<&'static str>,
}

#[derive(Debug)]
struct PeerHealth {
    link: LinkedPeer,
    healthy: bool,
    streak: u32,
    last_ack: Option<Instant>,
    /// When the peer became healthy or linked: the ack timeout counts from here before any ack.
    since: Instant,
    overlay: Overlay,
    /// The policy keeps this peer on sleeve, for this reason.
    forced: Option<&'static str>,
}

/// The per-peer health and overlay choice.
#[derive(Debug)]
pub struct OverlaySwitch {
    enabled: bool,
    policy: FastdpPolicy,
    peers: BTreeMap<PeerName, PeerHealth>,
}

impl OverlaySwitch {
    /// `enabled` is false with `--no-fastdp`: every peer is then on sleeve.
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled,
            policy: FastdpPolicy::Any,
            peers: BTreeMap::new(),
        }
    }

    /// Which peers fastdp may carry at all (all, or with a password the trusted ones); applies
    /// to links set from now on.
    pub fn with_policy(mut self, policy: FastdpPolicy) -> Self {
        self.policy = policy;
        self
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The established direct links now. A new peer whose underlay address is in `adopted` (the
    /// kernel already floods to it: the router restarted) starts healthy, so traffic the kernel
    /// carries is not moved to sleeve while the first acks come; its heartbeats must still
    /// arrive within [`UNHEALTHY_AFTER`]. Any other new peer starts on sleeve.
    pub fn set_links(
        &mut self,
        links: &[LinkedPeer],
        adopted: &BTreeSet<Ipv4Addr>,
        now: Instant,
    ) -> Vec<Switched> {
        let linked: BTreeSet<PeerName> = links.iter().map(|link| link.name).collect();
        self.peers.retain(|name, _| linked.contains(name));
        let mut switched = Vec::new();
        for link in links {
            if let Some(peer) = self.peers.get_mut(&link.name) {
                peer.link = link.clone();
                continue;
            }
            // With fastdp off (`--no-fastdp`) every peer is on sleeve anyway: no reason to give.
            let forced = self
                .enabled
                .then(|| self.policy.forced_sleeve(link.ip))
                .flatten();
            let healthy = self.enabled && forced.is_none() && adopted.contains(&link.ip);
            let peer = PeerHealth {
                link: link.clone(),
                healthy,
                streak: 0,
                last_ack: None,
                since: now,
                overlay: overlay(self.enabled && forced.is_none(), healthy),
                forced,
            };
            switched.push(Switched {
                peer: link.name,
                nickname: link.nickname.clone(),
                to: peer.overlay,
                fallback: false,
                reason: forced,
            });
            self.peers.insert(link.name, peer);
        }
        switched
    }

    /// An ack to one of our heartbeats arrived from `peer`.
    pub fn on_ack(&mut self, peer: PeerName, now: Instant) -> Vec<Switched> {
        let enabled = self.enabled;
        let Some(health) = self.peers.get_mut(&peer) else {
            return Vec::new();
        };
        let in_row = health
            .last_ack
            .is_some_and(|last| now.saturating_duration_since(last) <= ACK_GAP);
        health.streak = if in_row { health.streak + 1 } else { 1 };
        health.last_ack = Some(now);
        if !health.healthy && health.streak >= HEALTHY_AFTER_ACKS {
            health.healthy = true;
            health.since = now;
        }
        update(enabled, health).into_iter().collect()
    }

    /// Marks peers without a recent ack unhealthy; call at least every heartbeat interval.
    pub fn tick(&mut self, now: Instant) -> Vec<Switched> {
        let enabled = self.enabled;
        let mut switched = Vec::new();
        for health in self.peers.values_mut() {
            let last = health
                .last_ack
                .map_or(health.since, |ack| ack.max(health.since));
            if health.healthy && now.saturating_duration_since(last) >= UNHEALTHY_AFTER {
                health.healthy = false;
                health.streak = 0;
            }
            switched.extend(update(enabled, health));
        }
        switched
    }

    /// The peers the kernel carries our frames to.
    pub fn fastdp_peers(&self) -> BTreeSet<PeerName> {
        self.peers
            .iter()
            .filter(|(_, health)| health.overlay == Overlay::Fastdp)
            .map(|(name, _)| *name)
            .collect()
    }

    /// Where heartbeats go: every linked peer fastdp may carry while it is enabled (a peer on
    /// sleeve is probed so it can come back), none otherwise.
    pub fn heartbeat_targets(&self) -> Vec<PeerName> {
        if !self.enabled {
            return Vec::new();
        }
        self.peers
            .iter()
            .filter(|(_, health)| health.forced.is_none())
            .map(|(name, _)| *name)
            .collect()
    }

    /// Every linked peer's state, for status and report.
    pub fn peers(&self) -> BTreeMap<PeerName, PeerOverlay> {
        self.peers
            .iter()
            .map(|(name, health)| {
                let view = PeerOverlay {
                    nickname: health.link.nickname.clone(),
                    ip: health.link.ip,
                    overlay: health.overlay,
                    healthy: health.healthy,
                    last_ack: health.last_ack,
                    reason: health.forced,
                };
                (*name, view)
            })
            .collect()
    }

    /// The linked peer behind an underlay address.
    pub fn link(&self, name: PeerName) -> Option<&LinkedPeer> {
        self.peers.get(&name).map(|health| &health.link)
    }
}

fn overlay(enabled: bool, healthy: bool) -> Overlay {
    if enabled && healthy {
        Overlay::Fastdp
    } else {
        Overlay::Sleeve
    }
}

fn update(enabled: bool, health: &mut PeerHealth) -> Option<Switched> {
    let to = overlay(enabled && health.forced.is_none(), health.healthy);
    if to == health.overlay {
        return None;
    }
    let fallback = health.overlay == Overlay::Fastdp;
    health.overlay = to;
    Some(Switched {
        peer: health.link.name,
        nickname: health.link.nickname.clone(),
        to,
        fallback,
        reason: health.forced,
    })
}

#[cfg(test)]
mod tests;
