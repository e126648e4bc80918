//! End-to-end tests of IP address management: routers on loopback sharing one range through the
//! ring, over their real HTTP API.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;

const CONVERGE: Duration = Duration::from_secs(30);

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .into()
}

/// `POST /ip/{id}`: the allocated CIDR, or the status and body of a refusal.
fn allocate(router: &Router, id: &str) -> Result<String, (u16, String)> {
    let mut response = agent()
        .post(format!("http://{}/ip/{id}", router.http_addr()))
        .send_empty()
        .map_err(|err| (0, err.to_string()))?;
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    if status == 200 {
        Ok(body.trim().to_string())
    } else {
        Err((status, body))
    }
}

fn lookup(router: &Router, id: &str) -> Option<String> {
    let mut response = agent()
        .get(format!("http://{}/ip/{id}", router.http_addr()))
        .call()
        .ok()?;
    (response.status().as_u16() == 200)
        .then(|| response.body_mut().read_to_string().ok())
        .flatten()
        .map(|body| body.trim().to_string())
}

fn ipam_report(router: &Router) -> Option<serde_json::Value> {
    router.report().map(|report| report["IPAM"].clone())
}

fn with_init(init: &str, peers: Vec<String>) -> RouterOpts {
    RouterOpts {
        peers,
        extra: vec!["--ipalloc-init".into(), init.into()],
        ..Default::default()
    }
}

#[test]
fn three_routers_hand_out_300_distinct_addresses_and_share_the_range() {
    const BLOCK: u8 = 121;
    let routers = star(BLOCK, 3, with_init("consensus=3", vec![]));
    // star() gives every router but the first router 1 as its peer; consensus needs all three.
    assert!(wait_until(CONVERGE, || fully_routed(&routers)));
    let addresses: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..300)
            .map(|i| {
                let router = &routers[i % 3];
                scope.spawn(move || allocate(router, &format!("container-{i}")))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap().expect("allocation"))
            .collect()
    });
    let distinct: BTreeSet<&String> = addresses.iter().collect();
    assert_eq!(distinct.len(), 300, "every allocation got its own address");
    assert!(
        addresses
            .iter()
            .all(|a| a.starts_with("10.") && a.ends_with("/12"))
    );
    // Same id again: the same address (idempotent).
    assert_eq!(allocate(&routers[0], "container-0").unwrap(), addresses[0]);
    for router in &routers {
        let ipam = ipam_report(router).expect("report");
        assert_eq!(ipam["Status"], "ready");
        let ours = ipam["Entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["Peer"] == router.name.as_str())
            .expect("we own part of the range")
            .clone();
        let percent = ours["Percent"].as_f64().unwrap();
        assert!(
            (30.0..37.0).contains(&percent),
            "{} owns {percent}%",
            router.nickname
        );
    }
    let metrics = agent()
        .get(format!("http://{}:6782/metrics", routers[0].ip))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    for expected in [
        "weave_max_ips 1048576",
        "weave_ips{state=\"local-used\"}",
        "weave_ipam_unreachable_count 0",
        "weave_ipam_pending_allocates 0",
        "weave_ipam_pending_claims 0",
    ] {
        assert!(
            metrics.contains(expected),
            "metrics lack {expected}:\n{metrics}"
        );
    }
    let text = String::from_utf8_lossy(&routers[0].cli(&["status", "ipam"]).stdout).to_string();
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(text.lines().next().unwrap().contains(" active)"), "{text}");
    let status = String::from_utf8_lossy(&routers[0].cli(&["status"]).stdout).to_string();
    assert!(status.contains("        Service: ipam\n         Status: ready\n          Range: 10.32.0.0/12\n  DefaultSubnet: 10.32.0.0/12"), "{status}");
}

