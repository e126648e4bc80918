//! Reassembling frames that crossed the underlay as fragment datagrams
//! ([`crate::wire::sleeve::fragment`]), at their destination only. Sans-IO: time is passed in.
//!
//! Bounded on every axis, since fragments come from the network: at most
//! [`MAX_FRAMES_PER_SOURCE`] frames in flight per source peer and [`MAX_BUFFERED_BYTES`] in total
//! (the oldest frame is evicted to make room; [`SPARE_BUFFERS`] emptied buffers are kept besides,
//! for reuse), each frame dropped [`REASSEMBLY_TIMEOUT`] after its first fragment. A fragment that
//! overlaps one already received, or disagrees with the frame's length, header or destination,
//! discards the whole frame: it is corruption or a reused id, and guessing which copy is right
//! could hand a pod a spliced frame.

use std::time::{Duration, Instant};

use crate::topology::PeerName;
use crate::wire::sleeve::RecordDestination;
use crate::wire::sleeve::fragment::{FRAGMENT_VNET_HDR_LEN, Fragment};

/// Frames in flight per source peer. A source sends a super-frame's fragments back to back, so
/// more than a few in flight means loss; 8 leaves room for reordering between two bursts.
pub const MAX_FRAMES_PER_SOURCE: usize = 8;
/// Bytes buffered across all sources: 64 frames of the 64 KiB maximum, 4 MiB.
pub const MAX_BUFFERED_BYTES: usize = 64 * 65_553;
/// Frame buffers kept for reuse after delivery (see [`Reassembler::recycle`]): one per frame
/// usually in flight, so the steady state allocates nothing.
pub const SPARE_BUFFERS: usize = 4;
/// How long a frame may wait for its missing fragments, from its first one. Fragments of one frame
/// leave the source within microseconds; TCP retransmits long after this.
pub const REASSEMBLY_TIMEOUT: Duration = Duration::from_millis(500);

/// A frame whose every byte arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reassembled {
    pub source: PeerName,
    pub destination: RecordDestination,
    pub vnet_hdr: [u8; FRAGMENT_VNET_HDR_LEN],
    pub frame: Vec<u8>,
}

/// Why a fragment did not (yet) complete a frame, for the drop counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReassemblyError {
    #[error("fragment overlaps bytes already received; frame discarded")]
    Overlap,
    #[error("fragment disagrees with the frame's length, header or destination; frame discarded")]
    Inconsistent,
}

#[derive(Debug)]
struct Partial {
    source: PeerName,
    frame_id: u32,
    destination: RecordDestination,
    vnet_hdr: [u8; FRAGMENT_VNET_HDR_LEN],
    started: Instant,
    /// The frame's length (the buffer may still be shorter: filled as fragments arrive).
    total: usize,
    /// Filled up to the end of the furthest fragment; gaps before it are zero until theirs arrive.
    buffer: Vec<u8>,
    /// Received byte ranges, sorted and disjoint.
    ranges: Vec<(usize, usize)>,
    received: usize,
}

/// Frames being reassembled. Few are in flight at once, so a vector searched linearly beats a map.
#[derive(Debug, Default)]
pub struct Reassembler {
    partials: Vec<Partial>,
    buffered: usize,
    spare: Vec<Vec<u8>>,
    /// Frames dropped since the last [`Reassembler::take_dropped`].
    timed_out: u64,
    evicted: u64,
}

