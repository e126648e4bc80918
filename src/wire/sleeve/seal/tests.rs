use std::time::{Duration, Instant};

use super::*;
use crate::wire::sleeve::fragment::{
    Datagram, FRAGMENT_VNET_HDR_LEN, FragmentMeta, encode_fragment,
};
use crate::wire::sleeve::{
    Control, RecordDestination, SLEEVE_OVERHEAD, encode_control_datagram, encode_datagram_header,
    encode_frame_record,
};
use proptest::prelude::*;
use ring::aead::CHACHA20_POLY1305;

fn peer(value: u64) -> PeerName {
    PeerName::from_u64(value).unwrap()
}

fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

const KEY: [u8; SLEEVE_KEY_LEN] = {
    let mut key = [0u8; SLEEVE_KEY_LEN];
    let mut i = 0;
    while i < SLEEVE_KEY_LEN {
        key[i] = i as u8;
        i += 1;
    }
    key
};

/// A sender and a receiver sharing `KEY` for `epoch`, in the dialler's direction.
fn pair(epoch: u32, now: Instant) -> (SealingKey, OpeningKeys) {
    let key = SleeveKey::from_bytes(epoch, KEY);
    let mut opening = OpeningKeys::new(Direction::FromDialler);
    opening.install(&key).unwrap();
    (SealingKey::new(&key, Direction::FromDialler, now), opening)
}

/// A datagram carrying one frame of `payload` bytes, as the sleeve sends it.
fn frame_datagram(sender: PeerName, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00];
    frame.extend_from_slice(payload);
    let mut out = Vec::new();
    encode_datagram_header(sender, &mut out);
    encode_frame_record(sender, peer(0x0200_0000_0002), &frame, &mut out).unwrap();
    out
}

/// A plain datagram of any body, records or fragment: sealing does not read past the header.
fn plain(sender: PeerName, fragment: bool, body: &[u8]) -> Vec<u8> {
    let mut out = sender.to_bytes().to_vec();
    out.push((SLEEVE_VERSION << 4) | if fragment { FLAG_FRAGMENT } else { 0 });
    out.extend_from_slice(body);
    out
}

#[test]
fn overhead_is_24_bytes_and_the_mtu_1413() {
    assert_eq!(SEALED_HEADER_LEN, 15);
    assert_eq!(SEAL_HEADROOM, 8);
    assert_eq!(SEAL_OVERHEAD, 24);
    assert_eq!(MIN_SEALED_LEN, 31);
    assert_eq!(MAX_SEALABLE_LEN, 65_511);
    assert_eq!(SLEEVE_OVERHEAD + SEAL_OVERHEAD, 87);
    assert_eq!(sealed_effective_mtu(1500), 1413);
    assert_eq!(sealed_effective_mtu(9001), 8914);
    assert_eq!(sealed_effective_mtu(60), 0);
    // A full-size frame at that MTU makes a sealed datagram that fills the underlay's 1500.
    let datagram = frame_datagram(peer(1), &[0; 1413]);
    let (mut sealing, _) = pair(0, Instant::now());
    let mut sealed = Vec::new();
    sealing.seal(&datagram, &mut sealed).unwrap();
    assert_eq!(
        sealed.len() + crate::wire::sleeve::UNDERLAY_IPV4_UDP_OVERHEAD,
        1500
    );
}

