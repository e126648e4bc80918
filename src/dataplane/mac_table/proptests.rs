//! Properties of [`MacTable`] over arbitrary sequences of observations, expiries and removed
//! peers: it agrees with a plain model (a sorted map and linear scans), never exceeds its bound,
//! and its snapshot equals its contents when taken.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::tests::{mac, peer, remote};
use super::*;

/// One step of a property test.
#[derive(Clone, Debug)]
enum Op {
    Observe(MacAddr, Location),
    Advance(Duration),
    Expire,
    ForgetPeer(PeerName),
}

/// A few unicast MACs (so that they collide and move) plus the group and zero addresses.
fn any_mac() -> impl Strategy<Value = MacAddr> {
    prop_oneof![
        8 => (1u8..=8).prop_map(mac),
        1 => Just(MacAddr::BROADCAST),
        1 => Just(MacAddr([0x01, 0x00, 0x5e, 0, 0, 1])),
        1 => Just(MacAddr::ZERO),
    ]
}

fn any_location() -> impl Strategy<Value = Location> {
    prop_oneof![Just(Location::Local), (1u64..=3).prop_map(remote)]
}

fn any_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (any_mac(), any_location()).prop_map(|(mac, at)| Op::Observe(mac, at)),
        // Up to a bit more than MAX_AGE, so refreshes, expiries and survivors all happen.
        3 => (0u64..=660).prop_map(|secs| Op::Advance(Duration::from_secs(secs))),
        1 => Just(Op::Expire),
        1 => (1u64..=3).prop_map(|n| Op::ForgetPeer(peer(n))),
    ]
}

/// The rules restated as plainly as possible: a sorted map, scanned whole for every question.
struct Model {
    limit: usize,
    entries: BTreeMap<MacAddr, (Location, Instant)>,
}

impl Model {
    fn observe(&mut self, mac: MacAddr, at: Location, now: Instant) {
        if mac.is_multicast() || mac == MacAddr::ZERO {
            return;
        }
        match self.entries.get_mut(&mac) {
            Some((old, seen)) if *old == at => {
                if now - *seen >= REFRESH_INTERVAL {
                    *seen = now;
                }
            }
            Some((Location::Remote(_), _)) if at == Location::Local => {}
            Some(entry) => *entry = (at, now),
            None => {
                if self.entries.len() == self.limit {
                    let oldest = self
                        .entries
                        .iter()
                        .map(|(&mac, &(_, seen))| (seen, mac))
                        .min()
                        .map(|(_, mac)| mac);
                    self.entries.retain(|&mac, _| Some(mac) != oldest);
                }
                self.entries.insert(mac, (at, now));
            }
        }
    }

    fn apply(&mut self, op: &Op, now: Instant) {
        match *op {
            Op::Observe(mac, at) => self.observe(mac, at, now),
            Op::Advance(_) => {}
            Op::Expire => self
                .entries
                .retain(|_, &mut (_, seen)| now - seen <= MAX_AGE),
            Op::ForgetPeer(peer) => self
                .entries
                .retain(|_, &mut (at, _)| at != Location::Remote(peer)),
        }
    }
}

/// Runs `op` on the table, returning the new time.
fn apply(table: &mut MacTable, op: &Op, now: Instant) -> Instant {
    match *op {
        Op::Observe(mac, at) => {
            table.observe(mac, at, now);
        }
        Op::Advance(by) => return now + by,
        Op::Expire => {
            table.expire(now);
        }
        Op::ForgetPeer(peer) => {
            table.forget_peer(peer);
        }
    }
    now
}

proptest! {
    #[test]
    fn mac_display_parse_round_trip(bytes in any::<[u8; 6]>()) {
        let mac = MacAddr(bytes);
        prop_assert_eq!(mac.to_string().parse::<MacAddr>().unwrap(), mac);
    }

    #[test]
    fn mac_parse_never_panics(input in ".{0,24}") {
        let _ = input.parse::<MacAddr>();
    }

    #[test]
    fn lookup_agrees_with_a_plain_model(
        limit in 1usize..=6,
        ops in prop::collection::vec(any_op(), 0..80),
    ) {
        let mut now = Instant::now();
        let mut table = MacTable::with_limit(limit);
        let mut model = Model { limit, entries: BTreeMap::new() };
        for op in &ops {
            now = apply(&mut table, op, now);
            model.apply(op, now);
            for n in 0..=9 {
                let expected = model.entries.get(&mac(n)).map(|&(at, _)| at);
                prop_assert_eq!(table.lookup(mac(n)), expected, "after {:?}", op);
            }
            let rows: Vec<(MacAddr, Location, Instant)> = table
                .entries()
                .into_iter()
                .map(|entry| (entry.mac, entry.location, entry.last_seen))
                .collect();
            let expected: Vec<(MacAddr, Location, Instant)> = model
                .entries
                .iter()
                .map(|(&mac, &(at, seen))| (mac, at, seen))
                .collect();
            prop_assert_eq!(rows, expected);
        }
    }

    #[test]
    fn the_table_never_exceeds_its_bound(
        limit in 1usize..=16,
        sightings in prop::collection::vec((any::<[u8; 6]>(), any_location(), 0u64..=90), 0..200),
    ) {
        let mut now = Instant::now();
        let mut table = MacTable::with_limit(limit);
        let (mut discovered, mut evicted) = (0usize, 0u64);
        for (bytes, at, secs) in sightings {
            now += Duration::from_secs(secs);
            for event in table.observe(MacAddr(bytes), at, now) {
                match event {
                    MacEvent::Discovered { .. } => discovered += 1,
                    MacEvent::Evicted { .. } => evicted += 1,
                    _ => {}
                }
            }
            prop_assert!(table.len() <= limit);
            prop_assert_eq!(table.evicted(), evicted);
            prop_assert_eq!(table.len() as u64, discovered as u64 - evicted);
        }
    }

    #[test]
    fn a_snapshot_equals_the_table_when_taken(
        ops in prop::collection::vec(any_op(), 0..60),
        snapshot_every in 1usize..=4,
    ) {
        let mut now = Instant::now();
        let mut table = MacTable::with_limit(4);
        for (step, op) in ops.iter().enumerate() {
            now = apply(&mut table, op, now);
            if step % snapshot_every != 0 {
                continue;
            }
            let snapshot = table.snapshot();
            prop_assert_eq!(snapshot.generation(), table.generation());
            prop_assert_eq!(snapshot.len(), table.len());
            let mut held: Vec<(MacAddr, Location)> = snapshot.iter().collect();
            held.sort_unstable();
            let rows: Vec<(MacAddr, Location)> =
                table.entries().iter().map(|entry| (entry.mac, entry.location)).collect();
            prop_assert_eq!(held, rows);
        }
    }
}
