//! End-to-end tests of the control plane: real router processes on loopback addresses forming a
//! mesh, and the CLI talking to them.

mod common;

use std::time::Duration;

use common::*;

const CONVERGE: Duration = Duration::from_secs(30);

#[test]
fn routers_form_a_full_mesh_and_agree_on_routes() {
    const BLOCK: u8 = 101;
    let first = Router::start(BLOCK, 1, RouterOpts::default());
    let seed = vec![first.mesh_addr()];
    let mut routers = vec![first];
    for index in 2..=4 {
        routers.push(Router::start(
            BLOCK,
            index,
            RouterOpts {
                peers: seed.clone(),
                ..Default::default()
            },
        ));
    }
    assert!(
        wait_until(CONVERGE, || fully_routed(&routers)),
        "mesh did not converge"
    );
    // Discovery turns the star into a full mesh: every router ends up linked to the three others.
    assert!(
        wait_until(CONVERGE, || routers
            .iter()
            .all(|r| r.established_links().len() == 3)),
        "not a full mesh"
    );
    for (index, router) in routers.iter().enumerate() {
        let mut peers = router.peer_names();
        peers.sort();
        let mut expected: Vec<String> = routers.iter().map(|r| r.name.clone()).collect();
        expected.sort();
        assert_eq!(peers, expected, "peers known to {}", router.nickname);
        // Once every record has gone round, every route is the direct link.
        assert!(wait_until(CONVERGE, || {
            routers
                .iter()
                .filter(|other| other.name != router.name)
                .all(|other| hops(&routers, index, &other.name) == Some(1))
        }));
        let output = router.cli(&["status", "peers"]);
        assert!(output.status.success());
        let text = String::from_utf8_lossy(&output.stdout);
        for other in &routers {
            assert!(
                text.contains(&format!("{}({})", other.name, other.nickname)),
                "`weft status peers` of {} lacks {}:\n{text}",
                router.nickname,
                other.nickname
            );
        }
    }
    let status = routers[0].cli(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("        Service: router"), "{text}");
    assert!(
        text.contains("          Peers: 4 (with 12 established connections)"),
        "{text}"
    );
}

