//! What the MAC learner says about the table's changes: every discovery, move and expiry in Weave
//! Net's words, and conflicts (a captured frame from a MAC we know at a peer) at most once per
//! [`CONFLICT_LOG_INTERVAL`] with the number suppressed in between, since the hot path reports
//! every such frame.

use std::time::{Duration, Instant};

use super::state::{Location, MacEvent, PeerNames};

/// At most one conflict line per this period.
pub const CONFLICT_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// A line to log, with its level.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogLine {
    Info(String),
    Warn(String),
}

/// Rate limit for the conflict line: the first one logs, then one per interval.
#[derive(Debug, Default)]
pub struct ConflictLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl ConflictLog {
    /// `Some(suppressed count)` when this conflict should be logged now.
    pub fn admit(&mut self, now: Instant) -> Option<u64> {
        let due = self
            .last
            .is_none_or(|last| now.saturating_duration_since(last) >= CONFLICT_LOG_INTERVAL);
        if !due {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// The lines for a batch of changes.
#[derive(Debug, Default)]
pub struct Journal {
    conflicts: ConflictLog,
}

impl Journal {
    pub fn lines(
        &mut self,
        events: &[MacEvent],
        names: &impl PeerNames,
        now: Instant,
    ) -> Vec<LogLine> {
        events
            .iter()
            .filter_map(|event| match event {
                MacEvent::Conflict { .. } => {
                    let suppressed = self.conflicts.admit(now)?;
                    let line = event.log_line(names);
                    Some(LogLine::Warn(match suppressed {
                        0 => line,
                        n => format!("{line} ({n} more since the last such line)"),
                    }))
                }
                _ => Some(LogLine::Info(event.log_line(names))),
            })
            .collect()
    }
}

/// Whether a line for these changes would name a peer we have no nickname for (its record
/// arrived after our last read of the topology).
pub fn names_an_unknown_peer(events: &[MacEvent], names: &impl PeerNames) -> bool {
    events.iter().any(|event| match event {
        MacEvent::Discovered {
            at: Location::Remote(peer),
            ..
        }
        | MacEvent::Moved {
            to: Location::Remote(peer),
            ..
        } => names.nickname(*peer).is_none(),
        _ => false,
    })
}

#[cfg(test)]
mod tests;
