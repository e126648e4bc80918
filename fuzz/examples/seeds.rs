//! Writes the seed corpora under `fuzz/corpus/<target>/`: real encodings made by the same code
//! the router and the plugin send with, so that the fuzzer starts inside each format instead of
//! discovering MessagePack, the sleeve layout or a CNI config byte by byte. Deterministic, so a
//! rerun rewrites the same files:
//!
//!     cd fuzz && cargo run --example seeds
//!
//! Built without instrumentation (no `--target`, no fuzzing flags); not part of a fuzz run.

use std::collections::BTreeMap;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use bytes::BytesMut;
use weave_net_cni::result::{CniResult, Interface, IpConfig, Route};
use weave_net_cni::version::{SUPPORTED, Version};
use weft::ipam::{Address, Cidr, ClaimDenial, IpamMessage, Paxos, Ring};
use weft::topology::{ConnectionSummary, PeerName, PeerRecord, PeerUid};
use weft::wire::sleeve::fragment::{FRAGMENT_HEADER_LEN, FragmentMeta, encode_fragments};
use weft::wire::sleeve::seal::{Direction, SLEEVE_KEY_LEN, SealingKey, SleeveKey};
use weft::wire::sleeve::{
    Control, DATAGRAM_HEADER_LEN, RecordDestination, encode_control_datagram,
    encode_datagram_header, encode_frame_record,
};
use weft::wire::{
    Features, Hello, LinkNonce, ProtocolHeader, ProtocolMsg, Record, Refusal, RefusalReason,
    Reveal, encode_frame, encode_message, encode_record, encode_topology,
};

fn peer(n: u64) -> PeerName {
    PeerName::from_u64(n).expect("fits 48 bits")
}

/// One seed file; names are stable so that a rerun overwrites rather than adds.
fn write(corpus: &Path, target: &str, name: &str, bytes: &[u8]) {
    let dir = corpus.join(target);
    fs::create_dir_all(&dir).expect("corpus directory");
    fs::write(dir.join(name), bytes).expect("seed written");
}

fn features(n: u64) -> Features {
    Features {
        name: peer(n),
        nickname: format!("node{n}"),
        uid: PeerUid(n * 7919),
        conn_commit: LinkNonce([n as u8; 32]).commitment(),
        overlays: vec!["fastdp".into(), "sleeve".into()],
        listen_port: 6783,
    }
}

fn hellos() -> Vec<(&'static str, Hello)> {
    vec![
        ("features", Hello::Features(features(1))),
        (
            "refused-limit",
            Hello::Refused(Refusal {
                reason: RefusalReason::ConnectionLimit { limit: 30 },
                alternatives: vec![
                    SocketAddr::from(([198, 51, 100, 12], 6783)),
                    "[2001:db8::13]:6783".parse().expect("address"),
                ],
            }),
        ),
        (
            "refused-shutdown",
            Hello::Refused(Refusal {
                reason: RefusalReason::ShuttingDown,
                alternatives: vec![],
            }),
        ),
    ]
}

fn record(n: u64, links: &[u64]) -> PeerRecord {
    PeerRecord {
        name: peer(n),
        nickname: format!("node{n}"),
        uid: PeerUid(n),
        version: 1_700_000_000_000 + n,
        listen_addr: SocketAddr::from(([198, 51, 100, 10 + n as u8], 6783)),
        conn_limit: 30,
        connections: links
            .iter()
            .map(|&l| {
                let summary = ConnectionSummary {
                    remote_addr: SocketAddr::from(([198, 51, 100, 10 + l as u8], 40000)),
                    outbound: l > n,
                    established: true,
                };
                (peer(l), summary)
            })
            .collect::<BTreeMap<_, _>>(),
    }
}

fn messages() -> Vec<(&'static str, ProtocolMsg)> {
    let topology = encode_topology(&[record(2, &[1, 3])]).expect("encodes");
    vec![
        ("heartbeat", ProtocolMsg::Heartbeat),
        (
            "gossip-topology",
            ProtocolMsg::Gossip {
                channel: "topology".into(),
                payload: topology.into(),
            },
        ),
        (
            "gossip-unicast",
            ProtocolMsg::GossipUnicast {
                channel: "ipam".into(),
                source: peer(2),
                dest: peer(3),
                payload: vec![0x91, 0xa0].into(),
            },
        ),
        (
            "gossip-broadcast",
            ProtocolMsg::GossipBroadcast {
                channel: "ipam".into(),
                source: peer(3),
                payload: vec![0xa0].into(),
            },
        ),
    ]
}

