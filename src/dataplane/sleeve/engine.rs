//! [`SleeveEngine`]: the sleeve's hot path, dedicated OS threads that never go through actor
//! mailboxes, a pair per queue of the TAP. `sleeve-tx-<queue>` reads frames from its TAP queue
//! and sends them as datagrams (batched per next hop, super-frames as fragment trains);
//! `sleeve-rx-<queue>` receives datagrams on its socket of the mesh port's `SO_REUSEPORT` group,
//! delivers ours to its TAP queue, relays the rest, reassembles fragments, and hands control
//! records and learned MACs to the `Sleeve` actor as [`SleeveEvent`]s over a bounded channel it
//! never waits on.
//!
//! A flow stays on one pair from end to end, which keeps its frames in order and a fragmented
//! frame's pieces in one reassembler: the kernel puts a flow's frames on one TAP queue, the
//! queue's thread sends them all from its one socket, and the receiving group hashes that
//! socket's address and port to one of its sockets every time.
//!
//! With a mesh password every datagram leaves sealed with its next hop's key and every datagram
//! arriving is opened (authenticated, replay-checked) before it is parsed ([`SleeveKeys`]);
//! datagrams are sealed where they lie in the send arena, so sealing costs no copy.
//!
//! Both threads read the [`ForwardingTable`] through an [`ArcSwap`], loading it once per burst,
//! so the actor publishes a new table without ever blocking them. [`SleeveEngine::stop`] raises a
//! flag the threads see within one poll timeout ([`POLL_TIMEOUT_MS`]) and joins them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use arc_swap::ArcSwap;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use tokio::sync::mpsc;

use super::batch::{BatchError, Batcher};
use super::forwarding::ForwardingTable;
use super::keys::SleeveKeys;
use super::queue_sockets::QueueSockets;
use super::stats::{DropCause, SleeveStats};
use super::tap::{MAX_TAP_QUEUES, Tap, check_queue_count};
use super::udp::{MAX_GSO_MESSAGE_LEN, SendQueue, SleeveSocket};
use crate::dataplane::error::{DataplaneError, Result};
use crate::dataplane::mac_table::{Location, REFRESH_INTERVAL};
use crate::topology::PeerName;
use crate::wire::MacAddr;
use crate::wire::sleeve::fragment::{
    FRAGMENT_VNET_HDR_LEN, FragmentMeta, encode_fragment, encode_fragments, fragment_chunk_len,
};
use crate::wire::sleeve::seal::{SEAL_HEADROOM, SEAL_OVERHEAD, SEAL_TAG_LEN};
use crate::wire::sleeve::{Control, RecordDestination};

mod rx;
mod tx;

/// How long a thread waits for its descriptor before checking the stop flag, in milliseconds.
pub const POLL_TIMEOUT_MS: u16 = 100;
/// Frames read from the TAP (or receive batches) before the queued datagrams are sent, so a
/// steady stream never starves the flush; the flush also happens whenever a read would block.
const BURST_FRAMES: usize = 64;
/// Queued bytes that force a send mid-burst, bounding the send arena (1 MiB).
const QUEUE_FLUSH_BYTES: usize = 1 << 20;
/// Step between the frame ids one thread numbers its fragmented frames with: a power of two
/// with room for every thread's slot (two per queue), so the low bits, and with them the
/// threads' ids, stay apart when the counters wrap. Ids of one source need to differ because a
/// receiver reassembles by source and id.
const FRAME_ID_STRIDE: u32 = 2 * MAX_TAP_QUEUES as u32;
/// MACs remembered as recently reported per thread; cleared whole when exceeded, which only costs
/// a few repeated reports.
const RECENT_MACS_LIMIT: usize = 4096;

/// The forwarding table as the actor publishes it and the threads read it.
pub type SharedTable = Arc<ArcSwap<ForwardingTable>>;

