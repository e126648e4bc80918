//! Fuzz target: the handshake as the other end of a new connection sends it in the clear, read
//! the way `actors::connection::secure` and `handshake` read it: the 6-byte protocol header
//! (either magic, then version negotiation), a frame of at most [`MAX_HELLO_BYTES`] holding the
//! `Hello` (features or a refusal), and a frame holding the `Reveal` of the link nonce.
//!
//! Properties: every part that decodes encodes again to something that decodes to the same
//! value; the header re-encodes to its exact bytes; the negotiated version is one both speak;
//! the link id is the same whichever side computes it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use weft::actors::connection::MAX_HELLO_BYTES;
use weft::wire::{
    HEADER_LEN, Hello, LinkNonce, NONCE_LEN, PROTOCOL_MAX_VERSION, PROTOCOL_MIN_VERSION,
    ProtocolHeader, Reveal, decode_message, encode_message, link_id, negotiate,
};

/// Splits one handshake frame off the front of `bytes`, bounded as the handshake bounds it.
fn frame(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let (prefix, rest) = bytes.split_at_checked(4)?;
    let len = u32::from_be_bytes(prefix.try_into().ok()?) as usize;
    if len > MAX_HELLO_BYTES {
        return None;
    }
    rest.split_at_checked(len)
}

fn round_trips<T>(what: &'static str, value: &T)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let bytes = encode_message(what, value).expect("a decoded message encodes");
    let again: T = decode_message(what, &bytes).expect("an encoded message decodes");
    assert_eq!(&again, value, "{what} round-trips");
}

fuzz_target!(|data: &[u8]| {
    let Some((header, rest)) = data.split_first_chunk::<HEADER_LEN>() else {
        return;
    };
    let Ok((theirs, security)) = ProtocolHeader::decode(header) else {
        return;
    };
    assert_eq!(
        &theirs.encode_for(security),
        header,
        "the header re-encodes to its bytes"
    );
    if let Ok(version) = negotiate(ProtocolHeader::OURS, theirs) {
        assert!((PROTOCOL_MIN_VERSION..=PROTOCOL_MAX_VERSION).contains(&version));
        assert!((theirs.min_version..=theirs.max_version).contains(&version));
    }
    let Some((hello, rest)) = frame(rest) else {
        return;
    };
    let Ok(hello) = decode_message::<Hello>("hello", hello) else {
        return;
    };
    round_trips("hello", &hello);
    let Some((reveal, _)) = frame(rest) else {
        return;
    };
    let Ok(reveal) = decode_message::<Reveal>("reveal", reveal) else {
        return;
    };
    round_trips("reveal", &reveal);
    if let Hello::Features(features) = &hello {
        // What the handshake does next: check the commitment, then derive the link id.
        let _ = reveal.nonce.opens(&features.conn_commit);
        let ours = LinkNonce([0x5a; NONCE_LEN]);
        assert_eq!(link_id(&ours, &reveal.nonce), link_id(&reveal.nonce, &ours));
    }
});
