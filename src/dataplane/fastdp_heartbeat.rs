//! The fastdp heartbeat's I/O: an AF_PACKET socket bound to the VXLAN device, and the thread
//! that sends a full-size heartbeat to every target each interval, answers the heartbeats it
//! receives with acks, and reports the acks it receives. The frames are [`super::fastdp_frame`]'s.
//!
//! Sending through an AF_PACKET socket on the VXLAN device hands the frame straight to the
//! kernel's VXLAN transmit path, the one pod frames take (the VXLAN FDB entry for the peer's
//! bridge MAC gives the underlay address). Receiving uses an ETH_P_ALL tap on the same device:
//! taps see a frame before the bridge takes it, and a classic BPF filter keeps everything but
//! incoming heartbeat frames in the kernel, so pod traffic is never copied to userspace.
//!
//! The thread is blocking I/O, outside any actor's mailbox; acks reach the actor through the
//! callback (a bounded `try_send`).

use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::libc;
use socket2::{SockFilter, Socket};
use tokio::sync::watch;

use super::error::{DataplaneError, Result};
use super::fastdp_frame::{self, ETHERTYPE, Frame, Kind};
use super::packet_socket;
use crate::topology::PeerName;
use crate::wire::MacAddr;

/// How long one receive waits before the thread checks its clock and stop flag: bounds both
/// the heartbeat timing jitter and how long stopping takes.
const RECV_TIMEOUT: Duration = Duration::from_millis(100);
/// Largest frame we read: a 9000-byte jumbo MTU plus headers fits, anything larger is cut (and
/// then refused as truncated).
const RECV_BUFFER_BYTES: usize = 16 * 1024;
/// `PACKET_OUTGOING` (linux/if_packet.h): a frame this host sent, seen by the tap.
const PACKET_OUTGOING: u32 = 4;
/// Ancillary BPF load of the packet type (linux/filter.h `SKF_AD_PKTTYPE`).
const SKF_AD_PKTTYPE: i32 = 4;
/// Bytes of a frame the filter passes: more than any frame we build.
const FILTER_SNAPLEN: u32 = 0x4_0000;

// Classic BPF opcodes (linux/bpf_common.h).
const BPF_LD: u16 = 0x00;
const BPF_H: u16 = 0x08;
const BPF_W: u16 = 0x00;
const BPF_ABS: u16 = 0x20;
const BPF_JMP: u16 = 0x05;
const BPF_JEQ: u16 = 0x10;
const BPF_K: u16 = 0x00;
const BPF_RET: u16 = 0x06;

/// Accept incoming frames of the heartbeat ethertype, drop everything else in the kernel.
fn filter_program() -> [SockFilter; 6] {
    [
        // A = ethertype (bytes 12..14)
        SockFilter::new(BPF_LD | BPF_H | BPF_ABS, 0, 0, 12),
        // not ours: to the final "drop"
        SockFilter::new(BPF_JMP | BPF_JEQ | BPF_K, 0, 3, u32::from(ETHERTYPE)),
        // A = packet type
        SockFilter::new(
            BPF_LD | BPF_W | BPF_ABS,
            0,
            0,
            (libc::SKF_AD_OFF + SKF_AD_PKTTYPE) as u32,
        ),
        // our own transmissions: drop
        SockFilter::new(BPF_JMP | BPF_JEQ | BPF_K, 1, 0, PACKET_OUTGOING),
        SockFilter::new(BPF_RET | BPF_K, 0, 0, FILTER_SNAPLEN),
        SockFilter::new(BPF_RET | BPF_K, 0, 0, 0),
    ]
}

/// An AF_PACKET socket bound to one device, receiving only heartbeat frames.
#[derive(Debug)]
pub struct HeartbeatSocket {
    socket: Socket,
    device: String,
}

