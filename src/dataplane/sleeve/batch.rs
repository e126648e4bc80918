//! Packing frames bound for one next-hop peer into sleeve datagrams no larger than the path allows.
//!
//! A [`Batcher`] owns two buffers, allocated once: the datagram being filled and the last one
//! handed out. Completing a datagram swaps them, so the hot path (one `push` per frame) copies the
//! frame once and never allocates. Batching matters because a UDP `sendmsg` costs about as much as
//! the copy of a full frame; Weave Net drained up to 100 queued frames into one datagram.

use crate::topology::PeerName;
use crate::wire::sleeve::{
    DATAGRAM_HEADER_LEN, ETHERNET_HEADER_LEN, MAX_DATAGRAM_LEN, MIN_FRAME_LEN, RECORD_HEADER_LEN,
    SleeveError, check_frame_record, datagram_payload_limit, encode_datagram_header,
    encode_frame_record,
};

/// The smallest payload limit a batcher accepts, in bytes: a header and one minimal record.
/// Anything smaller could never carry a frame.
const MIN_PAYLOAD_LIMIT: usize = DATAGRAM_HEADER_LEN + RECORD_HEADER_LEN + MIN_FRAME_LEN;

/// Why a frame was not queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// The frame alone does not fit a datagram on this path. `mtu` is the largest IP packet that
    /// does. An IPv4 frame with Don't Fragment set is answered with
    /// [`fragmentation_needed_reply`](super::fragmentation_needed_reply) announcing `mtu`; others
    /// must be fragmented by the caller or dropped.
    #[error("frame does not fit the path: the largest IP packet that does is {mtu} bytes")]
    TooBig { mtu: u16 },
    #[error(transparent)]
    Invalid(#[from] SleeveError),
}

/// Batches frames for one next-hop peer into datagrams of at most `payload_limit` bytes.
///
/// Call [`Batcher::push`] for every frame and send whatever datagram it returns; call
/// [`Batcher::flush`] when the queue of frames runs dry, so nothing waits for a next frame.
#[derive(Debug)]
pub struct Batcher {
    sender: PeerName,
    payload_limit: usize,
    /// The datagram being filled; always starts with the header.
    filling: Vec<u8>,
    frames_in_filling: usize,
    /// The last datagram handed out; kept so its buffer is reused.
    ready: Vec<u8>,
}

impl Batcher {
    /// A batcher for datagrams sent by `sender`, each at most `payload_limit` bytes of UDP payload
    /// (clamped to what a datagram can be and to one minimal record).
    pub fn new(sender: PeerName, payload_limit: usize) -> Self {
        let payload_limit = payload_limit.clamp(MIN_PAYLOAD_LIMIT, MAX_DATAGRAM_LEN);
        let mut filling = Vec::with_capacity(payload_limit);
        encode_datagram_header(sender, &mut filling);
        Self {
            sender,
            payload_limit,
            filling,
            frames_in_filling: 0,
            ready: Vec::with_capacity(payload_limit),
        }
    }

    /// A batcher for a path whose underlay (IPv4) MTU is `underlay_mtu` bytes.
    pub fn for_underlay_mtu(sender: PeerName, underlay_mtu: u32) -> Self {
        Self::new(sender, datagram_payload_limit(underlay_mtu))
    }

    /// The largest datagram this batcher builds, in bytes.
    pub fn payload_limit(&self) -> usize {
        self.payload_limit
    }

    /// The largest IP packet a single frame may carry on this path: the MTU pods should see.
    pub fn mtu(&self) -> u16 {
        // payload_limit <= MAX_DATAGRAM_LEN, so this always fits.
        u16::try_from(mtu_for_payload_limit(self.payload_limit)).unwrap_or(u16::MAX)
    }

    /// Frames waiting in the datagram being filled.
    pub fn pending_frames(&self) -> usize {
        self.frames_in_filling
    }

