//! End-to-end tests of forged gossip: a hand-made peer links to a real router, speaking the
//! handshake and the gossip by hand, and sends it peer records no honest peer would.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::BytesMut;
use common::*;
use serde_bytes::ByteBuf;
use weft::topology::{ConnectionSummary, PeerName, PeerRecord, PeerUid};
use weft::wire::{
    Features, HEADER_LEN, Hello, LinkNonce, ProtocolHeader, ProtocolMsg, Reveal, decode_message,
    encode_frame, encode_message, encode_topology,
};

/// How often the forger sends a heartbeat: the test routers' read timeout is 2 s.
const HEARTBEAT: Duration = Duration::from_millis(300);

/// A linked hand-made peer. Heartbeats go out from a thread of its own and whatever the router
/// sends is read and dropped; both threads stop when it is dropped, also when a test fails.
struct Forger {
    stream: TcpStream,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

fn write_frame(stream: &mut TcpStream, payload: &[u8]) {
    let mut out = BytesMut::new();
    encode_frame(payload.to_vec(), &mut out).unwrap();
    stream.write_all(&out).unwrap();
}

fn read_frame(stream: &mut TcpStream) -> Vec<u8> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut body).unwrap();
    body
}

impl Forger {
    fn link(router: &Router, name: PeerName) -> Forger {
        let mut stream = TcpStream::connect(router.mesh_addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let nonce = LinkNonce::random();
        let ours = Features {
            name,
            nickname: "forger".into(),
            uid: PeerUid(4242),
            conn_commit: nonce.commitment(),
            overlays: Vec::new(),
            listen_port: 6783,
        };
        stream.write_all(&ProtocolHeader::OURS.encode()).unwrap();
        write_frame(
            &mut stream,
            &encode_message("hello", &Hello::Features(ours)).unwrap(),
        );
        let mut header = [0u8; HEADER_LEN];
        stream.read_exact(&mut header).unwrap();
        let hello: Hello = decode_message("hello", &read_frame(&mut stream)).unwrap();
        assert!(matches!(hello, Hello::Features(_)), "{hello:?}");
        write_frame(
            &mut stream,
            &encode_message("reveal", &Reveal { nonce }).unwrap(),
        );
        let _: Reveal = decode_message("reveal", &read_frame(&mut stream)).unwrap();

        let stop = Arc::new(AtomicBool::new(false));
        let mut reader = stream.try_clone().unwrap();
        reader
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let reading = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut sink = [0u8; 64 * 1024];
                while !stop.load(Ordering::Relaxed) {
                    match reader.read(&mut sink) {
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
            })
        };
        let mut beating = stream.try_clone().unwrap();
        let heartbeats = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let beat = encode_message("message", &ProtocolMsg::Heartbeat).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    let mut out = BytesMut::new();
                    encode_frame(beat.clone(), &mut out).unwrap();
                    if beating.write_all(&out).is_err() {
                        break;
                    }
                    std::thread::sleep(HEARTBEAT);
                }
            })
        };
        Forger {
            stream,
            stop,
            threads: vec![reading, heartbeats],
        }
    }

    fn send_records(&mut self, records: &[PeerRecord]) {
        let msg = ProtocolMsg::Gossip {
            channel: "topology".into(),
            payload: ByteBuf::from(encode_topology(records).unwrap()),
        };
        write_frame(&mut self.stream, &encode_message("message", &msg).unwrap());
    }
}

