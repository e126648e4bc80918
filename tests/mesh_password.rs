//! End-to-end tests of the mesh password: real router processes on loopback addresses. Routers
//! that share the password mesh through a TCP proxy the test owns, which keeps every byte that
//! crossed, and none of those bytes is a name; a router with another password and one without
//! are refused, and named in the logs.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use common::*;

const CONVERGE: Duration = Duration::from_secs(30);
const PASSWORD: &str = "correct horse battery staple";

/// A TCP proxy from an address of the test's to `target`, keeping what crossed either way; its
/// threads are stopped and joined on drop, also when the test fails.
struct Tap {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<u8>>>,
    /// Set: the next chunk read, either way, crosses with one bit flipped.
    corrupt: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

/// How long a proxy thread blocks before it looks whether it must stop.
const TAP_POLL: Duration = Duration::from_millis(50);

impl Tap {
    fn start(listen: &str, target: String) -> Tap {
        let listener = TcpListener::bind(listen).expect("bind the tap");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let corrupt = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = Arc::new(Mutex::new(Vec::new()));
        let accept = {
            let (seen, stop, threads) = (seen.clone(), stop.clone(), threads.clone());
            let corrupt = corrupt.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok((inbound, _)) = listener.accept() else {
                        std::thread::sleep(TAP_POLL);
                        continue;
                    };
                    let Ok(outbound) = TcpStream::connect(&target) else {
                        continue;
                    };
                    inbound.set_nonblocking(false).unwrap();
                    for (from, to) in [
                        (inbound.try_clone().unwrap(), outbound.try_clone().unwrap()),
                        (outbound, inbound),
                    ] {
                        let (seen, stop) = (seen.clone(), stop.clone());
                        let corrupt = corrupt.clone();
                        let copy =
                            std::thread::spawn(move || pump(from, to, &seen, &corrupt, &stop));
                        threads.lock().unwrap().push(copy);
                    }
                }
            })
        };
        threads.lock().unwrap().push(accept);
        Tap {
            addr,
            seen,
            corrupt,
            stop,
            threads,
        }
    }

    fn seen(&self) -> Vec<u8> {
        self.seen.lock().unwrap().clone()
    }
}

fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    seen: &Mutex<Vec<u8>>,
    corrupt: &AtomicBool,
    stop: &AtomicBool,
) {
    from.set_read_timeout(Some(TAP_POLL)).unwrap();
    let mut buf = [0u8; 16 * 1024];
    while !stop.load(Ordering::Relaxed) {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                seen.lock().unwrap().extend_from_slice(&buf[..n]);
                if corrupt.swap(false, Ordering::Relaxed) {
                    buf[n - 1] ^= 0x01;
                }
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let threads = std::mem::take(&mut *self.threads.lock().unwrap());
        for thread in threads {
            let _ = thread.join();
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// The six bytes of a peer name `aa:bb:...`, as they would appear in a binary encoding.
fn name_bytes(name: &str) -> Vec<u8> {
    name.split(':')
        .map(|byte| u8::from_str_radix(byte, 16).unwrap())
        .collect()
}

fn env(key: &str, value: &str) -> Vec<(String, String)> {
    vec![(key.to_string(), value.to_string())]
}

/// Two routers linked only through a tap (no discovery, so no direct link bypasses it), the
/// second dialling: both established, each knowing the other's record.
fn pair_through_tap(block: u8, first: u8, opts: [RouterOpts; 2]) -> (Router, Router, Tap) {
    let [one, two] = opts;
    let extra = |opts: RouterOpts| RouterOpts {
        extra: [opts.extra.clone(), vec!["--no-discovery".into()]].concat(),
        ..opts
    };
    let one = Router::start(block, first, extra(one));
    let tap = Tap::start(&format!("{}:0", ip(block, 200 + first)), one.mesh_addr());
    let two = Router::start(
        block,
        first + 1,
        RouterOpts {
            peers: vec![tap.addr.to_string()],
            ..extra(two)
        },
    );
    let linked = wait_until(CONVERGE, || {
        one.established_links() == vec![two.name.clone()]
            && two.established_links() == vec![one.name.clone()]
            && one.peer_names().contains(&two.name)
            && two.peer_names().contains(&one.name)
    });
    assert!(linked, "the pair did not mesh through the tap");
    (one, two, tap)
}

#[test]
fn routers_sharing_the_password_mesh_and_nothing_crosses_in_the_clear() {
    const BLOCK: u8 = 141;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("weave-passwd");
    // As a Secret mounted from `echo` would hold it: with a line end the other router's
    // environment variable does not have.
    std::fs::write(&secret, format!("{PASSWORD}\n")).unwrap();
    let (_one, _two, tap) = pair_through_tap(
        BLOCK,
        1,
        [
            RouterOpts {
                env: env("WEAVE_PASSWORD", PASSWORD),
                ..Default::default()
            },
            RouterOpts {
                env: env("WEAVE_PASSWORD_FILE", secret.to_str().unwrap()),
                ..Default::default()
            },
        ],
    );
    // Heartbeats and gossip keep crossing; take what crossed after the link is up a while.
    std::thread::sleep(Duration::from_secs(2));
    let sealed = tap.seen();
    assert!(sealed.len() > 1000, "only {} bytes crossed", sealed.len());
    assert_eq!(&sealed[..4], b"WEFT", "the sealed protocol's header");
    for name in [peer_name(BLOCK, 1), peer_name(BLOCK, 2)] {
        assert!(!contains(&sealed, name.as_bytes()), "{name} in the clear");
        assert!(
            !contains(&sealed, &name_bytes(&name)),
            "{name} in the clear"
        );
    }
    for nickname in [format!("r{BLOCK}-1"), format!("r{BLOCK}-2")] {
        assert!(
            !contains(&sealed, nickname.as_bytes()),
            "{nickname} in the clear"
        );
    }

    // The same capture without a password sees the names: the check above can fail.
    let (_three, _four, clear_tap) =
        pair_through_tap(BLOCK, 3, [RouterOpts::default(), RouterOpts::default()]);
    let clear = clear_tap.seen();
    assert!(contains(&clear, format!("r{BLOCK}-3").as_bytes()));
    assert!(contains(&clear, format!("r{BLOCK}-4").as_bytes()));
}

#[test]
fn a_wrong_password_and_no_password_are_refused_and_named_in_the_logs() {
    const BLOCK: u8 = 142;
    let meshed = Router::start(
        BLOCK,
        1,
        RouterOpts {
            env: env("WEAVE_PASSWORD", PASSWORD),
            extra: vec!["--no-discovery".into()],
            ..Default::default()
        },
    );
    let peers = vec![meshed.mesh_addr()];
    let wrong = Router::start(
        BLOCK,
        2,
        RouterOpts {
            env: env("WEAVE_PASSWORD", "correct horse battery stable"),
            peers: peers.clone(),
            ..Default::default()
        },
    );
    let without = Router::start(
        BLOCK,
        3,
        RouterOpts {
            peers,
            ..Default::default()
        },
    );
    let meshed = &meshed;
    let refused = |router: &Router| {
        let address = format!("<-[{}:", router.ip);
        move || {
            meshed.log_lines().iter().any(|line| {
                line.contains(&address)
                    && line.contains("connection refused: peer does not know the mesh password")
            })
        }
    };
    assert!(
        wait_until(CONVERGE, refused(&wrong)),
        "the router with another password is not named as refused"
    );
    assert!(
        wait_until(CONVERGE, refused(&without)),
        "the router without a password is not named as refused"
    );
    assert!(
        wait_until(CONVERGE, || wrong.log_contains(&format!(
            "->[{}]: connection shutting down due to error: authentication failed",
            meshed.mesh_addr()
        ))),
        "the router with another password does not say authentication failed"
    );
    assert!(
        wait_until(CONVERGE, || without.log_contains(
            "connection refused: the peer's mesh has a password and we have none"
        )),
        "the router without a password does not say why"
    );
    // Refused before they learnt anything, or told anything: no record crossed either way,
    // and the mesh never heard their nicknames.
    assert_eq!(meshed.peer_names(), vec![meshed.name.clone()]);
    for outsider in [&wrong, &without] {
        assert_eq!(outsider.peer_names(), vec![outsider.name.clone()]);
        assert!(meshed.established_links().is_empty());
        assert!(!meshed.log_contains(&outsider.nickname));
    }
    assert!(meshed.log_contains("key derived with Argon2id"));
    // Counted too, by which side lacked the password.
    let counted = |router: &Router, reason: &str| {
        let series = format!("weft_mesh_authentication_failures_total{{reason=\"{reason}\"}} ");
        get_text(&format!("http://{}:6782/metrics", router.ip))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.strip_prefix(series.as_str()))
            .any(|count| count.trim().parse::<f64>().is_ok_and(|count| count >= 1.0))
    };
    for (router, reason) in [
        (meshed, "peer_lacks_password"),
        (&wrong, "authentication_failed"),
        (&without, "password_required"),
    ] {
        assert!(
            wait_until(CONVERGE, || counted(router, reason)),
            "{} does not count {reason}",
            router.nickname
        );
    }
}

#[test]
fn a_byte_altered_in_transit_closes_the_link_not_the_routers_and_the_link_comes_back() {
    const BLOCK: u8 = 143;
    let password = || RouterOpts {
        env: env("WEAVE_PASSWORD", PASSWORD),
        ..Default::default()
    };
    let (mut one, mut two, tap) = pair_through_tap(BLOCK, 1, [password(), password()]);
    tap.corrupt.store(true, Ordering::Relaxed);
    let altered = || {
        [&one, &two]
            .iter()
            .any(|router| router.log_contains("the stream was altered"))
    };
    assert!(
        wait_until(CONVERGE, altered),
        "no router noticed the altered record"
    );
    assert!(one.exited().is_none() && two.exited().is_none());
    // The dialler tries again (through the same tap, which alters nothing more).
    assert!(
        wait_until(CONVERGE, || one.established_links()
            == vec![two.name.clone()]
            && two.established_links() == vec![one.name.clone()]
            && two
                .log_lines()
                .iter()
                .filter(|line| line.contains("connection added"))
                .count()
                >= 2),
        "the link did not come back"
    );
}
