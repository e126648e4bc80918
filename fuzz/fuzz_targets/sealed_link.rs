//! Fuzz target: what reaches a link of a mesh with a password, read the way
//! `actors::connection::secure` reads it: records (a u16 length and a Noise message, or the empty
//! abort notice) after a sealed protocol header.
//!
//! Properties: the record decoder consumes whole records only, and what it decodes encodes again
//! to the exact bytes; a sealed channel, dialler or acceptor, fed anything after a valid header
//! never panics and never yields a byte of plaintext: without the mesh key no input opens.

#![no_main]

use std::sync::Arc;

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use weft::actors::connection::{MeshKey, SecureChannel};
use weft::wire::{ProtocolHeader, Security, decode_record, encode_record};

fuzz_target!(|data: &[u8]| {
    let mut src = BytesMut::from(data);
    let mut again = BytesMut::new();
    let mut consumed = 0;
    loop {
        let before = src.len();
        match decode_record(&mut src) {
            Ok(Some(record)) => {
                encode_record(&record, &mut again).expect("a decoded record encodes");
                consumed += before - src.len();
            }
            Ok(None) => {
                assert_eq!(src.len(), before, "nothing consumed while incomplete");
                break;
            }
            Err(_) => break,
        }
    }
    assert_eq!(&again[..], &data[..consumed], "records re-encode to their bytes");

    let Some((&shape, rest)) = data.split_first() else {
        return;
    };
    let dialler = shape & 1 == 1;
    let chunk = usize::from(shape >> 1) % 64 + 1;
    let key = Arc::new(MeshKey::from_bytes([0x11; 32]));
    let mut out = BytesMut::new();
    let mut channel = SecureChannel::start(Some(key), dialler, &mut out);
    let mut plain = BytesMut::new();
    let header = ProtocolHeader::OURS.encode_for(Security::Sealed);
    if channel.receive(&header, &mut plain, &mut out).is_err() {
        return;
    }
    for piece in rest.chunks(chunk) {
        if channel.receive(piece, &mut plain, &mut out).is_err() {
            break;
        }
    }
    assert!(plain.is_empty(), "plaintext opened without the key");
});
