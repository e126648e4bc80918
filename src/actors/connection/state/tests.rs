//! The link state machine driven directly: two of them talking through byte buffers, time
//! injected, the shell's answers (admission, registration) given by hand.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::*;
use crate::topology::PeerUid;
use crate::wire::{
    HEADER_LEN, Hello, LinkCommitment, ProtocolHeader, RefusalReason, Reveal, Security,
    encode_frame, encode_message,
};

mod properties;
mod sealed;
mod shared_frames;

const TIMERS: LinkTimers = LinkTimers {
    handshake_timeout: Duration::from_secs(10),
    heartbeat_interval: Duration::from_secs(2),
    read_timeout: Duration::from_secs(6),
    sleeve_rekey_interval: Duration::from_secs(120),
};

fn identity(name: u64, uid: u64, nickname: &str) -> LocalIdentity {
    LocalIdentity {
        name: PeerName::from_u64(name).unwrap(),
        nickname: nickname.into(),
        uid: PeerUid(uid),
        listen_port: 6783,
        overlays: vec!["sleeve".into()],
    }
}

/// One end of a link with a shell that answers at once: admission as set, registration granted.
struct End {
    state: LinkState,
    /// Every output but the bytes, in order.
    outputs: Vec<LinkOutput>,
    admission: Option<Result<(), (ClosingReason, Refusal)>>,
}

impl End {
    fn new(identity: &LocalIdentity, dialler: bool, now: Instant) -> Self {
        Self::sealed(identity, dialler, None, now)
    }

    /// An end whose mesh has the key `key` (none: no password).
    fn sealed(
        identity: &LocalIdentity,
        dialler: bool,
        key: Option<[u8; 32]>,
        now: Instant,
    ) -> Self {
        let key = key.map(|key| Arc::new(MeshKey::from_bytes(key)));
        Self {
            state: LinkState::new(identity, TIMERS, key, LinkNonce::random(), dialler, now),
            outputs: Vec::new(),
            admission: None,
        }
    }

    /// Carries out what the state asks; returns the bytes it wants sent.
    fn step(&mut self, now: Instant) -> Vec<u8> {
        let mut sent = Vec::new();
        while let Some(output) = self.state.poll_output() {
            match output {
                LinkOutput::Transmit(bytes) => sent.extend_from_slice(&bytes),
                LinkOutput::Admit => {
                    let decision = self.admission.take().unwrap_or(Ok(()));
                    self.outputs.push(LinkOutput::Admit);
                    self.state.on_admission(now, decision);
                }
                LinkOutput::Handshaken(handshaken) => {
                    self.outputs.push(LinkOutput::Handshaken(handshaken));
                    self.state.on_registered(now, Ok(()));
                }
                LinkOutput::InstallSleeveKey {
                    role,
                    direction,
                    key,
                } => {
                    // Installed at once; the record keeps what the sleeve was given.
                    self.state.on_sleeve_key_installed(now, role, key.epoch);
                    self.outputs.push(LinkOutput::InstallSleeveKey {
                        role,
                        direction,
                        key,
                    });
                }
                other => self.outputs.push(other),
            }
        }
        sent
    }

    /// The sleeve keys this end installed, in order: (role, direction, epoch).
    fn installed_keys(&self) -> Vec<(KeyRole, Direction, u32)> {
        self.outputs
            .iter()
            .filter_map(|output| match output {
                LinkOutput::InstallSleeveKey {
                    role,
                    direction,
                    key,
                } => Some((*role, *direction, key.epoch)),
                _ => None,
            })
            .collect()
    }

    fn closed_with(&self) -> Option<&ClosingReason> {
        self.outputs.iter().find_map(|output| match output {
            LinkOutput::Closed(reason) => Some(reason),
            _ => None,
        })
    }

    fn link_id(&self) -> Option<u64> {
        self.outputs.iter().find_map(|output| match output {
            LinkOutput::Handshaken(handshaken) => Some(handshaken.link_id),
            _ => None,
        })
    }
}

/// Passes bytes both ways until neither end has anything to say.
fn converse(a: &mut End, b: &mut End, now: Instant) {
    for _ in 0..16 {
        let to_b = a.step(now);
        let to_a = b.step(now);
        if to_a.is_empty() && to_b.is_empty() {
            return;
        }
        b.state.on_bytes(now, &to_b);
        a.state.on_bytes(now, &to_a);
    }
    panic!("the ends kept talking");
}

