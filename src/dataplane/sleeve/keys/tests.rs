use std::time::Instant;

use super::*;
use crate::wire::sleeve::encode_control_datagram;
use crate::wire::sleeve::seal::{SEAL_HEADROOM, SEAL_TAG_LEN};
use crate::wire::sleeve::{Control, SleeveDatagram};

fn peer(value: u64) -> PeerName {
    PeerName::from_u64(value).unwrap()
}

/// A heartbeat from `sender` with room to seal it in place.
fn heartbeat(sender: PeerName, connection_id: u64) -> Vec<u8> {
    let mut plain = Vec::new();
    encode_control_datagram(sender, Control::Heartbeat { connection_id }, &mut plain).unwrap();
    let mut buffer = vec![0; SEAL_HEADROOM];
    buffer.extend_from_slice(&plain);
    buffer.resize(buffer.len() + SEAL_TAG_LEN, 0);
    buffer
}

/// `a` seals to `b` and `b` opens from `a`, both with `key` on link 9.
fn pair(key: &SleeveKey) -> (SleeveKeys, SleeveKeys) {
    let (a, b) = (SleeveKeys::new(), SleeveKeys::new());
    b.install_opening(peer(1), 9, Direction::FromDialler, key)
        .unwrap();
    a.install_sealing(peer(2), 9, Direction::FromDialler, key, Instant::now());
    (a, b)
}

#[test]
fn a_sealed_heartbeat_opens_once_and_its_replay_is_counted_as_one() {
    let (a, b) = pair(&SleeveKey::from_bytes(0, [7; 32]));
    let mut datagram = heartbeat(peer(1), 42);
    a.seal(peer(2), &mut datagram).unwrap();
    let replayed = datagram.clone();
    let opened = b.open(&mut datagram).unwrap();
    let parsed = SleeveDatagram::parse(opened.datagram).unwrap();
    assert_eq!(parsed.sender(), peer(1));
    let error = b.open(&mut replayed.clone()).unwrap_err();
    assert_eq!(error.cause(), DropCause::Replay);
}

#[test]
fn unknown_senders_altered_and_plain_datagrams_fail_authentication() {
    let (a, b) = pair(&SleeveKey::from_bytes(0, [7; 32]));
    let mut datagram = heartbeat(peer(1), 42);
    a.seal(peer(2), &mut datagram).unwrap();
    let mut altered = datagram.clone();
    *altered.last_mut().unwrap() ^= 1;
    assert_eq!(b.open(&mut altered).unwrap_err().cause(), DropCause::Auth);
    // The same datagram under another sender's name: no key for it.
    let mut renamed = datagram.clone();
    renamed[..6].copy_from_slice(&peer(3).to_bytes());
    assert_eq!(b.open(&mut renamed).unwrap_err().cause(), DropCause::Auth);
    // A key of the wrong value is a forgery too.
    let (_, wrong) = pair(&SleeveKey::from_bytes(0, [8; 32]));
    assert_eq!(
        wrong.open(&mut datagram.clone()).unwrap_err().cause(),
        DropCause::Auth
    );
    assert!(b.open(&mut datagram).is_ok());
}

#[test]
fn sealing_needs_a_key_and_a_forgotten_link_has_none() {
    let (a, b) = pair(&SleeveKey::from_bytes(0, [7; 32]));
    let mut datagram = heartbeat(peer(1), 42);
    assert_eq!(
        a.seal(peer(3), &mut datagram).unwrap_err().cause(),
        DropCause::NoKey
    );
    // Another link's end leaves the keys of the current one alone.
    a.forget(peer(2), 8);
    a.seal(peer(2), &mut datagram.clone()).unwrap();
    a.forget(peer(2), 9);
    assert_eq!(
        a.seal(peer(2), &mut datagram).unwrap_err().cause(),
        DropCause::NoKey
    );
    b.forget(peer(1), 9);
    let (c, _) = pair(&SleeveKey::from_bytes(0, [7; 32]));
    let mut sealed = heartbeat(peer(1), 42);
    c.seal(peer(2), &mut sealed).unwrap();
    assert_eq!(b.open(&mut sealed).unwrap_err().cause(), DropCause::Auth);
}

#[test]
fn a_new_link_starts_the_peers_opening_keys_afresh() {
    let b = SleeveKeys::new();
    let first = SleeveKey::from_bytes(3, [1; 32]);
    b.install_opening(peer(1), 9, Direction::FromDialler, &first)
        .unwrap();
    // Epoch 0 again, on a new link: accepted (the old link's epochs mean nothing to it).
    let again = SleeveKey::from_bytes(0, [2; 32]);
    b.install_opening(peer(1), 10, Direction::FromAcceptor, &again)
        .unwrap();
    // The same link going backwards is a sender's bug.
    assert!(
        b.install_opening(peer(1), 10, Direction::FromAcceptor, &again)
            .is_err()
    );
    let a = SleeveKeys::new();
    a.install_sealing(peer(2), 10, Direction::FromAcceptor, &again, Instant::now());
    let mut datagram = heartbeat(peer(1), 1);
    a.seal(peer(2), &mut datagram).unwrap();
    assert!(b.open(&mut datagram).is_ok());
}