impl Drop for Forger {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn record(name: PeerName, uid: u64, version: u64, listen_addr: SocketAddr) -> PeerRecord {
    PeerRecord {
        name,
        nickname: format!("made-up-{}", uid),
        uid: PeerUid(uid),
        version,
        listen_addr,
        conn_limit: 0,
        connections: BTreeMap::new(),
    }
}

/// The version of `name`'s record in `router`'s topology.
fn version_seen_by(router: &Router, name: &str) -> u64 {
    router.report().unwrap()["Peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|peer| peer["Name"] == name)
        .unwrap()["Version"]
        .as_u64()
        .unwrap()
}

fn summary() -> ConnectionSummary {
    ConnectionSummary {
        remote_addr: SocketAddr::from(([127, 0, 0, 1], 40000)),
        outbound: true,
        established: true,
    }
}

#[test]
fn made_up_peers_are_dialled_no_faster_than_the_discovery_budget() {
    const BLOCK: u8 = 185;
    let router = Router::start(BLOCK, 1, RouterOpts::default());
    assert!(wait_until(Duration::from_secs(10), || router
        .report()
        .is_some()));
    let forger_name: PeerName = peer_name(BLOCK, 99).parse().unwrap();
    let mut forger = Forger::link(&router, forger_name);

    // 500 made-up peers on loopback addresses of this test where nothing listens, all linked to
    // the forger so that they look reachable.
    let mut forged = Vec::new();
    let mut ours = record(
        forger_name,
        4242,
        1_000,
        SocketAddr::from(([127, 0, 0, 1], 6783)),
    );
    for i in 0..500u64 {
        let name = PeerName::from_u64(0x0b_0000 + i).unwrap();
        let addr = SocketAddr::from((ip(BLOCK, 2 + (i % 250) as u8), 7000 + (i / 250) as u16));
        forged.push(record(name, 10_000 + i, 1_000, addr));
        ours.connections.insert(name, summary());
    }
    forged.push(ours);
    forger.send_records(&forged);

    const WATCHED: Duration = Duration::from_secs(10);
    std::thread::sleep(WATCHED);
    let dials = router
        .log_lines()
        .iter()
        .filter(|line| line.contains(&format!("->[127.0.{BLOCK}.")) && line.contains("failed"))
        .count();
    // 30 at once, then 2 a second; a little slack for the log lines still in flight.
    assert!(dials > 0, "the made-up peers were discovered");
    assert!(dials <= 30 + 2 * 10 + 5, "{dials} dials in {WATCHED:?}");
}

#[test]
fn a_forged_record_at_the_top_of_the_versions_is_not_believed() {
    const BLOCK: u8 = 186;
    let routers = star(BLOCK, 2, RouterOpts::default());
    assert!(wait_until(Duration::from_secs(30), || fully_routed(
        &routers
    )));
    let victim: PeerName = routers[1].name.parse().unwrap();
    let victim_uid = routers[0].report().unwrap()["Peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|peer| peer["Name"] == routers[1].name.as_str())
        .unwrap()["UID"]
        .as_u64()
        .unwrap();
    let forger_name: PeerName = peer_name(BLOCK, 99).parse().unwrap();
    let mut forger = Forger::link(&routers[0], forger_name);

    // The victim's own name and uid, no links, at the top of the version space.
    let mut forged = record(
        victim,
        victim_uid,
        u64::MAX,
        SocketAddr::from((ip(BLOCK, 2), 6783)),
    );
    forged.nickname = routers[1].nickname.clone();
    forger.send_records(&[forged]);

    assert!(
        wait_until(Duration::from_secs(5), || routers[0]
            .log_contains("ignored 1 peer records from")),
        "no warning about the forged record"
    );
    let version_of_victim = version_seen_by(&routers[0], &routers[1].name);
    assert!(version_of_victim < u64::MAX / 2, "{version_of_victim}");
    assert!(fully_routed(&routers), "the victim is still routed");
}

/// The forger of the tests above against a mesh with a password. It speaks the plaintext
/// handshake and, without waiting for answers, everything it would forge: a `Hello` in the name
/// of the second router (impersonation), its `Reveal`, heartbeats, a topology of made-up peers
/// with the second router's record at the top of the versions, and an IPAM message. None of it
/// gets past the Noise handshake it cannot complete: the router refuses it after the header.
#[test]
fn a_forger_without_the_mesh_password_gets_nothing_in() {
    const BLOCK: u8 = 187;
    let opts = RouterOpts {
        env: vec![(
            "WEAVE_PASSWORD".to_string(),
            "forged-gossip-187-correct-horse".to_string(),
        )],
        ..Default::default()
    };
    let routers = star(BLOCK, 2, opts);
    assert!(wait_until(Duration::from_secs(30), || fully_routed(
        &routers
    )));
    let victim: PeerName = routers[1].name.parse().unwrap();

    let nonce = LinkNonce::random();
    let hello = Hello::Features(Features {
        name: victim,
        nickname: routers[1].nickname.clone(),
        uid: PeerUid(4242),
        conn_commit: nonce.commitment(),
        overlays: Vec::new(),
        listen_port: 6783,
    });
    let mut made_up = record(
        victim,
        4242,
        u64::MAX,
        SocketAddr::from((ip(BLOCK, 2), 6783)),
    );
    let mut forged = Vec::new();
    for i in 0..20u64 {
        let name = PeerName::from_u64(0x0c_0000 + i).unwrap();
        forged.push(record(
            name,
            20_000 + i,
            1_000,
            SocketAddr::from((ip(BLOCK, 50), 7000)),
        ));
        made_up.connections.insert(name, summary());
    }
    forged.push(made_up);
    let messages = [
        encode_message("hello", &hello).unwrap(),
        encode_message("reveal", &Reveal { nonce }).unwrap(),
        encode_message("message", &ProtocolMsg::Heartbeat).unwrap(),
        encode_message(
            "message",
            &ProtocolMsg::Gossip {
                channel: "topology".into(),
                payload: ByteBuf::from(encode_topology(&forged).unwrap()),
            },
        )
        .unwrap(),
        encode_message(
            "message",
            &ProtocolMsg::Gossip {
                channel: "ipam".into(),
                payload: ByteBuf::from(vec![0x80; 64]),
            },
        )
        .unwrap(),
    ];
    let mut script = BytesMut::from(&ProtocolHeader::OURS.encode()[..]);
    for message in messages {
        encode_frame(message, &mut script).unwrap();
    }

    let mut stream = TcpStream::connect(routers[0].mesh_addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // The router may close before the whole script is written: that is the point.
    let _ = stream.write_all(&script);
    let mut answer = Vec::new();
    let ended = stream.read_to_end(&mut answer);
    assert!(
        ended.is_ok()
            || matches!(ended, Err(ref err) if err.kind() == std::io::ErrorKind::ConnectionReset),
        "the router kept the forger's connection open: {ended:?}"
    );
    assert!(
        answer.len() <= HEADER_LEN + 2,
        "the router said more than its header and a refusal: {answer:?}"
    );
    assert!(
        wait_until(Duration::from_secs(5), || routers[0].log_contains(
            "connection refused: peer does not know the mesh password"
        )),
        "no refusal logged"
    );

    // Nothing forged was believed: the same two peers, the victim at its own version, routed.
    std::thread::sleep(Duration::from_secs(2));
    for router in &routers {
        let mut peers = router.peer_names();
        peers.sort();
        let mut expected = vec![routers[0].name.clone(), routers[1].name.clone()];
        expected.sort();
        assert_eq!(peers, expected);
    }
    let version_of_victim = version_seen_by(&routers[0], &routers[1].name);
    assert!(version_of_victim < u64::MAX / 2, "{version_of_victim}");
    assert!(fully_routed(&routers), "the victim is still routed");
    assert!(!routers[0].log_contains("ignored 1 peer records from"));
}
