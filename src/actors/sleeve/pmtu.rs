//! Path MTU verification for one sleeve neighbour: which IP packet size (the MTU pods may use
//! through the sleeve) a single datagram to it really carries. Probes are control records padded
//! to the size under test and sent with DF; the peer acknowledges the ones that arrive. The
//! first probe tries the size our own underlay allows (usually the answer); when it is lost or
//! refused locally (EMSGSIZE), a binary search finds the largest size that gets through.
//! Sans-IO and time-injected: the actor sends what [`PmtuProber::poll`] returns.

use std::time::{Duration, Instant};

use crate::wire::sleeve::Control;

/// The smallest MTU ever searched below: IPv4's minimum datagram every host must accept
/// (RFC 791: 576 bytes), so a verified path always carries at least this.
pub const MIN_PROBED_MTU: u16 = 576;
/// How long to wait for a probe's acknowledgement before sending it again, in milliseconds.
/// Round trips between nodes are well below this; Weave Net started at 10 ms and doubled.
const PROBE_TIMEOUT: Duration = Duration::from_millis(200);
/// Sends of one size before it counts as not carried (a lost probe is not a too-small path).
const ATTEMPTS_PER_SIZE: u8 = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct InFlight {
    probe_id: u32,
    mtu: u16,
    sent_at: Instant,
    attempts: u8,
}

/// The search for one neighbour's path MTU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PmtuProber {
    /// Largest size known to cross (the floor until a probe proves more).
    low: u16,
    /// Largest size not yet ruled out.
    high: u16,
    in_flight: Option<InFlight>,
    verified: Option<u16>,
    next_probe_id: u32,
    /// The first probe (the top size) was sent: from now on the search halves the range.
    tried_top: bool,
}

/// What an acknowledgement did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// Not the probe we wait for (stale or forged): ignored.
    Ignored,
    /// The search goes on with a bigger size.
    Progress,
    /// The search ended: the path carries `mtu`.
    Verified(u16),
}

impl PmtuProber {
    /// A search below `max_mtu`, the size our own underlay allows.
    pub fn new(max_mtu: u16) -> Self {
        let high = max_mtu.max(MIN_PROBED_MTU);
        Self {
            low: MIN_PROBED_MTU,
            high,
            in_flight: None,
            verified: None,
            next_probe_id: 1,
            tried_top: false,
        }
    }

    pub fn verified(&self) -> Option<u16> {
        self.verified
    }

    /// The size to assume until verification ends: the largest not yet ruled out, so traffic
    /// runs at full size from the start on the (usual) path that carries it.
    pub fn assumed(&self) -> u16 {
        self.verified.unwrap_or(self.high)
    }

    /// The probe to send now, if one is due.
    pub fn poll(&mut self, now: Instant) -> Option<Control> {
        if self.verified.is_some() {
            return None;
        }
        if let Some(flight) = self.in_flight {
            if now.duration_since(flight.sent_at) < PROBE_TIMEOUT {
                return None;
            }
            if flight.attempts >= ATTEMPTS_PER_SIZE {
                self.rule_out(flight.mtu);
                return self.poll(now);
            }
            let flight = InFlight {
                sent_at: now,
                attempts: flight.attempts + 1,
                ..flight
            };
            self.in_flight = Some(flight);
            return Some(probe(flight));
        }
        let mtu = self.candidate();
        self.tried_top = true;
        let flight = InFlight {
            probe_id: self.next_probe_id,
            mtu,
            sent_at: now,
            attempts: 1,
        };
        self.next_probe_id = self.next_probe_id.wrapping_add(1);
        self.in_flight = Some(flight);
        Some(probe(flight))
    }

    /// The peer acknowledged a probe.
    pub fn on_ack(&mut self, probe_id: u32, mtu: u16) -> ProbeOutcome {
        match self.in_flight {
            Some(flight) if flight.probe_id == probe_id && flight.mtu == mtu => {
                self.in_flight = None;
                self.low = mtu;
                self.settle()
            }
            _ => ProbeOutcome::Ignored,
        }
    }

    /// Our kernel refused to send the probe of `mtu` (EMSGSIZE): a local link is smaller.
    pub fn on_too_big(&mut self, mtu: u16) -> ProbeOutcome {
        match self.in_flight {
            Some(flight) if flight.mtu == mtu => {
                self.rule_out(mtu);
                self.settle()
            }
            _ => ProbeOutcome::Ignored,
        }
    }