/// What the engine tells the `Sleeve` actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SleeveEvent {
    /// A control record (heartbeat, PMTU probe or ack) arrived: the actor answers it, through
    /// its own clone of the socket. `sender` is the datagram's sender (the neighbour) and
    /// `datagram_len` the UDP payload length, what a PMTU probe proves.
    Control {
        from: SocketAddr,
        sender: PeerName,
        control: Control,
        datagram_len: usize,
    },
    /// Source MACs seen since the last event (at most one event per burst): `Local` for frames
    /// captured from our bridge, `Remote(source)` for frames delivered from the overlay.
    MacsSeen(Vec<(MacAddr, Location)>),
    /// An I/O thread (`sleeve-tx-<queue>` or `sleeve-rx-<queue>`) met an error it cannot
    /// continue after (the TAP was deleted, the socket closed) and ended; the actor should stop
    /// the engine and start a new one on fresh devices.
    Failed { thread: String, error: String },
}

/// The running hot path. Dropping it stops it too.
#[derive(Debug)]
pub struct SleeveEngine {
    shutdown: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    stats: Arc<SleeveStats>,
}

/// One queue's devices: a queue of the TAP and its sockets.
#[derive(Debug)]
pub struct EngineQueue {
    pub tap: Tap,
    pub sockets: QueueSockets,
}

impl SleeveEngine {
    /// Starts, for each of `queues`, `sleeve-tx-<queue>` (TAP → UDP) and `sleeve-rx-<queue>`
    /// (UDP → TAP) (the two share the TAP queue through descriptor clones), forwarding by
    /// `table`, reporting on `events`; with `keys` (a mesh password) every datagram is sealed and
    /// opened with them. At most [`MAX_TAP_QUEUES`] queues.
    pub fn start(
        queues: Vec<EngineQueue>,
        table: SharedTable,
        events: mpsc::Sender<SleeveEvent>,
        keys: Option<Arc<SleeveKeys>>,
    ) -> Result<SleeveEngine> {
        check_queue_count("start sleeve engine", "", queues.len())?;
        let mut engine = SleeveEngine {
            shutdown: Arc::new(AtomicBool::new(false)),
            threads: Vec::with_capacity(2 * queues.len()),
            stats: Arc::new(SleeveStats::default()),
        };
        let shared = |thread: String, slot: u32| Shared {
            thread,
            frame_id_slot: slot,
            table: Arc::clone(&table),
            events: events.clone(),
            stats: Arc::clone(&engine.stats),
            shutdown: Arc::clone(&engine.shutdown),
            keys: keys.clone(),
        };
        let mut loops: Vec<(String, Box<dyn FnOnce() + Send>)> = Vec::new();
        for (index, queue) in queues.into_iter().enumerate() {
            let slot = 2 * index as u32;
            let tap_rx = queue.tap.try_clone()?;
            let (tx_name, rx_name) = (format!("sleeve-tx-{index}"), format!("sleeve-rx-{index}"));
            let tx = tx::TxLoop::new(queue.tap, queue.sockets.send, shared(tx_name.clone(), slot));
            let rx = rx::RxLoop::new(
                tap_rx,
                queue.sockets.mesh,
                shared(rx_name.clone(), slot + 1),
            );
            loops.push((tx_name, Box::new(move || tx.run())));
            loops.push((rx_name, Box::new(move || rx.run())));
        }
        for (name, body) in loops {
            let thread = std::thread::Builder::new()
                .name(name.clone())
                .spawn(body)
                .map_err(|source| DataplaneError::Io {
                    op: "spawn thread",
                    name,
                    source,
                })?;
            engine.threads.push(thread);
        }
        Ok(engine)
    }

    /// The live counters.
    pub fn stats(&self) -> Arc<SleeveStats> {
        Arc::clone(&self.stats)
    }

    /// Stops both threads and waits for them (within about one poll timeout).
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.shutdown.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                tracing::error!("a sleeve I/O thread panicked");
            }
        }
    }
}

impl Drop for SleeveEngine {
    fn drop(&mut self) {
        self.halt();
    }
}

/// What every thread is given: its own name and frame id slot, and what they all share.
struct Shared {
    /// The thread's name, in logs and [`SleeveEvent::Failed`].
    thread: String,
    /// Low bits of every frame id this thread numbers fragments with (see [`FRAME_ID_STRIDE`]).
    frame_id_slot: u32,
    table: SharedTable,
    events: mpsc::Sender<SleeveEvent>,
    stats: Arc<SleeveStats>,
    shutdown: Arc<AtomicBool>,
    /// With a mesh password: every datagram is sealed and opened with these.
    keys: Option<Arc<SleeveKeys>>,
}

