//! Fuzz target: sealed sleeve datagrams (`weft::wire::sleeve::seal`) and the key message that
//! delivers their keys. The first byte chooses what the rest is:
//!
//! - even: a datagram off the network, opened by a receiver holding keys for epochs 0 and 1. It
//!   must never open (no input can carry a valid tag without the key), and a refusal must leave
//!   the receiver as it was: a datagram sealed afterwards under either key still opens.
//! - odd: the body of a plain datagram (a fragment when bit 1 is set), sealed and opened again:
//!   it must come back byte for byte, a replay of it must be refused, and the sealed datagram
//!   with the byte chosen by the first two bytes of the body changed must not open.
//!
//! Either way the rest is also decoded as a `SleeveKey` message; one that decodes must encode and
//! decode again to the same epoch.

#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use weft::topology::PeerName;
use weft::wire::sleeve::seal::{
    Direction, MAX_SEALABLE_LEN, OpeningKeys, SealingKey, SleeveKey, is_sealed,
};
use weft::wire::sleeve::{DATAGRAM_HEADER_LEN, FLAG_FRAGMENT, SLEEVE_VERSION};

const KEY_0: [u8; 32] = [0x11; 32];
const KEY_1: [u8; 32] = [0x22; 32];

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if let Ok(key) = SleeveKey::decode(rest) {
        let again = SleeveKey::decode(&key.encode().expect("a decoded key encodes"))
            .expect("an encoded key decodes");
        assert_eq!(again.epoch, key.epoch);
    }

    let now = Instant::now();
    let (old, new) = (
        SleeveKey::from_bytes(0, KEY_0),
        SleeveKey::from_bytes(1, KEY_1),
    );
    let mut opening = OpeningKeys::new(Direction::FromAcceptor);
    opening.install(&old).expect("first key");
    let mut sealing_old = SealingKey::new(&old, Direction::FromAcceptor, now);
    opening.install(&new).expect("newer key");
    let mut sealing = SealingKey::new(&new, Direction::FromAcceptor, now);
    let sender = PeerName::from_u64(0x0a00_0000_0001).expect("fits 48 bits");

    if mode & 1 == 0 {
        let mut received = rest.to_vec();
        assert!(
            opening.open(&mut received).is_err(),
            "opened without the key"
        );
        let mut plain = sender.to_bytes().to_vec();
        plain.push(SLEEVE_VERSION << 4);
        for sealer in [&mut sealing_old, &mut sealing] {
            let mut sealed = Vec::new();
            sealer.seal(&plain, &mut sealed).expect("seals");
            let opened = opening
                .open(&mut sealed)
                .expect("a refusal changed nothing");
            assert_eq!(opened.datagram, &plain[..]);
        }
        return;
    }

    let mut plain = sender.to_bytes().to_vec();
    let flags = if mode & 2 != 0 { FLAG_FRAGMENT } else { 0 };
    plain.push((SLEEVE_VERSION << 4) | flags);
    let body_len = rest.len().min(MAX_SEALABLE_LEN - DATAGRAM_HEADER_LEN);
    plain.extend_from_slice(&rest[..body_len]);
    let mut sealed = Vec::new();
    sealing.seal(&plain, &mut sealed).expect("seals");
    assert!(is_sealed(&sealed));
    assert_eq!(sealed.len(), plain.len() + 24);

    let mut forged = sealed.clone();
    let at = usize::from(u16::from_be_bytes([
        rest.first().copied().unwrap_or(0),
        rest.get(1).copied().unwrap_or(0),
    ])) % forged.len();
    forged[at] ^= 0x80 | mode;
    assert!(
        opening.open(&mut forged).is_err(),
        "byte {at} changed and still opened"
    );

    let copy = sealed.clone();
    let opened = opening.open(&mut sealed).expect("opens");
    assert_eq!(opened.datagram, &plain[..]);
    let mut replay = copy;
    assert!(opening.open(&mut replay).is_err(), "a replay opened");
});