impl HeartbeatSocket {
    /// Opens the socket on the device with interface index `ifindex` (in the calling thread's
    /// network namespace). Needs CAP_NET_RAW.
    pub fn open(device: &str, ifindex: u32) -> Result<Self> {
        let io_error = |op: &'static str| {
            move |source| DataplaneError::Io {
                op,
                name: device.to_string(),
                source,
            }
        };
        // Protocol 0: the socket receives nothing until it is bound, after the filter is on.
        let socket = packet_socket::raw_socket().map_err(io_error("open heartbeat socket on"))?;
        socket
            .attach_filter(&filter_program())
            .map_err(io_error("attach heartbeat filter on"))?;
        // Heartbeats we send need not come back to us, and without this every frame the VXLAN
        // device transmits is cloned for the tap before the filter drops it (about a tenth of
        // fastdp's throughput here).
        packet_socket::ignore_outgoing(&socket)
            .map_err(io_error("ignore outgoing frames on heartbeat socket of"))?;
        socket
            .set_read_timeout(Some(RECV_TIMEOUT))
            .map_err(io_error("set heartbeat receive timeout on"))?;
        let address = packet_socket::device_address(ifindex, libc::ETH_P_ALL as u16, None)
            .map_err(io_error("bind heartbeat socket to"))?;
        socket
            .bind(&address)
            .map_err(io_error("bind heartbeat socket to"))?;
        Ok(Self {
            socket,
            device: device.to_string(),
        })
    }

    /// Sends one whole Ethernet frame out of the device.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        self.socket.send(frame).map(drop)
    }

    /// Waits up to the receive timeout for a frame; `Ok(None)` when none came.
    pub fn recv(&self, buffer: &mut [u8]) -> io::Result<Option<usize>> {
        match (&self.socket).read(buffer) {
            Ok(got) => Ok(Some(got)),
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }
}

/// How long a received ack may wait in the heartbeat thread for others: the acks of one round
/// arrive together, and go to the actor as one message. One message per ack overflowed the
/// actor's mailbox (actix's default holds 16) on a node with more fastdp peers than that, and
/// the peers answering last lost their acks every round, so they fell back to sleeve and
/// flapped. 50 ms is nothing against the fallback's timers (seconds).
pub const ACK_BATCH_DELAY: Duration = Duration::from_millis(50);

/// The acks received and not yet handed over: each peer once, kept when the hand-over fails,
/// so a full mailbox delays acks instead of losing them.
#[derive(Debug, Default)]
pub struct AckBatch {
    pending: Vec<PeerName>,
    since: Option<Instant>,
}

impl AckBatch {
    /// An ack from `peer` received at `now`.
    pub fn record(&mut self, peer: PeerName, now: Instant) {
        if !self.pending.contains(&peer) {
            self.pending.push(peer);
        }
        self.since.get_or_insert(now);
    }

    /// Whether the oldest pending ack has waited [`ACK_BATCH_DELAY`].
    pub fn due(&self, now: Instant) -> bool {
        self.since
            .is_some_and(|since| now.saturating_duration_since(since) >= ACK_BATCH_DELAY)
    }

    /// Hands the pending acks to `deliver`; what it gives back waits for the next try.
    pub fn flush(
        &mut self,
        now: Instant,
        deliver: &impl Fn(Vec<PeerName>) -> std::result::Result<(), Vec<PeerName>>,
    ) {
        if self.pending.is_empty() {
            return;
        }
        match deliver(std::mem::take(&mut self.pending)) {
            Ok(()) => self.since = None,
            Err(back) => {
                self.pending = back;
                self.since = Some(now);
            }
        }
    }
}

/// Counters of the heartbeat thread, for tests and logs.
#[derive(Debug, Default)]
pub struct HeartbeatCounters {
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    pub answered: AtomicU64,
    pub send_errors: AtomicU64,
}

/// What the heartbeat thread needs.
#[derive(Clone, Debug)]
pub struct HeartbeatConfig {
    /// We send as, and answer to, this peer's bridge MAC.
    pub local: PeerName,
    /// Frames are this overlay MTU + 14 bytes long.
    pub mtu: u32,
    pub interval: Duration,
}

/// The running heartbeat thread; stops (within the receive timeout) when dropped.
#[derive(Debug)]
pub struct Heartbeater {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub counters: Arc<HeartbeatCounters>,
}

