//! Length-prefixed framing of the TCP stream after the header: a big-endian u32 length, then that
//! many bytes. tokio-util's `LengthDelimitedCodec` does the work; this module fixes its shape and
//! gives its one failure a type: a length over the limit is refused from the prefix alone,
//! before any buffer is reserved, so a hostile length prefix costs nothing.

use bytes::{Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

use super::WireError;

/// Largest frame accepted or sent: 10 MiB, Weave Net's `maxTCPMsgSize`. A full topology of a
/// thousand peers with thirty connections each is about 1.5 MiB, well inside it.
pub const MAX_FRAME_BYTES: usize = 10 * 1024 * 1024;
const LENGTH_PREFIX_BYTES: usize = 4;

/// The framing as a codec with a limit of its own (the handshake allows less than a link).
/// Stateful: once it has read a prefix it waits for that frame's body, so one codec serves one
/// stream from its first frame on.
#[derive(Debug)]
pub struct FrameCodec {
    inner: LengthDelimitedCodec,
    max: usize,
}

impl FrameCodec {
    /// Frames of at most `max` bytes.
    pub fn new(max: usize) -> Self {
        let inner = LengthDelimitedCodec::builder()
            .big_endian()
            .length_field_type::<u32>()
            .max_frame_length(max)
            .new_codec();
        Self { inner, max }
    }

    fn too_large(&self, len: usize) -> WireError {
        WireError::FrameTooLarge { len, max: self.max }
    }
}

impl Default for FrameCodec {
    fn default() -> Self {
        Self::new(MAX_FRAME_BYTES)
    }
}

impl Decoder for FrameCodec {
    type Item = Bytes;
    type Error = WireError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, WireError> {
        match self.inner.decode(src) {
            Ok(frame) => Ok(frame.map(BytesMut::freeze)),
            // The only error of a codec shaped like this one is a length over the limit, found
            // before the prefix is consumed: the prefix is still there to say how long.
            Err(_) => Err(self.too_large(
                src.first_chunk::<LENGTH_PREFIX_BYTES>()
                    .map_or(usize::MAX, |prefix| u32::from_be_bytes(*prefix) as usize),
            )),
        }
    }
}

impl Encoder<Bytes> for FrameCodec {
    type Error = WireError;

    fn encode(&mut self, payload: Bytes, dst: &mut BytesMut) -> Result<(), WireError> {
        let len = payload.len();
        if len > self.max {
            return Err(self.too_large(len));
        }
        self.inner
            .encode(payload, dst)
            .map_err(|_| self.too_large(len))
    }
}

/// Appends one frame holding `payload` to `out`, within [`MAX_FRAME_BYTES`].
pub fn encode_frame(payload: impl Into<Bytes>, out: &mut BytesMut) -> Result<(), WireError> {
    FrameCodec::default().encode(payload.into(), out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn oversized_prefix_is_rejected_before_reading_the_body() {
        let mut buf = BytesMut::from(&u32::MAX.to_be_bytes()[..]);
        assert!(matches!(
            FrameCodec::default().decode(&mut buf),
            Err(WireError::FrameTooLarge { len, max: MAX_FRAME_BYTES }) if len == u32::MAX as usize
        ));
        assert!(
            buf.capacity() < 1024,
            "nothing reserved for the claimed body"
        );
        let mut hello = BytesMut::new();
        encode_frame(vec![0u8; 101], &mut hello).unwrap();
        assert!(matches!(
            FrameCodec::new(100).decode(&mut hello),
            Err(WireError::FrameTooLarge { len: 101, max: 100 })
        ));
        assert!(matches!(
            FrameCodec::new(100).encode(Bytes::from(vec![0u8; 101]), &mut BytesMut::new()),
            Err(WireError::FrameTooLarge { len: 101, max: 100 })
        ));
    }

    #[test]
    fn truncated_frame_waits_for_more() {
        let mut buf = BytesMut::new();
        encode_frame(&b"hello"[..], &mut buf).unwrap();
        let mut codec = FrameCodec::default();
        let mut partial = BytesMut::from(&buf[..6]);
        assert_eq!(codec.decode(&mut partial).unwrap(), None);
        partial.extend_from_slice(&buf[6..]);
        assert_eq!(
            codec.decode(&mut partial).unwrap().as_deref(),
            Some(&b"hello"[..])
        );
        assert!(partial.is_empty());
    }

    proptest! {
        #[test]
        fn frames_round_trip(payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..8)) {
            let mut buf = BytesMut::new();
            for payload in &payloads {
                encode_frame(payload.clone(), &mut buf).unwrap();
            }
            let mut codec = FrameCodec::default();
            let mut decoded = Vec::new();
            while let Some(frame) = codec.decode(&mut buf).unwrap() {
                decoded.push(frame.to_vec());
            }
            prop_assert_eq!(decoded, payloads);
            prop_assert!(buf.is_empty());
        }

        #[test]
        fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let mut buf = BytesMut::from(&bytes[..]);
            let mut codec = FrameCodec::new(64);
            while let Ok(Some(_)) = codec.decode(&mut buf) {}
        }
    }
}
