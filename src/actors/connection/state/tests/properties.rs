//! Property tests of the link state machine: arbitrary bytes, cut anywhere, never panic a
//! handshake or an established link, and whatever it says ends with at most one `Closed`.

use proptest::prelude::*;

use super::*;

/// Checks what a state machine said after arbitrary input: at most one `Closed`, nothing after
/// it, and a closed state when it was said.
fn check_outputs(state: &mut LinkState, outputs: &mut Vec<LinkOutput>, now: Instant) {
    while let Some(output) = state.poll_output() {
        match output {
            LinkOutput::Admit => state.on_admission(now, Ok(())),
            LinkOutput::Handshaken(_) => state.on_registered(now, Ok(())),
            _ => {}
        }
        outputs.push(output);
    }
    let closes = outputs
        .iter()
        .filter(|output| matches!(output, LinkOutput::Closed(_)))
        .count();
    assert!(closes <= 1, "{outputs:?}");
    if closes == 1 {
        assert!(matches!(outputs.last(), Some(LinkOutput::Closed(_))));
        assert!(state.is_closed());
    }
    assert_eq!(closes == 1, state.is_closed());
}

fn message() -> impl Strategy<Value = ProtocolMsg> {
    prop_oneof![
        Just(ProtocolMsg::Heartbeat),
        prop::collection::vec(any::<u8>(), 0..100).prop_map(|payload| gossip(&payload)),
    ]
}

fn chunks() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..8)
}

proptest! {
    /// Whatever a stranger sends, a new link makes progress or closes cleanly, and at the
    /// handshake's deadline it has closed.
    #[test]
    fn arbitrary_bytes_never_panic_a_handshake(
        dialler in any::<bool>(),
        valid_header in any::<bool>(),
        sealed in any::<bool>(),
        chunks in chunks(),
    ) {
        let now = Instant::now();
        let (key, security) = match sealed {
            true => (Some(Arc::new(MeshKey::from_bytes([7; 32]))), Security::Sealed),
            false => (None, Security::Clear),
        };
        let mut state =
            LinkState::new(&identity(2, 20, "two"), TIMERS, key, LinkNonce::random(), dialler, now);
        let mut outputs = Vec::new();
        if valid_header {
            state.on_bytes(now, &ProtocolHeader::OURS.encode_for(security));
        }
        for chunk in &chunks {
            state.on_bytes(now, chunk);
            check_outputs(&mut state, &mut outputs, now);
        }
        state.handle_timeout(now + TIMERS.handshake_timeout);
        check_outputs(&mut state, &mut outputs, now);
        prop_assert!(state.is_closed());
    }

    /// Whatever an established peer sends, each frame is delivered or the link closes with a
    /// protocol error; silence past the read timeout closes it in any case.
    #[test]
    fn arbitrary_bytes_never_panic_an_established_link(
        messages in prop::collection::vec(message(), 0..4),
        chunks in chunks(),
    ) {
        let now = Instant::now();
        let (_, mut acceptor) = established(now);
        let mut outputs = Vec::new();
        for msg in &messages {
            acceptor.state.on_bytes(now, &frame_of(msg));
        }
        check_outputs(&mut acceptor.state, &mut outputs, now);
        let delivered = outputs.iter().filter(|o| matches!(o, LinkOutput::Received(_))).count();
        let expected = messages.iter().filter(|m| **m != ProtocolMsg::Heartbeat).count();
        prop_assert_eq!(delivered, expected);
        for chunk in &chunks {
            acceptor.state.on_bytes(now, chunk);
            check_outputs(&mut acceptor.state, &mut outputs, now);
        }
        if let Some(LinkOutput::Closed(reason)) = outputs.last() {
            prop_assert!(matches!(reason, ClosingReason::Protocol(_)), "{:?}", reason);
        }
        acceptor.state.handle_timeout(now + TIMERS.read_timeout);
        check_outputs(&mut acceptor.state, &mut outputs, now);
        prop_assert!(acceptor.state.is_closed());
    }
}
