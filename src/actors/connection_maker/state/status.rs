//! What the target table shows without changing it: the targets' statuses for `weave status
//! connections`, the direct targets, one target, and when the next one is due.

use std::time::Instant;

use super::{ConnectionMakerState, Target, TargetSource, TargetState};
use crate::snapshot::{ConnectionState, ConnectionStatus};

impl ConnectionMakerState {
    /// When `due` may next return something (None: nothing scheduled).
    ///
    /// Targets leading to a connected peer are left out (they wait for `set_connected_peers`,
    /// not for a time), so an overdue one cannot make the actor spin. The result may be in the
    /// past when targets are due but `due` ran out of permits or of discovery budget.
    pub fn next_wakeup(&self) -> Option<Instant> {
        let hints_held_back = self.connected_peers.is_empty() && self.hint_in_flight();
        let direct_as_discovered = self.direct_beyond_limit();
        self.targets
            .values()
            .filter(|target| !target.retired() && !target.leads_to(&self.connected_peers))
            .filter(|target| !(hints_held_back && target.source() == TargetSource::Hinted))
            .filter(|target| {
                let source = target.dialled_as(direct_as_discovered);
                self.held_back_by_view(target, source).is_none()
            })
            .filter_map(|target| match target.state {
                TargetState::Waiting { at } => Some(at),
                _ => None,
            })
            .min()
    }

    /// Direct targets, as given (normalised), in order.
    pub fn direct_targets(&self) -> Vec<String> {
        self.targets
            .iter()
            .filter(|(_, target)| target.direct)
            .map(|(addr, _)| addr.clone())
            .collect()
    }

    /// Targets not currently connected, for `weave status connections`.
    ///
    /// Also left out: forgotten or dropped targets whose last attempt is still under way, and
    /// waiting targets leading to a peer we are linked to (that link is listed instead, and the
    /// target is not dialled while it lasts). Ordered by address.
    pub fn target_statuses(&self, now: Instant) -> Vec<ConnectionStatus> {
        let direct_as_discovered = self.direct_beyond_limit();
        let mut statuses = Vec::new();
        for (addr, target) in &self.targets {
            if target.retired() {
                continue;
            }
            let (state, info) = match &target.state {
                TargetState::Connected { .. } => continue,
                TargetState::Waiting { .. } if target.leads_to(&self.connected_peers) => continue,
                TargetState::Attempting {
                    after_error: false, ..
                } => (ConnectionState::Connecting, String::new()),
                TargetState::Attempting {
                    after_error: true, ..
                } => (
                    ConnectionState::Retrying,
                    target.last_error.clone().unwrap_or_default(),
                ),
                TargetState::Waiting { at } => {
                    let source = target.dialled_as(direct_as_discovered);
                    waiting_status(target, self.held_back_by_view(target, source), now, *at)
                }
                TargetState::Suspended { error } => (ConnectionState::Failed, error.clone()),
            };
            statuses.push(ConnectionStatus {
                address: addr.clone(),
                outbound: true,
                state,
                peer: target.peer,
                nick_name: None,
                info,
                overlay: None,
                attrs: vec![],
            });
        }
        statuses
    }

    /// The target at `addr` (a normalised address), unless there is none or it was forgotten or
    /// dropped and only lingers until its attempt or link ends.
    pub fn target(&self, addr: &str) -> Option<&Target> {
        self.targets.get(addr).filter(|target| !target.retired())
    }
}

/// What a waiting target shows: its last error and when it is retried, or why the mesh view
/// holds it back.
fn waiting_status(
    target: &Target,
    held_back: Option<&'static str>,
    now: Instant,
    at: Instant,
) -> (ConnectionState, String) {
    match (&target.last_error, held_back) {
        (None, None) => (ConnectionState::Connecting, String::new()),
        (None, Some(why)) => (
            ConnectionState::Connecting,
            format!("not dialled while {why}"),
        ),
        (Some(error), Some(why)) => (
            ConnectionState::Failed,
            format!("{error}, not dialled while {why}"),
        ),
        (Some(error), None) => (
            ConnectionState::Failed,
            format!("{error}, retry: {}s", seconds_until(now, at)),
        ),
    }
}

/// Whole seconds from `now` until `at`, rounded up (0 when already due).
pub(super) fn seconds_until(now: Instant, at: Instant) -> u64 {
    let left = at.saturating_duration_since(now);
    left.as_secs() + u64::from(left.subsec_nanos() > 0)
}
