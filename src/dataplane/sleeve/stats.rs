//! The sleeve hot path's counters: plain atomics the I/O threads bump (relaxed: each is an
//! independent tally) and the actor reads as a [`SleeveStatsSnapshot`] for `/metrics` and status.

use std::sync::atomic::{AtomicU64, Ordering};

use super::forward::DropReason;
use super::reassembly::Reassembler;
use crate::metrics::LabelValue;

/// Why the engine dropped a frame or datagram, one counter each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropCause {
    /// A forwarding decision ([`DropReason`]) that sent the frame nowhere.
    Forwarding(DropReason),
    /// A frame from the TAP too short, or whose partial checksum could not be completed.
    MalformedFrame,
    /// A datagram that failed to parse (corrupt, hostile, or another version).
    MalformedDatagram,
    /// A fragment that overlapped or contradicted its frame (the frame was discarded).
    Reassembly,
    /// A frame whose fragments did not all arrive within the reassembly timeout.
    ReassemblyTimeout,
    /// A frame evicted unfinished to make room for newer ones (per-source or total bound).
    ReassemblyEvicted,
    /// A `sendmmsg` message the kernel refused (EMSGSIZE after a path MTU drop, unreachable).
    SendFailed,
    /// A write to the TAP failed.
    TapWriteFailed,
    /// The event channel to the actor was full: the event was dropped, never waited for.
    EventChannelFull,
    /// A frame too big for the path that could neither get an ICMP reply nor be fragmented.
    TooBig,
    /// With a mesh password: a datagram that failed authentication (forged, altered, sealed
    /// under a key we do not hold, or not sealed at all).
    Auth,
    /// With a mesh password: a datagram whose counter was already received or is behind the
    /// replay window.
    Replay,
    /// With a mesh password: a datagram for a neighbour whose link has not agreed a key yet.
    NoKey,
}

const DROP_CAUSES: usize = 17;

impl DropCause {
    fn index(self) -> usize {
        match self {
            DropCause::Forwarding(DropReason::LocalDestination) => 0,
            DropCause::Forwarding(DropReason::KernelCarries) => 1,
            DropCause::Forwarding(DropReason::NoRoute) => 2,
            DropCause::Forwarding(DropReason::Loop) => 3,
            DropCause::Forwarding(DropReason::NoChildren) => 4,
            DropCause::MalformedFrame => 5,
            DropCause::MalformedDatagram => 6,
            DropCause::Reassembly => 7,
            DropCause::SendFailed => 8,
            DropCause::TapWriteFailed => 9,
            DropCause::EventChannelFull => 10,
            DropCause::TooBig => 11,
            DropCause::ReassemblyTimeout => 12,
            DropCause::ReassemblyEvicted => 13,
            DropCause::Auth => 14,
            DropCause::Replay => 15,
            DropCause::NoKey => 16,
        }
    }

    /// The metric label of the cause.
    pub fn as_str(self) -> &'static str {
        match self {
            DropCause::Forwarding(DropReason::LocalDestination) => "local_destination",
            DropCause::Forwarding(DropReason::KernelCarries) => "kernel_carries",
            DropCause::Forwarding(DropReason::NoRoute) => "no_route",
            DropCause::Forwarding(DropReason::Loop) => "loop",
            DropCause::Forwarding(DropReason::NoChildren) => "no_children",
            DropCause::MalformedFrame => "malformed_frame",
            DropCause::MalformedDatagram => "malformed_datagram",
            DropCause::Reassembly => "reassembly",
            DropCause::SendFailed => "send_failed",
            DropCause::TapWriteFailed => "tap_write_failed",
            DropCause::EventChannelFull => "event_channel_full",
            DropCause::TooBig => "too_big",
            DropCause::ReassemblyTimeout => "reassembly_timeout",
            DropCause::ReassemblyEvicted => "reassembly_evicted",
            DropCause::Auth => "auth",
            DropCause::Replay => "replay",
            DropCause::NoKey => "no_key",
        }
    }

    /// Every cause, in counter order, for exporting.
    pub const ALL: [DropCause; DROP_CAUSES] = [
        DropCause::Forwarding(DropReason::LocalDestination),
        DropCause::Forwarding(DropReason::KernelCarries),
        DropCause::Forwarding(DropReason::NoRoute),
        DropCause::Forwarding(DropReason::Loop),
        DropCause::Forwarding(DropReason::NoChildren),
        DropCause::MalformedFrame,
        DropCause::MalformedDatagram,
        DropCause::Reassembly,
        DropCause::SendFailed,
        DropCause::TapWriteFailed,
        DropCause::EventChannelFull,
        DropCause::TooBig,
        DropCause::ReassemblyTimeout,
        DropCause::ReassemblyEvicted,
        DropCause::Auth,
        DropCause::Replay,
        DropCause::NoKey,
    ];
}

