//! The sleeve's TAP device (`sleeve-<mesh port>`): opening (creating, or adopting a persistent
//! one) with the virtio-net header and TCP segmentation offloads, reading and writing frames, and
//! making it an isolated, non-learning port of the bridge ([`ensure_sleeve_tap`]).
//!
//! Offloads are what make a userspace path fast: with `IFF_VNET_HDR` and `TUNSETOFFLOAD`
//! (checksum + TSO4/6) the kernel hands over TCP super-frames of up to 64 KiB with a partial
//! checksum instead of 1.4 KiB segments, one read each, and accepts them back the same way.
//! The device is persistent so it and its bridge-port settings survive router restarts.
//!
//! It is always multi-queue (`IFF_MULTI_QUEUE`), one queue per pair of I/O threads: the kernel
//! spreads the bridge's flows over the queues by flow hash (and sends a flow's replies to the
//! queue its frames were written to), so each pair of threads carries its own flows on its own
//! core. One queue or eight, the device is the same, so a router restarted with another count
//! adopts it.
//!
//! Why not the `tun` crate (checked at 0.8.14): it can open an L2 device with `IFF_VNET_HDR`,
//! but it refuses more than one queue (`Error::InvalidQueuesNumber`), and the sleeve's way to
//! more than one core is `IFF_MULTI_QUEUE` with a reader per queue; it has no `TUNSETVNETHDRSZ`
//! or `TUNSETOFFLOAD`, so the ioctls that make this path fast would stay here anyway; and its
//! set-up configures the device through an AF_INET socket of its own (address, MTU — 1500 unless
//! told — and up), where ours is configured by rtnetlink with the overlay MTU. What would be
//! left of it is the one `TUNSETIFF` call below.

use std::ffi::CStr;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;

use nix::libc;

use super::checksum::VIRTIO_NET_HDR_LEN;
use crate::dataplane::error::{DataplaneError, Result};
use crate::dataplane::link::{Link, LinkKind, LinkOps, PortMode};

/// The TUN/TAP clone device.
const TUN_CLONE_DEVICE: &str = "/dev/net/tun";
/// Prefix of the TAP's name; `weft reset` removes TAP devices carrying it.
pub const SLEEVE_TAP_PREFIX: &str = "sleeve-";
/// Offloads we accept from the kernel (`TUN_F_*` in `linux/if_tun.h`): partial checksums and TCP
/// segmentation over IPv4 and IPv6. No UFO/USO: UDP super-frames would need segmenting here.
const TAP_OFFLOADS: libc::c_uint = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6;

/// The TAP's name for a mesh on `mesh_port`: `sleeve-6783` by default (as `vxlan-6784`).
pub fn sleeve_tap_name(mesh_port: u16) -> String {
    format!("{SLEEVE_TAP_PREFIX}{mesh_port}")
}

/// Most queues the sleeve opens on its TAP (the kernel allows 256): beyond eight pairs of I/O
/// threads the UDP socket and the bridge are the bottleneck, and the frame ids each thread
/// numbers its fragments with are kept apart in the low bits (see the engine's `Outbound`).
pub const MAX_TAP_QUEUES: usize = 8;

/// Refuses a queue count outside 1 to [`MAX_TAP_QUEUES`], for `op` on `name`: the one check
/// behind the TAP, its sockets and the engine.
pub(super) fn check_queue_count(op: &'static str, name: &str, count: usize) -> Result<()> {
    if (1..=MAX_TAP_QUEUES).contains(&count) {
        return Ok(());
    }
    Err(DataplaneError::Invalid {
        op,
        name: name.to_string(),
        reason: format!("{count} queues asked for, 1 to {MAX_TAP_QUEUES} allowed"),
    })
}

/// One queue of an open TAP device, non-blocking, every frame preceded by a 10-byte
/// `virtio_net_hdr`.
#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
}

impl Tap {
    /// Opens `count` queues (1 to [`MAX_TAP_QUEUES`]) of the TAP `name`, creating it or attaching
    /// to the existing persistent one (adopting it).
    pub fn open_queues(name: &str, count: usize) -> Result<Vec<Self>> {
        check_queue_count("open TAP", name, count)?;
        (0..count).map(|_| Self::open(name)).collect()
    }