#[test]
fn a_lone_router_allocates_at_once_and_a_newcomer_gets_space_by_donation() {
    const BLOCK: u8 = 122;
    let mut routers = vec![Router::start(BLOCK, 1, RouterOpts::default())];
    assert!(wait_until(CONVERGE, || routers[0].report().is_some()));
    let lone = allocate(&routers[0], "alone").expect("a router alone allocates at once");
    assert_eq!(
        lone, "10.32.0.1/12",
        "lowest address, never the network address"
    );
    routers.push(Router::start(
        BLOCK,
        2,
        RouterOpts {
            peers: vec![routers[0].mesh_addr()],
            ..Default::default()
        },
    ));
    assert!(wait_until(CONVERGE, || fully_routed(&routers)));
    let donated = allocate(&routers[1], "newcomer").expect("space donated by the first router");
    assert_ne!(donated, lone);
    let ipam = ipam_report(&routers[1]).unwrap();
    let owners: Vec<&str> = ipam["Entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["Addresses"].as_u64().unwrap() > 0)
        .filter_map(|e| e["Peer"].as_str())
        .collect();
    assert!(
        owners.contains(&routers[1].name.as_str()),
        "the newcomer owns space: {ipam}"
    );
    assert!(owners.contains(&routers[0].name.as_str()));
}

/// `PUT /ip/{id}/{ip}/{prefix}` (a claim): the status.
fn claim(router: &Router, id: &str, ip: &str, prefix: &str) -> u16 {
    agent()
        .put(format!(
            "http://{}/ip/{id}/{ip}/{prefix}",
            router.http_addr()
        ))
        .send_empty()
        .map_or(0, |response| response.status().as_u16())
}

#[test]
fn a_claim_with_a_prefix_beyond_32_is_a_bad_request() {
    const BLOCK: u8 = 232;
    let router = Router::start(BLOCK, 1, with_init("consensus=1", vec![]));
    assert!(wait_until(CONVERGE, || allocate(&router, "first").is_ok()));
    for prefix in ["33", "64", "255", "256", "-1", "x"] {
        assert_eq!(claim(&router, "c", "10.32.0.9", prefix), 400, "/{prefix}");
    }
    // The handler is still there, and a good claim of a host address works.
    assert_eq!(claim(&router, "c", "10.32.0.9", "12"), 204);
    assert_eq!(lookup(&router, "c").as_deref(), Some("10.32.0.9/12"));
}

#[test]
fn allocations_survive_kill_9_and_are_never_handed_out_twice() {
    const BLOCK: u8 = 123;
    let mut routers = star(BLOCK, 2, with_init("consensus=2", vec![]));
    assert!(wait_until(CONVERGE, || fully_routed(&routers)));
    let before: Vec<String> = (0..20)
        .map(|i| allocate(&routers[1], &format!("pod-{i}")).expect("allocation"))
        .collect();
    routers[1].kill9();
    // Meanwhile the other router hands out plenty: none of these may be one of ours.
    let others: BTreeSet<String> = (0..50)
        .map(|i| allocate(&routers[0], &format!("other-{i}")).expect("allocation"))
        .collect();
    for address in &before {
        assert!(!others.contains(address), "{address} handed out twice");
    }
    routers[1].restart();
    assert!(wait_until(CONVERGE, || routers[1].report().is_some()));
    for (i, address) in before.iter().enumerate() {
        assert_eq!(
            lookup(&routers[1], &format!("pod-{i}")).as_deref(),
            Some(address.as_str())
        );
    }
    // And the restarted router carries on from where it was.
    let next = allocate(&routers[1], "after-restart").expect("allocation");
    assert!(!before.contains(&next) && !others.contains(&next));
}

/// How many allocations may be tried on a full disk before one must fail: every allocation
/// rewrites the whole state, so the database soon needs pages the file system no longer has.
const ALLOCATIONS_UNTIL_FULL: usize = 2000;

#[test]
fn no_allocation_is_answered_before_it_is_on_disk_and_the_store_recovers_with_the_space() {
    const BLOCK: u8 = 233;
    // 4 MiB: room for the database's first pages, and quickly full.
    let disk = Tmpfs::mount(4096);
    let opts = RouterOpts {
        db_dir: Some(disk.path().to_path_buf()),
        ..with_init("consensus=1", vec![])
    };
    let mut router = Router::start(BLOCK, 1, opts);
    assert!(wait_until(CONVERGE, || allocate(&router, "before").is_ok()));
    let mut answered = vec![(
        "before".to_string(),
        lookup(&router, "before").expect("held"),
    )];

    disk.fill("filler");
    let mut failed = None;
    for i in 0..ALLOCATIONS_UNTIL_FULL {
        let id = format!("full-{i}");
        match allocate(&router, &id) {
            Ok(cidr) => answered.push((id, cidr)),
            Err((500, _)) => {
                failed = Some(id);
                break;
            }
            Err(other) => panic!("{id}: {other:?}"),
        }
    }
    let failed = failed.expect("an allocation fails once the disk is full");
    // Retried (as CNI ADD does), the same id must not be answered from memory alone.
    for _ in 0..3 {
        match allocate(&router, &failed) {
            Ok(cidr) => answered.push((failed.clone(), cidr)),
            Err((status, body)) => assert_eq!(status, 500, "{body}"),
        }
    }
    if !answered.iter().any(|(id, _)| *id == failed) {
        assert_eq!(
            lookup(&router, &failed),
            None,
            "memory is not ahead of the disk"
        );
    }

    disk.free("filler");
    let after = allocate(&router, "after-free").expect("the store recovers with the space");
    answered.push(("after-free".to_string(), after));
    if !answered.iter().any(|(id, _)| *id == failed) {
        let cidr = allocate(&router, &failed).expect("the failed id gets an address now");
        answered.push((failed.clone(), cidr));
    }

    router.restart();
    assert!(wait_until(CONVERGE, || router.report().is_some()));
    for (id, cidr) in &answered {
        assert_eq!(
            lookup(&router, id).as_deref(),
            Some(cidr.as_str()),
            "{id} was answered, so it must survive a restart"
        );
    }
}

#[test]
fn separately_seeded_clusters_refuse_to_merge_and_an_empty_one_adopts_the_other() {
    const BLOCK: u8 = 124;
    let a = Router::start(
        BLOCK,
        1,
        with_init(&format!("seed={}", peer_name(BLOCK, 1)), vec![]),
    );
    let b = Router::start(
        BLOCK,
        2,
        with_init(&format!("seed={}", peer_name(BLOCK, 2)), vec![]),
    );
    assert!(wait_until(CONVERGE, || a.report().is_some() && b.report().is_some()));
    allocate(&a, "on-a").expect("allocation on a");
    allocate(&b, "on-b").expect("allocation on b");
    let connect = b.cli(&["connect", &a.mesh_addr()]);
    assert!(connect.status.success());
    assert!(
        wait_until(CONVERGE, || a.log_contains("cannot merge")
            || b.log_contains("cannot merge")),
        "the split brain is named in the logs"
    );
    let warned = wait_until(CONVERGE, || {
        [&a, &b].iter().any(|r| {
            ipam_report(r).is_some_and(|ipam| {
                ipam["Warning"]
                    .as_str()
                    .is_some_and(|w| w.contains("weave reset"))
            })
        })
    });
    assert!(warned, "the status names the way out");
    // A third cluster whose only allocation is gone adopts the other ring on contact.
    let c = Router::start(
        BLOCK,
        3,
        with_init(&format!("seed={}", peer_name(BLOCK, 3)), vec![]),
    );
    assert!(wait_until(CONVERGE, || c.report().is_some()));
    allocate(&c, "temporary").expect("allocation on c");
    let freed = agent()
        .delete(format!("http://{}/ip/temporary", c.http_addr()))
        .call()
        .unwrap();
    assert_eq!(freed.status().as_u16(), 204);
    assert!(c.cli(&["connect", &a.mesh_addr()]).status.success());
    assert!(
        wait_until(CONVERGE, || ipam_report(&c).is_some_and(|ipam| {
            ipam["Warning"]
                .as_str()
                .is_some_and(|w| w.contains("adopted"))
        })),
        "the empty side adopts: {:?}",
        ipam_report(&c)
    );
    let after = allocate(&c, "after-adoption").expect("allocation after adoption");
    assert_ne!(after, lookup(&a, "on-a").unwrap());
}

#[test]
fn rmpeer_takes_over_a_dead_peers_ranges_and_reset_hands_ours_over() {
    const BLOCK: u8 = 125;
    let mut routers = star(BLOCK, 3, with_init("consensus=3", vec![]));
    assert!(wait_until(CONVERGE, || fully_routed(&routers)));
    for (i, router) in routers.iter().enumerate() {
        allocate(router, &format!("pod-{i}")).expect("allocation");
    }
    let owned = agent()
        .get(format!("http://{}/ip", routers[0].http_addr()))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(owned.contains("\"containerid\":\"pod-0\""), "{owned}");

    // A dead peer's ranges are taken over by one live peer, by nickname.
    let dead = routers[2].nickname.clone();
    routers[2].kill9();
    let victim = routers[2].name.clone();
    assert!(wait_until(CONVERGE, || {
        ipam_report(&routers[0]).is_some_and(|ipam| {
            ipam["Entries"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["Peer"] == victim.as_str() && e["Reachable"] == false)
        })
    }));
    let output = routers[0].cli(&["rmpeer", &dead]);
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(output.status.success(), "{output:?}");
    assert!(text.contains("IPs taken over from"), "{text}");
    let share = |router: &Router, of: &Router| -> f64 {
        ipam_report(router).unwrap()["Entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["Peer"] == of.name.as_str())
            .map(|e| e["Percent"].as_f64().unwrap())
            .sum()
    };
    assert!(
        share(&routers[0], &routers[0]) > 60.0,
        "took over a third more"
    );

    // A leaving peer hands its ranges to a live one (--ipam-only: these routers share the test
    // runner's namespace, whose devices are not ours to remove).
    let output = routers[1].cli(&["reset", "--ipam-only"]);
    assert!(output.status.success(), "{output:?}");
    assert!(
        wait_until(CONVERGE, || share(&routers[0], &routers[0]) > 99.0),
        "the live peer owns everything: {:?}",
        ipam_report(&routers[0])
    );
}
