//! One target of the connection maker and its retry schedule: why it exists, which peer it
//! leads to, where it is in its dial cycle, and how long to wait after a failure.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rand::Rng;
use rand::rngs::StdRng;

use super::state::{INITIAL_RETRY_INTERVAL, MAX_RETRY_INTERVAL, RETRY_BACKOFF_FACTOR};
use crate::topology::PeerName;

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

/// Where a target is in its dial cycle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetState {
    /// Scheduled: `due` may hand it out from `at` on.
    Waiting { at: Instant },
    /// Handed out by `due`; the actor has not reported the outcome yet. `after_error` tells a
    /// first attempt ("connecting") from a retry ("retrying").
    Attempting { started: Instant, after_error: bool },
    /// The attempt succeeded and the link is up.
    Connected { peer: PeerName, since: Instant },
    /// Never retried (connection to ourselves, name collision); `forget` and `connect` again to
    /// start over.
    Suspended { error: String },
}

/// One target and its retry schedule.
#[derive(Clone, Debug)]
pub struct Target {
    // One flag per reason to keep the target; with none left it is dropped as soon as no attempt
    // or link is under way (until then it is "retired": invisible, never handed out again).
    pub(super) direct: bool,
    pub(super) discovered: bool,
    pub(super) hinted: bool,
    pub(super) peer: Option<PeerName>,
    pub(super) state: TargetState,
    pub(super) last_error: Option<String>,
    /// Interval the next failure's delay is drawn around (before jitter).
    pub(super) retry_interval: Duration,
}

impl Target {
    pub(super) fn new(now: Instant) -> Self {
        Self {
            direct: false,
            discovered: false,
            hinted: false,
            peer: None,
            state: TargetState::Waiting { at: now },
            last_error: None,
            retry_interval: INITIAL_RETRY_INTERVAL,
        }
    }

    pub(super) fn retired(&self) -> bool {
        !(self.direct || self.discovered || self.hinted)
    }

    /// Retired and idle: an attempt or link under way keeps the entry until its outcome is
    /// reported, so the address cannot be handed out again (and dialled twice) meanwhile.
    pub(super) fn removable(&self) -> bool {
        self.retired()
            && matches!(
                self.state,
                TargetState::Waiting { .. } | TargetState::Suspended { .. }
            )
    }

    /// The strongest reason the target exists (direct beats discovered beats hinted).
    pub fn source(&self) -> TargetSource {
        if self.direct {
            TargetSource::Direct
        } else if self.discovered {
            TargetSource::Discovered
        } else {
            TargetSource::Hinted
        }
    }

    /// The peer this address is known to lead to (from gossip or an earlier handshake).
    pub fn peer(&self) -> Option<PeerName> {
        self.peer
    }

    pub fn state(&self) -> &TargetState {
        &self.state
    }

    /// The error of the last attempt or link, cleared by a successful attempt.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// The interval the next failure's delay is drawn around.
    pub fn retry_interval(&self) -> Duration {
        self.retry_interval
    }

    /// What the target is dialled as: its source, but a direct target as a discovered one when
    /// `direct_as_discovered` (we hold more direct targets than our limit lets us link).
    pub(super) fn dialled_as(&self, direct_as_discovered: bool) -> TargetSource {
        match self.source() {
            TargetSource::Direct if direct_as_discovered => TargetSource::Discovered,
            source => source,
        }
    }

    /// Dial order: direct targets first (the operator asked for them), hints last (they are only
    /// suggestions).
    pub(super) fn rank_of(source: TargetSource) -> u8 {
        match source {
            TargetSource::Direct => 0,
            TargetSource::Discovered => 1,
            TargetSource::Hinted => 2,
        }
    }

    /// Known to lead to a peer we already hold a link to, so dialling it would only duplicate it.
    pub(super) fn leads_to(&self, connected: &BTreeSet<PeerName>) -> bool {
        self.peer.is_some_and(|peer| connected.contains(&peer))
    }

    /// Schedules the next try after a failure and grows the interval for the one after.
    pub(super) fn back_off(&mut self, rng: &mut StdRng, now: Instant) {
        let delay = jittered(rng, self.retry_interval);
        self.state = TargetState::Waiting { at: now + delay };
        self.retry_interval = self
            .retry_interval
            .mul_f64(RETRY_BACKOFF_FACTOR)
            .min(MAX_RETRY_INTERVAL);
    }
}

/// A delay uniformly drawn from `[interval/2, 3·interval/2]`, so peers that failed together do
/// not all retry in the same instant.
fn jittered(rng: &mut StdRng, interval: Duration) -> Duration {
    // The interval is capped at minutes, so nanoseconds fit a u64 comfortably.
    let nanos = u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX / 2);
    let low = nanos / 2;
    let high = low.saturating_add(nanos);
    Duration::from_nanos(rng.random_range(low..=high))
}
