//! A set of addresses stored as its maximal runs: disjoint, non-adjacent, non-empty ranges keyed
//! by start. The space uses it both for what it owns and for what it has allocated, so every
//! query costs the number of runs it touches, never the number of addresses.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::{Address, AddressRange};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RangeSet {
    /// Run start → run end (exclusive). Runs neither overlap nor touch.
    runs: BTreeMap<Address, Address>,
    /// Total number of addresses in the set; at most `u32::MAX` as no range reaches the top.
    len: u32,
}

impl RangeSet {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn from_ranges(ranges: impl IntoIterator<Item = AddressRange>) -> Self {
        let mut set = Self::new();
        for range in ranges {
            set.insert(range);
        }
        set
    }

    /// Number of addresses in the set.
    pub(crate) fn len(&self) -> u32 {
        self.len
    }

    /// The runs, in address order.
    pub(crate) fn ranges(&self) -> impl Iterator<Item = AddressRange> + '_ {
        self.runs
            .iter()
            .map(|(&start, &end)| AddressRange { start, end })
    }

    pub(crate) fn contains(&self, address: Address) -> bool {
        self.runs
            .range(..=address)
            .next_back()
            .is_some_and(|(_, &end)| address < end)
    }

    /// Adds every address of `range`, merging with the runs it overlaps or touches.
    pub(crate) fn insert(&mut self, range: AddressRange) {
        if range.is_empty() {
            return;
        }
        let mut start = range.start;
        let mut end = range.end;
        // A run starting at or before `start` that reaches it absorbs the new range's start.
        if let Some((&run_start, &run_end)) = self.runs.range(..=start).next_back()
            && run_end >= start
        {
            start = run_start;
            end = end.max(run_end);
        }
        // Every run starting inside [start, end] is swallowed (touching runs included).
        let swallowed: Vec<(Address, Address)> = self
            .runs
            .range(start..=end)
            .map(|(&s, &e)| (s, e))
            .collect();
        for (run_start, run_end) in swallowed {
            self.runs.remove(&run_start);
            self.len -= run_end.distance_from(run_start);
            end = end.max(run_end);
        }
        self.runs.insert(start, end);
        self.len += end.distance_from(start);
    }

    /// Removes every address of `range` that is in the set.
    pub(crate) fn remove(&mut self, range: AddressRange) {
        let touched: Vec<AddressRange> = self.overlapping_runs(range).collect();
        for run in touched {
            self.runs.remove(&run.start);
            self.len -= run.size();
            if run.start < range.start {
                self.runs.insert(run.start, range.start);
                self.len += range.start.distance_from(run.start);
            }
            if range.end < run.end {
                self.runs.insert(range.end, run.end);
                self.len += run.end.distance_from(range.end);
            }
        }
    }

    /// The whole runs that share at least one address with `range`, in address order.
    fn overlapping_runs(&self, range: AddressRange) -> impl Iterator<Item = AddressRange> + '_ {
        // The run that starts before `range` may reach into it; later ones start inside it.
        // An empty range overlaps nothing, even inside a run.
        let (before, inside) = if range.is_empty() {
            (None, None)
        } else {
            (
                self.runs
                    .range(..range.start)
                    .next_back()
                    .filter(|(_, end)| **end > range.start),
                Some(
                    self.runs
                        .range((Bound::Included(range.start), Bound::Excluded(range.end))),
                ),
            )
        };
        before
            .into_iter()
            .chain(inside.into_iter().flatten())
            .map(|(&start, &end)| AddressRange { start, end })
    }

    /// The parts of the set inside `range`, in address order.
    pub(crate) fn within(&self, range: AddressRange) -> impl Iterator<Item = AddressRange> + '_ {
        self.overlapping_runs(range)
            .filter_map(move |run| run.intersection(&range))
    }

    /// Number of addresses of the set inside `range`.
    pub(crate) fn count_within(&self, range: AddressRange) -> u32 {
        self.within(range).map(|part| part.size()).sum()
    }

    /// The parts of `range` that are not in the set, in address order.
    pub(crate) fn gaps_within(&self, range: AddressRange) -> Vec<AddressRange> {
        let mut gaps = Vec::new();
        let mut cursor = range.start;
        for part in self.within(range) {
            if cursor < part.start {
                gaps.push(AddressRange {
                    start: cursor,
                    end: part.start,
                });
            }
            cursor = part.end;
        }
        if cursor < range.end {
            gaps.push(AddressRange {
                start: cursor,
                end: range.end,
            });
        }
        gaps
    }

    /// The lowest address of `range` not in the set. Runs are maximal, so this looks at one run
    /// at most: either `range.start` is free, or the run holding it ends at a free address.
    pub(crate) fn first_gap_within(&self, range: AddressRange) -> Option<Address> {
        let candidate = match self.within(range).next() {
            Some(part) if part.start == range.start => part.end,
            _ => range.start,
        };
        (candidate < range.end).then_some(candidate)
    }

    /// The addresses in `self` and not in `other`, as maximal runs in address order.
    pub(crate) fn difference(&self, other: &RangeSet) -> Vec<AddressRange> {
        self.ranges()
            .flat_map(|run| other.gaps_within(run))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn range(start: u32, end: u32) -> AddressRange {
        AddressRange {
            start: Address::new(start),
            end: Address::new(end),
        }
    }

    #[test]
    fn insert_coalesces_touching_and_overlapping_runs() {
        let mut set = RangeSet::new();
        set.insert(range(10, 20));
        set.insert(range(30, 40));
        set.insert(range(20, 30));
        assert_eq!(set.ranges().collect::<Vec<_>>(), vec![range(10, 40)]);
        assert_eq!(set.len(), 30);
        set.insert(range(5, 12));
        set.insert(range(38, 50));
        assert_eq!(set.ranges().collect::<Vec<_>>(), vec![range(5, 50)]);
        assert_eq!(set.len(), 45);
    }

    #[test]
    fn remove_splits_runs() {
        let mut set = RangeSet::from_ranges([range(0, 100)]);
        set.remove(range(10, 20));
        set.remove(range(90, 120));
        assert_eq!(
            set.ranges().collect::<Vec<_>>(),
            vec![range(0, 10), range(20, 90)]
        );
        assert_eq!(set.len(), 80);
        assert_eq!(set.first_gap_within(range(0, 100)), Some(Address::new(10)));
        assert_eq!(set.first_gap_within(range(20, 90)), None);
        assert_eq!(
            set.gaps_within(range(5, 95)),
            vec![range(10, 20), range(90, 95)]
        );
    }

    /// One step of the model test: insert or remove a range of small addresses.
    fn step() -> impl Strategy<Value = (bool, u32, u32)> {
        (any::<bool>(), 0u32..200, 0u32..40).prop_map(|(add, start, len)| (add, start, start + len))
    }

    proptest! {
        /// The run representation agrees with a plain set of addresses after any edits.
        #[test]
        fn agrees_with_a_set_of_addresses(
            steps in prop::collection::vec(step(), 0..40),
            probe in (0u32..240, 0u32..60),
        ) {
            let mut set = RangeSet::new();
            let mut model = BTreeSet::new();
            for (add, start, end) in steps {
                if add {
                    set.insert(range(start, end));
                    model.extend(start..end);
                } else {
                    set.remove(range(start, end));
                    for a in start..end {
                        model.remove(&a);
                    }
                }
            }
            prop_assert_eq!(set.len() as usize, model.len());
            let runs: Vec<AddressRange> = set.ranges().collect();
            for pair in runs.windows(2) {
                prop_assert!(pair[0].end < pair[1].start, "runs touch: {:?}", pair);
            }
            let listed: BTreeSet<u32> = runs
                .iter()
                .flat_map(|r| r.start.as_u32()..r.end.as_u32())
                .collect();
            prop_assert_eq!(&listed, &model);
            let window = range(probe.0, probe.0 + probe.1);
            let inside = (probe.0..probe.0 + probe.1).filter(|a| model.contains(a)).count();
            prop_assert_eq!(set.count_within(window) as usize, inside);
            let first_free = (probe.0..probe.0 + probe.1).find(|a| !model.contains(a));
            prop_assert_eq!(set.first_gap_within(window).map(Address::as_u32), first_free);
            let gap_total: u32 = set.gaps_within(window).iter().map(AddressRange::size).sum();
            prop_assert_eq!(gap_total as usize + inside, window.size() as usize);
        }
    }
}