    /// Creates the TAP `name`, or attaches one more queue to the existing persistent one, with
    /// `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | IFF_MULTI_QUEUE`, a 10-byte header,
    /// checksum/TSO offloads, persistent. A device made without `IFF_MULTI_QUEUE` (by an older
    /// router) refuses the attach with `EINVAL`.
    pub fn open(name: &str) -> Result<Self> {
        let io_err = |op: &'static str| {
            move |source: io::Error| DataplaneError::Io {
                op,
                name: name.to_string(),
                source,
            }
        };
        let mut ifr = ifreq_named(name)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(TUN_CLONE_DEVICE)
            .map_err(io_err("open /dev/net/tun for"))?;
        let fd = file.as_raw_fd();
        ifr.ifr_ifru.ifru_flags =
            (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR | libc::IFF_MULTI_QUEUE) as i16;
        // SAFETY: `fd` is an open tun fd for the whole call and `ifr` is a valid, initialised
        // ifreq the kernel reads and writes (it fills in the final name).
        cvt(unsafe { libc::ioctl(fd, libc::TUNSETIFF, &mut ifr) })
            .map_err(io_err("attach TAP (TUNSETIFF)"))?;
        let header_len: libc::c_int = VIRTIO_NET_HDR_LEN as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads one int through the pointer, which outlives the call.
        cvt(unsafe { libc::ioctl(fd, libc::TUNSETVNETHDRSZ, &header_len) })
            .map_err(io_err("set vnet header size (TUNSETVNETHDRSZ)"))?;
        // SAFETY: TUNSETOFFLOAD and TUNSETPERSIST take their argument by value; no memory is
        // shared with the kernel.
        cvt(unsafe { libc::ioctl(fd, libc::TUNSETOFFLOAD, TAP_OFFLOADS as libc::c_ulong) })
            .map_err(io_err("set TAP offloads (TUNSETOFFLOAD)"))?;
        // SAFETY: as above.
        cvt(unsafe { libc::ioctl(fd, libc::TUNSETPERSIST, 1 as libc::c_ulong) })
            .map_err(io_err("make TAP persistent (TUNSETPERSIST)"))?;
        // SAFETY: the kernel wrote a NUL-terminated name of at most IFNAMSIZ bytes into ifr.
        let actual = unsafe { CStr::from_ptr(ifr.ifr_name.as_ptr()) };
        Ok(Self {
            file,
            name: actual.to_string_lossy().into_owned(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads one frame, its `virtio_net_hdr` first. `WouldBlock` when none is queued.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        nix::unistd::read(&self.file, buf).map_err(io::Error::from)
    }

    /// Writes one frame behind its `virtio_net_hdr` (gathered, so neither is copied).
    pub fn write(&self, vnet_hdr: &[u8; VIRTIO_NET_HDR_LEN], frame: &[u8]) -> io::Result<usize> {
        let parts = [io::IoSlice::new(vnet_hdr), io::IoSlice::new(frame)];
        nix::sys::uio::writev(&self.file, &parts).map_err(io::Error::from)
    }

    /// A second handle on the same queue, for the other I/O thread.
    pub fn try_clone(&self) -> Result<Self> {
        let file = self.file.try_clone().map_err(|source| DataplaneError::Io {
            op: "duplicate TAP descriptor of",
            name: self.name.clone(),
            source,
        })?;
        Ok(Self {
            file,
            name: self.name.clone(),
        })
    }
}

impl AsFd for Tap {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

fn ifreq_named(name: &str) -> Result<libc::ifreq> {
    let invalid = |reason: &str| DataplaneError::Invalid {
        op: "open TAP",
        name: name.to_string(),
        reason: reason.to_string(),
    };
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.bytes().any(|b| b == 0) {
        return Err(invalid("an interface name is 1 to 15 bytes without NUL"));
    }
    // SAFETY: ifreq is a plain C struct (arrays and a union of integers): all-zero is valid.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *slot = byte as libc::c_char;
    }
    Ok(ifr)
}

fn cvt(result: libc::c_int) -> io::Result<()> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Creates or adopts the TAP `name`, opens `queues` queues of it, and makes it an isolated,
/// non-learning, up port of `bridge` with the bridge's MTU: what the router runs at start.
/// Adopting keeps the device (and every frame the kernel is carrying through the bridge
/// meanwhile) in place; a single-queue device left by an older router cannot be adopted and is
/// replaced.
pub async fn ensure_sleeve_tap<L: LinkOps>(
    ops: &L,
    bridge: &str,
    name: &str,
    queues: usize,
) -> Result<(Vec<Tap>, Link)> {
    const OP: &str = "ensure sleeve TAP";
    let bridge_link = ops.require(OP, bridge).await?;
    bridge_link.expect_kind(LinkKind::Bridge)?;
    let existed = match ops.link(name).await? {
        Some(existing) => {
            existing.expect_kind(LinkKind::Tun)?;
            true
        }
        None => false,
    };
    let taps = match Tap::open_queues(name, queues) {
        Err(DataplaneError::Io { source, .. })
            if existed && source.raw_os_error() == Some(libc::EINVAL) =>
        {
            tracing::warn!(tap = name, "replacing a single-queue sleeve TAP");
            ops.delete_link(name).await?;
            Tap::open_queues(name, queues)?
        }
        opened => opened?,
    };
    let link = ops.require(OP, name).await?;
    if link.mtu != bridge_link.mtu {
        ops.set_mtu(name, bridge_link.mtu).await?;
    }
    let mode = PortMode {
        isolated: true,
        hairpin: false,
    };
    ops.attach_to_bridge(name, bridge, mode).await?;
    ops.set_port_learning(name, false).await?;
    ops.set_up(name, true).await?;
    let link = ops.require(OP, name).await?;
    Ok((taps, link))
}

#[cfg(test)]
mod tests;
