//! The sleeve's sockets for a multi-queue TAP ([`QueueSockets`]): per queue, a socket on the
//! mesh port that receives, and one that sends what the queue's TAP captured. How a peer's
//! traffic spreads over our queues is decided here, by ports:
//!
//! - every queue's mesh socket joins one `SO_REUSEPORT` group on the mesh port, with a classic
//!   BPF program ([`steer_by_source_port`]) that hands a datagram to socket `source port % n`;
//! - queue `i` sends from a port `≡ mesh port + i (mod 8)`: queue 0 from the mesh port itself,
//!   the others from ports of their own, chosen to have that remainder.
//!
//! So queue `i`'s datagrams arrive at a peer's socket `i mod n` (its queue count `n` divides
//! 8, and even when it does not, distinct queues mostly stay apart), every datagram of a
//! queue at the same one. Without the program the kernel would pick by a hash of the addresses
//! and ports, and with two queues each way all of a peer's traffic would share one receiving
//! socket half the time. That matters because the TAP sends a flow's frames to the queue its
//! replies were last written to: once the replies of every flow arrive on one socket, every
//! flow converges on that socket's queue, each way, and the other threads idle.
//!
//! Receivers never answer a frame's source address, so the port a frame came from does not
//! matter to them; control datagrams (heartbeats, PMTU probes) go from and to the mesh port.

use std::io;
use std::net::{SocketAddr, SocketAddrV4};
use std::os::fd::{AsFd, AsRawFd};

use nix::libc;

use super::tap::{MAX_TAP_QUEUES, check_queue_count};
use super::udp::SleeveSocket;
use crate::dataplane::error::{DataplaneError, Result};

/// `SO_ATTACH_REUSEPORT_CBPF` (asm-generic/socket.h, Linux 4.5); the `libc` crate has it only
/// for Android.
const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 51;
/// The ports a send socket's port is drawn from: Linux's default ephemeral range
/// (`net.ipv4.ip_local_port_range`, 32768-60999).
const SEND_PORTS: std::ops::Range<u16> = 32_768..61_000;
/// Ports tried for a send socket before giving up (each taken one is `EADDRINUSE`).
const SEND_PORT_ATTEMPTS: usize = 32;

/// One queue's sockets: `mesh`, bound to the mesh port, receives (and relays, and carries the
/// actor's control datagrams for queue 0); `send` carries the frames captured on the queue's TAP.
#[derive(Debug)]
pub struct QueueSockets {
    pub mesh: SleeveSocket,
    pub send: SleeveSocket,
}

impl QueueSockets {
    /// Binds `count` queues' sockets on `addr` (see the module's doc), 1 to [`MAX_TAP_QUEUES`].
    /// With port 0, the group shares the port the kernel picks for its first socket.
    ///
    /// The group admits only sockets of the same user; a second router on the node would fail
    /// earlier, on the mesh port's TCP listener.
    pub fn bind(mut addr: SocketAddrV4, count: usize) -> Result<Vec<Self>> {
        check_queue_count("bind sleeve sockets", &addr.to_string(), count)?;
        let mut queues = Vec::with_capacity(count);
        for queue in 0..count {
            let mesh = SleeveSocket::bind_with(addr, true)?;
            if let Ok(SocketAddr::V4(bound)) = mesh.local_addr() {
                addr.set_port(bound.port());
            }
            let send = if queue == 0 {
                mesh.try_clone()
                    .map_err(io_error("duplicate sleeve socket", addr))?
            } else {
                bind_send_socket(addr, queue)?
            };
            queues.push(Self { mesh, send });
        }
        if count > 1 {
            steer_by_source_port(&queues[0].mesh, count)
                .map_err(io_error("attach the sleeve's reuseport program to", addr))?;
        }
        Ok(queues)
    }

    /// Another handle on both sockets, for an engine (the sockets outlive engine restarts).
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(Self {
            mesh: self.mesh.try_clone()?,
            send: self.send.try_clone()?,
        })
    }
}

fn io_error(op: &'static str, addr: SocketAddrV4) -> impl Fn(io::Error) -> DataplaneError {
    move |source| DataplaneError::Io {
        op,
        name: addr.to_string(),
        source,
    }
}

/// The port remainder queue `queue` sends with: the mesh port's plus the queue, modulo
/// [`MAX_TAP_QUEUES`].
pub fn send_port_remainder(mesh_port: u16, queue: usize) -> u16 {
    ((usize::from(mesh_port) + queue) % MAX_TAP_QUEUES) as u16
}

/// Binds queue `queue`'s send socket on `addr`'s address, on a random free port with the
/// queue's remainder ([`send_port_remainder`]).
fn bind_send_socket(addr: SocketAddrV4, queue: usize) -> Result<SleeveSocket> {
    let remainder = send_port_remainder(addr.port(), queue);
    let step = MAX_TAP_QUEUES as u16;
    let mut last = None;
    for _ in 0..SEND_PORT_ATTEMPTS {
        let drawn = rand::random_range(SEND_PORTS);
        let port = drawn - drawn % step + remainder;
        match SleeveSocket::bind(SocketAddrV4::new(*addr.ip(), port)) {
            Ok(socket) => return Ok(socket),
            Err(DataplaneError::Io { source, .. }) if source.kind() == io::ErrorKind::AddrInUse => {
                last = Some(source);
            }
            Err(other) => return Err(other),
        }
    }
    Err(DataplaneError::Io {
        op: "find a free port for a sleeve send socket on",
        name: addr.to_string(),
        source: last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AddrInUse)),
    })
}

/// Attaches to `socket`'s reuseport group the program that picks socket `source port % count`
/// (the group's sockets in the order they were bound). Classic BPF, which needs no privilege
/// and no loader: the kernel runs it with the packet's data at the UDP payload, so the source
/// port is read relative to the IP header (`SKF_NET_OFF`), past its length (`MSH`).
fn steer_by_source_port(socket: &SleeveSocket, count: usize) -> io::Result<()> {
    let net = libc::SKF_NET_OFF as u32;
    let mut program = [
        // X = 4 * (IP header's first byte & 0xf): the header's length.
        bpf(libc::BPF_LDX | libc::BPF_B | libc::BPF_MSH, net),
        // A = the 16-bit word at IP header + X: the UDP source port.
        bpf(libc::BPF_LD | libc::BPF_H | libc::BPF_IND, net),
        bpf(libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K, count as u32),
        bpf(libc::BPF_RET | libc::BPF_A, 0),
    ];
    let fprog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: `fprog` points at `program`, both alive for the call; the kernel copies the
    // program and keeps no pointer into it.
    let result = unsafe {
        libc::setsockopt(
            socket.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            SO_ATTACH_REUSEPORT_CBPF,
            (&fprog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn bpf(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

#[cfg(test)]
mod tests;
