//! Fuzz target: the messages of an established link ([`ProtocolMsg`]: heartbeats and gossip
//! envelopes), the payload of every frame after the handshake.
//!
//! Property: a message that decodes encodes again to bytes that decode to the same message, and
//! that encoding is canonical (encoding the copy gives the same bytes).

#![no_main]

use libfuzzer_sys::fuzz_target;
use weft::wire::{ProtocolMsg, decode_message, encode_message};

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = decode_message::<ProtocolMsg>("message", data) else {
        return;
    };
    let bytes = encode_message("message", &msg).expect("a decoded message encodes");
    let again: ProtocolMsg = decode_message("message", &bytes).expect("an encoded message decodes");
    assert_eq!(again, msg);
    let bytes_again = encode_message("message", &again).expect("encodes");
    assert_eq!(bytes_again, bytes, "the encoding is canonical");
});