    /// Queues `frame`, captured at `source` and bound for `destination`. Returns a datagram to
    /// send when one is complete: either the previous one, which had no room for this frame, or
    /// the current one when this frame left no room for another. The frame is rejected whole,
    /// leaving the queued frames untouched, when it is malformed or alone too big for the path.
    pub fn push(
        &mut self,
        frame: &[u8],
        source: PeerName,
        destination: PeerName,
    ) -> Result<Option<&[u8]>, BatchError> {
        check_frame_record(destination, frame)?;
        let record_len = RECORD_HEADER_LEN + frame.len();
        if DATAGRAM_HEADER_LEN + record_len > self.payload_limit {
            return Err(BatchError::TooBig { mtu: self.mtu() });
        }

        if self.filling.len() + record_len > self.payload_limit {
            self.swap_out();
            encode_frame_record(source, destination, frame, &mut self.filling)?;
            self.frames_in_filling = 1;
            return Ok(Some(&self.ready));
        }

        encode_frame_record(source, destination, frame, &mut self.filling)?;
        self.frames_in_filling += 1;
        let room = self.payload_limit - self.filling.len();
        if room < RECORD_HEADER_LEN + MIN_FRAME_LEN {
            // Full: no frame could join it, so sending now saves the caller's next push a wait.
            self.swap_out();
            return Ok(Some(&self.ready));
        }
        Ok(None)
    }

    /// Hands out the datagram being filled, if it holds any frame.
    pub fn flush(&mut self) -> Option<&[u8]> {
        if self.frames_in_filling == 0 {
            return None;
        }
        self.swap_out();
        Some(&self.ready)
    }

    /// Changes the payload limit (after path MTU discovery). Frames already queued were sized for
    /// the old limit, so they are handed out first, as one datagram.
    pub fn set_payload_limit(&mut self, payload_limit: usize) -> Option<&[u8]> {
        self.payload_limit = payload_limit.clamp(MIN_PAYLOAD_LIMIT, MAX_DATAGRAM_LEN);
        self.flush()
    }

    /// Moves the datagram being filled to `ready` and starts a fresh one in the other buffer.
    fn swap_out(&mut self) {
        std::mem::swap(&mut self.filling, &mut self.ready);
        self.filling.clear();
        encode_datagram_header(self.sender, &mut self.filling);
        self.frames_in_filling = 0;
    }
}

