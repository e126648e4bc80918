//! End-to-end tests of failures: killed and frozen routers, malformed bytes on the mesh port,
//! name collisions, and the connection limit.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;

const CONVERGE: Duration = Duration::from_secs(30);

#[test]
fn a_killed_router_is_dropped_and_rejoins_when_restarted() {
    let mut routers = star(111, 3, RouterOpts::default());
    assert!(wait_until(CONVERGE, || fully_routed(&routers)));
    let old_uid = routers[0].report().unwrap()["Peers"][0]["UID"].clone();
    let victim = routers[2].name.clone();
    routers[2].kill9();
    // Killing closes its sockets, so the others notice at once, well inside the read timeout.
    assert!(wait_until(Duration::from_secs(2), || {
        routers[..2]
            .iter()
            .all(|r| !r.peer_names().contains(&victim))
    }));
    assert!(routers[0].log_contains("Removed unreachable peer"));
    assert!(routers[0].log_contains("connection shutting down due to error"));
    routers[2].restart();
    assert!(
        wait_until(CONVERGE, || fully_routed(&routers)),
        "restarted router did not rejoin"
    );
    let peers = routers[0].report().unwrap()["Peers"].clone();
    let restarted = peers
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["Name"] == victim.as_str())
        .unwrap()
        .clone();
    assert_ne!(restarted["UID"], old_uid, "a restart is a new incarnation");
}

#[test]
fn a_frozen_router_is_detected_within_the_read_timeout() {
    let routers = star(112, 3, RouterOpts::default());
    assert!(wait_until(CONVERGE, || fully_routed(&routers)));
    let frozen = routers[2].name.clone();
    // SIGSTOP keeps its sockets open but silent: only the heartbeat timeout (2 s) can tell.
    routers[2].signal("STOP");
    let detected = wait_until(Duration::from_secs(5), || {
        routers[..2]
            .iter()
            .all(|r| !r.established_links().contains(&frozen))
    });
    routers[2].signal("CONT");
    assert!(
        detected,
        "a silent peer was not dropped within the read timeout"
    );
    assert!(routers[0].log_contains("timed out waiting for a heartbeat"));
}

#[test]
fn malformed_bytes_close_only_their_own_connection() {
    let routers = star(113, 2, RouterOpts::default());
    assert!(wait_until(CONVERGE, || fully_routed(&routers)));
    let before = routers[0].report().unwrap();
    let attacks: Vec<Vec<u8>> = vec![
        // Random bytes: bad magic.
        (0..64u8)
            .map(|i| i.wrapping_mul(37).wrapping_add(11))
            .collect(),
        // A good header (protocol version 2), then a length prefix far over the limit.
        [b"weft\x02\x02".as_slice(), &u32::MAX.to_be_bytes()].concat(),
        // A good header and a truncated hello, then the socket closes.
        [
            b"weft\x02\x02".as_slice(),
            &100u32.to_be_bytes(),
            b"\x81\xa8",
        ]
        .concat(),
        // A good header and a hello that is not MessagePack.
        [
            b"weft\x02\x02".as_slice(),
            &4u32.to_be_bytes(),
            b"\xc1\xc1\xc1\xc1",
        ]
        .concat(),
        // An incompatible protocol version.
        b"weft\x09\x09".to_vec(),
    ];
    for attack in attacks {
        let mut stream = TcpStream::connect(routers[0].mesh_addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream.write_all(&attack).unwrap();
        let _ = stream.shutdown(std::net::Shutdown::Write);
        // The router answers with its own header and hello, then closes: read to the end.
        let mut sink = Vec::new();
        let _ = stream.read_to_end(&mut sink);
    }
    // A client that connects and says nothing is dropped when the handshake times out (1 s here).
    let mut silent = TcpStream::connect(routers[0].mesh_addr()).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let started = std::time::Instant::now();
    let mut sink = Vec::new();
    let _ = silent.read_to_end(&mut sink);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "silent client not dropped in time"
    );
    assert!(
        sink.starts_with(b"weft"),
        "the router presents its header first"
    );
    let after = routers[0].report().expect("router still serving");
    assert_eq!(
        routers[0].established_links(),
        vec![routers[1].name.clone()]
    );
    assert_eq!(
        before["TerminationCount"], after["TerminationCount"],
        "the good link must be untouched"
    );
    assert!(routers[0].log_contains("protocol error"));
    // The line is written as the link actor goes away, just after its socket closed.
    assert!(wait_until(Duration::from_secs(2), || routers[0]
        .log_contains("timed out waiting for the handshake")));
}

#[test]
fn a_name_collision_is_refused_and_never_retried() {
    const BLOCK: u8 = 114;
    let one = Router::start(BLOCK, 1, RouterOpts::default());
    let impostor = Router::start(
        BLOCK,
        2,
        RouterOpts {
            name: Some(one.name.clone()),
            peers: vec![one.mesh_addr()],
            ..Default::default()
        },
    );
    assert!(wait_until(CONVERGE, || impostor.log_contains("peer names collision")));
    std::thread::sleep(Duration::from_secs(3));
    let attempts = impostor
        .log_lines()
        .iter()
        .filter(|line| line.contains("attempting connection"))
        .count();
    assert_eq!(attempts, 1, "a collision must not be retried");
    assert!(one.established_links().is_empty());
}

#[test]
fn the_connection_limit_holds_and_every_pair_stays_routable() {
    const LIMIT: u32 = 2;
    let routers = star(
        115,
        6,
        RouterOpts {
            conn_limit: Some(LIMIT),
            ..Default::default()
        },
    );
    assert!(
        wait_until(Duration::from_secs(60), || fully_routed(&routers)),
        "partial mesh did not converge"
    );
    let mut refused = 0;
    for (index, router) in routers.iter().enumerate() {
        let report = router.report().unwrap();
        let links = router.established_links().len();
        assert!(
            links <= LIMIT as usize,
            "{} holds {links} links",
            router.nickname
        );
        refused += report["RefusedForLimitCount"].as_u64().unwrap();
        for other in &routers {
            if other.name != router.name {
                assert!(hops(&routers, index, &other.name).is_some());
            }
        }
    }
    assert!(
        refused > 0,
        "with 6 routers and a limit of 2, someone must have been refused"
    );
    let multi_hop = routers.iter().enumerate().any(|(index, router)| {
        routers
            .iter()
            .filter(|other| other.name != router.name)
            .any(|other| hops(&routers, index, &other.name).unwrap_or(0) > 1)
    });
    assert!(
        multi_hop,
        "a limit of 2 among 6 routers needs multi-hop routes"
    );
    let metrics = get_text(&format!("http://{}:6782/metrics", routers[0].ip)).unwrap_or_default();
    assert!(metrics.contains("weave_connections{"), "{metrics}");
}

#[test]
fn a_newcomer_that_only_knows_a_full_peer_still_joins() {
    const BLOCK: u8 = 116;
    let hub = Router::start(
        BLOCK,
        1,
        RouterOpts {
            conn_limit: Some(2),
            ..Default::default()
        },
    );
    let mut routers = vec![hub];
    for index in 2..=4 {
        routers.push(Router::start(
            BLOCK,
            index,
            RouterOpts {
                peers: vec![routers[0].mesh_addr()],
                ..Default::default()
            },
        ));
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(wait_until(Duration::from_secs(60), || fully_routed(
        &routers
    )));
    assert_eq!(
        routers[0].established_links().len(),
        2,
        "the hub holds exactly its limit"
    );
    assert!(
        routers[1..]
            .iter()
            .any(|r| r.log_contains("connection limit reached")),
        "someone was refused with a typed reason"
    );
}