#[test]
fn the_binary_is_the_weave_cli_when_called_weave() {
    const BLOCK: u8 = 102;
    let router = Router::start(BLOCK, 1, RouterOpts::default());
    let dir = tempfile::tempdir().unwrap();
    let weave = dir.path().join("weave");
    std::os::unix::fs::symlink(WEFT, &weave).unwrap();
    assert!(wait_until(CONVERGE, || router.report().is_some()));
    let output = std::process::Command::new(&weave)
        .args([
            "--local",
            "--http-addr",
            &router.http_addr(),
            "status",
            "connections",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let output = std::process::Command::new(&weave)
        .args(["--http-addr", &router.http_addr(), "status"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains(&format!("Name: {}(r{BLOCK}-1)", router.name)),
        "{text}"
    );
    // `--http-addr` is global: after the subcommand it reaches the same router.
    let output = std::process::Command::new(&weave)
        .args(["status", "peers", "--http-addr", &router.http_addr()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains(&router.name),
        "{output:?}"
    );
}

#[test]
fn cli_reports_an_unreachable_router_in_one_line_and_fails() {
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let output = std::process::Command::new(WEFT)
        .args(["--http-addr", &closed_port.to_string(), "status"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot reach the router"), "{stderr}");
}

#[test]
fn connect_and_forget_change_the_targets() {
    const BLOCK: u8 = 103;
    let one = Router::start(BLOCK, 1, RouterOpts::default());
    let two = Router::start(BLOCK, 2, RouterOpts::default());
    assert!(wait_until(CONVERGE, || one.report().is_some()
        && two.report().is_some()));
    let output = one.cli(&["connect", &two.mesh_addr()]);
    assert!(output.status.success(), "{output:?}");
    assert!(wait_until(CONVERGE, || one.established_links()
        == vec![two.name.clone()]));
    let targets = String::from_utf8_lossy(&one.cli(&["status", "targets"]).stdout).to_string();
    assert!(targets.contains(&two.mesh_addr()), "{targets}");
    let output = one.cli(&["forget", &two.mesh_addr()]);
    assert!(output.status.success(), "{output:?}");
    let targets = String::from_utf8_lossy(&one.cli(&["status", "targets"]).stdout).to_string();
    assert!(!targets.contains(&two.mesh_addr()), "{targets}");
    let bad = one.cli(&["connect", "host:notaport"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid peer address"));
}

/// `POST /connect` with `body` as a form and `query` as the query string: the status.
fn post_connect(router: &Router, query: &str, body: &str) -> u16 {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .into();
    let url = format!("http://{}/connect{query}", router.http_addr());
    agent
        .post(url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send(body)
        .expect("POST /connect")
        .status()
        .as_u16()
}

#[test]
fn connect_takes_peers_from_the_query_string_too_and_refuses_a_request_without_any() {
    const BLOCK: u8 = 231;
    let one = Router::start(BLOCK, 1, RouterOpts::default());
    let two = Router::start(BLOCK, 2, RouterOpts::default());
    assert!(wait_until(CONVERGE, || one.report().is_some()
        && two.report().is_some()));
    // As Weave's API took it (Go's ParseForm reads both).
    assert_eq!(
        post_connect(&one, &format!("?peer={}", two.mesh_addr()), ""),
        200
    );
    assert!(wait_until(CONVERGE, || one.established_links()
        == vec![two.name.clone()]));
    let targets = String::from_utf8_lossy(&one.cli(&["status", "targets"]).stdout).to_string();
    assert!(targets.contains(&two.mesh_addr()), "{targets}");
    // Naming nobody is a mistake, not a silent no-op; `replace` alone still drops every target.
    assert_eq!(post_connect(&one, "", ""), 400);
    assert_eq!(post_connect(&one, "?peers=typo", ""), 400);
    assert_eq!(post_connect(&one, "", "replace=false"), 400);
    let forget = one.cli(&["forget", &two.mesh_addr()]);
    assert!(forget.status.success(), "{forget:?}");
    assert_eq!(post_connect(&one, "?replace=true", ""), 200);
}

/// `POST /connect?peer=<peer>` sent by hand with `Host: <host>` and, if given, an `Origin`
/// header, as a web page's browser would send it: the response's status line.
fn post_connect_as(router: &Router, host: &str, origin: Option<&str>, peer: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(router.http_addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let origin = origin.map_or(String::new(), |origin| format!("Origin: {origin}\r\n"));
    write!(
        stream,
        "POST /connect?peer={peer} HTTP/1.1\r\nHost: {host}\r\n{origin}\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response.lines().next().unwrap_or_default().to_string()
}

#[test]
fn the_api_refuses_a_web_pages_requests_and_does_nothing_for_them() {
    const BLOCK: u8 = 234;
    let one = Router::start(BLOCK, 1, RouterOpts::default());
    let two = Router::start(BLOCK, 2, RouterOpts::default());
    assert!(wait_until(CONVERGE, || one.report().is_some()
        && two.report().is_some()));
    let peer = two.mesh_addr();
    let api = one.http_addr();
    // Cross-site, and after DNS rebinding (the page's own name as Host).
    let cross_site = post_connect_as(&one, &api, Some("http://evil.example"), &peer);
    assert!(cross_site.starts_with("HTTP/1.1 403"), "{cross_site}");
    let rebound = post_connect_as(&one, "rebind.evil.example:6784", None, &peer);
    assert!(rebound.starts_with("HTTP/1.1 403"), "{rebound}");
    let targets = String::from_utf8_lossy(&one.cli(&["status", "targets"]).stdout).to_string();
    assert!(!targets.contains(&peer), "{targets}");
    // A page served by the API itself, and a client that is not a browser, are obeyed.
    let own = post_connect_as(&one, &api, Some(&format!("http://{api}")), &peer);
    assert!(own.starts_with("HTTP/1.1 200"), "{own}");
    let targets = String::from_utf8_lossy(&one.cli(&["status", "targets"]).stdout).to_string();
    assert!(targets.contains(&peer), "{targets}");
}

#[test]
fn simultaneous_connects_end_with_exactly_one_link() {
    for round in 0..3u8 {
        let block = 104;
        let base = round * 2 + 1;
        let a_addr = format!("{}:6783", ip(block, base));
        let b_addr = format!("{}:6783", ip(block, base + 1));
        let a = Router::start(
            block,
            base,
            RouterOpts {
                peers: vec![b_addr],
                ..Default::default()
            },
        );
        let b = Router::start(
            block,
            base + 1,
            RouterOpts {
                peers: vec![a_addr],
                ..Default::default()
            },
        );
        assert!(wait_until(CONVERGE, || {
            a.established_links() == vec![b.name.clone()]
                && b.established_links() == vec![a.name.clone()]
        }));
        // No flapping: a few heartbeats later, still the same single link at both ends.
        let links_of = |r: &Router| -> Vec<serde_json::Value> {
            r.report().unwrap()["Connections"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|c| c["State"] == "established" || c["State"] == "pending")
                .cloned()
                .collect()
        };
        let a_before = links_of(&a);
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(links_of(&a), a_before, "round {round}: link changed");
        assert_eq!(links_of(&a).len(), 1);
        assert_eq!(links_of(&b).len(), 1);
        // Both ends kept the same TCP connection: A's remote address is B's local one.
        let a_remote = a_before[0]["Address"].as_str().unwrap().to_string();
        let b_remote = links_of(&b)[0]["Address"].as_str().unwrap().to_string();
        let a_out = a_before[0]["Outbound"].as_bool().unwrap();
        let b_out = links_of(&b)[0]["Outbound"].as_bool().unwrap();
        assert_ne!(a_out, b_out, "one end dialled, the other accepted");
        if a_out {
            assert_eq!(a_remote, format!("{}:6783", b.ip));
            assert!(b_remote.starts_with(&format!("{}:", a.ip)));
        } else {
            assert_eq!(b_remote, format!("{}:6783", a.ip));
        }
    }
}

#[test]
fn a_second_router_on_the_same_database_fails_at_once() {
    const BLOCK: u8 = 105;
    let first = Router::start(BLOCK, 1, RouterOpts::default());
    assert!(wait_until(CONVERGE, || first.report().is_some()));
    let db = first.log_lines().join("\n");
    let prefix = db
        .split("db_prefix: \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("db prefix in the start-up log")
        .to_string();
    let started = std::time::Instant::now();
    let output = std::process::Command::new(WEFT)
        .args([
            "router",
            "--no-dataplane",
            "--host",
            &ip(BLOCK, 2).to_string(),
            "--http-addr",
            &format!("{}:6784", ip(BLOCK, 2)),
            "--metrics-addr",
            &format!("{}:6782", ip(BLOCK, 2)),
            "--db-prefix",
            &prefix,
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "must not wait for the lock"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("already open in another process"),
        "{stderr}"
    );
}
