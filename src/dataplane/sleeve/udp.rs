//! The sleeve's UDP socket (`0.0.0.0:<mesh port>`) and its batched syscalls: `sendmmsg` for a
//! burst of datagrams to any peers in one call, with UDP GSO (`UDP_SEGMENT`) so a super-frame's
//! equal-sized fragments leave as one message, and `recvmmsg` with UDP GRO so a train of
//! datagrams from one peer arrives as one buffer. Per-datagram syscalls capped a naive relay at
//! 1.5 Gbit/s here; the batching is the point of this module. Measured on the benchmark topology
//! (load-tests/dataplane_bench.sh row c, single TCP stream, one 5 s run each, shared 2-CPU
//! machine): GSO + GRO 9.7 Gbit/s, GRO alone 3.3, GSO alone 6.1, neither 4.2. Both stay.
//!
//! Every datagram leaves with Don't Fragment (`IP_PMTUDISC_DO`): the sleeve's own fragments keep
//! datagrams within the path's payload limit, so the underlay never fragments, and a datagram
//! above the kernel's known path MTU fails with `EMSGSIZE`, which PMTU verification relies on.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{SocketAddr, SocketAddrV4};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use nix::libc;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::dataplane::error::{DataplaneError, Result};

/// Socket buffer size asked for, in bytes, each way: 4 MiB holds about 60 super-frames, enough to
/// ride out a scheduling hiccup of the other thread at 10 Gbit/s (the default 208 KiB is 3).
const SOCKET_BUFFER_BYTES: usize = 4 << 20;
/// Largest UDP payload one GSO message may carry, in bytes: the IPv4 total-length limit (65535)
/// minus the IPv4 (20) and UDP (8) headers.
pub const MAX_GSO_MESSAGE_LEN: usize = 65_535 - 28;
/// Most segments per GSO message (`UDP_MAX_SEGMENTS` was 64 before Linux 6.x raised it).
pub const MAX_GSO_SEGMENTS: usize = 64;
/// Datagrams received per `recvmmsg`.
pub const RECV_BATCH: usize = 32;
/// Each receive buffer, in bytes: one GRO train (or one datagram) at most.
const RECV_BUFFER_LEN: usize = 65_536;
/// Room for one `UDP_GRO` control message (an int), 8-byte aligned.
const CONTROL_LEN: usize = 32;
/// Messages handed to one `sendmmsg` (the kernel's `UIO_MAXIOV` is 1024).
const SEND_BATCH: usize = 64;

/// Whether a send failed because the datagram is bigger than the kernel's path MTU to the peer
/// (`EMSGSIZE`, with Don't Fragment on every datagram).
pub fn is_message_too_long(error: &io::Error) -> bool {
    error.raw_os_error() == Some(libc::EMSGSIZE)
}

/// The sleeve's UDP socket; clones share the same kernel socket.
#[derive(Debug)]
pub struct SleeveSocket {
    socket: Socket,
    gro: bool,
}

impl SleeveSocket {
    /// Binds `addr` with DF on every datagram, big buffers, and UDP GRO when the kernel has it.
    /// Sends block (backpressure), receives poll.
    pub fn bind(addr: SocketAddrV4) -> Result<Self> {
        Self::bind_with(addr, false)
    }

