//! The sleeve overlay: frames from the bridge carried between peers in UDP datagrams by a
//! userspace hot path. The byte format is [`crate::wire::sleeve`]; here:
//!
//! - sans-IO pieces: [`Batcher`] (frames per datagram), [`Reassembler`] (fragments back into
//!   frames), checksum completion for TAP frames with offloaded checksums, the ICMP
//!   "fragmentation needed" reply, and the forwarding decisions ([`forward_captured`],
//!   [`forward_received`]) over the [`ForwardingTable`] the `Sleeve` actor publishes;
//! - I/O: the TAP device ([`Tap`], [`ensure_sleeve_tap`]), the batched UDP socket
//!   ([`SleeveSocket`], a group of them per TAP queue: [`QueueSockets`]) and the
//!   [`SleeveEngine`] whose threads (a pair per queue) run the hot path, with its counters ([`SleeveStats`]) and the [`SleeveEvent`]s it reports to the actor.

mod batch;
mod checksum;
mod engine;
mod forward;
mod forwarding;
mod icmp;
mod keys;
mod queue_sockets;
mod reassembly;
mod stats;
mod tap;
#[cfg(test)]
mod test_frames;
mod udp;

pub use batch::{BatchError, Batcher, mtu_for_payload_limit};
pub use checksum::{
    ChecksumError, VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_LEN, VirtioNetHdr,
    complete_partial_checksum, internet_checksum, ones_complement_add, ones_complement_sum,
};
pub use engine::{EngineQueue, POLL_TIMEOUT_MS, SharedTable, SleeveEngine, SleeveEvent};
pub use forward::{Action, DropReason, forward_captured, forward_received};
pub use forwarding::{ForwardingTable, Neighbour};
pub use icmp::{NoReply, fragmentation_needed_reply, is_ipv4_dont_fragment};
pub use keys::{KeyError, SleeveKeys};
pub use queue_sockets::QueueSockets;
pub use reassembly::{
    MAX_BUFFERED_BYTES, MAX_FRAMES_PER_SOURCE, REASSEMBLY_TIMEOUT, Reassembled, Reassembler,
    ReassemblyError,
};
pub use stats::{DropCause, SleeveStats, SleeveStatsSnapshot};
pub use tap::{MAX_TAP_QUEUES, SLEEVE_TAP_PREFIX, Tap, ensure_sleeve_tap, sleeve_tap_name};
pub use udp::{
    MAX_GSO_MESSAGE_LEN, MAX_GSO_SEGMENTS, RECV_BATCH, RecvBatch, SendQueue, SendReport,
    SleeveSocket, is_message_too_long,
};