/// The `cause` label of the sleeve's drop counter.
impl LabelValue for DropCause {
    fn label(self) -> &'static str {
        self.as_str()
    }
}

/// Live counters, shared by `Arc` between the engine's threads and its owner.
#[derive(Debug, Default)]
pub struct SleeveStats {
    /// Frames (and bytes, vnet header excluded) read from the TAP.
    pub tap_frames_in: AtomicU64,
    pub tap_bytes_in: AtomicU64,
    /// Frames (and bytes) written to the TAP: delivered onto our bridge.
    pub tap_frames_out: AtomicU64,
    pub tap_bytes_out: AtomicU64,
    /// UDP datagrams (and payload bytes) sent and received; a GSO train counts its datagrams.
    pub udp_datagrams_out: AtomicU64,
    pub udp_bytes_out: AtomicU64,
    pub udp_datagrams_in: AtomicU64,
    pub udp_bytes_in: AtomicU64,
    /// Frames and fragments passed on to another peer (unicast relays and broadcast tree).
    pub relayed: AtomicU64,
    /// Frames sent as fragments, and frames reassembled from them.
    pub fragmented: AtomicU64,
    pub reassembled: AtomicU64,
    /// ICMP "fragmentation needed" replies written back to pods.
    pub frag_needed_sent: AtomicU64,
    drops: [AtomicU64; DROP_CAUSES],
}

/// A plain copy of [`SleeveStats`] at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SleeveStatsSnapshot {
    pub tap_frames_in: u64,
    pub tap_bytes_in: u64,
    pub tap_frames_out: u64,
    pub tap_bytes_out: u64,
    pub udp_datagrams_out: u64,
    pub udp_bytes_out: u64,
    pub udp_datagrams_in: u64,
    pub udp_bytes_in: u64,
    pub relayed: u64,
    pub fragmented: u64,
    pub reassembled: u64,
    pub frag_needed_sent: u64,
    /// Drops per cause, in [`DropCause::ALL`] order.
    pub drops: Vec<(DropCause, u64)>,
}

impl SleeveStatsSnapshot {
    /// Drops counted for `cause`.
    pub fn dropped(&self, cause: DropCause) -> u64 {
        self.drops
            .iter()
            .find(|(c, _)| *c == cause)
            .map_or(0, |(_, n)| *n)
    }
}

impl SleeveStats {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn count_drop(&self, cause: DropCause) {
        self.drops[cause.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Adds the frames `reassembler` dropped on its own (timed out, evicted) since the last call;
    /// the rejected fragments it returns as errors are counted where they are returned.
    pub(crate) fn count_reassembly_drops(&self, reassembler: &mut Reassembler) {
        let (timed_out, evicted) = reassembler.take_dropped();
        let drops = &self.drops;
        drops[DropCause::ReassemblyTimeout.index()].fetch_add(timed_out, Ordering::Relaxed);
        drops[DropCause::ReassemblyEvicted.index()].fetch_add(evicted, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> SleeveStatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SleeveStatsSnapshot {
            tap_frames_in: get(&self.tap_frames_in),
            tap_bytes_in: get(&self.tap_bytes_in),
            tap_frames_out: get(&self.tap_frames_out),
            tap_bytes_out: get(&self.tap_bytes_out),
            udp_datagrams_out: get(&self.udp_datagrams_out),
            udp_bytes_out: get(&self.udp_bytes_out),
            udp_datagrams_in: get(&self.udp_datagrams_in),
            udp_bytes_in: get(&self.udp_bytes_in),
            relayed: get(&self.relayed),
            fragmented: get(&self.fragmented),
            reassembled: get(&self.reassembled),
            frag_needed_sent: get(&self.frag_needed_sent),
            drops: DropCause::ALL
                .iter()
                .map(|&cause| (cause, get(&self.drops[cause.index()])))
                .collect(),
        }
    }
}