    /// [`SleeveSocket::bind`], joining `addr`'s `SO_REUSEPORT` group when `reuse_port`.
    pub(super) fn bind_with(addr: SocketAddrV4, reuse_port: bool) -> Result<Self> {
        let name = addr.to_string();
        let io_err = |op: &'static str| {
            let name = name.clone();
            move |source: io::Error| DataplaneError::Io { op, name, source }
        };
        let socket = Socket::new(Domain::IPV4, Type::DGRAM.cloexec(), Some(Protocol::UDP))
            .map_err(io_err("create sleeve UDP socket"))?;
        setsockopt_int(
            &socket,
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_DO,
        )
        .map_err(io_err("set IP_PMTUDISC_DO on sleeve socket"))?;
        // Root may exceed net.core.{w,r}mem_max; otherwise the kernel caps the plain option.
        let size = SOCKET_BUFFER_BYTES as libc::c_int;
        if setsockopt_int(&socket, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, size).is_err() {
            let _ = socket.set_send_buffer_size(SOCKET_BUFFER_BYTES);
        }
        if setsockopt_int(&socket, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, size).is_err() {
            let _ = socket.set_recv_buffer_size(SOCKET_BUFFER_BYTES);
        }
        let gro = setsockopt_int(&socket, libc::SOL_UDP, libc::UDP_GRO, 1).is_ok();
        if reuse_port {
            socket
                .set_reuse_port(true)
                .map_err(io_err("set SO_REUSEPORT on sleeve socket"))?;
        }
        socket
            .bind(&SockAddr::from(addr))
            .map_err(io_err("bind sleeve UDP socket"))?;
        Ok(Self { socket, gro })
    }

    /// The bound address (the port when 0 was asked for).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("sleeve socket has a non-IP address"))
    }

    /// Another handle on the same socket (for the actor's control datagrams, or a thread).
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(Self {
            socket: self.socket.try_clone()?,
            gro: self.gro,
        })
    }

    /// Sends one control datagram (heartbeat, PMTU probe or ack). A probe bigger than the path
    /// the kernel knows fails with `EMSGSIZE`: see [`is_message_too_long`].
    pub fn send_control(&self, addr: SocketAddr, bytes: &[u8]) -> io::Result<()> {
        self.socket.send_to(bytes, &SockAddr::from(addr)).map(drop)
    }

    /// Sends every message of `queue` with as few `sendmmsg` calls as the kernel allows, then
    /// empties it. A failed message (EMSGSIZE after a path MTU drop, an unreachable peer) is
    /// skipped, never retried, and counted in the report.
    pub fn send_queue(&self, queue: &mut SendQueue) -> SendReport {
        let mut report = SendReport::default();
        let mut start = 0;
        while start < queue.messages.len() {
            let batch = &queue.messages[start..queue.messages.len().min(start + SEND_BATCH)];
            let sent = match self.sendmmsg(&queue.data, batch) {
                Ok(count) => count,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => 0,
            };
            for message in &batch[..sent] {
                report.datagrams += message.datagrams();
                report.bytes += message.len;
            }
            start += sent;
            if sent == 0 {
                // The first message of the batch failed: skip it, keep the rest.
                report.failed += 1;
                start += 1;
            }
        }
        queue.clear();
        report
    }

    fn sendmmsg(&self, data: &[u8], batch: &[OutMessage]) -> io::Result<usize> {
        let mut addrs: Vec<SockAddr> = Vec::with_capacity(batch.len());
        let mut iovecs: Vec<libc::iovec> = Vec::with_capacity(batch.len());
        let mut controls: Vec<[u64; CONTROL_LEN / 8]> = vec![[0; CONTROL_LEN / 8]; batch.len()];
        for message in batch {
            addrs.push(SockAddr::from(message.addr));
            let bytes = &data[message.start..message.start + message.len];
            iovecs.push(libc::iovec {
                iov_base: bytes.as_ptr() as *mut libc::c_void,
                iov_len: bytes.len(),
            });
        }
        // SAFETY: all-zero is a valid mmsghdr (null pointers, zero lengths).
        let mut headers: Vec<libc::mmsghdr> =
            (0..batch.len()).map(|_| unsafe { zeroed() }).collect();
        for (index, message) in batch.iter().enumerate() {
            let header = &mut headers[index].msg_hdr;
            header.msg_name = addrs[index].as_ptr() as *mut libc::c_void;
            header.msg_namelen = addrs[index].len();
            header.msg_iov = &mut iovecs[index];
            header.msg_iovlen = 1;
            if let Some(segment) = message.segment {
                let control = &mut controls[index];
                header.msg_control = control.as_mut_ptr().cast();
                header.msg_controllen = CONTROL_LEN;
                // SAFETY: msg_control points at CONTROL_LEN aligned bytes we own, which hold one
                // cmsghdr plus a u16 (CMSG_SPACE(2) = 24 <= 32), so FIRSTHDR is non-null and
                // DATA is in bounds.
                unsafe {
                    let cmsg = libc::CMSG_FIRSTHDR(header);
                    (*cmsg).cmsg_level = libc::SOL_UDP;
                    (*cmsg).cmsg_type = libc::UDP_SEGMENT;
                    (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as usize;
                    std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), segment);
                    header.msg_controllen = libc::CMSG_SPACE(size_of::<u16>() as u32) as usize;
                }
            }
        }
        // SAFETY: every pointer in `headers` (names, iovecs, control buffers, the data they
        // describe) points into vectors that live until after the call and are not moved.
        let count = unsafe {
            libc::sendmmsg(
                self.socket.as_raw_fd(),
                headers.as_mut_ptr(),
                headers.len() as libc::c_uint,
                0,
            )
        };
        if count < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(count as usize)
        }
    }

    /// Receives up to [`RECV_BATCH`] datagrams (or GRO trains) without blocking into `batch`;
    /// `Ok(0)` when none is queued.
    pub fn recv_batch(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        batch.count = 0;
        let slots = batch.buffers.len();
        let mut iovecs: Vec<libc::iovec> = batch
            .buffers
            .iter_mut()
            .map(|buffer| libc::iovec {
                iov_base: buffer.as_mut_ptr().cast(),
                iov_len: buffer.len(),
            })
            .collect();
        // SAFETY: all-zero is a valid mmsghdr and sockaddr_storage.
        let mut headers: Vec<libc::mmsghdr> = (0..slots).map(|_| unsafe { zeroed() }).collect();
        for (index, header) in headers.iter_mut().enumerate() {
            let hdr = &mut header.msg_hdr;
            hdr.msg_name = (&mut batch.addrs[index] as *mut libc::sockaddr_storage).cast();
            hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_iov = &mut iovecs[index];
            hdr.msg_iovlen = 1;
            hdr.msg_control = batch.controls[index].as_mut_ptr().cast();
            hdr.msg_controllen = CONTROL_LEN;
        }
        // SAFETY: each header points at a buffer, an address slot and a control buffer owned by
        // `batch` or this frame, all alive and unmoved for the call; the kernel writes at most
        // the lengths given.
        let count = unsafe {
            libc::recvmmsg(
                self.socket.as_raw_fd(),
                headers.as_mut_ptr(),
                slots as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if count < 0 {
            let error = io::Error::last_os_error();
            return if error.kind() == io::ErrorKind::WouldBlock {
                Ok(0)
            } else {
                Err(error)
            };
        }
        let count = count as usize;
        for (index, header) in headers.iter().take(count).enumerate() {
            batch.lens[index] = header.msg_len as usize;
            batch.segments[index] = gro_segment(&header.msg_hdr);
            batch.from[index] = ipv4_source(&batch.addrs[index]);
        }
        batch.count = count;
        Ok(count)
    }
}

/// The IPv4 address the kernel wrote into a receive slot (the socket is IPv4-only).
fn ipv4_source(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    if libc::c_int::from(storage.ss_family) != libc::AF_INET {
        return None;
    }
    // SAFETY: an AF_INET address in a sockaddr_storage (which is larger and at least as
    // aligned) is a sockaddr_in.
    let sin = unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
    let ip = std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
    Some(SocketAddr::from((ip, u16::from_be(sin.sin_port))))
}

/// The `UDP_GRO` segment size the kernel attached, when it coalesced datagrams.
fn gro_segment(header: &libc::msghdr) -> Option<usize> {
    if header.msg_controllen == 0 {
        return None;
    }
    // SAFETY: the kernel filled msg_control with msg_controllen bytes of well-formed cmsgs;
    // CMSG_NXTHDR stops at their end.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(header);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_UDP && (*cmsg).cmsg_type == libc::UDP_GRO {
                let size = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>());
                return usize::try_from(size).ok().filter(|&s| s > 0);
            }
            cmsg = libc::CMSG_NXTHDR(header, cmsg);
        }
    }
    None
}