/// A dialler (peer 1) and an acceptor (peer 2), handshaken, registered and established.
fn established(now: Instant) -> (End, End) {
    let mut dialler = End::new(&identity(1, 10, "one"), true, now);
    let mut acceptor = End::new(&identity(2, 20, "two"), false, now);
    converse(&mut dialler, &mut acceptor, now);
    (dialler, acceptor)
}

fn frame_of<T: serde::Serialize>(message: &T) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_frame(encode_message("test", message).unwrap(), &mut out).unwrap();
    out.to_vec()
}

fn gossip(payload: &[u8]) -> ProtocolMsg {
    ProtocolMsg::Gossip {
        channel: "topology".into(),
        payload: payload.to_vec().into(),
    }
}

#[test]
fn two_ends_agree_on_the_link_id_register_and_establish() {
    let now = Instant::now();
    let (dialler, acceptor) = established(now);
    assert!(dialler.link_id().is_some());
    assert_eq!(dialler.link_id(), acceptor.link_id());
    let LinkOutput::Handshaken(seen) = &dialler.outputs[0] else {
        panic!("{:?}", dialler.outputs);
    };
    assert_eq!(seen.theirs.nickname, "two");
    assert_eq!(seen.theirs.overlays, vec!["sleeve".to_string()]);
    assert!(matches!(
        &acceptor.outputs[..],
        [
            LinkOutput::Admit,
            LinkOutput::Handshaken(_),
            LinkOutput::Established
        ]
    ));
    assert!(matches!(
        &dialler.outputs[..],
        [LinkOutput::Handshaken(_), LinkOutput::Established]
    ));
    assert!(!dialler.state.is_closed() && !acceptor.state.is_closed());
}

#[test]
fn a_handshake_fed_one_byte_at_a_time_ends_the_same() {
    let now = Instant::now();
    let mut dialler = End::new(&identity(1, 10, "one"), true, now);
    let mut acceptor = End::new(&identity(2, 20, "two"), false, now);
    for _ in 0..16 {
        let to_acceptor = dialler.step(now);
        let to_dialler = acceptor.step(now);
        if to_acceptor.is_empty() && to_dialler.is_empty() {
            break;
        }
        for byte in to_acceptor {
            acceptor.state.on_bytes(now, &[byte]);
        }
        for byte in to_dialler {
            dialler.state.on_bytes(now, &[byte]);
        }
    }
    assert!(dialler.link_id().is_some());
    assert_eq!(dialler.link_id(), acceptor.link_id());
    assert!(dialler.outputs.contains(&LinkOutput::Established));
}

#[test]
fn a_refused_dialler_learns_why_and_where_else_to_go() {
    let now = Instant::now();
    let mut dialler = End::new(&identity(1, 10, "one"), true, now);
    let mut acceptor = End::new(&identity(2, 20, "two"), false, now);
    let elsewhere: SocketAddr = "192.0.2.7:6783".parse().unwrap();
    acceptor.admission = Some(Err((
        ClosingReason::LimitReached { limit: 3 },
        Refusal {
            reason: RefusalReason::ConnectionLimit { limit: 3 },
            alternatives: vec![elsewhere],
        },
    )));
    converse(&mut dialler, &mut acceptor, now);
    assert_eq!(
        acceptor.closed_with(),
        Some(&ClosingReason::LimitReached { limit: 3 })
    );
    assert_eq!(
        dialler.closed_with(),
        Some(&ClosingReason::Refused(RefusalReason::ConnectionLimit {
            limit: 3
        }))
    );
    assert_eq!(dialler.link_id(), None);
    let end = dialler.state.end(now, false);
    assert_eq!(end.alternatives, vec![elsewhere]);
    assert!(
        !end.terminated,
        "a link that never came up is no termination"
    );
}