/// RFC 8439, section 2.8.2, through the functions every datagram goes through: its nonce
/// (07 00 00 00 40 41 42 43 44 45 46 47) is a direction tag and a counter field.
#[test]
fn rfc_8439_aead_vector() {
    let key: [u8; 32] = core::array::from_fn(|i| 0x80 + i as u8);
    let key = aead_key(&SleeveKey::from_bytes(0, key));
    let (tag, field) = ([7, 0, 0, 0], 0x4041_4243_4445_4647);
    let aad = hex("50515253c0c1c2c3c4c5c6c7");
    let plaintext = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip \
for the future, sunscreen would be it.";
    let ciphertext = hex(
        "d31a8d34648e60db7b86afbc53ef7ec2 a4aded51296e08fea9e2b5a736ee62d6
         3dbea45e8ca9671282fafb69da92728b 1a71de0a9e060b2905d6a5b67ecd3b36
         92ddbd7f2d778b8c9803aee328091b58 fab324e4fad675945585808b4831d7bc
         3ff4def08e4b7a9de576d26586cec64b 6116",
    );
    let expected_tag = hex("1ae10b594f09e26a7e902ecbd0600691");

    let mut buffer = plaintext.to_vec();
    let sealed_tag = aead_seal(&key, tag, field, &aad, &mut buffer).unwrap();
    assert_eq!(buffer, ciphertext);
    assert_eq!(sealed_tag.as_ref(), &expected_tag[..]);

    buffer.extend_from_slice(&expected_tag);
    assert_eq!(
        aead_open(&key, tag, field, &aad, &mut buffer),
        Some(plaintext.len())
    );
    assert_eq!(&buffer[..plaintext.len()], plaintext);
    // One bit of the associated data changed: the tag no longer matches.
    let mut buffer = ciphertext.clone();
    buffer.extend_from_slice(&expected_tag);
    let mut aad = aad;
    aad[0] ^= 1;
    assert_eq!(aead_open(&key, tag, field, &aad, &mut buffer), None);
}

/// A heartbeat from peer 0a:00:00:00:00:01, sealed with the key 00 01 .. 1f for epoch 5, as its
/// third datagram (counter 2). The clear header is spelled out; the rest is pinned, and also
/// recomputed here with `ring` directly from the layout the module documents.
#[test]
fn pinned_sealed_heartbeat() {
    let sender = peer(0x0a00_0000_0001);
    let mut heartbeat = Vec::new();
    encode_control_datagram(
        sender,
        Control::Heartbeat {
            connection_id: 0x0102_0304_0506_0708,
        },
        &mut heartbeat,
    )
    .unwrap();
    let key = SleeveKey::from_bytes(5, KEY);
    let mut sealing = SealingKey::new(&key, Direction::FromDialler, Instant::now());
    let mut sealed = Vec::new();
    for expected in 0..3 {
        assert_eq!(sealing.seal(&heartbeat, &mut sealed), Ok(expected));
    }

    let header = hex("0a0000000001 12 5000000000000002");
    assert_eq!(&sealed[..SEALED_HEADER_LEN], &header[..]);
    assert_eq!(sealed.len(), heartbeat.len() + SEAL_OVERHEAD);

    let mut nonce = b"wfd>".to_vec();
    nonce.extend_from_slice(&header[7..]);
    let independent = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &KEY).unwrap());
    let mut expected = heartbeat[DATAGRAM_HEADER_LEN..].to_vec();
    independent
        .seal_in_place_append_tag(
            Nonce::try_assume_unique_for_key(&nonce).unwrap(),
            Aad::from(&header),
            &mut expected,
        )
        .unwrap();
    assert_eq!(&sealed[SEALED_HEADER_LEN..], &expected[..]);
    let pinned: String = sealed.iter().map(|byte| format!("{byte:02x}")).collect();
    assert_eq!(
        pinned, PINNED_HEARTBEAT,
        "the sealed format changed: that is a new sleeve version"
    );

    let mut opening = OpeningKeys::new(Direction::FromDialler);
    opening.install(&key).unwrap();
    let opened = opening.open(&mut sealed).unwrap();
    assert_eq!((opened.epoch, opened.counter), (5, 2));
    assert_eq!(opened.datagram, &heartbeat[..]);
}

const PINNED_HEARTBEAT: &str = concat!(
    "0a0000000001",                                   // sender
    "12",                                             // version 1, sealed
    "5000000000000002",                               // epoch 5, counter 2
    "42f7453d54a9457df38ac06a5687b94b1d8db71915116f", // ciphertext: the 23-byte heartbeat record
    "72c84cef455239a094939c1ff6120193",               // tag
);