/// The largest IP packet that fits a datagram of `payload_limit` bytes as one frame: what
/// [`BatchError::TooBig`] reports. Exposed for tests and for callers sizing probes.
pub const fn mtu_for_payload_limit(payload_limit: usize) -> usize {
    payload_limit.saturating_sub(DATAGRAM_HEADER_LEN + RECORD_HEADER_LEN + ETHERNET_HEADER_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::sleeve::{Record, SleeveDatagram};
    use proptest::prelude::*;

    fn peer(value: u64) -> PeerName {
        PeerName::from_u64(value).unwrap()
    }

    fn frames_of(datagram: &[u8]) -> Vec<Vec<u8>> {
        let parsed = SleeveDatagram::parse(datagram).unwrap();
        assert_eq!(parsed.sender(), peer(1));
        parsed
            .records()
            .map(|record| match record {
                Record::Frame { frame, .. } => frame.to_vec(),
                Record::Control { .. } => panic!("batcher emitted a control record"),
            })
            .collect()
    }

    #[test]
    fn small_frames_share_one_datagram_until_flushed() {
        let mut batcher = Batcher::for_underlay_mtu(peer(1), 1500);
        assert_eq!(batcher.payload_limit(), 1472);
        assert_eq!(batcher.flush(), None);
        for byte in 0..3u8 {
            assert_eq!(batcher.push(&[byte; 100], peer(2), peer(3)), Ok(None));
        }
        assert_eq!(batcher.pending_frames(), 3);
        let datagram = batcher.flush().unwrap().to_vec();
        assert_eq!(datagram.len(), 7 + 3 * (14 + 100));
        assert_eq!(
            frames_of(&datagram),
            vec![vec![0; 100], vec![1; 100], vec![2; 100]]
        );
        assert_eq!(batcher.flush(), None);
    }

    #[test]
    fn a_full_size_frame_fits_exactly_and_one_byte_more_is_too_big() {
        let mut batcher = Batcher::for_underlay_mtu(peer(1), 1500);
        assert_eq!(batcher.mtu(), 1437);
        assert_eq!(mtu_for_payload_limit(1472), 1437);
        let full = vec![7u8; 1437 + 14];
        // It fills the datagram to the byte, so it is sent at once.
        let datagram = batcher.push(&full, peer(2), peer(3)).unwrap().unwrap();
        assert_eq!(datagram.len(), 1472);
        let too_big = vec![7u8; 1438 + 14];
        assert_eq!(
            batcher.push(&too_big, peer(2), peer(3)),
            Err(BatchError::TooBig { mtu: 1437 })
        );
        assert_eq!(batcher.pending_frames(), 0);
    }

    #[test]
    fn a_frame_that_does_not_fit_sends_the_previous_datagram() {
        let mut batcher = Batcher::new(peer(1), 7 + 2 * (14 + 100));
        assert_eq!(batcher.push(&[1; 100], peer(2), peer(3)), Ok(None));
        let first = batcher.push(&[2; 101], peer(2), peer(3)).unwrap().unwrap();
        assert_eq!(frames_of(first), vec![vec![1; 100]]);
        assert_eq!(batcher.pending_frames(), 1);
        assert_eq!(frames_of(batcher.flush().unwrap()), vec![vec![2; 101]]);
    }

    #[test]
    fn malformed_frames_are_rejected_without_disturbing_the_queue() {
        let mut batcher = Batcher::new(peer(1), 1472);
        assert_eq!(batcher.push(&[1; 20], peer(2), peer(3)), Ok(None));
        assert_eq!(
            batcher.push(&[1; 13], peer(2), peer(3)),
            Err(BatchError::Invalid(SleeveError::FrameTooShort { len: 13 }))
        );
        assert_eq!(
            batcher.push(&[1; 20], peer(2), PeerName::from_bytes([0; 6])),
            Err(BatchError::Invalid(SleeveError::ReservedDestination))
        );
        assert_eq!(frames_of(batcher.flush().unwrap()), vec![vec![1; 20]]);
    }

    #[test]
    fn changing_the_limit_hands_out_what_was_queued() {
        let mut batcher = Batcher::new(peer(1), 1472);
        assert_eq!(batcher.push(&[1; 1000], peer(2), peer(3)), Ok(None));
        let queued = batcher.set_payload_limit(500).unwrap();
        assert_eq!(frames_of(queued), vec![vec![1; 1000]]);
        assert_eq!(batcher.payload_limit(), 500);
        assert_eq!(batcher.set_payload_limit(1), None);
        assert_eq!(batcher.payload_limit(), MIN_PAYLOAD_LIMIT);
        assert_eq!(batcher.mtu(), 0);
    }

    #[test]
    fn the_hot_path_reuses_its_two_buffers() {
        let mut batcher = Batcher::new(peer(1), 1472);
        let capacities = |b: &Batcher| (b.filling.capacity(), b.ready.capacity());
        assert_eq!(capacities(&batcher), (1472, 1472));
        let mut sent = 0;
        for length in (14..1400).step_by(37) {
            sent += usize::from(
                batcher
                    .push(&vec![0; length], peer(2), peer(3))
                    .unwrap()
                    .is_some(),
            );
            assert_eq!(capacities(&batcher), (1472, 1472));
        }
        assert!(batcher.flush().is_some());
        assert!(
            sent > 10,
            "many datagrams went through the same two buffers"
        );
        assert_eq!(capacities(&batcher), (1472, 1472));
    }

    proptest! {
        #[test]
        fn batches_respect_the_limit_and_keep_every_frame_in_order(
            limit in MIN_PAYLOAD_LIMIT..3000,
            lengths in prop::collection::vec(MIN_FRAME_LEN..1600, 0..40),
            seed in any::<u8>(),
        ) {
            let frames: Vec<Vec<u8>> = lengths
                .iter()
                .enumerate()
                .map(|(i, &len)| (0..len).map(|j| seed ^ (i as u8).wrapping_mul(31) ^ j as u8).collect())
                .collect();
            let mut batcher = Batcher::new(peer(1), limit);
            let mut datagrams: Vec<Vec<u8>> = Vec::new();
            let mut expected = Vec::new();
            for frame in &frames {
                match batcher.push(frame, peer(2), peer(3)) {
                    Ok(datagram) => {
                        datagrams.extend(datagram.map(<[u8]>::to_vec));
                        expected.push(frame.clone());
                    }
                    Err(BatchError::TooBig { mtu }) => {
                        prop_assert!(frame.len() - ETHERNET_HEADER_LEN > usize::from(mtu));
                        prop_assert_eq!(usize::from(mtu), mtu_for_payload_limit(limit));
                    }
                    Err(other) => prop_assert!(false, "unexpected {:?}", other),
                }
            }
            datagrams.extend(batcher.flush().map(<[u8]>::to_vec));
            let mut received = Vec::new();
            for datagram in &datagrams {
                prop_assert!(datagram.len() <= limit);
                let frames = frames_of(datagram);
                prop_assert!(!frames.is_empty());
                received.extend(frames);
            }
            prop_assert_eq!(received, expected);
        }
    }
}