#[test]
fn vetting_turns_away_ourselves_our_name_and_unsafe_nicknames() {
    let now = Instant::now();
    let cases = [
        (identity(1, 10, "one"), ClosingReason::ConnectToSelf),
        (identity(1, 11, "other"), ClosingReason::NameCollision),
    ];
    for (remote, expected) in cases {
        let mut dialler = End::new(&identity(1, 10, "one"), true, now);
        let mut acceptor = End::new(&remote, false, now);
        converse(&mut dialler, &mut acceptor, now);
        assert_eq!(dialler.closed_with(), Some(&expected));
        assert_eq!(dialler.link_id(), None, "never registered");
    }
    let mut dialler = End::new(&identity(1, 10, "one"), true, now);
    let mut acceptor = End::new(&identity(2, 20, "two\nlines"), false, now);
    converse(&mut dialler, &mut acceptor, now);
    assert!(
        matches!(dialler.closed_with(), Some(ClosingReason::Protocol(_))),
        "{:?}",
        dialler.outputs
    );
    assert_eq!(dialler.state.end(now, false).peer, None);
}

#[test]
fn a_stranger_that_is_not_a_weft_peer_is_a_protocol_error() {
    let now = Instant::now();
    let mut acceptor = End::new(&identity(2, 20, "two"), false, now);
    acceptor.state.on_bytes(now, b"GET / HTTP/1.1\r\n");
    acceptor.step(now);
    assert!(
        matches!(acceptor.closed_with(), Some(ClosingReason::Protocol(why)) if why.contains("magic"))
    );
}

#[test]
fn a_reflected_commitment_is_refused_before_our_share_is_revealed() {
    let now = Instant::now();
    let mut dialler = End::new(&identity(1, 10, "one"), true, now);
    let sent = dialler.step(now);
    let Hello::Features(ours) = decode_message::<Hello>("hello", &sent[HEADER_LEN + 4..]).unwrap()
    else {
        panic!("the dialler presents itself");
    };
    let mut reply = ProtocolHeader::OURS.encode().to_vec();
    reply.extend(frame_of(&Hello::Features(Features {
        name: PeerName::from_u64(2).unwrap(),
        nickname: "copycat".into(),
        ..ours
    })));
    dialler.state.on_bytes(now, &reply);
    assert!(dialler.step(now).is_empty(), "no reveal went out");
    assert!(
        matches!(dialler.closed_with(), Some(ClosingReason::Protocol(why)) if why.contains("commitment"))
    );
}

#[test]
fn a_reveal_that_does_not_open_the_commitment_ends_the_handshake() {
    let now = Instant::now();
    let mut acceptor = End::new(&identity(2, 20, "two"), false, now);
    let mut hello = ProtocolHeader::OURS.encode().to_vec();
    hello.extend(frame_of(&Hello::Features(Features {
        name: PeerName::from_u64(1).unwrap(),
        nickname: "one".into(),
        uid: PeerUid(10),
        conn_commit: LinkCommitment([7; 32]),
        overlays: Vec::new(),
        listen_port: 6783,
    })));
    hello.extend(frame_of(&Reveal {
        nonce: LinkNonce::random(),
    }));
    acceptor.state.on_bytes(now, &hello);
    acceptor.step(now);
    assert!(
        matches!(acceptor.closed_with(), Some(ClosingReason::Protocol(why)) if why.contains("share"))
    );
    assert_eq!(acceptor.link_id(), None);
}

#[test]
fn an_oversized_hello_is_refused_from_its_length_prefix() {
    let now = Instant::now();
    let mut acceptor = End::new(&identity(2, 20, "two"), false, now);
    let mut bytes = ProtocolHeader::OURS.encode().to_vec();
    bytes.extend(((MAX_HELLO + 1) as u32).to_be_bytes());
    acceptor.state.on_bytes(now, &bytes);
    acceptor.step(now);
    assert!(
        matches!(acceptor.closed_with(), Some(ClosingReason::Protocol(why)) if why.contains("exceeds"))
    );
}

const MAX_HELLO: usize = super::super::MAX_HELLO_BYTES;

#[test]
fn the_handshake_times_out_at_its_deadline_and_not_before() {
    let start = Instant::now();
    let mut acceptor = End::new(&identity(2, 20, "two"), false, start);
    let deadline = start + TIMERS.handshake_timeout;
    assert_eq!(acceptor.state.poll_timeout(), Some(deadline));
    acceptor
        .state
        .handle_timeout(deadline - Duration::from_millis(1));
    acceptor.step(start);
    assert_eq!(acceptor.closed_with(), None);
    acceptor.state.handle_timeout(deadline);
    acceptor.step(deadline);
    assert_eq!(
        acceptor.closed_with(),
        Some(&ClosingReason::HandshakeTimeout)
    );
    assert_eq!(acceptor.state.poll_timeout(), None);
}

