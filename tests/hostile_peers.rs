//! End-to-end tests of hostile clients on the mesh port: sockets that connect and never finish a
//! handshake must not keep real peers out.

mod common;

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use common::*;

/// Sockets that connect from `sources` and say nothing, each re-opened as soon as the router
/// drops it; stopped (and its threads joined) when dropped, also when a test fails.
struct SilentFlood {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// Pause of a flood socket between an answered attempt and the next one: short enough that a
/// place the router frees is taken again at once, long enough not to hog the shared CPUs.
const FLOOD_RETRY: Duration = Duration::from_millis(200);

impl SilentFlood {
    fn start(target: SocketAddr, sources: &[Ipv4Addr], per_source: usize) -> SilentFlood {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for &source in sources {
            for _ in 0..per_source {
                let stop = stop.clone();
                threads.push(std::thread::spawn(move || {
                    silent_socket(target, source, &stop)
                }));
            }
        }
        SilentFlood { stop, threads }
    }
}

impl Drop for SilentFlood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Connects from `source` and reads whatever the router sends until it closes, never writing.
fn silent_socket(target: SocketAddr, source: Ipv4Addr, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        if let Ok(mut stream) = connect_from(source, target) {
            let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
            let mut buf = [0u8; 512];
            while !stop.load(Ordering::Relaxed) {
                match stream.read(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(err)
                        if matches!(
                            err.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => break,
                }
            }
        }
        std::thread::sleep(FLOOD_RETRY);
    }
}

fn connect_from(source: Ipv4Addr, target: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::from((source, 0)).into())?;
    socket.connect_timeout(&target.into(), Duration::from_secs(2))?;
    Ok(socket.into())
}

#[test]
fn silent_sockets_do_not_keep_real_peers_out() {
    const BLOCK: u8 = 181;
    // Weave Net's handshake timeout, so that a silent socket holds whatever it got for 10 s.
    let slow_handshakes = RouterOpts {
        conn_limit: Some(3),
        handshake_timeout: Some("10s".into()),
        ..Default::default()
    };
    let hub = Router::start(BLOCK, 1, slow_handshakes);
    assert!(wait_until(Duration::from_secs(10), || hub
        .report()
        .is_some()));
    // Far more silent sockets than the connection limit, from two hosts.
    let _flood = SilentFlood::start(
        hub.mesh_addr().parse().unwrap(),
        &[ip(BLOCK, 100), ip(BLOCK, 101)],
        40,
    );
    std::thread::sleep(Duration::from_secs(2));

    let peer = Router::start(
        BLOCK,
        2,
        RouterOpts {
            peers: vec![hub.mesh_addr()],
            ..Default::default()
        },
    );
    assert!(
        wait_until(Duration::from_secs(15), || hub
            .established_links()
            .contains(&peer.name)),
        "a real peer was kept out by sockets that never finished a handshake"
    );
}

#[test]
fn a_name_reappearing_with_another_uid_while_linked_is_warned_about() {
    const BLOCK: u8 = 182;
    let one = Router::start(BLOCK, 1, RouterOpts::default());
    let two = Router::start(
        BLOCK,
        2,
        RouterOpts {
            peers: vec![one.mesh_addr()],
            ..Default::default()
        },
    );
    assert!(wait_until(Duration::from_secs(30), || one
        .established_links()
        .contains(&two.name)));
    let _impostor = Router::start(
        BLOCK,
        3,
        RouterOpts {
            name: Some(two.name.clone()),
            peers: vec![one.mesh_addr()],
            ..Default::default()
        },
    );
    assert!(
        wait_until(Duration::from_secs(10), || one.log_lines().iter().any(
            |line| {
                line.contains("WARN") && line.contains(&two.name) && line.contains("while its link")
            }
        )),
        "no warning about a second incarnation of {}",
        two.name
    );
}

#[test]
fn a_nickname_that_would_forge_log_lines_is_refused_at_start() {
    const BLOCK: u8 = 183;
    for (index, nickname) in [
        (1, "evil\nINFO forged line".to_string()),
        (2, "x".repeat(60 * 1024)),
    ] {
        let mut router = Router::start(
            BLOCK,
            index,
            RouterOpts {
                nickname: Some(nickname),
                ..Default::default()
            },
        );
        assert!(
            wait_until(Duration::from_secs(10), || router.exited().is_some()),
            "the router started with a bad nickname"
        );
        assert!(!router.exited().unwrap().success());
        assert!(router.log_contains("invalid nickname"));
    }
}

#[test]
fn ipam_ids_with_control_characters_are_refused() {
    const BLOCK: u8 = 184;
    let router = Router::start(
        BLOCK,
        1,
        RouterOpts {
            extra: vec!["--ipalloc-init".into(), "consensus=1".into()],
            ..Default::default()
        },
    );
    let post = |id: &str| {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(false)
            .proxy(None)
            .build()
            .into();
        let mut response = agent
            .post(format!("http://{}/ip/{id}", router.http_addr()))
            .send_empty()
            .ok()?;
        let body = response.body_mut().read_to_string().unwrap_or_default();
        Some((response.status().as_u16(), body))
    };
    assert!(
        wait_until(Duration::from_secs(20), || post("good-id")
            .is_some_and(|(status, _)| status == 200)),
        "IPAM never became ready"
    );
    let too_long = "a".repeat(4096);
    for bad in [
        "nul%00id",
        "line%0D%0Abreak",
        "esc%1B%5B31m",
        too_long.as_str(),
    ] {
        let (status, body) = post(bad).expect("the router answers");
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body.contains("invalid ident"), "{bad}: {body}");
    }
}