impl Heartbeater {
    /// Starts the thread on `socket`. `targets` says whom to send heartbeats to (updated by the
    /// overlay switch); `on_acks` is called on the thread with the senders of the acks received
    /// (a batch per [`ACK_BATCH_DELAY`]), and gives back those it could not take.
    pub fn spawn(
        socket: HeartbeatSocket,
        config: HeartbeatConfig,
        targets: watch::Receiver<Vec<PeerName>>,
        on_acks: impl Fn(Vec<PeerName>) -> std::result::Result<(), Vec<PeerName>> + Send + 'static,
    ) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(HeartbeatCounters::default());
        let device = socket.device.clone();
        let thread = std::thread::Builder::new()
            .name("weft-fastdp-hb".into())
            .spawn({
                let stop = stop.clone();
                let counters = counters.clone();
                move || run(&socket, &config, &targets, &on_acks, &stop, &counters)
            })
            .map_err(|source| DataplaneError::Io {
                op: "spawn heartbeat thread for",
                name: device,
                source,
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
            counters,
        })
    }
}

impl Drop for Heartbeater {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            // A panicked thread has nothing left to clean up.
            let _ = thread.join();
        }
    }
}

fn run(
    socket: &HeartbeatSocket,
    config: &HeartbeatConfig,
    targets: &watch::Receiver<Vec<PeerName>>,
    on_acks: &impl Fn(Vec<PeerName>) -> std::result::Result<(), Vec<PeerName>>,
    stop: &AtomicBool,
    counters: &HeartbeatCounters,
) {
    let local_mac = MacAddr(config.local.to_bytes());
    let size = fastdp_frame::frame_len_for_mtu(config.mtu);
    let mut buffer = vec![0; RECV_BUFFER_BYTES];
    let mut seq: u64 = 0;
    let mut next_round = Instant::now();
    let mut acks = AckBatch::default();
    let send = |dst: PeerName, kind: Kind, seq: u64, size: usize| {
        let frame = Frame {
            dst: MacAddr(dst.to_bytes()),
            src: local_mac,
            kind,
            seq,
            sender: config.local,
            size,
        };
        match socket.send(&fastdp_frame::encode(&frame)) {
            Ok(()) => true,
            Err(err) => {
                // Typically EMSGSIZE after an MTU change, or ENETDOWN: the missing acks report
                // it as an unhealthy path; one debug line per failure is enough here.
                tracing::debug!("fastdp heartbeat to {dst} on {}: {err}", socket.device);
                counters.send_errors.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    };
    while !stop.load(Ordering::Acquire) {
        let now = Instant::now();
        if acks.due(now) {
            acks.flush(now, on_acks);
        }
        if now >= next_round {
            seq += 1;
            let round: Vec<PeerName> = targets.borrow().clone();
            for target in round {
                if send(target, Kind::Heartbeat, seq, size) {
                    counters.sent.fetch_add(1, Ordering::Relaxed);
                }
            }
            next_round = now + config.interval;
        }
        let got = match socket.recv(&mut buffer) {
            Ok(Some(got)) => got,
            Ok(None) => continue,
            Err(err) => {
                tracing::warn!("fastdp heartbeat socket on {}: {err}", socket.device);
                std::thread::sleep(RECV_TIMEOUT);
                continue;
            }
        };
        let Ok(frame) = fastdp_frame::decode(&buffer[..got.min(buffer.len())]) else {
            continue;
        };
        if frame.dst != local_mac || frame.sender == config.local {
            continue;
        }
        match frame.kind {
            // The ack is as big as the heartbeat: it proves the way back at the size the sender
            // probes (its MTU), whatever our own MTU.
            Kind::Heartbeat => {
                if send(frame.sender, Kind::Ack, frame.seq, frame.size) {
                    counters.answered.fetch_add(1, Ordering::Relaxed);
                }
            }
            Kind::Ack => {
                counters.acked.fetch_add(1, Ordering::Relaxed);
                acks.record(frame.sender, Instant::now());
            }
        }
    }
}
