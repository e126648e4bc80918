//! Bounds on what gossip can make us dial. Discovered targets come from peer records, which any
//! peer can forge and relay; unbounded, forged records made every router dial addresses of an
//! attacker's choosing about 88 times a second. So discovery and hints draw on a dial budget (a
//! token bucket), the discovered targets are capped, and the back-off of an address outlives its
//! target, so that an address dropped from gossip and advertised again does not start over.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Sustained rate of dials to discovered or hinted targets. A mesh forms well within it: each
/// newcomer dials its share of the mesh in one burst, then only replacements.
pub const DISCOVERY_DIALS_PER_SECOND: f64 = 2.0;
/// Dials to discovered or hinted targets that may go out at once: Weave Net's default
/// `--conn-limit`, the most links discovery would want to open together.
pub const DISCOVERY_DIAL_BURST: f64 = 30.0;
/// Most discovered targets kept at once: far above any mesh this runs (Weave Net meshes
/// struggled well before a few hundred peers), low enough to bound what forged records can add.
pub const MAX_DISCOVERED_TARGETS: usize = 512;
/// Addresses whose back-off is remembered after their target went away; the soonest due is
/// forgotten first when full. Twice the target cap, so churned targets are all covered.
pub const REMEMBERED_BACKOFFS: usize = 2 * MAX_DISCOVERED_TARGETS;

/// A token bucket: `burst` tokens, refilled at `per_second`.
#[derive(Clone, Debug)]
pub struct DialBudget {
    tokens: f64,
    refilled: Option<Instant>,
    burst: f64,
    per_second: f64,
}

impl Default for DialBudget {
    fn default() -> Self {
        Self::new(DISCOVERY_DIAL_BURST, DISCOVERY_DIALS_PER_SECOND)
    }
}

impl DialBudget {
    pub fn new(burst: f64, per_second: f64) -> Self {
        Self {
            tokens: burst,
            refilled: None,
            burst,
            per_second,
        }
    }

    /// Whole dials allowed at `now`.
    pub fn available(&mut self, now: Instant) -> usize {
        if let Some(last) = self.refilled {
            let elapsed = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        }
        self.refilled = Some(self.refilled.map_or(now, |last| last.max(now)));
        self.tokens.floor() as usize
    }

    pub fn spend(&mut self, dials: usize) {
        self.tokens = (self.tokens - dials as f64).max(0.0);
    }
}

/// Where an address was in its back-off when its target went away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Remembered {
    /// Not to be dialled before this.
    pub not_before: Instant,
    /// The interval the next failure's delay is drawn around.
    pub retry_interval: Duration,
}

/// Back-offs of addresses that failed and are no longer targets, bounded.
#[derive(Clone, Debug, Default)]
pub struct BackoffMemory {
    entries: BTreeMap<String, Remembered>,
}

impl BackoffMemory {
    pub fn remember(&mut self, addr: &str, remembered: Remembered) {
        if self.entries.len() >= REMEMBERED_BACKOFFS && !self.entries.contains_key(addr) {
            let soonest = self
                .entries
                .iter()
                .min_by_key(|(_, entry)| entry.not_before)
                .map(|(addr, _)| addr.clone());
            if let Some(soonest) = soonest {
                self.entries.remove(&soonest);
            }
        }
        self.entries.insert(addr.to_string(), remembered);
    }

    /// Takes the remembered back-off of `addr`, if any.
    pub fn recall(&mut self, addr: &str) -> Option<Remembered> {
        self.entries.remove(addr)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_allows_a_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut budget = DialBudget::new(3.0, 2.0);
        assert_eq!(budget.available(t0), 3);
        budget.spend(3);
        assert_eq!(budget.available(t0), 0);
        assert_eq!(budget.available(t0 + Duration::from_millis(499)), 0);
        assert_eq!(budget.available(t0 + Duration::from_millis(1000)), 2);
        // Never more than the burst, however long it rested.
        assert_eq!(budget.available(t0 + Duration::from_secs(3600)), 3);
    }

    #[test]
    fn the_memory_is_bounded_and_forgets_the_soonest_due_first() {
        let t0 = Instant::now();
        let mut memory = BackoffMemory::default();
        for i in 0..REMEMBERED_BACKOFFS as u64 + 1 {
            let remembered = Remembered {
                not_before: t0 + Duration::from_secs(i),
                retry_interval: Duration::from_secs(2),
            };
            memory.remember(&format!("10.0.{}.{}:6783", i / 256, i % 256), remembered);
        }
        assert_eq!(memory.len(), REMEMBERED_BACKOFFS);
        assert_eq!(memory.recall("10.0.0.0:6783"), None, "the soonest due went");
        assert!(memory.recall("10.0.0.1:6783").is_some());
        assert_eq!(memory.recall("10.0.0.1:6783"), None, "recalled once");
    }
}