#[test]
fn an_opened_datagram_parses_as_the_plain_one() {
    let sender = peer(0x0a00_0000_0007);
    let (mut sealing, mut opening) = pair(0, Instant::now());
    let records = frame_datagram(sender, b"pod payload");
    let meta = FragmentMeta {
        source: sender,
        destination: RecordDestination::Broadcast,
        frame_id: 7,
        total_len: 3000,
        vnet_hdr: [1; FRAGMENT_VNET_HDR_LEN],
    };
    let mut fragment = Vec::new();
    encode_fragment(sender, &meta, 1000, &[9; 1000], &mut fragment).unwrap();

    for datagram in [records, fragment] {
        let mut sealed = Vec::new();
        sealing.seal(&datagram, &mut sealed).unwrap();
        assert!(is_sealed(&sealed));
        assert!(!is_sealed(&datagram));
        assert!(
            Datagram::parse(&sealed).is_err(),
            "a plain parser refuses it"
        );
        let header = SealedHeader::parse(&sealed).unwrap();
        assert_eq!(header.sender, sender);
        assert_eq!(header.fragment, datagram[6] & FLAG_FRAGMENT != 0);
        let opened = opening.open(&mut sealed).unwrap();
        assert_eq!(opened.datagram, &datagram[..]);
        assert_eq!(
            Datagram::parse(opened.datagram).unwrap(),
            Datagram::parse(&datagram).unwrap()
        );
    }
}

#[test]
fn sealing_in_place_needs_room_and_a_plain_header() {
    let (mut sealing, _) = pair(0, Instant::now());
    let datagram = frame_datagram(peer(1), b"x");
    for bad in [
        vec![0; SEAL_HEADROOM + SEAL_TAG_LEN + DATAGRAM_HEADER_LEN - 1],
        vec![0; 3],
        Vec::new(),
    ] {
        let mut bad = bad;
        assert!(matches!(
            sealing.seal_in_place(&mut bad),
            Err(SealError::Malformed { .. })
        ));
    }
    // Already sealed, or another version: refused, and nothing is counted.
    let mut sealed = Vec::new();
    sealing.seal(&datagram, &mut sealed).unwrap();
    let mut twice = Vec::new();
    assert!(sealing.seal(&sealed, &mut twice).is_err());
    assert!(twice.is_empty());
    let mut other = datagram.clone();
    other[6] = 2 << 4;
    assert!(sealing.seal(&other, &mut twice).is_err());
    let too_long = plain(peer(1), false, &vec![0; MAX_SEALABLE_LEN]);
    assert!(sealing.seal(&too_long, &mut twice).is_err());
    assert_eq!(sealing.sealed(), 1);
    // The largest sealable datagram fills the UDP length field exactly.
    let largest = plain(
        peer(1),
        false,
        &vec![0; MAX_SEALABLE_LEN - DATAGRAM_HEADER_LEN],
    );
    sealing.seal(&largest, &mut twice).unwrap();
    assert_eq!(twice.len(), MAX_DATAGRAM_LEN);
}

#[test]
fn a_counter_is_never_sealed_twice() {
    let (mut sealing, _) = pair(3, Instant::now());
    let datagram = frame_datagram(peer(1), b"x");
    let mut sealed = Vec::new();
    sealing.skip_to(MAX_COUNTER);
    assert_eq!(sealing.seal(&datagram, &mut sealed), Ok(MAX_COUNTER));
    assert_eq!(
        sealing.seal(&datagram, &mut sealed),
        Err(SealError::CounterExhausted { epoch: 3 })
    );
    assert!(sealed.is_empty());
    assert_eq!(
        sealing.seal(&datagram, &mut sealed),
        Err(SealError::CounterExhausted { epoch: 3 })
    );
}

