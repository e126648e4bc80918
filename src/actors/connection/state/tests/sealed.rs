//! Sealed links (the mesh password) driven directly: the same key establishes with nothing in
//! the clear, different keys or a key at one end only are refused at both ends with the reasons
//! documented, an altered byte closes the link, a message larger than a record crosses whole, and
//! the sleeve's keys are agreed and rekeyed inside the channel.

use super::*;

const KEY: [u8; 32] = [0x42; 32];

/// A dialler (peer 1, nickname "one") and an acceptor (peer 2, "two") with these keys, after
/// they said all they had to; every byte that crossed, both ways.
fn sealed_pair(
    dialler_key: Option<[u8; 32]>,
    acceptor_key: Option<[u8; 32]>,
) -> (End, End, Vec<u8>) {
    let (dialler, acceptor, to_acceptor, to_dialler) = sealed_pair_apart(dialler_key, acceptor_key);
    (dialler, acceptor, [to_acceptor, to_dialler].concat())
}

/// The same, with the bytes each way apart: (dialler, acceptor, to the acceptor, to the dialler).
fn sealed_pair_apart(
    dialler_key: Option<[u8; 32]>,
    acceptor_key: Option<[u8; 32]>,
) -> (End, End, Vec<u8>, Vec<u8>) {
    let now = Instant::now();
    let mut dialler = End::sealed(&identity(1, 10, "one"), true, dialler_key, now);
    let mut acceptor = End::sealed(&identity(2, 20, "two"), false, acceptor_key, now);
    let (mut to_acceptor, mut to_dialler) = (Vec::new(), Vec::new());
    for _ in 0..16 {
        let sent_by_dialler = dialler.step(now);
        let sent_by_acceptor = acceptor.step(now);
        if sent_by_dialler.is_empty() && sent_by_acceptor.is_empty() {
            break;
        }
        to_acceptor.extend(&sent_by_dialler);
        to_dialler.extend(&sent_by_acceptor);
        acceptor.state.on_bytes(now, &sent_by_dialler);
        dialler.state.on_bytes(now, &sent_by_acceptor);
    }
    (dialler, acceptor, to_acceptor, to_dialler)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

#[test]
fn sealed_ends_with_the_same_key_establish_and_nothing_crosses_in_the_clear() {
    let (mut dialler, mut acceptor, crossed) = sealed_pair(Some(KEY), Some(KEY));
    assert!(
        dialler.outputs.contains(&LinkOutput::Established),
        "{:?}",
        dialler.outputs
    );
    assert!(
        acceptor.outputs.contains(&LinkOutput::Established),
        "{:?}",
        acceptor.outputs
    );
    assert_eq!(dialler.link_id(), acceptor.link_id());
    // Messages cross both ways, sealed: the payload is nowhere in the bytes.
    let now = Instant::now();
    dialler.state.send(&gossip(b"topology-secret-payload"));
    let sent = dialler.step(now);
    assert!(!contains(&sent, b"topology-secret-payload"));
    acceptor.state.on_bytes(now, &sent);
    acceptor.step(now);
    assert_eq!(
        acceptor.outputs.last(),
        Some(&LinkOutput::Received(gossip(b"topology-secret-payload")))
    );
    // The same conversation without a password shows the nicknames: the check can fail.
    let (_, _, clear) = sealed_pair(None, None);
    assert!(contains(&clear, b"one") && contains(&clear, b"two"));
    assert!(
        !contains(&crossed, b"one") && !contains(&crossed, b"two"),
        "nicknames in the clear"
    );
}

#[test]
fn different_passwords_fail_at_both_ends_with_the_reasons_documented() {
    let (dialler, acceptor, crossed) = sealed_pair(Some(KEY), Some([0x43; 32]));
    assert_eq!(
        dialler.closed_with(),
        Some(&ClosingReason::AuthenticationFailed)
    );
    assert_eq!(
        acceptor.closed_with(),
        Some(&ClosingReason::PeerLacksPassword)
    );
    for end in [&dialler, &acceptor] {
        assert_eq!(end.link_id(), None, "neither learnt who the other is");
    }
    assert!(!contains(&crossed, b"one") && !contains(&crossed, b"two"));
}

#[test]
fn a_password_at_one_end_only_is_refused_at_both_whoever_dials() {
    for (dialler_key, acceptor_key) in [(Some(KEY), None), (None, Some(KEY))] {
        let (dialler, acceptor, to_acceptor, to_dialler) =
            sealed_pair_apart(dialler_key, acceptor_key);
        // The end with the password said nothing but its header.
        let sealed_said = match dialler_key {
            Some(_) => &to_acceptor,
            None => &to_dialler,
        };
        assert_eq!(sealed_said, b"WEFT\x02\x02");
        let reason = |key: Option<[u8; 32]>| match key {
            Some(_) => ClosingReason::PeerLacksPassword,
            None => ClosingReason::PasswordRequired,
        };
        assert_eq!(dialler.closed_with(), Some(&reason(dialler_key)));
        assert_eq!(acceptor.closed_with(), Some(&reason(acceptor_key)));
        assert_eq!(acceptor.link_id(), None);
        assert!(
            !acceptor.outputs.contains(&LinkOutput::Admit),
            "the password end read nothing from the other"
        );
    }
}

#[test]
fn a_byte_altered_in_transit_closes_the_link() {
    let now = Instant::now();
    let (mut dialler, mut acceptor, _) = sealed_pair(Some(KEY), Some(KEY));
    dialler.state.send(&gossip(b"payload"));
    let mut sent = dialler.step(now);
    let last = sent.len() - 1;
    sent[last] ^= 0x01;
    acceptor.state.on_bytes(now, &sent);
    acceptor.step(now);
    assert!(
        matches!(acceptor.closed_with(), Some(ClosingReason::Protocol(why)) if why.contains("altered")),
        "{:?}",
        acceptor.outputs
    );
    assert!(
        !acceptor
            .outputs
            .contains(&LinkOutput::Received(gossip(b"payload")))
    );
}

#[test]
fn a_sealed_message_larger_than_a_record_crosses_whole() {
    let now = Instant::now();
    let (mut dialler, mut acceptor, _) = sealed_pair(Some(KEY), Some(KEY));
    let big = gossip(&vec![0x5a; 3 * crate::wire::MAX_RECORD_PLAINTEXT]);
    dialler.state.send(&big);
    let sent = dialler.step(now);
    // Delivered in pieces that cut records anywhere.
    for piece in sent.chunks(40_000) {
        acceptor.state.on_bytes(now, piece);
    }
    acceptor.step(now);
    assert_eq!(acceptor.outputs.last(), Some(&LinkOutput::Received(big)));
}

#[test]
fn sealed_ends_agree_sleeve_keys_and_rekey_on_time() {
    let start = Instant::now();
    let rekey = TIMERS.sleeve_rekey_interval;
    let mut dialler = End::sealed(&identity(1, 10, "one"), true, Some(KEY), start);
    let mut acceptor = End::sealed(&identity(2, 20, "two"), false, Some(KEY), start);
    converse(&mut dialler, &mut acceptor, start);
    let epoch_0 = |from_dialler: bool| {
        let (mine, theirs) = if from_dialler {
            (Direction::FromDialler, Direction::FromAcceptor)
        } else {
            (Direction::FromAcceptor, Direction::FromDialler)
        };
        vec![(KeyRole::Opening, theirs, 0), (KeyRole::Sealing, mine, 0)]
    };
    // Each opens the other's key, and seals with its own once acknowledged.
    assert_eq!(dialler.installed_keys(), epoch_0(true));
    assert_eq!(acceptor.installed_keys(), epoch_0(false));
    assert!(dialler.state.poll_timeout().unwrap() <= start + rekey);

    // Heartbeats keep the link up until the key's time is over; then a new epoch each way.
    let mut now = start;
    while now < start + rekey {
        now += TIMERS.heartbeat_interval;
        dialler.state.handle_timeout(now);
        acceptor.state.handle_timeout(now);
        converse(&mut dialler, &mut acceptor, now);
    }
    assert!(!dialler.state.is_closed() && !acceptor.state.is_closed());
    let mut keys = dialler.installed_keys().split_off(2);
    keys.sort_by_key(|&(role, _, _)| role == KeyRole::Sealing);
    assert_eq!(
        keys,
        [
            (KeyRole::Opening, Direction::FromAcceptor, 1),
            (KeyRole::Sealing, Direction::FromDialler, 1)
        ]
    );
    assert_eq!(acceptor.installed_keys().len(), 4);
}

#[test]
fn a_sleeve_key_on_a_link_without_a_password_is_a_protocol_error() {
    let now = Instant::now();
    let (mut dialler, mut acceptor) = established(now);
    let key = SleeveKey::random(0).encode().unwrap();
    let frame = frame_of(&ProtocolMsg::SleeveKey {
        key: crate::wire::SleeveKeyBytes::new(&key),
    });
    acceptor.state.on_bytes(now, &frame);
    acceptor.step(now);
    assert!(matches!(
        acceptor.closed_with(),
        Some(ClosingReason::Protocol(_))
    ));
    dialler.step(now);
}
