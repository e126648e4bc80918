//! Length-prefixed framing of the TCP stream after the header: a big-endian u32 length, then that
//! many bytes. The length is checked against [`MAX_FRAME_BYTES`] before any buffer is reserved, so
//! a hostile length prefix costs nothing.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::WireError;

/// Largest frame accepted or sent: 10 MiB, Weave Net's `maxTCPMsgSize`. A full topology of a
/// thousand peers with thirty connections each is about 1.5 MiB, well inside it.
pub const MAX_FRAME_BYTES: usize = 10 * 1024 * 1024;
const LENGTH_PREFIX_BYTES: usize = 4;

/// Checks the start of `buf` for one complete frame. Returns the frame's payload range end
/// (prefix + payload length) when complete, `None` when more bytes are needed, and an error when
/// the length prefix is over the limit.
pub fn check_frame(buf: &[u8]) -> Result<Option<usize>, WireError> {
    let Some(prefix) = buf.get(..LENGTH_PREFIX_BYTES) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(WireError::FrameTooLarge {
            len,
            max: MAX_FRAME_BYTES,
        });
    }
    let total = LENGTH_PREFIX_BYTES + len;
    Ok((buf.len() >= total).then_some(total))
}

/// Appends one frame holding `payload` to `out`.
pub fn encode_frame(payload: &[u8], out: &mut BytesMut) -> Result<(), WireError> {
    if payload.len() > MAX_FRAME_BYTES {
        return Err(WireError::FrameTooLarge {
            len: payload.len(),
            max: MAX_FRAME_BYTES,
        });
    }
    out.reserve(LENGTH_PREFIX_BYTES + payload.len());
    out.put_u32(payload.len() as u32);
    out.put_slice(payload);
    Ok(())
}

/// The framing as a tokio codec, so a connection reads whole frames as a stream.
#[derive(Clone, Copy, Debug, Default)]
pub struct FrameCodec;

impl Decoder for FrameCodec {
    type Item = Bytes;
    type Error = WireError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, WireError> {
        match check_frame(src)? {
            None => {
                if let Some(prefix) = src.get(..LENGTH_PREFIX_BYTES) {
                    // The length is known and within bounds: reserve once for the whole frame.
                    let len =
                        u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
                    src.reserve(LENGTH_PREFIX_BYTES + len - src.len());
                }
                Ok(None)
            }
            Some(total) => {
                let mut frame = src.split_to(total);
                frame.advance(LENGTH_PREFIX_BYTES);
                Ok(Some(frame.freeze()))
            }
        }
    }
}

impl Encoder<Bytes> for FrameCodec {
    type Error = WireError;

    fn encode(&mut self, payload: Bytes, dst: &mut BytesMut) -> Result<(), WireError> {
        encode_frame(&payload, dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn oversized_prefix_is_rejected_before_reading_the_body() {
        let mut buf = BytesMut::from(&u32::MAX.to_be_bytes()[..]);
        assert!(matches!(
            FrameCodec.decode(&mut buf),
            Err(WireError::FrameTooLarge { .. })
        ));
    }

    #[test]
    fn truncated_frame_waits_for_more() {
        let mut buf = BytesMut::new();
        encode_frame(b"hello", &mut buf).unwrap();
        let mut partial = BytesMut::from(&buf[..6]);
        assert_eq!(FrameCodec.decode(&mut partial).unwrap(), None);
        partial.extend_from_slice(&buf[6..]);
        assert_eq!(
            FrameCodec.decode(&mut partial).unwrap().as_deref(),
            Some(&b"hello"[..])
        );
        assert!(partial.is_empty());
    }

    proptest! {
        #[test]
        fn frames_round_trip(payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..8)) {
            let mut buf = BytesMut::new();
            for payload in &payloads {
                encode_frame(payload, &mut buf).unwrap();
            }
            let mut decoded = Vec::new();
            while let Some(frame) = FrameCodec.decode(&mut buf).unwrap() {
                decoded.push(frame.to_vec());
            }
            prop_assert_eq!(decoded, payloads);
            prop_assert!(buf.is_empty());
        }

        #[test]
        fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = FrameCodec.decode(&mut buf) {}
        }
    }
}