#[test]
fn rekeying_is_due_after_120_s_or_2_pow_32_datagrams() {
    let start = Instant::now();
    assert!(!rekey_due(start, 0, start));
    assert!(!rekey_due(start, 0, start + Duration::from_millis(119_999)));
    assert!(rekey_due(start, 0, start + Duration::from_secs(120)));
    assert!(!rekey_due(start, (1 << 32) - 1, start));
    assert!(rekey_due(start, 1 << 32, start));
    // A clock that went backwards is not a reason.
    assert!(!rekey_due(start + Duration::from_secs(5), 0, start));

    let (mut sealing, _) = pair(0, start);
    assert!(!sealing.rekey_due(start + Duration::from_secs(60)));
    assert!(sealing.rekey_due(start + REKEY_AFTER_TIME));
    sealing.skip_to(REKEY_AFTER_DATAGRAMS);
    assert!(sealing.rekey_due(start));
}

#[test]
fn keys_are_installed_in_epoch_order_and_two_are_kept() {
    let mut opening = OpeningKeys::new(Direction::FromAcceptor);
    assert_eq!(
        (opening.current_epoch(), opening.previous_epoch()),
        (None, None)
    );
    opening.install(&SleeveKey::from_bytes(4, KEY)).unwrap();
    opening.install(&SleeveKey::from_bytes(5, KEY)).unwrap();
    assert_eq!(
        opening.install(&SleeveKey::from_bytes(5, KEY)),
        Err(SealError::StaleKey {
            epoch: 5,
            current: 5
        })
    );
    assert_eq!(
        opening.install(&SleeveKey::from_bytes(2, KEY)),
        Err(SealError::StaleKey {
            epoch: 2,
            current: 5
        })
    );
    assert_eq!(
        (opening.current_epoch(), opening.previous_epoch()),
        (Some(5), Some(4))
    );
    opening.install(&SleeveKey::from_bytes(6, KEY)).unwrap();
    assert_eq!(
        (opening.current_epoch(), opening.previous_epoch()),
        (Some(6), Some(5))
    );
}

#[test]
fn unknown_epochs_wrong_directions_and_replays_are_refused() {
    let now = Instant::now();
    let datagram = frame_datagram(peer(1), b"payload");
    let (mut sealing, mut opening) = pair(0, now);
    let mut sealed = Vec::new();
    sealing.seal(&datagram, &mut sealed).unwrap();

    let mut none = OpeningKeys::new(Direction::FromDialler);
    assert_eq!(
        none.open(&mut sealed.clone()),
        Err(SealError::UnknownEpoch {
            epoch_bits: 0,
            current: None,
            previous: None
        })
    );
    let mut reverse = OpeningKeys::new(Direction::FromAcceptor);
    reverse.install(&SleeveKey::from_bytes(0, KEY)).unwrap();
    assert!(matches!(
        reverse.open(&mut sealed.clone()),
        Err(SealError::Auth { counter: 0, .. })
    ));

    opening.open(&mut sealed.clone()).unwrap();
    assert_eq!(
        opening.open(&mut sealed.clone()),
        Err(SealError::Replay {
            epoch: 0,
            counter: 0
        })
    );
    // Two epochs on, epoch 0 is forgotten.
    opening.install(&SleeveKey::from_bytes(1, KEY)).unwrap();
    opening.install(&SleeveKey::from_bytes(2, KEY)).unwrap();
    sealing.seal(&datagram, &mut sealed).unwrap();
    assert!(matches!(
        opening.open(&mut sealed),
        Err(SealError::UnknownEpoch { epoch_bits: 0, .. })
    ));
}

