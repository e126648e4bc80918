use std::collections::HashSet;

use super::*;
use proptest::prelude::*;

/// The window as a set of accepted counters and the newest: what the ring must agree with.
#[derive(Default)]
struct Model {
    accepted: HashSet<u64>,
    newest: Option<u64>,
}

impl Model {
    fn check(&self, counter: u64) -> Verdict {
        match self.newest {
            Some(newest) if counter <= newest && newest - counter >= WINDOW => {
                Verdict::TooOld { newest }
            }
            _ if self.accepted.contains(&counter) => Verdict::Replay,
            _ => Verdict::Fresh,
        }
    }

    fn commit(&mut self, counter: u64) -> Verdict {
        let verdict = self.check(counter);
        if verdict == Verdict::Fresh {
            self.accepted.insert(counter);
            self.newest = self.newest.max(Some(counter));
        }
        verdict
    }
}

#[test]
fn sizes_are_rfc_6479_with_2048_bits() {
    assert_eq!(WORDS, 32);
    assert_eq!(WINDOW, 1984);
}

#[test]
fn first_counter_is_fresh_once() {
    let mut window = ReplayWindow::new();
    assert_eq!(window.newest(), None);
    assert_eq!(window.check(0), Verdict::Fresh);
    assert_eq!(window.commit(0), Verdict::Fresh);
    assert_eq!(window.check(0), Verdict::Replay);
    assert_eq!(window.commit(0), Verdict::Replay);
    assert_eq!(window.newest(), Some(0));
}

#[test]
fn check_alone_changes_nothing() {
    let mut window = ReplayWindow::new();
    window.commit(10);
    for counter in [0, 9, 11, 5000] {
        assert_eq!(window.check(counter), Verdict::Fresh);
    }
    assert_eq!(window.newest(), Some(10));
    assert_eq!(window.commit(9), Verdict::Fresh);
    assert_eq!(window.commit(11), Verdict::Fresh);
}

#[test]
fn the_window_ends_exactly_at_1984_behind_the_newest() {
    let mut window = ReplayWindow::new();
    window.commit(WINDOW);
    assert_eq!(window.check(0), Verdict::TooOld { newest: WINDOW });
    assert_eq!(window.commit(1), Verdict::Fresh);
    assert_eq!(window.commit(1), Verdict::Replay);
}

#[test]
fn a_far_future_counter_slides_the_whole_window() {
    let mut window = ReplayWindow::new();
    for counter in 0..100 {
        window.commit(counter);
    }
    let far = (1 << 59) + 12_345;
    assert_eq!(window.commit(far), Verdict::Fresh);
    assert_eq!(window.check(99), Verdict::TooOld { newest: far });
    assert_eq!(window.check(far), Verdict::Replay);
    // Stale bits of the ring (counters a multiple of 2048 away) were cleared on the way.
    for counter in (far - WINDOW + 1)..far {
        assert_eq!(window.check(counter), Verdict::Fresh, "counter {counter}");
    }
}

#[test]
fn a_ring_length_later_the_same_slot_is_fresh() {
    let mut window = ReplayWindow::new();
    window.commit(5);
    window.commit(5 + BITS as u64);
    assert_eq!(window.check(5 + BITS as u64), Verdict::Replay);
    assert_eq!(window.check(5), Verdict::TooOld { newest: 5 + 2048 });
    assert_eq!(window.check(5 + BITS as u64 - 1), Verdict::Fresh);
}

/// Counters near a base: small offsets (so duplicates, reorderings and too-old ones are common)
/// and now and then a jump far ahead.
fn counters() -> impl Strategy<Value = Vec<(u64, bool)>> {
    let offset = prop_oneof![
        8 => 0u64..6000,
        1 => 0u64..(1 << 40),
    ];
    prop::collection::vec((offset, any::<bool>()), 0..600)
}

proptest! {
    /// Every verdict, checked alone or committed, is the set model's: duplicates are replays,
    /// counters 1984 or more behind the newest are too old, everything else is fresh once. A
    /// check that is not committed (a datagram whose tag failed) changes nothing.
    #[test]
    fn agrees_with_a_set_model(base in 0u64..(1 << 58), ops in counters()) {
        let (mut window, mut model) = (ReplayWindow::new(), Model::default());
        for (offset, authentic) in ops {
            let counter = base + offset;
            prop_assert_eq!(window.check(counter), model.check(counter), "check {}", counter);
            if authentic {
                prop_assert_eq!(window.commit(counter), model.commit(counter), "commit {}", counter);
            }
            prop_assert_eq!(window.newest(), model.newest);
        }
    }

    /// Any order of 1984 consecutive counters is accepted, each exactly once.
    #[test]
    fn every_permutation_within_the_window_is_accepted_once(
        base in 0u64..(1 << 58),
        order in Just((0..WINDOW).collect::<Vec<u64>>()).prop_shuffle(),
    ) {
        let mut window = ReplayWindow::new();
        for &offset in &order {
            prop_assert_eq!(window.commit(base + offset), Verdict::Fresh);
        }
        for &offset in &order {
            prop_assert_eq!(window.commit(base + offset), Verdict::Replay);
        }
    }

    /// A long stream where each datagram is overtaken by at most 1983 later ones loses nothing
    /// and accepts nothing twice, however far the window slides meanwhile.
    #[test]
    fn a_reordered_stream_within_the_window_loses_nothing(
        delays in prop::collection::vec(0u64..WINDOW, 1..8000),
    ) {
        let mut arrivals: Vec<(u64, u64)> = delays
            .iter()
            .enumerate()
            .map(|(counter, delay)| (counter as u64 + delay, counter as u64))
            .collect();
        arrivals.sort();
        let mut window = ReplayWindow::new();
        for &(_, counter) in &arrivals {
            prop_assert_eq!(window.commit(counter), Verdict::Fresh, "counter {}", counter);
        }
        for &(_, counter) in &arrivals {
            prop_assert_ne!(window.commit(counter), Verdict::Fresh, "counter {} again", counter);
        }
    }
}
