//! Which peers to dial and when: targets from the command line, `connect`, gossip discovery and
//! refusal hints, each with its retry schedule. Pure state machine, time passed in.
//! (Placeholder API: to be implemented.)

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::api::snapshot::ConnectionStatus;
use crate::topology::PeerName;

/// First retry interval after a failure (Weave Net: 2 s).
pub const INITIAL_RETRY_INTERVAL: Duration = Duration::from_secs(2);
/// Growth of the retry interval per consecutive failure (Weave Net: ×1.5).
pub const RETRY_BACKOFF_FACTOR: f64 = 1.5;
/// Ceiling of the retry interval (Weave Net: 6 min).
pub const MAX_RETRY_INTERVAL: Duration = Duration::from_secs(6 * 60);
/// A link that lived at least this long is re-dialled at once when it ends (Weave Net: 1 min).
pub const LONG_LIVED_LINK: Duration = Duration::from_secs(60);

/// Where a target came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetSource {
    /// Command line or `connect`: kept until `forget`.
    Direct,
    /// Learned from gossip (another peer's advertised address): dropped when no longer advertised.
    Discovered,
    /// Named by a peer that refused us for its connection limit.
    Hinted,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("invalid peer address {input:?}: {why}")]
    Invalid { input: String, why: &'static str },
}

/// Normalises `host[:port]` (IPv6 as `[addr]:port`) to `host:port`, adding `default_port`.
pub fn normalise_target(input: &str, default_port: u16) -> Result<String, TargetError> {
    let _ = (input, default_port);
    unimplemented!()
}

pub struct ConnectionMakerState {}

impl ConnectionMakerState {
    /// `seed` feeds the jitter of retry delays, so tests are reproducible.
    pub fn new(our_name: PeerName, default_port: u16, discovery: bool, seed: u64) -> Self {
        let _ = (our_name, default_port, discovery, seed);
        unimplemented!()
    }

    /// Adds direct targets (`replace`: drop the direct targets not in `addrs`). New targets are
    /// due at once. Nothing changes when one address is invalid.
    pub fn add_direct(
        &mut self,
        addrs: &[String],
        replace: bool,
        now: Instant,
    ) -> Result<(), TargetError> {
        let _ = (addrs, replace, now);
        unimplemented!()
    }

    /// Forgets direct targets; an attempt under way finishes but is not retried.
    pub fn forget(&mut self, addrs: &[String]) -> Result<(), TargetError> {
        let _ = addrs;
        unimplemented!()
    }

    /// Replaces the set of discovered targets (ignored when discovery is off). Discovered targets
    /// no longer listed are dropped unless an attempt is under way.
    pub fn set_discovered(&mut self, discovered: Vec<(PeerName, SocketAddr)>, now: Instant) {
        let _ = (discovered, now);
        unimplemented!()
    }

    /// Adds the alternatives a refusing peer named (ignored when discovery is off).
    pub fn add_hints(&mut self, addrs: Vec<SocketAddr>, now: Instant) {
        let _ = (addrs, now);
        unimplemented!()
    }

    /// The peers we currently hold a link to (either direction): targets known to lead to one of
    /// them are not dialled.
    pub fn set_connected_peers(&mut self, peers: BTreeSet<PeerName>) {
        let _ = peers;
        unimplemented!()
    }

    /// Targets to dial now, at most `permits`; they are marked as attempting.
    pub fn due(&mut self, now: Instant, permits: usize) -> Vec<String> {
        let _ = (now, permits);
        unimplemented!()
    }

    /// The attempt to `addr` reached `peer` and the link is up.
    pub fn attempt_succeeded(&mut self, addr: &str, peer: PeerName, now: Instant) {
        let _ = (addr, peer, now);
        unimplemented!()
    }

    /// The attempt to `addr` failed. `retry == false` (connect to ourselves, name collision)
    /// means never again. `peer` is the remote's name when the handshake got that far.
    pub fn attempt_failed(
        &mut self,
        addr: &str,
        peer: Option<PeerName>,
        error: String,
        retry: bool,
        now: Instant,
    ) {
        let _ = (addr, peer, error, retry, now);
        unimplemented!()
    }

    /// A link we dialled to `addr` ended after living `lived`.
    pub fn link_closed(
        &mut self,
        addr: &str,
        reason: String,
        retry: bool,
        lived: Duration,
        now: Instant,
    ) {
        let _ = (addr, reason, retry, lived, now);
        unimplemented!()
    }

    /// When `due` may next return something (None: nothing scheduled).
    pub fn next_wakeup(&self) -> Option<Instant> {
        unimplemented!()
    }

    /// Direct targets, as given (normalised), in order.
    pub fn direct_targets(&self) -> Vec<String> {
        unimplemented!()
    }

    /// Targets not currently connected, for `weave status connections`.
    pub fn target_statuses(&self, now: Instant) -> Vec<ConnectionStatus> {
        let _ = now;
        unimplemented!()
    }
}