    /// Start over (the path may have changed): keeps the current answer as the first guess.
    pub fn restart(&mut self) {
        *self = Self::new(self.assumed());
    }

    fn candidate(&self) -> u16 {
        if !self.tried_top {
            // First try the top: on most paths it is the answer.
            self.high
        } else {
            self.low + (self.high - self.low).div_ceil(2)
        }
    }

    fn rule_out(&mut self, mtu: u16) {
        self.in_flight = None;
        self.high = mtu.saturating_sub(1).max(self.low);
        if self.high == self.low {
            self.verified = Some(self.low);
        }
    }

    fn settle(&mut self) -> ProbeOutcome {
        if self.low >= self.high {
            self.high = self.low;
            self.verified = Some(self.low);
        }
        match self.verified {
            Some(mtu) => ProbeOutcome::Verified(mtu),
            None => ProbeOutcome::Progress,
        }
    }
}

fn probe(flight: InFlight) -> Control {
    Control::PmtuProbe {
        probe_id: flight.probe_id,
        mtu: flight.mtu,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Runs a search against a path that carries `path_mtu`, answering every probe that fits.
    fn search(max: u16, path_mtu: u16) -> (u16, usize) {
        let mut prober = PmtuProber::new(max);
        let mut now = Instant::now();
        for sent in 1..=200 {
            if let Some(Control::PmtuProbe { probe_id, mtu }) = prober.poll(now)
                && mtu <= path_mtu
                && let ProbeOutcome::Verified(found) = prober.on_ack(probe_id, mtu)
            {
                return (found, sent);
            }
            if let Some(found) = prober.verified() {
                return (found, sent);
            }
            now += PROBE_TIMEOUT;
        }
        panic!("no answer after 200 steps");
    }

    #[test]
    fn a_path_that_carries_the_full_size_is_verified_by_one_probe() {
        assert_eq!(search(1437, 1500), (1437, 1));
    }

    #[test]
    fn a_smaller_path_is_found_by_binary_search() {
        let (found, _) = search(1437, 1200);
        assert_eq!(found, 1200);
    }

    #[test]
    fn a_lost_probe_is_sent_again_before_the_size_is_ruled_out() {
        let mut prober = PmtuProber::new(1437);
        let now = Instant::now();
        let first = prober.poll(now).unwrap();
        assert_eq!(prober.poll(now + PROBE_TIMEOUT / 2), None);
        let again = prober.poll(now + PROBE_TIMEOUT).unwrap();
        assert_eq!(first, again, "the same probe, sent again");
        let Control::PmtuProbe { probe_id, mtu } = again else {
            unreachable!()
        };
        assert_eq!(prober.on_ack(probe_id, mtu), ProbeOutcome::Verified(1437));
    }

    #[test]
    fn a_local_refusal_rules_the_size_out_at_once() {
        let mut prober = PmtuProber::new(9000);
        let now = Instant::now();
        let Some(Control::PmtuProbe { mtu, .. }) = prober.poll(now) else {
            unreachable!()
        };
        assert_eq!(prober.on_too_big(mtu), ProbeOutcome::Progress);
        let Some(Control::PmtuProbe { mtu: next, .. }) = prober.poll(now) else {
            unreachable!()
        };
        assert!(next < 9000);
    }

    #[test]
    fn stale_or_forged_acks_are_ignored() {
        let mut prober = PmtuProber::new(1437);
        let Some(Control::PmtuProbe { probe_id, mtu }) = prober.poll(Instant::now()) else {
            unreachable!()
        };
        assert_eq!(prober.on_ack(probe_id + 1, mtu), ProbeOutcome::Ignored);
        assert_eq!(prober.on_ack(probe_id, mtu - 1), ProbeOutcome::Ignored);
        assert_eq!(prober.verified(), None);
    }

    #[test]
    fn a_path_that_carries_nothing_ends_at_the_floor() {
        assert_eq!(search(1437, 0).0, MIN_PROBED_MTU);
    }

    proptest! {
        /// Whatever the path, the search ends at exactly the largest size it carries (bounded by
        /// our own maximum and the floor), in a logarithmic number of rounds.
        #[test]
        fn the_search_finds_the_path_mtu(max in 576u16..9001, path in 0u16..10_000) {
            let (found, steps) = search(max, path);
            prop_assert_eq!(found, path.clamp(MIN_PROBED_MTU, max));
            prop_assert!(steps <= 1 + 14 * usize::from(ATTEMPTS_PER_SIZE) + 14);
        }
    }
}
