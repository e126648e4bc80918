//! Tests of the connection maker's state machine: time is injected as `Instant` offsets and the
//! jitter generator is seeded, so every schedule is reproducible.

use super::status::seconds_until;
use super::*;
use crate::snapshot::ConnectionState;

const PORT: u16 = 6783;

fn name(n: u64) -> PeerName {
    PeerName::from_u64(n).unwrap()
}

fn us() -> PeerName {
    name(0xff)
}

fn state(discovery: bool) -> ConnectionMakerState {
    ConnectionMakerState::new(us(), PORT, discovery, 7)
}

fn sorted(mut addrs: Vec<String>) -> Vec<String> {
    addrs.sort();
    addrs
}

fn strings(addrs: &[&str]) -> Vec<String> {
    addrs.iter().map(|a| a.to_string()).collect()
}

fn sock(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// The instant `addr` is next due; panics (test failure) when it is not waiting.
fn due_at(st: &ConnectionMakerState, addr: &str) -> Instant {
    match st.target(addr).map(Target::state) {
        Some(TargetState::Waiting { at }) => *at,
        other => panic!("{addr} not waiting: {other:?}"),
    }
}

// --- normalisation ---------------------------------------------------------------------------

#[test]
fn normalise_accepts_the_usual_forms() {
    for (input, want) in [
        ("host", "host:6783"),
        ("host:99", "host:99"),
        ("Weave-1.Example.com", "weave-1.example.com:6783"),
        ("1.2.3.4", "1.2.3.4:6783"),
        ("1.2.3.4:99", "1.2.3.4:99"),
        ("[::1]:99", "[::1]:99"),
        ("[::1]", "[::1]:6783"),
        ("[0:0::1]:99", "[::1]:99"),
        ("::1", "[::1]:6783"),
        ("fe80::1", "[fe80::1]:6783"),
        ("host:65535", "host:65535"),
    ] {
        assert_eq!(
            normalise_target(input, PORT).as_deref(),
            Ok(want),
            "{input:?}"
        );
    }
}

#[test]
fn normalise_rejects_malformed_addresses() {
    for bad in [
        "",
        " host",
        "host ",
        "ho st:99",
        "host:",
        ":99",
        "host:abc",
        "host:+99",
        "host:-1",
        "host:65536",
        "host:0",
        "[::1",
        "[::1]99",
        "[::1]:",
        "[1.2.3.4]:99",
        "[nothost]",
        "a:b:c",
        "ho/st",
        "host:99:",
    ] {
        let err = normalise_target(bad, PORT).expect_err(bad);
        let TargetError::Invalid { input, why } = &err;
        assert_eq!(input, bad);
        assert!(!why.is_empty());
        assert!(err.to_string().contains("invalid peer address"));
    }
    let long = format!("{}.com", "a".repeat(260));
    assert!(normalise_target(&long, PORT).is_err());
}

// --- schedule --------------------------------------------------------------------------------

#[test]
fn new_targets_are_due_at_once() {
    let t0 = Instant::now();
    let mut st = state(false);
    st.add_direct(&strings(&["b", "a:1"]), false, t0).unwrap();
    assert_eq!(st.next_wakeup(), Some(t0));
    assert_eq!(st.due(t0, 10), strings(&["a:1", "b:6783"]));
    assert_eq!(st.due(t0, 10), Vec::<String>::new());
    assert_eq!(st.next_wakeup(), None);
}

#[test]
fn backoff_grows_by_the_factor_and_is_capped() {
    let mut now = Instant::now();
    let mut st = state(false);
    st.add_direct(&strings(&["a"]), false, now).unwrap();
    let mut expected = INITIAL_RETRY_INTERVAL;
    let mut reached_cap = false;
    for _ in 0..40 {
        assert_eq!(st.due(now, 1), strings(&["a:6783"]));
        assert_eq!(st.target("a:6783").unwrap().retry_interval(), expected);
        st.attempt_failed("a:6783", None, "refused".into(), true, now);
        let delay = due_at(&st, "a:6783") - now;
        // The delay drawn is jittered around the interval in force before this failure.
        assert!(
            delay >= expected / 2 && delay <= expected * 3 / 2,
            "{delay:?}"
        );
        expected = expected
            .mul_f64(RETRY_BACKOFF_FACTOR)
            .min(MAX_RETRY_INTERVAL);
        reached_cap |= expected == MAX_RETRY_INTERVAL;
        now += delay;
    }
    assert!(reached_cap);
    assert_eq!(
        st.target("a:6783").unwrap().retry_interval(),
        MAX_RETRY_INTERVAL
    );
}

#[test]
fn backoff_intervals_follow_weave_net() {
    let now = Instant::now();
    let mut st = state(false);
    st.add_direct(&strings(&["a"]), false, now).unwrap();
    let mut seen = vec![];
    for _ in 0..3 {
        st.due(due_at(&st, "a:6783"), 1);
        st.attempt_failed("a:6783", None, "x".into(), true, now);
        seen.push(st.target("a:6783").unwrap().retry_interval());
    }
    assert_eq!(
        seen,
        vec![
            secs(3),
            Duration::from_millis(4500),
            Duration::from_millis(6750)
        ]
    );
}

#[test]
fn jitter_stays_within_half_to_one_and_a_half_intervals() {
    let now = Instant::now();
    let (mut lowest, mut highest) = (Duration::MAX, Duration::ZERO);
    for seed in 0..500 {
        let mut st = ConnectionMakerState::new(us(), PORT, false, seed);
        st.add_direct(&strings(&["a"]), false, now).unwrap();
        st.due(now, 1);
        st.attempt_failed("a:6783", None, "refused".into(), true, now);
        let delay = due_at(&st, "a:6783") - now;
        assert!(
            delay >= secs(1) && delay <= secs(3),
            "seed {seed}: {delay:?}"
        );
        lowest = lowest.min(delay);
        highest = highest.max(delay);
    }
    // The draws spread over the range rather than sitting on one value.
    assert!(lowest < Duration::from_millis(1200), "{lowest:?}");
    assert!(highest > Duration::from_millis(2800), "{highest:?}");
}

#[test]
fn same_seed_same_schedule() {
    let now = Instant::now();
    let run = |seed| {
        let mut st = ConnectionMakerState::new(us(), PORT, false, seed);
        st.add_direct(&strings(&["a", "b"]), false, now).unwrap();
        st.due(now, 2);
        st.attempt_failed("a:6783", None, "x".into(), true, now);
        st.attempt_failed("b:6783", None, "x".into(), true, now);
        (due_at(&st, "a:6783"), due_at(&st, "b:6783"))
    };
    assert_eq!(run(3), run(3));
}

#[test]
fn success_resets_the_interval() {
    let now = Instant::now();
    let mut st = state(false);
    st.add_direct(&strings(&["a"]), false, now).unwrap();
    for _ in 0..3 {
        st.due(due_at(&st, "a:6783"), 1);
        st.attempt_failed("a:6783", None, "x".into(), true, now);
    }
    st.due(due_at(&st, "a:6783"), 1);
    st.attempt_succeeded("a:6783", name(1), now);
    let target = st.target("a:6783").unwrap();
    assert_eq!(target.retry_interval(), INITIAL_RETRY_INTERVAL);
    assert_eq!(target.last_error(), None);
    assert_eq!(target.peer(), Some(name(1)));
    assert_eq!(
        target.state(),
        &TargetState::Connected {
            peer: name(1),
            since: now
        }
    );
    assert_eq!(st.next_wakeup(), None);
}

#[test]
fn long_lived_link_is_redialled_at_once() {
    let t0 = Instant::now();
    let mut st = state(false);
    st.add_direct(&strings(&["a"]), false, t0).unwrap();
    st.due(t0, 1);
    st.attempt_failed("a:6783", None, "x".into(), true, t0);
    let t1 = due_at(&st, "a:6783");
    st.due(t1, 1);
    st.attempt_succeeded("a:6783", name(1), t1);
    let t2 = t1 + LONG_LIVED_LINK;
    st.link_closed("a:6783", "reset".into(), true, LONG_LIVED_LINK, t2);
    assert_eq!(due_at(&st, "a:6783"), t2);
    assert_eq!(
        st.target("a:6783").unwrap().retry_interval(),
        INITIAL_RETRY_INTERVAL
    );
    assert_eq!(st.due(t2, 1), strings(&["a:6783"]));
}

#[test]
fn short_lived_link_backs_off_like_a_failure() {
    let now = Instant::now();
    let mut st = state(false);
    st.add_direct(&strings(&["a"]), false, now).unwrap();
    st.due(now, 1);
    st.attempt_succeeded("a:6783", name(1), now);
    st.link_closed("a:6783", "reset".into(), true, secs(5), now);
    let delay = due_at(&st, "a:6783") - now;
    assert!(delay >= secs(1) && delay <= secs(3), "{delay:?}");
    assert_eq!(
        st.target("a:6783").unwrap().retry_interval(),
        INITIAL_RETRY_INTERVAL.mul_f64(RETRY_BACKOFF_FACTOR)
    );
    assert_eq!(st.due(now, 1), Vec::<String>::new());
}

#[test]
fn suspended_targets_are_never_due() {
    let now = Instant::now();
    let mut st = state(false);
    st.add_direct(&strings(&["a", "b"]), false, now).unwrap();
    st.due(now, 2);
    st.attempt_failed(
        "a:6783",
        Some(us()),
        "cannot connect to ourself".into(),
        false,
        now,
    );
    st.attempt_succeeded("b:6783", name(2), now);
    st.link_closed("b:6783", "name collision".into(), false, secs(999), now);
    for addr in ["a:6783", "b:6783"] {
        assert!(matches!(
            st.target(addr).unwrap().state(),
            TargetState::Suspended { .. }
        ));
    }
    assert_eq!(st.next_wakeup(), None);
    assert_eq!(st.due(now + secs(100_000), 10), Vec::<String>::new());
    // Stale reports do not revive a suspended target; re-adding it does not either.
    st.attempt_failed("a:6783", None, "late".into(), true, now);
    st.add_direct(&strings(&["a"]), false, now).unwrap();
    assert_eq!(st.due(now + secs(100_000), 10), Vec::<String>::new());
    // Forgetting and connecting again starts over.
    st.forget(&strings(&["a"])).unwrap();
    assert!(st.target("a:6783").is_none());
    st.add_direct(&strings(&["a"]), false, now).unwrap();
    assert_eq!(st.due(now, 10), strings(&["a:6783"]));
}

#[test]
fn permits_limit_what_is_handed_out() {
    let now = Instant::now();
    let mut st = state(false);
    st.add_direct(&strings(&["e", "d", "c", "b", "a"]), false, now)
        .unwrap();
    assert_eq!(st.due(now, 0), Vec::<String>::new());
    assert_eq!(st.due(now, 2), strings(&["a:6783", "b:6783"]));
    assert_eq!(st.due(now, 2), strings(&["c:6783", "d:6783"]));
    assert_eq!(st.due(now, 2), strings(&["e:6783"]));
    assert_eq!(st.due(now, 2), Vec::<String>::new());
}

#[test]
fn not_yet_due_targets_wait() {
    let t0 = Instant::now();
    let mut st = state(false);
    st.add_direct(&strings(&["a", "b"]), false, t0).unwrap();
    st.due(t0, 2);
    st.attempt_failed("a:6783", None, "x".into(), true, t0);
    st.attempt_failed("b:6783", None, "x".into(), true, t0);
    let (a, b) = (due_at(&st, "a:6783"), due_at(&st, "b:6783"));
    assert_eq!(st.next_wakeup(), Some(a.min(b)));
    let first = if a <= b { "a:6783" } else { "b:6783" };
    assert_eq!(
        st.due(a.min(b) - Duration::from_nanos(1), 2),
        Vec::<String>::new()
    );
    assert_eq!(st.due(a.min(b), 2), strings(&[first]));
}

#[test]
fn direct_targets_come_first() {
    let now = Instant::now();
    let mut st = state(true);
    st.add_hints(vec![sock("1.1.1.1:6783")], now);
    st.set_discovered(vec![(name(1), sock("2.2.2.2:6783"))], now);
    st.add_direct(&strings(&["9.9.9.9"]), false, now).unwrap();
    assert_eq!(
        st.due(now, 10),
        strings(&["9.9.9.9:6783", "2.2.2.2:6783", "1.1.1.1:6783"])
    );
}

#[test]
fn targets_leading_to_connected_peers_are_skipped() {
    let now = Instant::now();
    let mut st = state(true);
    st.set_discovered(vec![(name(1), sock("10.0.0.1:6783"))], now);
    st.add_direct(&strings(&["b"]), false, now).unwrap();
    st.set_connected_peers(BTreeSet::from([name(1)]));
    assert_eq!(st.due(now, 10), strings(&["b:6783"]));
    // The skipped target neither spins the actor nor shows as a failed target.
    assert_eq!(st.next_wakeup(), None);
    assert!(
        st.target_statuses(now)
            .iter()
            .all(|s| s.address != "10.0.0.1:6783")
    );
    // A direct target learns its peer in the handshake and is skipped likewise.
    st.attempt_failed("b:6783", Some(name(2)), "closed".into(), true, now);
    st.set_connected_peers(BTreeSet::from([name(1), name(2)]));
    assert_eq!(st.due(now + secs(1000), 10), Vec::<String>::new());
    // Once the peer is gone the overdue target is dialled at once.
    st.set_connected_peers(BTreeSet::from([name(2)]));
    assert_eq!(st.next_wakeup(), Some(now));
    assert_eq!(st.due(now + secs(1000), 10), strings(&["10.0.0.1:6783"]));
}

// --- forget and replace ----------------------------------------------------------------------

#[test]
fn forget_removes_idle_targets() {
    let now = Instant::now();
    let mut st = state(false);
    st.add_direct(&strings(&["a", "b"]), false, now).unwrap();
    st.forget(&strings(&["a:6783", "unknown"])).unwrap();
    assert_eq!(st.direct_targets(), strings(&["b:6783"]));
    assert!(st.target("a:6783").is_none());
    assert_eq!(st.due(now, 10), strings(&["b:6783"]));
}

#[test]
fn forget_during_attempt_lets_it_finish_without_retry() {
    let now = Instant::now();
    let mut st = state(false);
    st.add_direct(&strings(&["a"]), false, now).unwrap();
    assert_eq!(st.due(now, 1), strings(&["a:6783"]));
    st.forget(&strings(&["a"])).unwrap();
    assert_eq!(st.direct_targets(), Vec::<String>::new());
    assert!(st.target("a:6783").is_none());
    assert_eq!(st.target_statuses(now), vec![]);
    // Connecting again while the attempt is under way must not hand it out a second time.
    st.add_direct(&strings(&["a"]), false, now).unwrap();
    assert_eq!(st.due(now, 1), Vec::<String>::new());
    st.forget(&strings(&["a"])).unwrap();
    st.attempt_failed("a:6783", None, "refused".into(), true, now);
    assert!(st.targets.is_empty());
    assert_eq!(st.next_wakeup(), None);
}

#[test]
fn forget_while_connected_drops_the_target_when_the_link_ends() {
    let now = Instant::now();
    let mut st = state(false);
    st.add_direct(&strings(&["a"]), false, now).unwrap();
    st.due(now, 1);
    st.attempt_succeeded("a:6783", name(1), now);
    st.forget(&strings(&["a"])).unwrap();
    assert!(st.targets.contains_key("a:6783"));
    st.link_closed("a:6783", "eof".into(), true, secs(3600), now);
    assert!(st.targets.is_empty());
    assert_eq!(st.due(now, 1), Vec::<String>::new());
}

#[test]
fn invalid_addresses_change_nothing() {
    let now = Instant::now();
    let mut st = state(false);
    st.add_direct(&strings(&["a", "b"]), false, now).unwrap();
    assert!(
        st.add_direct(&strings(&["c", "bad host"]), true, now)
            .is_err()
    );
    assert!(st.forget(&strings(&["a", "x:notaport"])).is_err());
    assert_eq!(st.direct_targets(), strings(&["a:6783", "b:6783"]));
}

#[test]
fn replace_drops_direct_targets_not_listed() {
    let now = Instant::now();
    let mut st = state(true);
    st.add_direct(&strings(&["a", "b", "c"]), false, now)
        .unwrap();
    st.set_discovered(vec![(name(3), sock("10.0.0.3:6783"))], now);
    assert_eq!(st.due(now, 1), strings(&["a:6783"]));
    st.add_direct(&strings(&["c", "d"]), true, now).unwrap();
    assert_eq!(st.direct_targets(), strings(&["c:6783", "d:6783"]));
    // `a` was attempting: it lingers, invisible, until its outcome comes in.
    assert!(st.target("a:6783").is_none());
    assert!(st.targets.contains_key("a:6783"));
    assert!(!st.targets.contains_key("b:6783"));
    // Discovered targets are not touched by a replace.
    assert!(st.target("10.0.0.3:6783").is_some());
    st.attempt_succeeded("a:6783", name(1), now);
    st.link_closed("a:6783", "eof".into(), true, secs(1), now);
    assert!(!st.targets.contains_key("a:6783"));
}

#[test]
fn add_direct_keeps_existing_schedules() {
    let now = Instant::now();
    let mut st = state(false);
    st.add_direct(&strings(&["a"]), false, now).unwrap();
    st.due(now, 1);
    st.attempt_failed("a:6783", None, "x".into(), true, now);
    let at = due_at(&st, "a:6783");
    st.add_direct(&strings(&["a:6783"]), false, now).unwrap();
    assert_eq!(due_at(&st, "a:6783"), at);
}

// --- status ----------------------------------------------------------------------------------

#[test]
fn statuses_describe_each_unconnected_target() {
    let t0 = Instant::now();
    let mut st = state(false);
    st.add_direct(&strings(&["a", "b", "c", "d", "e"]), false, t0)
        .unwrap();
    st.due(t0, 5); // a..e attempting
    st.attempt_failed("c:6783", None, "refused".into(), true, t0);
    st.due(due_at(&st, "c:6783"), 1); // c retrying: the only one waiting
    st.attempt_failed("b:6783", None, "refused".into(), true, t0);
    st.attempt_failed(
        "d:6783",
        Some(us()),
        "cannot connect to ourself".into(),
        false,
        t0,
    );
    st.attempt_succeeded("e:6783", name(5), t0);
    st.add_direct(&strings(&["f"]), false, t0).unwrap(); // waiting, never tried

    let now = t0 + Duration::from_millis(100);
    let b_left = (due_at(&st, "b:6783") - now).as_secs_f64().ceil() as u64;
    let got: Vec<(String, ConnectionState, String)> = st
        .target_statuses(now)
        .into_iter()
        .map(|s| {
            assert!(s.outbound);
            assert_eq!(s.nick_name, None);
            assert_eq!(s.overlay, None);
            assert!(s.attrs.is_empty());
            (s.address, s.state, s.info)
        })
        .collect();
    let want = vec![
        ("a:6783", ConnectionState::Connecting, String::new()),
        (
            "b:6783",
            ConnectionState::Failed,
            format!("refused, retry: {b_left}s"),
        ),
        ("c:6783", ConnectionState::Retrying, "refused".to_string()),
        (
            "d:6783",
            ConnectionState::Failed,
            "cannot connect to ourself".to_string(),
        ),
        ("f:6783", ConnectionState::Connecting, String::new()),
    ];
    let want: Vec<(String, ConnectionState, String)> = want
        .into_iter()
        .map(|(a, s, i)| (a.to_string(), s, i))
        .collect();
    assert_eq!(got, want);
    let d = st.target_statuses(now);
    assert_eq!(
        d.iter().find(|s| s.address == "d:6783").unwrap().peer,
        Some(us())
    );
}

#[test]
fn retry_seconds_round_up() {
    let t0 = Instant::now();
    assert_eq!(seconds_until(t0, t0), 0);
    assert_eq!(seconds_until(t0 + secs(5), t0), 0);
    assert_eq!(seconds_until(t0, t0 + Duration::from_millis(1)), 1);
    assert_eq!(seconds_until(t0, t0 + secs(2)), 2);
    assert_eq!(seconds_until(t0, t0 + Duration::from_millis(2001)), 3);
}

#[test]
fn reports_for_unknown_targets_are_ignored() {
    let now = Instant::now();
    let mut st = state(false);
    st.attempt_succeeded("nowhere:1", name(1), now);
    st.attempt_failed("nowhere:1", None, "x".into(), true, now);
    st.link_closed("nowhere:1", "x".into(), true, secs(1), now);
    assert!(st.targets.is_empty());
}

#[test]
fn a_target_known_to_lead_to_a_linked_peer_is_not_dialled() {
    let now = Instant::now();
    let mut st = state(true);
    st.add_direct(&strings(&["10.0.0.2"]), false, now).unwrap();
    assert_eq!(st.due(now, 10), strings(&["10.0.0.2:6783"]));
    st.attempt_failed(
        "10.0.0.2:6783",
        None,
        "connection refused".into(),
        true,
        now,
    );
    // Meanwhile peer 2 dialled us; gossip says it listens on the address of our target.
    st.learn_peer_addresses(&[(name(2), sock("10.0.0.2:6783"))]);
    st.set_connected_peers(BTreeSet::from([name(2)]));
    assert!(st.due(now + MAX_RETRY_INTERVAL * 2, 10).is_empty());
    // When that link goes, the target is dialled again.
    st.set_connected_peers(BTreeSet::new());
    assert_eq!(
        st.due(now + MAX_RETRY_INTERVAL * 2, 10),
        strings(&["10.0.0.2:6783"])
    );
}

mod properties;

mod discovery;

mod rebalancing;

mod simulation;