#[test]
fn heartbeats_go_out_on_time_and_silence_ends_the_link() {
    let t0 = Instant::now();
    let (mut dialler, mut acceptor) = established(t0);
    let heartbeat = frame_of(&ProtocolMsg::Heartbeat);
    assert_eq!(
        dialler.state.poll_timeout(),
        Some(t0 + TIMERS.heartbeat_interval)
    );
    let t1 = t0 + TIMERS.heartbeat_interval;
    dialler.state.handle_timeout(t1);
    assert_eq!(dialler.step(t1), heartbeat);
    // The acceptor hears it, so its read deadline moves; the dialler hears nothing.
    acceptor.state.on_bytes(t1, &heartbeat);
    let silent_until = t0 + TIMERS.read_timeout;
    for now in [silent_until - Duration::from_millis(1), silent_until] {
        dialler.state.handle_timeout(now);
        acceptor.state.handle_timeout(now);
        dialler.step(now);
        acceptor.step(now);
    }
    assert_eq!(
        dialler.closed_with(),
        Some(&ClosingReason::HeartbeatTimeout)
    );
    assert_eq!(acceptor.closed_with(), None, "it heard a heartbeat at t1");
    let end = dialler.state.end(silent_until, false);
    assert_eq!(end.lived, TIMERS.read_timeout);
    assert!(end.terminated);
}

/// A dialler and an acceptor's bare state, driven until the acceptor asks to be registered. The
/// dialler, registered at once, has sent its first heartbeat by then.
fn acceptor_registering(now: Instant) -> (End, LinkState) {
    let mut dialler = End::new(&identity(1, 10, "one"), true, now);
    let mut acceptor = LinkState::new(
        &identity(2, 20, "two"),
        TIMERS,
        None,
        LinkNonce::random(),
        false,
        now,
    );
    for _ in 0..8 {
        let mut to_dialler = Vec::new();
        let mut handshaken = false;
        while let Some(output) = acceptor.poll_output() {
            match output {
                LinkOutput::Transmit(bytes) => to_dialler.extend_from_slice(&bytes),
                LinkOutput::Admit => acceptor.on_admission(now, Ok(())),
                LinkOutput::Handshaken(_) => handshaken = true,
                other => panic!("{other:?}"),
            }
        }
        if handshaken {
            return (dialler, acceptor);
        }
        dialler.state.on_bytes(now, &to_dialler);
        acceptor.on_bytes(now, &dialler.step(now));
    }
    panic!("the acceptor never finished its handshake");
}

#[test]
fn bytes_that_arrive_while_registering_wait_for_the_registration() {
    let now = Instant::now();
    let (mut dialler, mut acceptor) = acceptor_registering(now);
    dialler.state.send(&gossip(b"early"));
    acceptor.on_bytes(now, &dialler.step(now));
    assert_eq!(
        acceptor.poll_output(),
        None,
        "nothing is read while registering"
    );
    acceptor.on_registered(now, Ok(()));
    let outputs: Vec<_> = std::iter::from_fn(|| acceptor.poll_output()).collect();
    assert_eq!(
        outputs,
        vec![
            LinkOutput::Transmit(frame_of(&ProtocolMsg::Heartbeat).into()),
            LinkOutput::Established,
            LinkOutput::Received(gossip(b"early")),
        ]
    );
}

#[test]
fn a_registration_gossip_refuses_closes_with_its_reason() {
    let now = Instant::now();
    let (_, mut acceptor) = acceptor_registering(now);
    acceptor.on_registered(now, Err(ClosingReason::Duplicate));
    assert_eq!(
        acceptor.poll_output(),
        Some(LinkOutput::Closed(ClosingReason::Duplicate))
    );
    assert_eq!(acceptor.poll_output(), None);
    assert!(!acceptor.end(now, false).terminated, "it never came up");
}

