//! `sleeve-tx-<queue>`: frames read from one TAP queue, forwarded by [`forward_captured`], sent
//! in batches.
//!
//! Per frame: plain frames with a partial checksum get it completed (the receiving pod would drop
//! them otherwise); GSO super-frames keep their partial checksum and go as fragment trains with
//! their `virtio_net_hdr`, for the far kernel to segment; frames too big for the path get an ICMP
//! "fragmentation needed" when they are IPv4 with DF, and are fragmented otherwise.

use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Instant;

use super::{
    BURST_FRAMES, BatchOutcome, MacReporter, Outbound, QUEUE_FLUSH_BYTES, Shared, mac_at,
    wait_readable,
};
use crate::dataplane::mac_table::Location;
use crate::dataplane::sleeve::checksum::{VIRTIO_NET_HDR_LEN, VirtioNetHdr};
use crate::dataplane::sleeve::forward::{Action, forward_captured};
use crate::dataplane::sleeve::forwarding::ForwardingTable;
use crate::dataplane::sleeve::icmp::{fragmentation_needed_reply, is_ipv4_dont_fragment};
use crate::dataplane::sleeve::stats::{DropCause, SleeveStats};
use crate::dataplane::sleeve::tap::Tap;
use crate::dataplane::sleeve::udp::SleeveSocket;
use crate::wire::sleeve::fragment::MAX_REASSEMBLED_LEN;

/// `virtio_net_hdr.gso_type` of a frame that is not a GSO super-frame.
const GSO_NONE: u8 = 0;
/// A header saying nothing: no checksum to finish, no segmentation.
const PLAIN_VNET_HDR: [u8; VIRTIO_NET_HDR_LEN] = [0; VIRTIO_NET_HDR_LEN];

pub(super) struct TxLoop {
    tap: Tap,
    socket: SleeveSocket,
    shared: Shared,
}

impl TxLoop {
    pub(super) fn new(tap: Tap, socket: SleeveSocket, shared: Shared) -> Self {
        Self {
            tap,
            socket,
            shared,
        }
    }

    pub(super) fn run(self) {
        let mut buffer = vec![0u8; VIRTIO_NET_HDR_LEN + MAX_REASSEMBLED_LEN];
        let mut out = Outbound::new(self.shared.table.load().local, &self.shared);
        let mut macs = MacReporter::default();
        let mut actions = Vec::with_capacity(8);
        while !self.shared.stopping() {
            match wait_readable(self.tap.as_fd()) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(error) => {
                    return self
                        .shared
                        .fail(format!("TAP {}: {error}", self.tap.name()));
                }
            }
            let table = self.shared.table.load_full();
            out.retarget(&table);
            let now = Instant::now();
            for _ in 0..BURST_FRAMES {
                let len = match self.tap.read(&mut buffer) {
                    Ok(len) => len,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        // A TAP read fails only when the device is gone or broken.
                        let error = format!("read TAP {}: {e}", self.tap.name());
                        return self.shared.fail(error);
                    }
                };
                self.captured(
                    &table,
                    &mut buffer[..len],
                    &mut out,
                    &mut macs,
                    &mut actions,
                    now,
                );
                if out.queue.bytes() >= QUEUE_FLUSH_BYTES {
                    out.send(&self.socket, &self.shared.stats);
                }
            }
            out.flush_batchers(&table);
            out.send(&self.socket, &self.shared.stats);
            macs.flush(&self.shared);
        }
    }

    fn captured(
        &self,
        table: &ForwardingTable,
        read: &mut [u8],
        out: &mut Outbound,
        macs: &mut MacReporter,
        actions: &mut Vec<Action>,
        now: Instant,
    ) {
        let stats: &Arc<SleeveStats> = &self.shared.stats;
        let Some(header) = VirtioNetHdr::parse(read) else {
            stats.count_drop(DropCause::MalformedFrame);
            return;
        };
        let gso = header.gso_type != GSO_NONE;
        let mut vnet_hdr = PLAIN_VNET_HDR;
        if gso {
            // The far kernel segments it and fills in the checksums: keep the header whole.
            vnet_hdr.copy_from_slice(&read[..VIRTIO_NET_HDR_LEN]);
        }
        let frame = &mut read[VIRTIO_NET_HDR_LEN..];
        let (Some(dst), Some(src)) = (mac_at(frame, 0), mac_at(frame, 6)) else {
            stats.count_drop(DropCause::MalformedFrame);
            return;
        };
        SleeveStats::add(&stats.tap_frames_in, 1);
        SleeveStats::add(&stats.tap_bytes_in, frame.len() as u64);
        macs.saw(src, Location::Local, now);
        actions.clear();
        forward_captured(table, dst, actions);
        if !gso
            && actions.iter().any(|a| matches!(a, Action::Send { .. }))
            && header.complete_checksum(frame).is_err()
        {
            stats.count_drop(DropCause::MalformedFrame);
            return;
        }
        let frame = &read[VIRTIO_NET_HDR_LEN..];
        for &action in actions.iter() {
            let Action::Send { hop, destination } = action else {
                if let Action::Drop(reason) = action {
                    stats.count_drop(DropCause::Forwarding(reason));
                }
                continue;
            };
            let Some(neighbour) = table.neighbours.get(&hop) else {
                continue;
            };
            let (addr, limit) = (neighbour.udp_addr, neighbour.payload_limit);
            if !gso {
                match out.push_frame(hop, addr, limit, table.local, destination, frame) {
                    Ok(()) => continue,
                    Err(BatchOutcome::Invalid) => {
                        stats.count_drop(DropCause::MalformedFrame);
                        continue;
                    }
                    Err(BatchOutcome::TooBig { mtu }) if is_ipv4_dont_fragment(frame) => {
                        self.reply_too_big(frame, mtu);
                        continue;
                    }
                    Err(BatchOutcome::TooBig { .. }) => {}
                }
            }
            match out.push_fragments(hop, addr, limit, table.local, destination, vnet_hdr, frame) {
                Ok(()) => SleeveStats::add(&stats.fragmented, 1),
                Err(cause) => stats.count_drop(cause),
            }
        }
    }

    /// Answers an IPv4 DF frame too big for the path with ICMP "fragmentation needed", written
    /// back into the TAP as if from its destination, so the pod lowers its path MTU.
    fn reply_too_big(&self, frame: &[u8], mtu: u16) {
        let stats = &self.shared.stats;
        match fragmentation_needed_reply(frame, mtu) {
            Ok(reply) => match self.tap.write(&PLAIN_VNET_HDR, &reply) {
                Ok(_) => SleeveStats::add(&stats.frag_needed_sent, 1),
                Err(_) => stats.count_drop(DropCause::TapWriteFailed),
            },
            Err(_) => stats.count_drop(DropCause::TooBig),
        }
    }
}