#[test]
fn too_old_counters_are_refused_before_decryption() {
    let (mut sealing, mut opening) = pair(0, Instant::now());
    let datagram = frame_datagram(peer(1), b"payload");
    let mut first = Vec::new();
    sealing.seal(&datagram, &mut first).unwrap();
    let mut sealed = Vec::new();
    for _ in 0..=replay::WINDOW {
        sealing.seal(&datagram, &mut sealed).unwrap();
        opening.open(&mut sealed).unwrap();
    }
    assert_eq!(
        opening.open(&mut first),
        Err(SealError::TooOld {
            epoch: 0,
            counter: 0,
            newest: replay::WINDOW + 1
        })
    );
}

/// Plain datagrams of any sender, kind and body up to 3,000 bytes.
fn plains() -> impl Strategy<Value = Vec<u8>> {
    (
        1u64..(1 << 47),
        any::<bool>(),
        prop::collection::vec(any::<u8>(), 0..3000),
    )
        .prop_map(|(sender, fragment, body)| plain(peer(sender * 2), fragment, &body))
}

proptest! {
    /// Whatever is sealed opens to exactly itself, in place, with its counter, once.
    #[test]
    fn seal_then_open_round_trips(datagrams in prop::collection::vec(plains(), 1..8)) {
        let (mut sealing, mut opening) = pair(11, Instant::now());
        let mut sealed = Vec::new();
        for (counter, datagram) in datagrams.iter().enumerate() {
            prop_assert_eq!(sealing.seal(datagram, &mut sealed), Ok(counter as u64));
            prop_assert_eq!(sealed.len(), datagram.len() + SEAL_OVERHEAD);
            let copy = sealed.clone();
            let opened = opening.open(&mut sealed).unwrap();
            prop_assert_eq!(opened.datagram, &datagram[..]);
            prop_assert_eq!((opened.epoch, opened.counter), (11, counter as u64));
            let mut again = copy;
            let replayed = matches!(opening.open(&mut again), Err(SealError::Replay { .. }));
            prop_assert!(replayed);
        }
    }

    /// Any byte changed anywhere is refused; in the sender, counter, ciphertext or tag that is an
    /// authentication failure. The forgery burns nothing: the genuine datagram opens afterwards.
    #[test]
    fn tampering_with_any_byte_is_refused(
        datagram in plains(),
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let (mut sealing, mut opening) = pair(0, Instant::now());
        let mut sealed = Vec::new();
        sealing.seal(&datagram, &mut sealed).unwrap();
        let at = at.index(sealed.len());
        let mut forged = sealed.clone();
        forged[at] ^= flip;
        let result = opening.open(&mut forged);
        let header_flags_or_epoch = at == 6 || (at == 7 && flip & 0xf0 != 0);
        if header_flags_or_epoch {
            prop_assert!(result.is_err(), "byte {} changed by {:#x} accepted", at, flip);
        } else {
            let auth = matches!(result, Err(SealError::Auth { .. }));
            prop_assert!(auth, "byte {} changed by {:#x}: {:?}", at, flip, result);
        }
        prop_assert_eq!(opening.open(&mut sealed).unwrap().datagram, &datagram[..]);
    }

    /// Arbitrary bytes, and bytes behind a plausible sealed header, never open and never panic.
    #[test]
    fn opening_arbitrary_bytes_never_panics(
        bytes in prop::collection::vec(any::<u8>(), 0..200),
        plausible in any::<bool>(),
    ) {
        let (_, mut opening) = pair(0, Instant::now());
        let mut bytes = bytes;
        if plausible && bytes.len() > SEALED_HEADER_LEN {
            bytes[6] = (SLEEVE_VERSION << 4) | FLAG_SEALED;
            bytes[7] &= 0x0f;
        }
        let _ = SealedHeader::parse(&bytes);
        let _ = is_sealed(&bytes);
        prop_assert!(opening.open(&mut bytes).is_err());
    }

    /// A sender moves to a new epoch while datagrams of the old one are still in flight: in any
    /// arrival order, every datagram of both epochs opens exactly once.
    #[test]
    fn rollover_loses_nothing(
        before in 1usize..300,
        after in 1usize..300,
        order in any::<u64>(),
    ) {
        let now = Instant::now();
        let old = SleeveKey::from_bytes(7, KEY);
        let new = SleeveKey::random(8);
        let mut opening = OpeningKeys::new(Direction::FromAcceptor);
        opening.install(&old).unwrap();
        let mut sealing = SealingKey::new(&old, Direction::FromAcceptor, now);
        let mut in_flight = Vec::new();
        for i in 0..before + after {
            if i == before {
                // The new key reaches the receiver (over the Noise channel) before the sender
                // uses it; the old key's datagrams are still on their way.
                opening.install(&new).unwrap();
                sealing = SealingKey::new(&new, Direction::FromAcceptor, now);
            }
            let datagram = plain(peer(2), false, &(i as u32).to_be_bytes());
            let mut sealed = Vec::new();
            sealing.seal(&datagram, &mut sealed).unwrap();
            in_flight.push((i, sealed));
        }
        // A deterministic shuffle from `order`.
        let mut state = order | 1;
        for i in (1..in_flight.len()).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            in_flight.swap(i, (state % (i as u64 + 1)) as usize);
        }
        let mut seen = vec![false; before + after];
        for (i, sealed) in &in_flight {
            let mut buffer = sealed.clone();
            let opened = opening.open(&mut buffer).unwrap();
            prop_assert_eq!(opened.epoch, if *i < before { 7 } else { 8 });
            let index = u32::from_be_bytes(opened.datagram[7..11].try_into().unwrap());
            prop_assert_eq!(index as usize, *i);
            prop_assert!(!seen[*i]);
            seen[*i] = true;
            let mut again = sealed.clone();
            prop_assert!(opening.open(&mut again).is_err());
        }
        prop_assert!(seen.iter().all(|&s| s));
    }
}