#[test]
fn messages_before_a_bad_frame_are_delivered_then_the_link_closes() {
    let now = Instant::now();
    for (bad, expected) in [
        (
            ((MAX_FRAME_BYTES + 1) as u32).to_be_bytes().to_vec(),
            "exceeds",
        ),
        (vec![0, 0, 0, 2, 0xc1, 0xc1], "malformed"),
    ] {
        let (_, mut acceptor) = established(now);
        let mut bytes = frame_of(&gossip(b"first"));
        bytes.extend(&bad);
        bytes.extend(frame_of(&gossip(b"never")));
        acceptor.state.on_bytes(now, &bytes);
        acceptor.step(now);
        let tail = &acceptor.outputs[acceptor.outputs.len() - 2..];
        assert_eq!(tail[0], LinkOutput::Received(gossip(b"first")));
        assert!(
            matches!(&tail[1], LinkOutput::Closed(ClosingReason::Protocol(why)) if why.contains(expected)),
            "{tail:?}"
        );
        acceptor.state.on_bytes(now, &frame_of(&gossip(b"after")));
        assert_eq!(
            acceptor.state.poll_output(),
            None,
            "a closed link reads nothing"
        );
    }
}

#[test]
fn a_message_too_large_to_send_is_dropped_and_the_link_stays() {
    let now = Instant::now();
    let (mut dialler, _) = established(now);
    dialler.state.send(&gossip(&vec![0; MAX_FRAME_BYTES + 1]));
    assert!(dialler.step(now).is_empty());
    assert!(matches!(
        dialler.outputs.last(),
        Some(LinkOutput::Oversized { bytes }) if *bytes > MAX_FRAME_BYTES
    ));
    dialler.state.send(&gossip(b"small"));
    assert_eq!(dialler.step(now), frame_of(&gossip(b"small")));
    assert!(!dialler.state.is_closed());
}

#[test]
fn the_first_reason_given_is_the_one_reported_and_undelivered_messages_are_dropped() {
    let now = Instant::now();
    let (_, mut acceptor) = established(now);
    acceptor.state.send(&gossip(b"out"));
    acceptor.state.on_bytes(now, &frame_of(&gossip(b"in")));
    acceptor.state.close(ClosingReason::Duplicate);
    acceptor.state.close(ClosingReason::HeartbeatTimeout);
    let outputs: Vec<_> = std::iter::from_fn(|| acceptor.state.poll_output()).collect();
    assert_eq!(
        outputs,
        vec![
            LinkOutput::Transmit(frame_of(&gossip(b"out")).into()),
            LinkOutput::Closed(ClosingReason::Duplicate)
        ]
    );
    assert_eq!(
        acceptor.state.end(now, true).reason,
        ClosingReason::Duplicate
    );
}

#[test]
fn a_link_dropped_without_a_reason_panicked_unless_its_router_is_stopping() {
    let now = Instant::now();
    let (mut stopping, mut panicked) = established(now);
    let later = now + Duration::from_secs(3);
    let stopped = stopping.state.end(later, true);
    assert_eq!(stopped.reason, ClosingReason::ShuttingDown);
    assert_eq!(stopped.peer, Some(PeerName::from_u64(2).unwrap()));
    assert_eq!(stopped.lived, Duration::from_secs(3));
    assert_eq!(
        panicked.state.end(later, false).reason,
        ClosingReason::Panicked
    );
}

#[test]
fn a_drained_input_buffer_gives_back_what_a_large_frame_made_it_allocate() {
    let now = Instant::now();
    let (_, mut acceptor) = established(now);
    // A frame of the size a 250-peer topology comes in, read in socket-sized pieces.
    let large = frame_of(&gossip(&vec![7; 300 * 1024]));
    let (head, tail) = large.split_at(large.len() - 100);
    for piece in head.chunks(64 * 1024) {
        acceptor.state.on_bytes(now, piece);
    }
    assert!(acceptor.state.input_capacity() >= head.len() - 64 * 1024);
    acceptor.state.on_bytes(now, tail);
    acceptor.step(now);
    assert!(
        acceptor
            .outputs
            .iter()
            .any(|output| matches!(output, LinkOutput::Received(msg) if *msg == gossip(&vec![7; 300 * 1024]))),
        "the large frame was not delivered"
    );
    assert_eq!(acceptor.state.input_capacity(), 0);
    // Half a frame waits in the buffer; the rest completes it, and the buffer goes again.
    let small = frame_of(&gossip(b"small"));
    let (first, rest) = small.split_at(3);
    acceptor.state.on_bytes(now, first);
    assert!(acceptor.state.input_capacity() >= 3);
    acceptor.state.on_bytes(now, rest);
    assert_eq!(acceptor.state.input_capacity(), 0);
}