impl AsFd for SleeveSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

fn setsockopt_int(
    socket: &Socket,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the option value is one int that outlives the call, and its size is passed.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// One outgoing message: `len` bytes at `start` in the queue's arena, for `addr`; with `segment`,
/// a GSO train the kernel cuts into datagrams of that many bytes.
#[derive(Debug, Clone, Copy)]
struct OutMessage {
    addr: SocketAddr,
    start: usize,
    len: usize,
    segment: Option<u16>,
}

impl OutMessage {
    /// UDP datagrams this message becomes on the wire.
    fn datagrams(&self) -> usize {
        match self.segment {
            Some(segment) => self.len.div_ceil(usize::from(segment).max(1)),
            None => 1,
        }
    }
}

/// What one [`SleeveSocket::send_queue`] put on the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendReport {
    /// UDP datagrams sent (a GSO message counts the datagrams it is cut into).
    pub datagrams: usize,
    /// UDP payload bytes sent.
    pub bytes: usize,
    /// Messages the kernel refused.
    pub failed: usize,
}

/// Datagrams waiting for one `sendmmsg`, copied into one arena buffer reused across bursts.
#[derive(Debug, Default)]
pub struct SendQueue {
    data: Vec<u8>,
    messages: Vec<OutMessage>,
}

impl SendQueue {
    pub fn new() -> Self {
        Self {
            data: Vec::with_capacity(1 << 20),
            messages: Vec::with_capacity(SEND_BATCH),
        }
    }