fn ipam_messages() -> Vec<(&'static str, IpamMessage)> {
    let range: Cidr = "10.32.0.0/12".parse().expect("cidr");
    let mut ring = Ring::new(range, peer(1));
    ring.claim_for_peers(&[peer(1), peer(2), peer(3)])
        .expect("peers given");
    let ring = ring.state().clone();
    // A consensus state as electors gossip it: two electors that thought once each.
    let mut one = Paxos::new(peer(1), PeerUid(1), 2);
    one.think();
    let mut two = Paxos::new(peer(2), PeerUid(2), 2);
    two.merge(one.state());
    two.think();
    one.merge(two.state());
    one.think();
    let subnet: Cidr = "10.32.1.0/24".parse().expect("cidr");
    let address: Address = "10.32.0.9".parse().expect("address");
    vec![
        ("ring", IpamMessage::Ring(ring.clone())),
        ("paxos", IpamMessage::Paxos(one.state().clone())),
        ("ring-request", IpamMessage::RingRequest),
        ("space-request", IpamMessage::SpaceRequest { subnet }),
        (
            "space-granted",
            IpamMessage::SpaceGranted {
                subnet,
                ring: ring.clone(),
            },
        ),
        ("space-denied", IpamMessage::SpaceDenied { subnet }),
        ("claim-request", IpamMessage::ClaimRequest { address }),
        ("claim-granted", IpamMessage::ClaimGranted { address, ring }),
        (
            "claim-denied",
            IpamMessage::ClaimDenied {
                address,
                reason: ClaimDenial::NotOwner,
            },
        ),
    ]
}

/// An Ethernet frame carrying an IPv4/UDP packet of `payload` bytes between two pods.
fn pod_frame(payload: usize) -> Vec<u8> {
    let mut frame = vec![0x02, 0xbb, 0, 0, 0, 2, 0x02, 0xaa, 0, 0, 0, 1, 0x08, 0x00];
    let total = (20 + 8 + payload) as u16;
    frame.extend_from_slice(&[0x45, 0, 0, 0, 0x1c, 0x46, 0x40, 0, 64, 17, 0, 0]);
    frame[16..18].copy_from_slice(&total.to_be_bytes());
    frame.extend_from_slice(&[10, 32, 0, 2, 10, 40, 0, 3]);
    frame.extend_from_slice(&[0x30, 0x39, 0x00, 0x35]);
    frame.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
    frame.extend_from_slice(&[0, 0]);
    frame.extend((0..payload).map(|i| i as u8));
    frame
}

fn fragments(frame: &[u8], limit: usize, frame_id: u32) -> Vec<Vec<u8>> {
    let meta = FragmentMeta {
        source: peer(2),
        destination: RecordDestination::Peer(peer(1)),
        frame_id,
        total_len: frame.len() as u32,
        vnet_hdr: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    };
    let mut out = Vec::new();
    encode_fragments(peer(2), &meta, frame, limit, &mut out).expect("splits");
    out.chunks(limit).map(<[u8]>::to_vec).collect()
}

fn sleeve_seeds(corpus: &Path) {
    let target = "sleeve_datagram";
    let mut datagram = Vec::new();
    encode_datagram_header(peer(2), &mut datagram);
    for (destination, size) in [
        (peer(1), 64),
        (RecordDestination::Broadcast.as_peer_name(), 0),
        (RecordDestination::RelayOnly.as_peer_name(), 20),
    ] {
        encode_frame_record(peer(3), destination, &pod_frame(size), &mut datagram).expect("frame");
    }
    write(corpus, target, "frames", &datagram);
    for (name, control) in [
        (
            "heartbeat",
            Control::Heartbeat {
                connection_id: 0x0123_4567_89ab_cdef,
            },
        ),
        ("heartbeat-ack", Control::HeartbeatAck { connection_id: 42 }),
        (
            "pmtu-probe",
            Control::PmtuProbe {
                probe_id: 7,
                mtu: 576,
            },
        ),
        (
            "pmtu-ack",
            Control::PmtuAck {
                probe_id: 7,
                mtu: 1437,
            },
        ),
    ] {
        encode_control_datagram(peer(2), control, &mut datagram).expect("control");
        write(corpus, target, name, &datagram);
    }
    let frame = pod_frame(3000);
    let limit = FRAGMENT_HEADER_LEN + 1400;
    for (index, fragment) in fragments(&frame, limit, 9).iter().enumerate().take(2) {
        write(corpus, target, &format!("fragment-{index}"), fragment);
    }

    // Reassembly scripts (see the target's doc): op 0 = one datagram with a 2-byte length.
    let target = "sleeve_reassembly";
    let datagram_op = |script: &mut Vec<u8>, datagram: &[u8]| {
        script.push(0);
        script.extend_from_slice(&(datagram.len() as u16).to_be_bytes());
        script.extend_from_slice(datagram);
    };
    let small = pod_frame(300);
    let parts = fragments(&small, FRAGMENT_HEADER_LEN + 128, 1);
    let mut in_order = Vec::new();
    for part in &parts {
        datagram_op(&mut in_order, part);
    }
    write(corpus, target, "in-order", &in_order);
    let mut reversed = Vec::new();
    for part in parts.iter().rev() {
        datagram_op(&mut reversed, part);
    }
    write(corpus, target, "reversed", &reversed);
    let mut timed_out = Vec::new();
    datagram_op(&mut timed_out, &parts[0]);
    timed_out.extend_from_slice(&[1, 200]);
    for part in &parts[1..] {
        datagram_op(&mut timed_out, part);
    }
    write(corpus, target, "timed-out", &timed_out);
    // op 2: id, length/4 (2 bytes), limit - 105 (2 bytes), shuffle seed, loss; op 3: recycle.
    write(
        corpus,
        target,
        "split",
        &[
            2, 5, 0x01, 0x00, 0x01, 0x00, 77, 0, 3, 2, 6, 0x3f, 0xff, 0x05, 0x00, 3, 3,
        ],
    );
}

