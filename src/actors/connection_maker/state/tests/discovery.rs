//! Tests of discovered and hinted targets: how gossip and refusals add, keep and drop them, and
//! how much of the connection limit they may use.

use super::*;
use crate::actors::connection_maker::discovery_limits::{
    DISCOVERY_DIAL_BURST, DISCOVERY_DIALS_PER_SECOND,
};

#[test]
fn discovered_targets_are_added_kept_and_dropped() {
    let now = Instant::now();
    let mut st = state(true);
    st.set_discovered(
        vec![
            (name(1), sock("10.0.0.1:6783")),
            (name(2), sock("10.0.0.2:6783")),
            (name(4), sock("10.0.0.4:6783")),
        ],
        now,
    );
    assert_eq!(
        sorted(st.due(now, 3)),
        strings(&["10.0.0.1:6783", "10.0.0.2:6783", "10.0.0.4:6783"])
    );
    st.attempt_failed("10.0.0.2:6783", None, "refused".into(), true, now);
    st.attempt_failed("10.0.0.4:6783", None, "refused".into(), true, now);
    let at = due_at(&st, "10.0.0.2:6783");
    let t1 = now + secs(1);
    st.set_discovered(
        vec![
            (name(2), sock("10.0.0.2:6783")),
            (name(3), sock("10.0.0.3:6783")),
        ],
        t1,
    );
    // Still listed: keeps its schedule. New: due at once. Gone and idle: dropped.
    assert_eq!(due_at(&st, "10.0.0.2:6783"), at);
    assert_eq!(due_at(&st, "10.0.0.3:6783"), t1);
    assert!(!st.targets.contains_key("10.0.0.4:6783"));
    let discovered = st.target("10.0.0.3:6783").unwrap();
    assert_eq!(discovered.source(), TargetSource::Discovered);
    assert_eq!(discovered.peer(), Some(name(3)));
    // Gone but attempting: dropped when the attempt ends.
    assert!(st.target("10.0.0.1:6783").is_none());
    st.attempt_failed("10.0.0.1:6783", Some(name(1)), "closed".into(), true, t1);
    assert!(!st.targets.contains_key("10.0.0.1:6783"));
    assert_eq!(st.direct_targets(), Vec::<String>::new());
}

#[test]
fn discovered_address_of_a_direct_target_stays_direct() {
    let now = Instant::now();
    let mut st = state(true);
    st.add_direct(&strings(&["10.0.0.1"]), false, now).unwrap();
    st.set_discovered(vec![(name(1), sock("10.0.0.1:6783"))], now);
    let target = st.target("10.0.0.1:6783").unwrap();
    assert_eq!(target.source(), TargetSource::Direct);
    assert_eq!(target.peer(), Some(name(1)));
    assert_eq!(st.direct_targets(), strings(&["10.0.0.1:6783"]));
    // Forgetting it leaves the discovered target; losing both drops it.
    st.forget(&strings(&["10.0.0.1"])).unwrap();
    assert_eq!(
        st.target("10.0.0.1:6783").unwrap().source(),
        TargetSource::Discovered
    );
    st.set_discovered(vec![], now);
    assert!(st.target("10.0.0.1:6783").is_none());
}

#[test]
fn discovery_off_ignores_gossip_and_hints() {
    let now = Instant::now();
    let mut st = state(false);
    st.set_discovered(vec![(name(1), sock("10.0.0.1:6783"))], now);
    st.add_hints(vec![sock("10.0.0.2:6783")], now);
    assert!(st.targets.is_empty());
    assert_eq!(st.due(now, 10), Vec::<String>::new());
}

#[test]
fn discovery_skips_ourselves_and_undiallable_addresses() {
    let now = Instant::now();
    let mut st = state(true);
    st.set_discovered(
        vec![
            (us(), sock("10.0.0.9:6783")),
            (name(1), sock("0.0.0.0:6783")),
            (name(2), sock("10.0.0.2:0")),
            (name(3), sock("[::1]:6783")),
        ],
        now,
    );
    st.add_hints(vec![sock("[::]:6783")], now);
    assert_eq!(st.due(now, 10), strings(&["[::1]:6783"]));
}

#[test]
fn failed_hints_back_off_instead_of_being_dropped() {
    let now = Instant::now();
    let mut st = state(true);
    st.add_hints(vec![sock("10.0.0.1:6783"), sock("10.0.0.2:6783")], now);
    assert_eq!(
        st.target("10.0.0.1:6783").unwrap().source(),
        TargetSource::Hinted
    );
    // set_discovered leaves hints alone.
    st.set_discovered(vec![], now);
    // Isolated, we try one hint at a time.
    let first = st.due(now, 10);
    assert_eq!(first.len(), 1);
    assert!(st.due(now, 10).is_empty(), "one hint in flight at a time");
    st.attempt_failed(&first[0], None, "refused: full".into(), true, now);
    let second = st.due(now, 10);
    assert_eq!(
        sorted([first.clone(), second.clone()].concat()),
        strings(&["10.0.0.1:6783", "10.0.0.2:6783"])
    );
    st.attempt_failed(&second[0], Some(name(2)), "full".into(), true, now);
    // Named again by the next refusal, a failed hint is not due again before its back-off.
    st.add_hints(vec![sock("10.0.0.1:6783")], now);
    assert!(st.due(now, 10).is_empty());
    let kept = st.target(&second[0]).unwrap();
    assert_eq!(kept.source(), TargetSource::Hinted);
    assert_eq!(kept.peer(), Some(name(2)));
    let later = now + MAX_RETRY_INTERVAL;
    assert_eq!(st.due(later, 10).len(), 1);
}

