use super::*;
use proptest::prelude::*;

/// The message's shape with a key of any length, to build what a sender must not send.
#[derive(Serialize)]
struct AnyLength {
    epoch: u32,
    #[serde(with = "serde_bytes")]
    key: Vec<u8>,
}

#[test]
fn encoding_fits_its_reserved_capacity() {
    let key = SleeveKey::from_bytes(u32::MAX, [0xff; SLEEVE_KEY_LEN]);
    let encoded = key.encode().unwrap();

    assert!(encoded.len() <= ENCODED_CAPACITY, "{} bytes", encoded.len());
    assert_eq!(encoded.capacity(), ENCODED_CAPACITY, "never reallocated");
}

#[test]
fn a_key_of_another_length_is_refused() {
    for len in [0, 16, 31, 33, 64] {
        let bytes = rmp_serde::to_vec_named(&AnyLength {
            epoch: 1,
            key: vec![7; len],
        })
        .unwrap();
        assert!(
            SleeveKey::decode(&bytes).is_err(),
            "{len}-byte key accepted"
        );
    }
    let bytes = rmp_serde::to_vec_named(&AnyLength {
        epoch: 1,
        key: vec![7; SLEEVE_KEY_LEN],
    })
    .unwrap();
    assert_eq!(
        SleeveKey::decode(&bytes).unwrap(),
        SleeveKey::from_bytes(1, [7; SLEEVE_KEY_LEN])
    );
}

#[test]
fn the_cipher_travels_with_the_key_and_defaults_to_chacha() {
    let aes = SleeveKey::from_bytes(2, [5; SLEEVE_KEY_LEN]).with_cipher(Cipher::Aes256Gcm);
    let decoded = SleeveKey::decode(&aes.encode().unwrap()).unwrap();
    assert_eq!(decoded.cipher(), Cipher::Aes256Gcm);
    assert_eq!(decoded, aes);
    // A key that names no cipher (the message's first form) is a ChaCha20-Poly1305 key.
    let unnamed = rmp_serde::to_vec_named(&AnyLength {
        epoch: 2,
        key: vec![5; SLEEVE_KEY_LEN],
    })
    .unwrap();
    assert_eq!(
        SleeveKey::decode(&unnamed).unwrap().cipher(),
        Cipher::ChaCha20Poly1305
    );
    #[derive(Serialize)]
    struct Named<'a> {
        epoch: u32,
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        cipher: &'a str,
    }
    let unknown = rmp_serde::to_vec_named(&Named {
        epoch: 2,
        key: vec![5; SLEEVE_KEY_LEN],
        cipher: "rot13",
    })
    .unwrap();
    assert!(SleeveKey::decode(&unknown).is_err(), "an unknown cipher");
}

#[test]
fn random_keys_use_the_fastest_cipher_here() {
    assert_eq!(SleeveKey::random(0).cipher(), Cipher::fastest_here());
}

#[test]
fn debug_never_shows_the_key() {
    let key = SleeveKey::from_bytes(3, [0xab; SLEEVE_KEY_LEN]);
    let shown = format!("{key:?}");
    assert!(shown.contains("epoch: 3"), "{shown}");
    assert!(!shown.contains("171"), "{shown}");
}

#[test]
fn random_keys_differ() {
    let (a, b) = (SleeveKey::random(0), SleeveKey::random(0));
    assert_ne!(a.bytes(), b.bytes(), "256 random bits never repeat");
    assert_ne!(a.bytes(), &[0; SLEEVE_KEY_LEN]);
}

proptest! {
    #[test]
    fn round_trips(epoch in any::<u32>(), bytes in any::<[u8; SLEEVE_KEY_LEN]>()) {
        let key = SleeveKey::from_bytes(epoch, bytes);
        let decoded = SleeveKey::decode(&key.encode().unwrap()).unwrap();
        prop_assert_eq!(decoded, key);
    }

    #[test]
    fn decoding_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..128)) {
        let _ = SleeveKey::decode(&bytes);
    }

    /// Valid messages with bytes changed: decoding refuses or yields some key, never panics.
    #[test]
    fn decoding_a_damaged_message_never_panics(
        bytes in any::<[u8; SLEEVE_KEY_LEN]>(),
        at in any::<prop::sample::Index>(),
        value in any::<u8>(),
    ) {
        let mut encoded = SleeveKey::from_bytes(9, bytes).encode().unwrap().to_vec();
        let at = at.index(encoded.len());
        encoded[at] = value;
        let _ = SleeveKey::decode(&encoded);
        let _ = SleeveKey::decode(&encoded[..at]);
    }
}