impl Shared {
    fn stopping(&self) -> bool {
        self.shutdown.load(Ordering::Relaxed)
    }

    /// Ends a thread on an unrecoverable error: logged, and told to the actor.
    fn fail(&self, error: String) {
        let thread = self.thread.clone();
        tracing::error!(thread, %error, "sleeve: I/O thread stopped");
        self.emit(SleeveEvent::Failed { thread, error });
    }

    /// Hands an event to the actor, or counts it dropped: the hot path never waits.
    fn emit(&self, event: SleeveEvent) -> bool {
        let sent = self.events.try_send(event).is_ok();
        if !sent {
            self.stats.count_drop(DropCause::EventChannelFull);
        }
        sent
    }
}

/// Source MACs seen during a burst, deduplicated, and the ones reported recently (so a busy flow
/// is reported once per [`REFRESH_INTERVAL`], what the learner needs to keep it alive).
#[derive(Default)]
struct MacReporter {
    pending: Vec<(MacAddr, Location)>,
    recent: HashMap<MacAddr, (Location, Instant)>,
}

impl MacReporter {
    fn saw(&mut self, mac: MacAddr, location: Location, now: Instant) {
        if mac.is_multicast() || mac == MacAddr::ZERO {
            return;
        }
        if let Some(&(at, when)) = self.recent.get(&mac)
            && at == location
            && now.saturating_duration_since(when) < REFRESH_INTERVAL
        {
            return;
        }
        if self.recent.len() >= RECENT_MACS_LIMIT {
            self.recent.clear();
        }
        self.recent.insert(mac, (location, now));
        self.pending.push((mac, location));
    }

    /// Sends what the burst saw as one event. When the channel is full they are forgotten as
    /// reported, so the next frame from them tries again.
    fn flush(&mut self, shared: &Shared) {
        if self.pending.is_empty() {
            return;
        }
        let seen = std::mem::take(&mut self.pending);
        let macs: Vec<MacAddr> = seen.iter().map(|&(mac, _)| mac).collect();
        if !shared.emit(SleeveEvent::MacsSeen(seen)) {
            for mac in macs {
                self.recent.remove(&mac);
            }
        }
    }
}

/// Waits up to [`POLL_TIMEOUT_MS`] for `fd` to become readable: `Ok(true)` when it is,
/// `Ok(false)` on timeout or signal, `Err` when the descriptor is dead (error, hang-up, closed).
fn wait_readable(fd: BorrowedFd<'_>) -> std::result::Result<bool, String> {
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    match poll(&mut fds, PollTimeout::from(POLL_TIMEOUT_MS)) {
        Ok(0) | Err(nix::errno::Errno::EINTR) => Ok(false),
        Ok(_) => {
            let events = fds[0].revents().unwrap_or(PollFlags::empty());
            let dead = PollFlags::POLLERR | PollFlags::POLLHUP | PollFlags::POLLNVAL;
            if events.intersects(dead) && !events.contains(PollFlags::POLLIN) {
                Err(format!("descriptor reports {events:?}"))
            } else {
                Ok(true)
            }
        }
        Err(e) => Err(format!("poll: {e}")),
    }
}

fn mac_at(frame: &[u8], at: usize) -> Option<MacAddr> {
    let bytes: [u8; 6] = frame.get(at..at + 6)?.try_into().ok()?;
    Some(MacAddr(bytes))
}

/// Datagrams on their way out of one thread: a batcher per next hop and the send queue.
struct Outbound {
    local: PeerName,
    /// Per next hop: the payload limit its batcher was sized for (as the table gave it, before
    /// the batcher's own clamping) and the batcher.
    batchers: HashMap<PeerName, (usize, Batcher)>,
    queue: SendQueue,
    next_frame_id: u32,
    /// With a mesh password: datagrams are sealed in the queue's arena as they are queued.
    keys: Option<Arc<SleeveKeys>>,
    stats: Arc<SleeveStats>,
}

