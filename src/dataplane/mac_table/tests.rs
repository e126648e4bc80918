//! Tests of [`MacTable`]: each rule on its own, with injected instants. The properties over
//! arbitrary sequences of operations are in `state_proptests.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use super::*;
use crate::topology::{PeerRecord, PeerUid};

const SECOND: Duration = Duration::from_secs(1);

pub(super) fn peer(n: u64) -> PeerName {
    PeerName::from_u64(n).expect("test names fit in 48 bits")
}

pub(super) fn remote(n: u64) -> Location {
    Location::Remote(peer(n))
}

/// A unicast, locally administered MAC ending in `n` (like the ones veths get).
pub(super) fn mac(n: u8) -> MacAddr {
    MacAddr([0x0a, 0x58, 0x0a, 0x20, 0x00, n])
}

/// We are peer 0x100 ("self"); peers 1 and 2 have nicknames, others are not known yet.
struct Names;

impl PeerNames for Names {
    fn local_name(&self) -> PeerName {
        peer(0x100)
    }

    fn nickname(&self, name: PeerName) -> Option<&str> {
        match name.as_u64() {
            0x100 => Some("self"),
            1 => Some("node-a"),
            2 => Some("node-b"),
            _ => None,
        }
    }
}

#[test]
fn mac_display_and_parse_round_trip() {
    let parsed: MacAddr = "0a:58:0A:20:00:ff".parse().unwrap();
    assert_eq!(parsed, MacAddr([0x0a, 0x58, 0x0a, 0x20, 0x00, 0xff]));
    assert_eq!(parsed.to_string(), "0a:58:0a:20:00:ff");
    assert_eq!(format!("{parsed:?}"), "0a:58:0a:20:00:ff");
    assert_eq!("0a-58-0a-20-00-ff".parse::<MacAddr>().unwrap(), parsed);
}

#[test]
fn malformed_macs_are_rejected() {
    for bad in [
        "",
        "0a:58:0a:20:00",
        "0a:58:0a:20:00:ff:01",
        "a:58:0a:20:00:ff",
        "0a:58:0a:20:00:fff",
        "0a:58:0a:20:00:+f",
        "0a:58:0a:20:00:zz",
        "0a:58-0a:20:00:ff",
    ] {
        assert!(bad.parse::<MacAddr>().is_err(), "{bad:?} should not parse");
    }
}

#[test]
fn group_and_zero_addresses_are_classified() {
    assert!(MacAddr::BROADCAST.is_broadcast() && MacAddr::BROADCAST.is_multicast());
    let stp: MacAddr = "01:80:c2:00:00:00".parse().unwrap();
    assert!(stp.is_multicast() && !stp.is_broadcast());
    assert!(!mac(1).is_multicast() && !mac(1).is_broadcast());
    assert!(mac(1).is_learnable());
    assert!(!MacAddr::ZERO.is_learnable() && !stp.is_learnable());
}

#[test]
fn new_macs_are_discovered_local_or_remote() {
    let now = Instant::now();
    let mut table = MacTable::new();
    assert_eq!(
        table.observe(mac(1), Location::Local, now),
        vec![MacEvent::Discovered {
            mac: mac(1),
            at: Location::Local
        }]
    );
    assert_eq!(
        table.observe(mac(2), remote(1), now),
        vec![MacEvent::Discovered {
            mac: mac(2),
            at: remote(1)
        }]
    );
    assert_eq!(table.lookup(mac(1)), Some(Location::Local));
    assert_eq!(table.lookup(mac(2)), Some(remote(1)));
    assert_eq!(table.lookup(mac(3)), None);
    assert_eq!(table.len(), 2);
}

#[test]
fn group_and_zero_sources_are_never_learned() {
    let now = Instant::now();
    let mut table = MacTable::new();
    let multicast: MacAddr = "01:00:5e:00:00:fb".parse().unwrap();
    for source in [MacAddr::BROADCAST, multicast, MacAddr::ZERO] {
        assert!(table.observe(source, remote(1), now).is_empty());
        assert!(table.observe(source, Location::Local, now).is_empty());
        assert_eq!(table.lookup(source), None);
    }
    assert!(table.is_empty());
    assert_eq!(table.generation(), 0);
}

