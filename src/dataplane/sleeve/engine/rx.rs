//! `sleeve-rx-<queue>`: datagrams received in batches on one socket of the mesh port, opened
//! when the mesh has a password (a datagram that fails authentication or the replay window, or
//! arrives unsealed, is dropped and counted, never parsed), parsed (check-then-parse, borrowed),
//! forwarded by [`forward_received`]: frames for us written to the TAP queue, others relayed to
//! their next hop, fragments for us reassembled, control records handed to the actor.

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::time::Instant;

use super::{
    BURST_FRAMES, BatchOutcome, MacReporter, Outbound, QUEUE_FLUSH_BYTES, Shared, SleeveEvent,
    mac_at, wait_readable,
};
use crate::dataplane::mac_table::Location;
use crate::dataplane::sleeve::checksum::VIRTIO_NET_HDR_LEN;
use crate::dataplane::sleeve::forward::{Action, forward_received};
use crate::dataplane::sleeve::forwarding::ForwardingTable;
use crate::dataplane::sleeve::reassembly::Reassembler;
use crate::dataplane::sleeve::stats::{DropCause, SleeveStats};
use crate::dataplane::sleeve::tap::Tap;
use crate::dataplane::sleeve::udp::{RecvBatch, SleeveSocket};
use crate::topology::PeerName;
use crate::wire::sleeve::fragment::{Datagram, Fragment, FragmentMeta, encode_fragment};
use crate::wire::sleeve::seal::is_sealed;
use crate::wire::sleeve::{Record, RecordDestination};

/// The header frames delivered whole get: nothing to finish, nothing to segment.
const PLAIN_VNET_HDR: [u8; VIRTIO_NET_HDR_LEN] = [0; VIRTIO_NET_HDR_LEN];

pub(super) struct RxLoop {
    tap: Tap,
    socket: SleeveSocket,
    shared: Shared,
}

/// Per-burst state of the receive thread.
struct Burst<'a> {
    table: &'a ForwardingTable,
    now: Instant,
    out: &'a mut Outbound,
    macs: &'a mut MacReporter,
    reassembler: &'a mut Reassembler,
    actions: &'a mut Vec<Action>,
}

impl RxLoop {
    pub(super) fn new(tap: Tap, socket: SleeveSocket, shared: Shared) -> Self {
        Self {
            tap,
            socket,
            shared,
        }
    }