    /// Queues one datagram.
    pub fn push(&mut self, addr: SocketAddr, datagram: &[u8]) {
        let start = self.data.len();
        self.data.extend_from_slice(datagram);
        self.messages.push(OutMessage {
            addr,
            start,
            len: datagram.len(),
            segment: None,
        });
    }

    /// Queues one datagram that `write` builds in place; `write` returns an error to queue
    /// nothing.
    pub fn push_with<E>(
        &mut self,
        addr: SocketAddr,
        write: impl FnOnce(&mut Vec<u8>) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        let start = self.data.len();
        write(&mut self.data).inspect_err(|_| self.data.truncate(start))?;
        self.messages.push(OutMessage {
            addr,
            start,
            len: self.data.len() - start,
            segment: None,
        });
        Ok(())
    }

    /// Queues datagrams that `write` appends back to back to the arena, each `segment` bytes but
    /// the last; sent as GSO messages of at most [`MAX_GSO_SEGMENTS`] and
    /// [`MAX_GSO_MESSAGE_LEN`]. `write` returns an error to queue nothing. `segment` must be at
    /// most [`MAX_GSO_MESSAGE_LEN`] (a datagram's largest payload).
    pub fn push_segments<E>(
        &mut self,
        addr: SocketAddr,
        segment: usize,
        write: impl FnOnce(&mut Vec<u8>) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        let segment = segment.clamp(1, MAX_GSO_MESSAGE_LEN);
        let start = self.data.len();
        write(&mut self.data).inspect_err(|_| self.data.truncate(start))?;
        let total = self.data.len() - start;
        let per_message = (MAX_GSO_MESSAGE_LEN / segment).clamp(1, MAX_GSO_SEGMENTS) * segment;
        let mut offset = 0;
        while offset < total {
            let len = per_message.min(total - offset);
            self.messages.push(OutMessage {
                addr,
                start: start + offset,
                len,
                // One segment alone needs no GSO.
                segment: (len > segment).then_some(segment as u16),
            });
            offset += len;
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Bytes queued.
    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    pub fn clear(&mut self) {
        self.data.clear();
        self.messages.clear();
    }
}

/// Receive buffers for [`SleeveSocket::recv_batch`], allocated once.
pub struct RecvBatch {
    buffers: Vec<Box<[u8]>>,
    addrs: Vec<libc::sockaddr_storage>,
    controls: Vec<[u64; CONTROL_LEN / 8]>,
    lens: Vec<usize>,
    segments: Vec<Option<usize>>,
    from: Vec<Option<SocketAddr>>,
    count: usize,
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl RecvBatch {
    pub fn new() -> Self {
        Self {
            buffers: (0..RECV_BATCH)
                .map(|_| vec![0u8; RECV_BUFFER_LEN].into_boxed_slice())
                .collect(),
            // SAFETY: all-zero is a valid sockaddr_storage.
            addrs: (0..RECV_BATCH).map(|_| unsafe { zeroed() }).collect(),
            controls: vec![[0; CONTROL_LEN / 8]; RECV_BATCH],
            lens: vec![0; RECV_BATCH],
            segments: vec![None; RECV_BATCH],
            from: vec![None; RECV_BATCH],
            count: 0,
        }
    }

    /// The datagrams of the last receive, each with its sender: GRO trains split back into the
    /// datagrams they were.
    pub fn datagrams(&mut self) -> impl Iterator<Item = (Option<SocketAddr>, &mut [u8])> {
        let count = self.count;
        self.buffers
            .iter_mut()
            .zip(
                self.lens
                    .iter()
                    .zip(self.segments.iter().zip(self.from.iter())),
            )
            .take(count)
            .flat_map(|(buffer, (&len, (&segment, &from)))| {
                let data = &mut buffer[..len];
                let step = segment.unwrap_or(len).max(1);
                data.chunks_mut(step).map(move |datagram| (from, datagram))
            })
    }
}

#[cfg(test)]
mod tests;