impl Outbound {
    fn new(local: PeerName, shared: &Shared) -> Self {
        Self {
            local,
            keys: shared.keys.clone(),
            stats: Arc::clone(&shared.stats),
            batchers: HashMap::new(),
            queue: SendQueue::new(),
            // Random per start, so ids from a restarted engine do not collide with frames still
            // being reassembled from the previous one; the slot in the low bits keeps the
            // threads' ids apart.
            next_frame_id: (rand::random::<u32>() & !(FRAME_ID_STRIDE - 1)) | shared.frame_id_slot,
        }
    }

    /// A new table may name another local peer (never in practice) or change a path's limit.
    fn retarget(&mut self, table: &ForwardingTable) {
        if table.local != self.local {
            self.local = table.local;
            self.batchers.clear();
        }
    }

    /// Batches `frame` (captured at `source`) for `hop`, queueing whatever datagram completes.
    /// `TooBig` when the frame alone does not fit the path.
    fn push_frame(
        &mut self,
        hop: PeerName,
        addr: SocketAddr,
        payload_limit: usize,
        source: PeerName,
        destination: RecordDestination,
        frame: &[u8],
    ) -> std::result::Result<(), BatchOutcome> {
        let local = self.local;
        // Sealed datagrams grow on the wire: the batcher fills what is left of the path.
        let plain_limit = self.plain_limit(payload_limit);
        let (sized_for, batcher) = self
            .batchers
            .entry(hop)
            .or_insert_with(|| (plain_limit, Batcher::new(local, plain_limit)));
        if *sized_for != plain_limit {
            // PMTU verification moved the limit: what was queued goes out first.
            *sized_for = plain_limit;
            if let Some(datagram) = batcher.set_payload_limit(plain_limit) {
                enqueue(
                    &mut self.queue,
                    &self.keys,
                    &self.stats,
                    hop,
                    addr,
                    datagram,
                );
            }
        }
        match batcher.push(frame, source, destination.as_peer_name()) {
            Ok(Some(datagram)) => {
                enqueue(
                    &mut self.queue,
                    &self.keys,
                    &self.stats,
                    hop,
                    addr,
                    datagram,
                );
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(BatchError::TooBig { mtu }) => Err(BatchOutcome::TooBig { mtu }),
            Err(BatchError::Invalid(_)) => Err(BatchOutcome::Invalid),
        }
    }

    /// Sends `frame` as a train of fragments to `hop`, after whatever is batched for it (so the
    /// frames of one flow keep their order). The drop cause when it cannot: `TooBig` when the
    /// path leaves no room for a fragment, `NoKey` when there is no key to seal with yet.
    #[allow(clippy::too_many_arguments)]
    fn push_fragments(
        &mut self,
        hop: PeerName,
        addr: SocketAddr,
        payload_limit: usize,
        source: PeerName,
        destination: RecordDestination,
        vnet_hdr: [u8; FRAGMENT_VNET_HDR_LEN],
        frame: &[u8],
    ) -> std::result::Result<(), DropCause> {
        if let Some(datagram) = self.batchers.get_mut(&hop).and_then(|(_, b)| b.flush()) {
            enqueue(
                &mut self.queue,
                &self.keys,
                &self.stats,
                hop,
                addr,
                datagram,
            );
        }
        // Every fragment but the last fills a datagram exactly: the size GSO cuts the train at.
        let payload_limit = self.plain_limit(payload_limit.min(MAX_GSO_MESSAGE_LEN));
        self.next_frame_id = self.next_frame_id.wrapping_add(FRAME_ID_STRIDE);
        let meta = FragmentMeta {
            source,
            destination,
            frame_id: self.next_frame_id,
            total_len: frame.len() as u32,
            vnet_hdr,
        };
        let local = self.local;
        let Some(keys) = &self.keys else {
            return self
                .queue
                .push_segments(addr, payload_limit, |out| {
                    encode_fragments(local, &meta, frame, payload_limit, out).map(drop)
                })
                .map_err(|_| DropCause::TooBig);
        };
        let chunk_len = fragment_chunk_len(payload_limit).ok_or(DropCause::TooBig)?;
        // Each fragment sealed where it lies, so the train keeps one size per segment (the
        // plain limit plus the overhead) for GSO, the last one shorter.
        self.queue
            .push_segments(addr, payload_limit + SEAL_OVERHEAD, |out| {
                for (index, chunk) in frame.chunks(chunk_len).enumerate() {
                    // index * chunk_len < frame.len() <= MAX_REASSEMBLED_LEN: fits 32 bits.
                    let offset = (index * chunk_len) as u32;
                    seal_appended(out, keys, hop, |out| {
                        encode_fragment(local, &meta, offset, chunk, out)
                            .map_err(|_| DropCause::TooBig)
                    })?;
                }
                Ok(())
            })
    }

    /// The plain datagram that fits a path of `payload_limit` bytes: less the sealing overhead
    /// with a password.
    fn plain_limit(&self, payload_limit: usize) -> usize {
        match self.keys {
            Some(_) => payload_limit.saturating_sub(SEAL_OVERHEAD),
            None => payload_limit,
        }
    }

    /// Queues a fragment relayed unchanged but for its sender and destination, sealed for `hop`
    /// with a password.
    fn push_relayed_fragment(
        &mut self,
        hop: PeerName,
        addr: SocketAddr,
        write: impl FnOnce(&mut Vec<u8>) -> std::result::Result<(), DropCause>,
    ) -> std::result::Result<(), DropCause> {
        match &self.keys {
            None => self.queue.push_segments(addr, usize::MAX, write),
            Some(keys) => self
                .queue
                .push_segments(addr, usize::MAX, |out| seal_appended(out, keys, hop, write)),
        }
    }

    /// Moves every partly filled datagram to the queue (the end of a burst).
    fn flush_batchers(&mut self, table: &ForwardingTable) {
        for (hop, (_, batcher)) in &mut self.batchers {
            // A hop that is no longer a neighbour loses what was batched for it: no path.
            if let (Some(datagram), Some(neighbour)) = (batcher.flush(), table.neighbours.get(hop))
            {
                let addr = neighbour.udp_addr;
                enqueue(
                    &mut self.queue,
                    &self.keys,
                    &self.stats,
                    *hop,
                    addr,
                    datagram,
                );
            }
        }
    }

    /// Sends the queue, counting what went out.
    fn send(&mut self, socket: &SleeveSocket, stats: &SleeveStats) {
        if self.queue.is_empty() {
            return;
        }
        let report = socket.send_queue(&mut self.queue);
        SleeveStats::add(&stats.udp_datagrams_out, report.datagrams as u64);
        SleeveStats::add(&stats.udp_bytes_out, report.bytes as u64);
        for _ in 0..report.failed {
            stats.count_drop(DropCause::SendFailed);
        }
    }
}

/// Queues `datagram` for `hop` at `addr`: as it is, or with a password sealed in the arena
/// (copied there once, as without one, then sealed where it lies). A datagram that cannot be
/// sealed (no key yet) is dropped and counted.
fn enqueue(
    queue: &mut SendQueue,
    keys: &Option<Arc<SleeveKeys>>,
    stats: &SleeveStats,
    hop: PeerName,
    addr: SocketAddr,
    datagram: &[u8],
) {
    let Some(keys) = keys else {
        return queue.push(addr, datagram);
    };
    let queued = queue.push_with(addr, |out| {
        seal_appended(out, keys, hop, |out| {
            out.extend_from_slice(datagram);
            Ok(())
        })
    });
    if let Err(cause) = queued {
        stats.count_drop(cause);
    }
}

/// Appends a plain datagram with `write` behind [`SEAL_HEADROOM`] free bytes, and room for the
/// tag behind it, then seals it for `hop` in place. Leaves `out` as it was on failure.
fn seal_appended(
    out: &mut Vec<u8>,
    keys: &SleeveKeys,
    hop: PeerName,
    write: impl FnOnce(&mut Vec<u8>) -> std::result::Result<(), DropCause>,
) -> std::result::Result<(), DropCause> {
    let start = out.len();
    out.resize(start + SEAL_HEADROOM, 0);
    let sealed = write(out).and_then(|()| {
        out.resize(out.len() + SEAL_TAG_LEN, 0);
        keys.seal(hop, &mut out[start..]).map_err(|err| err.cause())
    });
    if sealed.is_err() {
        out.truncate(start);
    }
    sealed
}

/// Why a frame could not be batched.
enum BatchOutcome {
    TooBig { mtu: u16 },
    Invalid,
}

#[cfg(test)]
mod tests;
