//! A message framed once for many links: clear links put the very same buffer on their sockets,
//! sealed links seal from it, and the peer reads the same message either way.

use super::*;
use crate::actors::connection::FramedMessage;

const KEY: [u8; 32] = [0x17; 32];

/// The single transmission `end` queues next, as the actor would take it.
fn next_transmission(end: &mut End) -> Bytes {
    match end.state.poll_output() {
        Some(LinkOutput::Transmit(bytes)) => bytes,
        other => panic!("expected bytes to send, got {other:?}"),
    }
}

/// `message` framed once for every link, and the frame it holds (small messages always frame).
fn framed_once(message: &ProtocolMsg) -> (FramedMessage, Bytes) {
    let framed = FramedMessage::of(message);
    let FramedMessage::Frame(frame) = &framed else {
        panic!("a small message frames: {framed:?}");
    };
    let frame = frame.clone();
    (framed, frame)
}

#[test]
fn clear_links_send_the_shared_frame_itself_without_a_copy() {
    let now = Instant::now();
    let (mut one, mut two) = established(now);
    let message = gossip(b"one topology update for every neighbour");
    let (framed, frame) = framed_once(&message);
    one.state.send_framed(&framed);
    two.state.send_framed(&framed);
    let (from_one, from_two) = (next_transmission(&mut one), next_transmission(&mut two));
    // The same allocation, not equal copies of it.
    assert_eq!(from_one.as_ptr(), frame.as_ptr());
    assert_eq!(from_two.as_ptr(), frame.as_ptr());
    assert_eq!(from_one, frame_of(&message));
    // And it is what the peer reads.
    two.state.on_bytes(now, &from_one);
    two.step(now);
    assert!(two.outputs.contains(&LinkOutput::Received(message)));
}

#[test]
fn sealed_links_seal_the_shared_frame_and_the_peer_opens_the_same_message() {
    let now = Instant::now();
    let mut dialler = End::sealed(&identity(1, 10, "one"), true, Some(KEY), now);
    let mut acceptor = End::sealed(&identity(2, 20, "two"), false, Some(KEY), now);
    converse(&mut dialler, &mut acceptor, now);
    let message = gossip(b"a marker the underlay must not see");
    let (framed, frame) = framed_once(&message);
    dialler.state.send_framed(&framed);
    let sealed = next_transmission(&mut dialler);
    assert_ne!(sealed.as_ptr(), frame.as_ptr());
    assert!(
        !sealed
            .windows(b"a marker".len())
            .any(|window| window == b"a marker"),
        "the frame went out in the clear"
    );
    acceptor.state.on_bytes(now, &sealed);
    acceptor.step(now);
    assert!(acceptor.outputs.contains(&LinkOutput::Received(message)));
}

#[test]
fn what_cannot_be_framed_is_reported_once_per_link_and_the_link_stays() {
    let now = Instant::now();
    let (mut one, _) = established(now);
    let framed = FramedMessage::of(&gossip(&vec![0; MAX_FRAME_BYTES + 1]));
    assert!(matches!(framed, FramedMessage::TooLarge { bytes } if bytes > MAX_FRAME_BYTES));
    one.state.send_framed(&framed);
    assert!(one.step(now).is_empty());
    assert!(matches!(
        one.outputs.last(),
        Some(LinkOutput::Oversized { bytes }) if *bytes > MAX_FRAME_BYTES
    ));
    assert!(!one.state.is_closed());
}
