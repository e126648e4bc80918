//! The MAC learner's log lines: every change said once, conflicts rate-limited.

use std::collections::HashMap;

use super::*;
use crate::topology::PeerName;
use crate::wire::MacAddr;

fn peer(n: u64) -> PeerName {
    PeerName::from_u64(n).expect("test names fit in 48 bits")
}

fn mac(n: u8) -> MacAddr {
    MacAddr([0x0a, 0x58, 0x0a, 0x20, 0x00, n])
}

/// We are peer 0x100; peer 1 is "node-a", others have no record yet.
struct Names(HashMap<PeerName, String>);

impl Names {
    fn new() -> Self {
        Self(HashMap::from([(peer(1), "node-a".to_string())]))
    }
}

impl PeerNames for Names {
    fn local_name(&self) -> PeerName {
        peer(0x100)
    }

    fn nickname(&self, name: PeerName) -> Option<&str> {
        self.0.get(&name).map(String::as_str)
    }
}

fn conflict() -> MacEvent {
    MacEvent::Conflict {
        mac: mac(1),
        at: peer(1),
    }
}

#[test]
fn conflicts_log_once_per_interval_with_the_count_in_between() {
    let t0 = Instant::now();
    let mut log = ConflictLog::default();
    assert_eq!(log.admit(t0), Some(0));
    for i in 1..=5 {
        assert_eq!(log.admit(t0 + Duration::from_secs(i)), None);
    }
    assert_eq!(log.admit(t0 + CONFLICT_LOG_INTERVAL), Some(5));
    assert_eq!(log.admit(t0 + CONFLICT_LOG_INTERVAL), None);
}

#[test]
fn every_change_is_said_at_info_and_conflicts_warn_with_what_was_suppressed() {
    let t0 = Instant::now();
    let names = Names::new();
    let mut journal = Journal::default();
    let discovered = MacEvent::Discovered {
        mac: mac(2),
        at: Location::Remote(peer(1)),
    };
    let lines = journal.lines(&[discovered, conflict(), conflict()], &names, t0);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(matches!(&lines[0], LogLine::Info(line) if line.contains("node-a")));
    assert!(matches!(&lines[1], LogLine::Warn(line) if !line.contains("more since")));
    let later = journal.lines(&[conflict()], &names, t0 + CONFLICT_LOG_INTERVAL);
    assert!(
        matches!(&later[..], [LogLine::Warn(line)] if line.ends_with("(1 more since the last such line)")),
        "{later:?}"
    );
}

#[test]
fn a_change_at_a_peer_without_a_nickname_asks_for_the_topology_first() {
    let names = Names::new();
    let at = |n| MacEvent::Discovered {
        mac: mac(3),
        at: Location::Remote(peer(n)),
    };
    assert!(!names_an_unknown_peer(&[at(1)], &names));
    assert!(names_an_unknown_peer(&[at(1), at(2)], &names));
    let local = MacEvent::Discovered {
        mac: mac(3),
        at: Location::Local,
    };
    assert!(!names_an_unknown_peer(&[local, conflict()], &names));
}