#[test]
fn sightings_at_the_same_place_refresh_at_most_once_per_interval() {
    let start = Instant::now();
    let mut table = MacTable::new();
    table.observe(mac(1), remote(1), start);
    let generation = table.generation();
    let last_seen = |table: &MacTable| table.entries()[0].last_seen;

    assert!(
        table
            .observe(mac(1), remote(1), start + 59 * SECOND)
            .is_empty()
    );
    assert_eq!(last_seen(&table), start, "too soon to refresh");
    assert!(
        table
            .observe(mac(1), remote(1), start + REFRESH_INTERVAL)
            .is_empty()
    );
    assert_eq!(last_seen(&table), start + REFRESH_INTERVAL);
    assert_eq!(table.generation(), generation, "a refresh moves nothing");
}

#[test]
fn a_remote_mac_seen_from_another_peer_moves() {
    let now = Instant::now();
    let mut table = MacTable::new();
    table.observe(mac(1), remote(1), now);
    let later = now + SECOND;
    assert_eq!(
        table.observe(mac(1), remote(2), later),
        vec![MacEvent::Moved {
            mac: mac(1),
            from: remote(1),
            to: remote(2)
        }]
    );
    assert_eq!(table.lookup(mac(1)), Some(remote(2)));
    assert_eq!(table.entries()[0].last_seen, later);
}

#[test]
fn a_local_mac_seen_from_a_peer_moves_to_that_peer() {
    let now = Instant::now();
    let mut table = MacTable::new();
    table.observe(mac(1), Location::Local, now);
    assert_eq!(
        table.observe(mac(1), remote(2), now),
        vec![MacEvent::Moved {
            mac: mac(1),
            from: Location::Local,
            to: remote(2)
        }]
    );
    assert_eq!(table.lookup(mac(1)), Some(remote(2)));
}

#[test]
fn a_captured_frame_from_a_remote_mac_is_a_conflict_and_changes_nothing() {
    let start = Instant::now();
    let mut table = MacTable::new();
    table.observe(mac(1), remote(1), start);
    let generation = table.generation();
    let later = start + 5 * REFRESH_INTERVAL;
    assert_eq!(
        table.observe(mac(1), Location::Local, later),
        vec![MacEvent::Conflict {
            mac: mac(1),
            at: peer(1)
        }]
    );
    assert_eq!(table.lookup(mac(1)), Some(remote(1)));
    assert_eq!(
        table.entries()[0].last_seen,
        start,
        "a conflict is not a sighting"
    );
    assert_eq!(table.generation(), generation);
}

#[test]
fn entries_expire_after_max_age_and_not_before() {
    let start = Instant::now();
    let mut table = MacTable::new();
    table.observe(mac(1), remote(1), start);
    table.observe(mac(2), Location::Local, start + SECOND);
    assert!(table.expire(start + MAX_AGE).is_empty());
    assert_eq!(
        table.expire(start + MAX_AGE + SECOND),
        vec![MacEvent::Expired {
            mac: mac(1),
            at: remote(1)
        }]
    );
    assert_eq!(table.lookup(mac(1)), None);
    assert_eq!(table.lookup(mac(2)), Some(Location::Local));
}

#[test]
fn refreshed_entries_stay_alive() {
    let start = Instant::now();
    let mut table = MacTable::new();
    table.observe(mac(1), remote(1), start);
    let mut now = start;
    for _ in 0..20 {
        now += REFRESH_INTERVAL;
        table.observe(mac(1), remote(1), now);
        assert!(table.expire(now).is_empty());
    }
    assert!(now - start > MAX_AGE);
    assert_eq!(table.lookup(mac(1)), Some(remote(1)));
}