#[test]
fn once_linked_hints_count_as_discovery() {
    let now = Instant::now();
    let mut st = state(true);
    st.add_hints(vec![sock("10.0.0.1:6783"), sock("10.0.0.2:6783")], now);
    st.set_connected_peers(BTreeSet::from([name(9)]));
    assert!(st.due_within(now, 10, 0).is_empty());
    assert_eq!(
        sorted(st.due_within(now, 10, 2)),
        strings(&["10.0.0.1:6783", "10.0.0.2:6783"])
    );
}

#[test]
fn discovery_uses_only_its_share_of_the_permits() {
    let now = Instant::now();
    let mut st = state(true);
    st.add_direct(&strings(&["10.0.0.9"]), false, now).unwrap();
    st.set_discovered(
        vec![
            (name(2), sock("10.0.0.2:6783")),
            (name(3), sock("10.0.0.3:6783")),
            (name(4), sock("10.0.0.4:6783")),
        ],
        now,
    );
    // Five permits, but discovery may use only one of them: the direct target still goes.
    let picked = st.due_within(now, 5, 1);
    assert_eq!(picked.len(), 2);
    assert_eq!(picked[0], "10.0.0.9:6783");
    assert!(st.due_within(now, 5, 0).is_empty());
    assert_eq!(st.due_within(now, 5, 5).len(), 2);
}

#[test]
fn hints_do_not_change_existing_targets() {
    let now = Instant::now();
    let mut st = state(true);
    st.add_direct(&strings(&["10.0.0.1"]), false, now).unwrap();
    st.add_hints(vec![sock("10.0.0.1:6783")], now);
    st.forget(&strings(&["10.0.0.1"])).unwrap();
    assert!(st.targets.is_empty());
}

/// `count` made-up peers, each at an address of its own that changes with `round`.
fn forged_peers(round: u64, count: u64) -> Vec<(PeerName, SocketAddr)> {
    (0..count)
        .map(|i| {
            let addr = format!("10.{}.{}.{}:6783", round % 250, i / 250, i % 250);
            (name(1000 + i), sock(&addr))
        })
        .collect()
}

#[test]
fn churning_forged_gossip_cannot_make_us_dial_faster_than_the_discovery_budget() {
    let t0 = Instant::now();
    let mut st = state(true);
    let mut dials = 0;
    // A minute in 100 ms steps; every second 500 made-up peers advertise new addresses, and
    // every dial fails. The actor offers all its permits (30, 24 of them to discovery).
    for step in 0..600u32 {
        let now = t0 + Duration::from_millis(100) * step;
        if step % 10 == 0 {
            st.set_discovered(forged_peers(u64::from(step / 10), 500), now);
        }
        let due = st.due_within(now, 30, 24);
        dials += due.len();
        for addr in due {
            st.attempt_failed(&addr, None, "connection refused".into(), true, now);
        }
    }
    let bound = DISCOVERY_DIAL_BURST + DISCOVERY_DIALS_PER_SECOND * 60.0;
    assert!(dials as f64 <= bound, "{dials} dials in 60 s");
    assert!(dials > 0);
}

#[test]
fn direct_targets_do_not_draw_on_the_discovery_budget() {
    let now = Instant::now();
    let mut st = state(true);
    st.set_discovered(forged_peers(0, 100), now);
    assert_eq!(
        st.due_within(now, 100, 100).len(),
        DISCOVERY_DIAL_BURST as usize
    );
    st.add_direct(&strings(&["10.9.9.9"]), false, now).unwrap();
    assert_eq!(st.due_within(now, 100, 100), strings(&["10.9.9.9:6783"]));
}

#[test]
fn an_address_dropped_and_advertised_again_resumes_its_back_off() {
    let t0 = Instant::now();
    let mut st = state(true);
    let peer = vec![(name(1), sock("10.0.0.1:6783"))];
    st.set_discovered(peer.clone(), t0);
    assert_eq!(st.due(t0, 5), strings(&["10.0.0.1:6783"]));
    st.attempt_failed("10.0.0.1:6783", None, "refused".into(), true, t0);
    let at = due_at(&st, "10.0.0.1:6783");
    st.set_discovered(Vec::new(), t0);
    assert!(st.target("10.0.0.1:6783").is_none());

    let t1 = t0 + Duration::from_millis(100);
    st.set_discovered(peer, t1);
    assert_eq!(due_at(&st, "10.0.0.1:6783"), at);
    assert!(st.due(t1, 5).is_empty());
    // And the next failure backs off further, as if it had never gone.
    st.attempt_failed("10.0.0.1:6783", None, "refused".into(), true, at);
    let interval = st.target("10.0.0.1:6783").unwrap().retry_interval();
    assert!(interval > INITIAL_RETRY_INTERVAL.mul_f64(RETRY_BACKOFF_FACTOR));
}

#[test]
fn discovered_targets_are_capped_and_known_ones_kept() {
    let now = Instant::now();
    let mut st = state(true);
    let known = forged_peers(1, 10);
    st.set_discovered(known.clone(), now);
    let mut flood = forged_peers(2, 5000);
    flood.extend(known.iter().cloned());
    st.set_discovered(flood, now);
    assert_eq!(st.targets.len(), MAX_DISCOVERED_TARGETS);
    for (_, addr) in &known {
        assert!(st.target(&addr.to_string()).is_some(), "{addr} kept");
    }
}