fn cni_seeds(corpus: &Path) {
    let sample = CniResult {
        interfaces: vec![
            Interface {
                name: "vethwe-abc".into(),
                mac: Some("02:aa:00:00:00:01".into()),
                mtu: Some(1376),
                sandbox: None,
            },
            Interface {
                name: "eth0".into(),
                mac: Some("02:aa:00:00:00:02".into()),
                mtu: Some(1376),
                sandbox: Some("/var/run/netns/pod".into()),
            },
        ],
        ips: vec![IpConfig {
            address: "10.32.0.2/12".into(),
            gateway: Some("10.32.0.1".into()),
            interface: Some(1),
        }],
        routes: vec![Route {
            dst: "0.0.0.0/0".into(),
            gw: Some("10.32.0.1".into()),
        }],
        dns: Some(serde_json::json!({"nameservers": ["10.96.0.10"], "search": ["svc.local"]})),
    };
    for text in SUPPORTED {
        let version = Version::parse(text).expect("supported");
        let result = sample.to_json(version);
        write(corpus, "cni_result", text, result.to_string().as_bytes());
        let config = serde_json::json!({
            "cniVersion": text,
            "name": "weave",
            "type": "weave-net",
            "hairpinMode": true,
            "mtu": 1376,
            "prevResult": result,
        });
        write(corpus, "cni_config", text, config.to_string().as_bytes());
    }
    let configs: [(&str, &str); 3] = [
        (
            "minimal",
            r#"{"cniVersion":"1.0.0","name":"weave","type":"weave-net"}"#,
        ),
        (
            "every-field",
            r#"{"cniVersion":"1.1.0","name":"n","bridge":"br0","mtu":1400,"hairpinMode":false,
"ipam":{"type":"host-local","subnet":"10.32.0.0/12","gateway":"10.32.0.1","routes":[{"dst":"0.0.0.0/0","gw":"10.32.0.1"}]},
"dns":{"nameservers":["10.0.0.10"]},"cni.dev/valid-attachments":[{"containerID":"abc","ifname":"eth0"}],
"prevResult":{"cniVersion":"1.1.0","ips":[{"address":"10.32.0.2/12"}]}}"#,
        ),
        (
            "weave-ipam",
            r#"{"cniVersion":"0.3.1","name":"weave","type":"weave-ipam","ipam":{"type":"weave-ipam","subnet":"10.40.0.0/16"}}"#,
        ),
    ];
    for (name, config) in configs {
        write(corpus, "cni_config", name, config.as_bytes());
    }
}

/// The stream of a sealed link after its header, as the `sealed_link` target reads it: a shape
/// byte (bit 0: which end reads, the rest: the read size), then records. Their bodies are fixed
/// bytes of the real sizes (a Noise handshake message is 48 bytes, a heartbeat record 23): no
/// seed can hold a message that opens, as the ephemeral keys are fresh each run.
fn sealed_seeds(corpus: &Path) {
    let record = |body: &[u8], out: &mut BytesMut| {
        let record = match body.is_empty() {
            true => Record::Abort,
            false => Record::Sealed(body.to_vec().into()),
        };
        encode_record(&record, out).expect("a record of a valid size");
    };
    let handshake: Vec<u8> = (0..48).collect();
    let heartbeat: Vec<u8> = (100..123).collect();
    let seeds: [(&str, u8, &[&[u8]]); 3] = [
        ("acceptor_first_message_then_record", 0, &[&handshake, &heartbeat]),
        ("dialler_reply_then_abort", 1, &[&handshake, &[]]),
        ("dialler_small_reads", 7, &[&handshake, &heartbeat, &heartbeat]),
    ];
    for (name, shape, bodies) in seeds {
        let mut seed = BytesMut::from(&[shape][..]);
        for body in bodies {
            record(body, &mut seed);
        }
        write(corpus, "sealed_link", name, &seed);
    }
}

