//! The channel alone, with fixed ephemeral keys: the exact bytes of a sealed handshake.

use sha2::{Digest, Sha256};

use super::*;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> [u8; 32] {
    let bytes: Vec<u8> = (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect();
    bytes.try_into().unwrap()
}

/// RFC 7748, section 6.1: Alice's and Bob's X25519 private and public keys.
const ALICE_PRIVATE: &str = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a";
const ALICE_PUBLIC: &str = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";
const BOB_PRIVATE: &str = "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb";
const BOB_PUBLIC: &str = "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f";

fn channel(dialler: bool, key: [u8; 32], ephemeral: &str, out: &mut BytesMut) -> SecureChannel {
    let mut channel = SecureChannel::start(Some(Arc::new(MeshKey::from_bytes(key))), dialler, out);
    channel.fix_ephemeral(unhex(ephemeral));
    channel
}

/// Dialler (Alice's ephemeral) and acceptor (Bob's) with `key`: the bytes each sent, in order,
/// and what each received in plaintext, after the dialler sent `hello`.
struct Run {
    to_acceptor: Vec<u8>,
    to_dialler: Vec<u8>,
    dialler: Result<(), ClosingReason>,
    acceptor: Result<(), ClosingReason>,
    acceptor_plain: BytesMut,
}

fn run(dialler_key: [u8; 32], acceptor_key: [u8; 32], hello: &[u8]) -> Run {
    let (mut a_out, mut b_out) = (BytesMut::new(), BytesMut::new());
    let mut a = channel(true, dialler_key, ALICE_PRIVATE, &mut a_out);
    let mut b = channel(false, acceptor_key, BOB_PRIVATE, &mut b_out);
    a.send(hello, &mut a_out).unwrap();
    let (mut to_acceptor, mut to_dialler) = (Vec::new(), Vec::new());
    let (mut a_plain, mut b_plain) = (BytesMut::new(), BytesMut::new());
    let (mut dialler, mut acceptor) = (Ok(()), Ok(()));
    for _ in 0..4 {
        let (a_sent, b_sent) = (a_out.split(), b_out.split());
        to_acceptor.extend_from_slice(&a_sent);
        to_dialler.extend_from_slice(&b_sent);
        if acceptor.is_ok() {
            acceptor = b.receive(&a_sent, &mut b_plain, &mut b_out);
        }
        if dialler.is_ok() {
            dialler = a.receive(&b_sent, &mut a_plain, &mut a_out);
        }
    }
    Run {
        to_acceptor,
        to_dialler,
        dialler,
        acceptor,
        acceptor_plain: b_plain,
    }
}

#[test]
fn the_first_messages_are_header_and_ephemeral_key() {
    let run = run([1; 32], [1; 32], b"hello");
    assert_eq!(run.dialler, Ok(()));
    assert_eq!(run.acceptor, Ok(()));
    assert_eq!(&run.acceptor_plain[..], b"hello");
    // Header, then a 48-byte record: the ephemeral public key and the empty payload's tag.
    let a = &run.to_acceptor;
    assert_eq!(&a[..6], b"WEFT\x02\x02");
    assert_eq!(&a[6..8], &[0x00, 0x30]);
    assert_eq!(hex(&a[8..40]), ALICE_PUBLIC);
    let b = &run.to_dialler;
    assert_eq!(&b[..6], b"WEFT\x02\x02");
    assert_eq!(&b[6..8], &[0x00, 0x30]);
    assert_eq!(hex(&b[8..40]), BOB_PUBLIC);
    // Then the dialler's first transport record: 5 bytes of plaintext and the tag.
    assert_eq!(a.len(), 6 + 2 + 48 + 2 + 5 + 16);
    assert_eq!(&a[56..58], &[0x00, 0x15]);
    assert_eq!(b.len(), 6 + 2 + 48, "the acceptor said nothing more");
}

/// The whole exchange pinned: a change to the pattern, the prologue, the PSK's place or the
/// framing changes these bytes, and would split a mesh of mixed versions. The digests were
/// checked against an independent Noise implementation (Python's `noiseprotocol` 0.3, with the
/// same ephemeral keys, PSK, prologue and plaintext, its messages framed the same way).
#[test]
fn the_whole_exchange_is_pinned() {
    let run = run([1; 32], [1; 32], b"hello");
    let digest = |bytes: &[u8]| hex(&Sha256::digest(bytes));
    assert_eq!(digest(&run.to_acceptor), PINNED_TO_ACCEPTOR);
    assert_eq!(digest(&run.to_dialler), PINNED_TO_DIALLER);
}

const PINNED_TO_ACCEPTOR: &str = "a1fd68bd9edaf834872d03f59a70f8c97186434ad7fd8243257d6d4cdf9bb79c";
const PINNED_TO_DIALLER: &str = "7f9f75fe6ee4e19959cc166dd114d18258f2233be3dffd81cb25cad7617ccf2d";

#[test]
fn a_different_key_fails_the_dialler_first_and_the_acceptor_hears_why() {
    let run = run([1; 32], [2; 32], b"hello");
    assert_eq!(run.dialler, Err(ClosingReason::AuthenticationFailed));
    assert_eq!(run.acceptor, Err(ClosingReason::PeerLacksPassword));
    assert!(run.acceptor_plain.is_empty());
    // The dialler's last words: the abort notice, and no sealed hello.
    assert_eq!(&run.to_acceptor[6 + 2 + 48..], &[0, 0]);
}

#[test]
fn an_altered_header_fails_the_handshake() {
    let (mut a_out, mut b_out) = (BytesMut::new(), BytesMut::new());
    let mut a = channel(true, [1; 32], ALICE_PRIVATE, &mut a_out);
    let _b = channel(false, [1; 32], BOB_PRIVATE, &mut b_out);
    // The acceptor's header reaches the dialler with a range no one speaks.
    let mut to_dialler = b_out.split();
    to_dialler[4] = 3;
    let mut plain = BytesMut::new();
    let refused = a.receive(&to_dialler, &mut plain, &mut a_out);
    assert!(
        matches!(&refused, Err(ClosingReason::Protocol(why)) if why.contains("version")),
        "{refused:?}"
    );
    // A header the version check accepts, but not the one sent: the transcripts differ.
    let (mut a_out, mut b_out) = (BytesMut::new(), BytesMut::new());
    let mut a = channel(true, [1; 32], ALICE_PRIVATE, &mut a_out);
    let mut b = channel(false, [1; 32], BOB_PRIVATE, &mut b_out);
    let mut plain = BytesMut::new();
    a.receive(&b_out.split(), &mut plain, &mut a_out).unwrap();
    let mut to_acceptor = a_out.split();
    to_acceptor[5] = 3; // a wider range, which still negotiates version 2
    let refused = b.receive(&to_acceptor, &mut plain, &mut b_out);
    assert!(
        matches!(&refused, Err(ClosingReason::Protocol(why)) if why.contains("headers")),
        "{refused:?}"
    );
    assert!(b_out.is_empty(), "the acceptor answered nothing");
}