#[test]
fn forgetting_a_peer_drops_only_its_macs() {
    let now = Instant::now();
    let mut table = MacTable::new();
    table.observe(mac(3), remote(1), now);
    table.observe(mac(1), remote(1), now);
    table.observe(mac(2), remote(2), now);
    table.observe(mac(4), Location::Local, now);
    assert_eq!(
        table.forget_peer(peer(1)),
        vec![
            MacEvent::Forgotten {
                mac: mac(1),
                at: peer(1)
            },
            MacEvent::Forgotten {
                mac: mac(3),
                at: peer(1)
            },
        ]
    );
    assert_eq!(table.lookup(mac(1)), None);
    assert_eq!(table.lookup(mac(2)), Some(remote(2)));
    assert_eq!(table.lookup(mac(4)), Some(Location::Local));
    assert!(table.forget_peer(peer(1)).is_empty());
    // The age index forgot them too: nothing left to expire but the two survivors.
    assert_eq!(table.expire(now + 2 * MAX_AGE).len(), 2);
}

#[test]
fn the_macs_of_peers_the_topology_no_longer_holds_are_forgotten() {
    let now = Instant::now();
    let mut table = MacTable::new();
    table.observe(mac(1), remote(1), now);
    table.observe(mac(2), remote(2), now);
    table.observe(mac(3), remote(3), now);
    table.observe(mac(4), Location::Local, now);
    let present = BTreeSet::from([peer(2)]);
    assert_eq!(
        table.forget_departed(&present),
        vec![
            MacEvent::Forgotten {
                mac: mac(1),
                at: peer(1)
            },
            MacEvent::Forgotten {
                mac: mac(3),
                at: peer(3)
            },
        ]
    );
    assert_eq!(table.lookup(mac(2)), Some(remote(2)));
    assert_eq!(table.lookup(mac(4)), Some(Location::Local), "ours stay");
    assert!(table.forget_departed(&present).is_empty());
}

#[test]
fn a_full_table_evicts_its_oldest_entry_and_counts_it() {
    let start = Instant::now();
    let mut table = MacTable::with_limit(2);
    table.observe(mac(1), remote(1), start);
    table.observe(mac(2), remote(2), start + SECOND);
    // mac(1) refreshed: now mac(2) is the oldest.
    table.observe(mac(1), remote(1), start + REFRESH_INTERVAL);
    assert_eq!(
        table.observe(mac(3), Location::Local, start + 2 * REFRESH_INTERVAL),
        vec![
            MacEvent::Evicted {
                mac: mac(2),
                at: remote(2)
            },
            MacEvent::Discovered {
                mac: mac(3),
                at: Location::Local
            },
        ]
    );
    assert_eq!(table.len(), 2);
    assert_eq!(table.evicted(), 1);
    assert_eq!(table.lookup(mac(2)), None);
    assert_eq!(MacTable::with_limit(0).limit(), 1);
    assert_eq!(MacTable::new().limit(), MAX_ENTRIES);
}

#[test]
fn a_batch_is_the_same_as_its_sightings_in_order() {
    let now = Instant::now();
    let batch = [
        (mac(1), remote(1)),
        (MacAddr::BROADCAST, remote(1)),
        (mac(1), remote(2)),
        (mac(2), Location::Local),
        (mac(1), Location::Local),
    ];
    let mut one_by_one = MacTable::new();
    let expected: Vec<MacEvent> = batch
        .iter()
        .flat_map(|&(mac, at)| one_by_one.observe(mac, at, now))
        .collect();
    let mut batched = MacTable::new();
    assert_eq!(batched.observe_batch(&batch, now), expected);
    assert_eq!(batched.entries(), one_by_one.entries());
    assert_eq!(expected.len(), 4);
}