impl Reassembler {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one fragment received at `now`; returns the frame when it is complete.
    pub fn insert(
        &mut self,
        fragment: &Fragment<'_>,
        now: Instant,
    ) -> Result<Option<Reassembled>, ReassemblyError> {
        self.expire(now);
        let meta = &fragment.meta;
        let total = meta.total_len as usize;
        let start = fragment.offset as usize;
        // Fragment::parse checked offset + chunk <= total_len <= MAX_REASSEMBLED_LEN.
        let end = start + fragment.chunk.len();
        let index = match self
            .partials
            .iter()
            .position(|p| p.source == meta.source && p.frame_id == meta.frame_id)
        {
            Some(index) => index,
            None => {
                self.make_room(meta.source, total);
                self.buffered += total;
                let mut buffer = self.spare.pop().unwrap_or_default();
                buffer.clear();
                buffer.reserve_exact(total);
                self.partials.push(Partial {
                    source: meta.source,
                    frame_id: meta.frame_id,
                    destination: meta.destination,
                    vnet_hdr: meta.vnet_hdr,
                    started: now,
                    total,
                    buffer,
                    ranges: Vec::with_capacity(64),
                    received: 0,
                });
                self.partials.len() - 1
            }
        };
        let partial = &mut self.partials[index];
        if partial.total != total
            || partial.destination != meta.destination
            || partial.vnet_hdr != meta.vnet_hdr
        {
            self.discard(index);
            return Err(ReassemblyError::Inconsistent);
        }
        // First range ending after our start: the only one that could overlap from the left or
        // the one we go in front of.
        let at = partial.ranges.partition_point(|&(_, e)| e <= start);
        if partial.ranges.get(at).is_some_and(|&(s, _)| s < end) {
            self.discard(index);
            return Err(ReassemblyError::Overlap);
        }
        partial.ranges.insert(at, (start, end));
        // In-order fragments append (no zero-filling); one ahead of a gap pads it with zeros
        // that the gap's own fragment overwrites later.
        let filled = partial.buffer.len();
        if start >= filled {
            partial.buffer.resize(start, 0);
            partial.buffer.extend_from_slice(fragment.chunk);
        } else {
            let inside = end.min(filled);
            partial.buffer[start..inside].copy_from_slice(&fragment.chunk[..inside - start]);
            partial
                .buffer
                .extend_from_slice(&fragment.chunk[inside - start..]);
        }
        partial.received += end - start;
        if partial.received < total {
            return Ok(None);
        }
        let done = self.remove(index);
        Ok(Some(Reassembled {
            source: done.source,
            destination: done.destination,
            vnet_hdr: done.vnet_hdr,
            frame: done.buffer,
        }))
    }

    /// Gives a delivered frame's buffer back for the next frame to fill.
    pub fn recycle(&mut self, mut frame: Vec<u8>) {
        if self.spare.len() < SPARE_BUFFERS {
            frame.clear();
            self.spare.push(frame);
        }
    }

    /// Drops frames older than [`REASSEMBLY_TIMEOUT`].
    pub fn expire(&mut self, now: Instant) {
        let mut index = 0;
        while index < self.partials.len() {
            if now.saturating_duration_since(self.partials[index].started) >= REASSEMBLY_TIMEOUT {
                self.discard(index);
                self.timed_out += 1;
            } else {
                index += 1;
            }
        }
    }

    /// Bytes buffered now.
    pub fn buffered_bytes(&self) -> usize {
        self.buffered
    }

    /// Frames in flight now.
    pub fn in_flight(&self) -> usize {
        self.partials.len()
    }

    /// Frames dropped since the last call: (timed out, evicted for room). Draining, so the
    /// caller can add them to shared counters without remembering what it already added.
    pub fn take_dropped(&mut self) -> (u64, u64) {
        (
            std::mem::take(&mut self.timed_out),
            std::mem::take(&mut self.evicted),
        )
    }

    /// Evicts the oldest frames until a new one of `total` bytes from `source` is within bounds.
    fn make_room(&mut self, source: PeerName, total: usize) {
        while self.partials.iter().filter(|p| p.source == source).count() >= MAX_FRAMES_PER_SOURCE {
            let oldest = self.oldest(|p| p.source == source);
            self.evict(oldest);
        }
        while self.buffered + total > MAX_BUFFERED_BYTES && !self.partials.is_empty() {
            let oldest = self.oldest(|_| true);
            self.evict(oldest);
        }
    }

    fn oldest(&self, select: impl Fn(&Partial) -> bool) -> Option<usize> {
        self.partials
            .iter()
            .enumerate()
            .filter(|(_, p)| select(p))
            .min_by_key(|(_, p)| p.started)
            .map(|(index, _)| index)
    }

    fn evict(&mut self, index: Option<usize>) {
        if let Some(index) = index {
            self.discard(index);
            self.evicted += 1;
        }
    }

    /// Removes a frame that will not complete, keeping its buffer for reuse.
    fn discard(&mut self, index: usize) {
        let partial = self.remove(index);
        self.recycle(partial.buffer);
    }

    fn remove(&mut self, index: usize) -> Partial {
        let partial = self.partials.swap_remove(index);
        self.buffered -= partial.total;
        partial
    }
}

#[cfg(test)]
mod tests;