/// The heartbeat of [`pinned_sealed_heartbeat`] under the same key as an AES-256-GCM key. The
/// expected bytes come from outside `ring`: Python's `cryptography` (OpenSSL),
/// `AESGCM(key).encrypt(b"wfd>" + header[7:], heartbeat[7:], header)`.
#[test]
fn pinned_sealed_heartbeat_under_aes_256_gcm() {
    let sender = peer(0x0a00_0000_0001);
    let mut heartbeat = Vec::new();
    encode_control_datagram(
        sender,
        Control::Heartbeat {
            connection_id: 0x0102_0304_0506_0708,
        },
        &mut heartbeat,
    )
    .unwrap();
    let key = SleeveKey::from_bytes(5, KEY).with_cipher(Cipher::Aes256Gcm);
    let mut sealing = SealingKey::new(&key, Direction::FromDialler, Instant::now());
    let mut sealed = Vec::new();
    for expected in 0..3 {
        assert_eq!(sealing.seal(&heartbeat, &mut sealed), Ok(expected));
    }
    let pinned: String = sealed.iter().map(|byte| format!("{byte:02x}")).collect();
    assert_eq!(pinned, PINNED_AES_HEARTBEAT);

    let mut opening = OpeningKeys::new(Direction::FromDialler);
    opening.install(&key).unwrap();
    assert_eq!(
        opening.open(&mut sealed.clone()).unwrap().datagram,
        &heartbeat[..]
    );
    // The same bytes opened as ChaCha20-Poly1305 fail: the cipher is part of the key.
    let mut chacha = OpeningKeys::new(Direction::FromDialler);
    chacha.install(&SleeveKey::from_bytes(5, KEY)).unwrap();
    assert!(chacha.open(&mut sealed).is_err());
}

const PINNED_AES_HEARTBEAT: &str = concat!(
    "0a0000000001",                                   // sender
    "12",                                             // version 1, sealed
    "5000000000000002",                               // epoch 5, counter 2
    "e7dfbb86e2fb32fa5de22e690b9a97e67e72190b397199", // ciphertext
    "5a377e543c89b44b89ca3a8dff4945a9",               // tag
);