#[test]
fn a_snapshot_is_rebuilt_only_after_a_change() {
    let start = Instant::now();
    let mut table = MacTable::new();
    let empty = table.snapshot();
    assert!(empty.is_empty());
    assert!(Arc::ptr_eq(&empty, &table.snapshot()));

    table.observe(mac(1), remote(1), start);
    let first = table.snapshot();
    assert!(!Arc::ptr_eq(&empty, &first));
    assert_eq!(first.lookup(mac(1)), Some(remote(1)));
    assert_eq!(first.generation(), table.generation());

    // A refresh, a conflict and an expiry sweep with nothing to expire change no location.
    table.observe(mac(1), remote(1), start + REFRESH_INTERVAL);
    table.observe(mac(1), Location::Local, start + REFRESH_INTERVAL);
    table.expire(start + REFRESH_INTERVAL);
    assert!(Arc::ptr_eq(&first, &table.snapshot()));

    table.observe(mac(1), remote(2), start + REFRESH_INTERVAL);
    let moved = table.snapshot();
    assert_eq!(moved.lookup(mac(1)), Some(remote(2)));
    assert_eq!(
        first.lookup(mac(1)),
        Some(remote(1)),
        "old snapshots never change"
    );
}

#[test]
fn entries_are_ordered_by_mac() {
    let now = Instant::now();
    let mut table = MacTable::new();
    for n in [5, 1, 3] {
        table.observe(mac(n), remote(1), now);
    }
    let macs: Vec<MacAddr> = table.entries().iter().map(|entry| entry.mac).collect();
    assert_eq!(macs, vec![mac(1), mac(3), mac(5)]);
}

#[test]
fn log_lines_are_worded_as_weave_net_did() {
    let m = mac(2);
    let line = |event: MacEvent| event.log_line(&Names);
    assert_eq!(
        line(MacEvent::Discovered {
            mac: m,
            at: remote(1)
        }),
        "Discovered remote MAC 0a:58:0a:20:00:02 at 00:00:00:00:00:01(node-a)"
    );
    assert_eq!(
        line(MacEvent::Moved {
            mac: m,
            from: remote(1),
            to: remote(2)
        }),
        "Discovered remote MAC 0a:58:0a:20:00:02 at 00:00:00:00:00:02(node-b) \
         (was at 00:00:00:00:00:01(node-a))"
    );
    assert_eq!(
        line(MacEvent::Moved {
            mac: m,
            from: Location::Local,
            to: remote(9)
        }),
        "Discovered remote MAC 0a:58:0a:20:00:02 at 00:00:00:00:00:09 \
         (was at 00:00:00:00:01:00(self))"
    );
    assert_eq!(
        line(MacEvent::Discovered {
            mac: m,
            at: Location::Local
        }),
        "Discovered local MAC 0a:58:0a:20:00:02"
    );
    assert_eq!(
        line(MacEvent::Conflict {
            mac: m,
            at: peer(1)
        }),
        "Captured frame from MAC (0a:58:0a:20:00:02) associated with another peer \
         00:00:00:00:00:01(node-a)"
    );
    assert_eq!(
        line(MacEvent::Expired {
            mac: m,
            at: Location::Local
        }),
        "Expired MAC 0a:58:0a:20:00:02 at 00:00:00:00:01:00(self)"
    );
    assert!(
        line(MacEvent::Forgotten {
            mac: m,
            at: peer(2)
        })
        .contains("node-b")
    );
    assert!(
        line(MacEvent::Evicted {
            mac: m,
            at: remote(1)
        })
        .starts_with("Evicted MAC 0a:58")
    );
}

#[test]
fn the_topology_supplies_names_for_log_lines() {
    let topology = Topology::new(PeerRecord {
        name: peer(7),
        nickname: "node-7".to_string(),
        uid: PeerUid(1),
        version: 1,
        listen_addr: SocketAddr::from(([0, 0, 0, 0], 6783)),
        conn_limit: 0,
        connections: BTreeMap::new(),
    });
    let event = MacEvent::Moved {
        mac: mac(1),
        from: Location::Local,
        to: remote(3),
    };
    assert_eq!(
        event.log_line(&topology),
        "Discovered remote MAC 0a:58:0a:20:00:01 at 00:00:00:00:00:03 \
         (was at 00:00:00:00:00:07(node-7))"
    );
    assert_eq!(event.mac(), mac(1));
}
