//! Property tests of the connection maker: random sequences of operations never hand a target
//! out twice, never exceed the permits, and keep the wake-up time honest.

use super::*;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    AddDirect(Vec<usize>, bool),
    Forget(Vec<usize>),
    Discover(Vec<(u64, usize)>),
    Hint(Vec<usize>),
    Connected(Vec<u64>),
    Due(usize),
    Succeeded(usize, u64),
    Failed(usize, Option<u64>, bool),
    Closed(usize, bool, u64),
    Advance(u64),
}

const POOL: usize = 6;

fn pool_addr(i: usize) -> String {
    format!("10.0.0.{}:{PORT}", i % POOL + 1)
}

fn op() -> impl Strategy<Value = Op> {
    let idx = 0..POOL;
    let peer = 1u64..5;
    prop_oneof![
        1 => (prop::collection::vec(idx.clone(), 0..4), any::<bool>())
            .prop_map(|(a, r)| Op::AddDirect(a, r)),
        1 => prop::collection::vec(idx.clone(), 0..3).prop_map(Op::Forget),
        1 => prop::collection::vec((peer.clone(), idx.clone()), 0..4).prop_map(Op::Discover),
        1 => prop::collection::vec(idx.clone(), 0..3).prop_map(Op::Hint),
        1 => prop::collection::vec(peer.clone(), 0..3).prop_map(Op::Connected),
        3 => (0usize..4).prop_map(Op::Due),
        2 => (idx.clone(), peer.clone()).prop_map(|(a, p)| Op::Succeeded(a, p)),
        2 => (idx.clone(), prop::option::of(peer.clone()), any::<bool>())
            .prop_map(|(a, p, r)| Op::Failed(a, p, r)),
        1 => (idx, any::<bool>(), 0u64..120).prop_map(|(a, r, l)| Op::Closed(a, r, l)),
        2 => (0u64..400).prop_map(Op::Advance),
    ]
}

proptest! {
    /// Whatever the actor does, `due` never hands out more than `permits` addresses, never the
    /// same one twice in a call, and never one whose previous attempt has not been reported.
    #[test]
    fn due_never_hands_out_a_target_twice(
        seed in any::<u64>(),
        ops in prop::collection::vec(op(), 1..80),
    ) {
        let mut now = Instant::now();
        let mut st = ConnectionMakerState::new(us(), PORT, true, seed);
        let mut outstanding: BTreeSet<String> = BTreeSet::new();
        for op in ops {
            match op {
                Op::AddDirect(idx, replace) => {
                    let addrs: Vec<String> = idx.into_iter().map(pool_addr).collect();
                    prop_assert!(st.add_direct(&addrs, replace, now).is_ok());
                }
                Op::Forget(idx) => {
                    let addrs: Vec<String> = idx.into_iter().map(pool_addr).collect();
                    prop_assert!(st.forget(&addrs).is_ok());
                }
                Op::Discover(entries) => {
                    let entries = entries
                        .into_iter()
                        .map(|(p, i)| (name(p), pool_addr(i).parse().unwrap()))
                        .collect();
                    st.set_discovered(entries, now);
                }
                Op::Hint(idx) => {
                    let addrs = idx.into_iter().map(|i| pool_addr(i).parse().unwrap()).collect();
                    st.add_hints(addrs, now);
                }
                Op::Connected(peers) => {
                    st.set_connected_peers(peers.into_iter().map(name).collect());
                }
                Op::Due(permits) => {
                    let got = st.due(now, permits);
                    prop_assert!(got.len() <= permits);
                    let unique: BTreeSet<&String> = got.iter().collect();
                    prop_assert_eq!(unique.len(), got.len());
                    for addr in got {
                        prop_assert!(
                            outstanding.insert(addr.clone()),
                            "{} handed out again without a report", addr
                        );
                    }
                }
                Op::Succeeded(i, p) => {
                    let addr = pool_addr(i);
                    st.attempt_succeeded(&addr, name(p), now);
                    outstanding.remove(&addr);
                }
                Op::Failed(i, p, retry) => {
                    let addr = pool_addr(i);
                    st.attempt_failed(&addr, p.map(name), "err".into(), retry, now);
                    outstanding.remove(&addr);
                }
                Op::Closed(i, retry, lived) => {
                    let addr = pool_addr(i);
                    st.link_closed(&addr, "eof".into(), retry, secs(lived), now);
                    outstanding.remove(&addr);
                }
                Op::Advance(s) => now += secs(s),
            }
            // Statuses and the wakeup are always computable, and the wakeup is never for a
            // target that `due` could not hand out.
            let _ = st.target_statuses(now);
            if let Some(at) = st.next_wakeup() {
                prop_assert!(!st.clone_due(at).is_empty());
            }
        }
    }

    #[test]
    fn normalise_never_panics(input in ".{0,40}") {
        let _ = normalise_target(&input, PORT);
    }
}

impl ConnectionMakerState {
    /// What `due(at, ∞)` would return, without changing anything.
    fn clone_due(&self, at: Instant) -> Vec<String> {
        let mut copy = ConnectionMakerState {
            our_name: self.our_name,
            default_port: self.default_port,
            discovery: self.discovery,
            conn_limit: self.conn_limit,
            targets: self.targets.clone(),
            connected_peers: self.connected_peers.clone(),
            rng: StdRng::seed_from_u64(0),
            // A full budget: the wakeup is about the schedule, the budget only delays it.
            dial_budget: DialBudget::default(),
            backoffs: BackoffMemory::default(),
            mesh: self.mesh.clone(),
            near: self.near.clone(),
            rebalancer: Rebalancer::new(0),
            rebalance_dials: BTreeMap::new(),
            view_lagging_since: None,
            peer_addresses: self.peer_addresses.clone(),
        };
        copy.due(at, usize::MAX)
    }
}
