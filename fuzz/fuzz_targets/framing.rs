//! Fuzz target: the length-prefixed framing of the TCP stream ([`FrameCodec`]), fed in pieces as
//! a socket hands them over. The first input byte sets the read size, so frames straddle reads.
//!
//! Properties: the frames decoded, framed again, are exactly the bytes consumed; what is left
//! is an incomplete frame; an error comes only from a length prefix over [`MAX_FRAME_BYTES`].

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;
use weft::wire::{FrameCodec, MAX_FRAME_BYTES, encode_frame};

fuzz_target!(|data: &[u8]| {
    let Some((&step, stream)) = data.split_first() else {
        return;
    };
    let step = usize::from(step).max(1);
    let mut codec = FrameCodec::default();
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut failed = false;
    'reads: for read in stream.chunks(step) {
        buf.extend_from_slice(read);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(_) => {
                    failed = true;
                    break 'reads;
                }
            }
        }
    }
    let mut again = BytesMut::new();
    for frame in &frames {
        encode_frame(frame.clone(), &mut again).expect("a decoded frame is within the limit");
    }
    assert_eq!(
        &again[..],
        &stream[..again.len()],
        "frames re-encode to the bytes consumed"
    );
    let rest = &stream[again.len()..];
    if failed {
        let prefix: [u8; 4] = rest[..4]
            .try_into()
            .expect("an error needs a length prefix");
        assert!(u32::from_be_bytes(prefix) as usize > MAX_FRAME_BYTES);
    } else {
        // The codec has taken the prefix of a frame it waits the rest of: the bytes it keeps
        // are that frame's body so far.
        let incomplete = match rest.first_chunk::<4>() {
            None => true,
            Some(prefix) => rest.len() < 4 + u32::from_be_bytes(*prefix) as usize,
        };
        assert!(incomplete, "what is left is an incomplete frame");
        assert!(rest.ends_with(&buf[..]), "the decoder keeps only unconsumed bytes");
    }
});