/// The `sleeve_sealed` target (see its doc): a mode byte, then either a sealed datagram off the
/// network (even modes; sealed under a key the target does not hold, so that the seed is a real
/// shape that must still not open), or the body of a plain datagram to seal (odd modes), and a
/// sleeve key message. Deterministic: fixed keys and counters.
fn sealed_sleeve_seeds(corpus: &Path) {
    let target = "sleeve_sealed";
    let foreign = SleeveKey::from_bytes(1, [0x33; SLEEVE_KEY_LEN]);
    let mut sealing = SealingKey::new(&foreign, Direction::FromAcceptor, Instant::now());
    let mut datagram = Vec::new();
    encode_datagram_header(peer(2), &mut datagram);
    encode_frame_record(peer(3), peer(1), &pod_frame(64), &mut datagram).expect("frame");
    let mut sealed = Vec::new();
    sealing.seal(&datagram, &mut sealed).expect("seals");
    let mut seed = vec![0u8];
    seed.extend_from_slice(&sealed);
    write(corpus, target, "sealed-frame", &seed);
    let fragment = &fragments(&pod_frame(3000), FRAGMENT_HEADER_LEN + 1400, 9)[0];
    sealing.seal(fragment, &mut sealed).expect("seals");
    let mut seed = vec![2u8];
    seed.extend_from_slice(&sealed);
    write(corpus, target, "sealed-fragment", &seed);

    let mut seed = vec![1u8];
    seed.extend_from_slice(&datagram[DATAGRAM_HEADER_LEN..]);
    write(corpus, target, "plain-records", &seed);
    let mut seed = vec![3u8];
    seed.extend_from_slice(&fragment[DATAGRAM_HEADER_LEN..]);
    write(corpus, target, "plain-fragment", &seed);
    let mut seed = vec![4u8];
    seed.extend_from_slice(&foreign.encode().expect("encodes"));
    write(corpus, target, "sleeve-key", &seed);
}

fn main() {
    let corpus: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");

    let header = ProtocolHeader::OURS.encode();
    let mut stream = BytesMut::new();
    for (name, hello) in hellos() {
        let bytes = encode_message("hello", &hello).expect("encodes");
        write(&corpus, "message", &format!("hello-{name}"), &bytes);
        let mut handshake = BytesMut::from(&header[..]);
        encode_frame(bytes.clone(), &mut handshake).expect("frame");
        let reveal = Reveal {
            nonce: LinkNonce([1; 32]),
        };
        let reveal = encode_message("reveal", &reveal).expect("encodes");
        encode_frame(reveal.clone(), &mut handshake).expect("frame");
        write(&corpus, "handshake", name, &handshake);
        encode_frame(bytes.clone(), &mut stream).expect("frame");
    }
    for (name, msg) in messages() {
        let bytes = encode_message("message", &msg).expect("encodes");
        write(&corpus, "message", name, &bytes);
        encode_frame(bytes.clone(), &mut stream).expect("frame");
    }
    // Framing: a read size byte, then the frames; the last one cut short.
    for (name, step) in [("stream-whole", 255u8), ("stream-small-reads", 3)] {
        let mut seed = vec![step];
        seed.extend_from_slice(&stream);
        write(&corpus, "framing", name, &seed);
    }
    let mut cut = vec![64u8];
    cut.extend_from_slice(&stream[..stream.len() - 5]);
    write(&corpus, "framing", "stream-cut", &cut);

    let mesh = [
        record(1, &[2, 3]),
        record(2, &[1, 3]),
        record(3, &[1, 2, 4]),
        record(4, &[3]),
    ];
    write(
        &corpus,
        "topology",
        "mesh",
        &encode_topology(&mesh).expect("encodes"),
    );
    write(
        &corpus,
        "topology",
        "one",
        &encode_topology(&mesh[3..]).expect("encodes"),
    );
    write(
        &corpus,
        "topology",
        "empty",
        &encode_topology(&[]).expect("encodes"),
    );

    for (name, msg) in ipam_messages() {
        let bytes = weft::ipam::encode_message(&msg).expect("encodes");
        write(&corpus, "ipam", name, &bytes);
    }
    sleeve_seeds(&corpus);
    sealed_seeds(&corpus);
    sealed_sleeve_seeds(&corpus);
    cni_seeds(&corpus);
}