    pub(super) fn run(self) {
        let mut batch = RecvBatch::new();
        let mut out = Outbound::new(self.shared.table.load().local, &self.shared);
        let mut macs = MacReporter::default();
        let mut reassembler = Reassembler::new();
        let mut actions = Vec::with_capacity(8);
        while !self.shared.stopping() {
            match wait_readable(self.socket.as_fd()) {
                Ok(true) => {}
                Ok(false) => {
                    reassembler.expire(Instant::now());
                    self.shared.stats.count_reassembly_drops(&mut reassembler);
                    continue;
                }
                Err(error) => return self.shared.fail(format!("UDP socket: {error}")),
            }
            let table = self.shared.table.load_full();
            out.retarget(&table);
            let mut burst = Burst {
                table: &table,
                now: Instant::now(),
                out: &mut out,
                macs: &mut macs,
                reassembler: &mut reassembler,
                actions: &mut actions,
            };
            for _ in 0..BURST_FRAMES {
                match self.socket.recv_batch(&mut batch) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "sleeve: receive failed");
                        break;
                    }
                }
                for (from, datagram) in batch.datagrams() {
                    self.datagram(&mut burst, from, datagram);
                }
                if burst.out.queue.bytes() >= QUEUE_FLUSH_BYTES {
                    burst.out.send(&self.socket, &self.shared.stats);
                }
            }
            out.flush_batchers(&table);
            out.send(&self.socket, &self.shared.stats);
            macs.flush(&self.shared);
            // Once per burst: inserts expire and evict frames as they go.
            self.shared.stats.count_reassembly_drops(&mut reassembler);
        }
    }

    fn datagram(&self, burst: &mut Burst<'_>, from: Option<SocketAddr>, received: &mut [u8]) {
        let stats = &self.shared.stats;
        SleeveStats::add(&stats.udp_datagrams_in, 1);
        SleeveStats::add(&stats.udp_bytes_in, received.len() as u64);
        let datagram: &[u8] = match &self.shared.keys {
            None => received,
            // With a password a plain datagram proves nothing: anyone can send one.
            Some(_) if !is_sealed(received) => return stats.count_drop(DropCause::Auth),
            Some(keys) => match keys.open(received) {
                Ok(opened) => opened.datagram,
                Err(error) => return stats.count_drop(error.cause()),
            },
        };
        match Datagram::parse(datagram) {
            Ok(Datagram::Records(records)) => {
                let sender = records.sender();
                for record in records.records() {
                    match record {
                        Record::Control { control, .. } => {
                            if let Some(from) = from {
                                self.shared.emit(SleeveEvent::Control {
                                    from,
                                    sender,
                                    control,
                                    datagram_len: datagram.len(),
                                });
                            }
                        }
                        Record::Frame { source, frame, .. } => {
                            self.frame(burst, sender, source, record.destination(), frame);
                        }
                    }
                }
            }
            Ok(Datagram::Fragment(fragment)) => self.fragment(burst, &fragment),
            Err(_) => stats.count_drop(DropCause::MalformedDatagram),
        }
    }

    fn frame(
        &self,
        burst: &mut Burst<'_>,
        sender: PeerName,
        source: PeerName,
        destination: RecordDestination,
        frame: &[u8],
    ) {
        let stats = &self.shared.stats;
        burst.actions.clear();
        forward_received(burst.table, sender, source, destination, burst.actions);
        for index in 0..burst.actions.len() {
            match burst.actions[index] {
                Action::Deliver => self.deliver(burst, source, &PLAIN_VNET_HDR, frame),
                Action::Send { hop, destination } => {
                    let Some(neighbour) = burst.table.neighbours.get(&hop) else {
                        continue;
                    };
                    let (addr, limit) = (neighbour.udp_addr, neighbour.payload_limit);
                    let pushed =
                        match burst
                            .out
                            .push_frame(hop, addr, limit, source, destination, frame)
                        {
                            Ok(()) => Ok(()),
                            // A narrower path onwards: the relay fragments.
                            Err(BatchOutcome::TooBig { .. }) => burst.out.push_fragments(
                                hop,
                                addr,
                                limit,
                                source,
                                destination,
                                PLAIN_VNET_HDR,
                                frame,
                            ),
                            Err(BatchOutcome::Invalid) => Err(DropCause::TooBig),
                        };
                    if let Err(cause) = pushed {
                        stats.count_drop(cause);
                    } else {
                        SleeveStats::add(&stats.relayed, 1);
                    }
                }
                Action::Drop(reason) => stats.count_drop(DropCause::Forwarding(reason)),
            }
        }
    }

    fn fragment(&self, burst: &mut Burst<'_>, fragment: &Fragment<'_>) {
        let stats = &self.shared.stats;
        let meta = fragment.meta;
        burst.actions.clear();
        forward_received(
            burst.table,
            fragment.sender,
            meta.source,
            meta.destination,
            burst.actions,
        );
        for index in 0..burst.actions.len() {
            match burst.actions[index] {
                Action::Deliver => match burst.reassembler.insert(fragment, burst.now) {
                    Ok(Some(whole)) => {
                        SleeveStats::add(&stats.reassembled, 1);
                        self.deliver(burst, whole.source, &whole.vnet_hdr, &whole.frame);
                        burst.reassembler.recycle(whole.frame);
                    }
                    Ok(None) => {}
                    Err(_) => stats.count_drop(DropCause::Reassembly),
                },
                Action::Send { hop, destination } => {
                    let Some(neighbour) = burst.table.neighbours.get(&hop) else {
                        continue;
                    };
                    // Relays pass fragments on unchanged but for the sender (us) and, going down
                    // a broadcast tree from a relay-only copy, a delivering destination.
                    let onward = FragmentMeta {
                        destination,
                        ..meta
                    };
                    let local = burst.out.local;
                    let queued = burst
                        .out
                        .push_relayed_fragment(hop, neighbour.udp_addr, |buf| {
                            encode_fragment(local, &onward, fragment.offset, fragment.chunk, buf)
                                .map_err(|_| DropCause::MalformedDatagram)
                        });
                    match queued {
                        Ok(()) => SleeveStats::add(&stats.relayed, 1),
                        Err(cause) => stats.count_drop(cause),
                    }
                }
                Action::Drop(reason) => stats.count_drop(DropCause::Forwarding(reason)),
            }
        }
    }

    fn deliver(
        &self,
        burst: &mut Burst<'_>,
        source: PeerName,
        vnet_hdr: &[u8; VIRTIO_NET_HDR_LEN],
        frame: &[u8],
    ) {
        let stats = &self.shared.stats;
        match self.tap.write(vnet_hdr, frame) {
            Ok(_) => {
                SleeveStats::add(&stats.tap_frames_out, 1);
                SleeveStats::add(&stats.tap_bytes_out, frame.len() as u64);
                if let Some(src) = mac_at(frame, 6) {
                    burst.macs.saw(src, Location::Remote(source), burst.now);
                }
            }
            Err(_) => stats.count_drop(DropCause::TapWriteFailed),
        }
    }
}
