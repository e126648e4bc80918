//! AF_PACKET sockets: the link-layer address (`sockaddr_ll`) that binds one to a device or sends
//! a frame out of it, and the one socket option socket2 does not offer. Everything else about
//! these sockets (creation, BPF filters, timeouts, send and receive) is socket2's.

use std::io;
use std::os::fd::AsRawFd;

use nix::libc;
use socket2::{Domain, SockAddr, SockAddrStorage, Socket, Type};

/// `PACKET_IGNORE_OUTGOING` (include/uapi/linux/if_packet.h, Linux 4.20): the socket does not
/// see the frames its device transmits.
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;

/// A raw AF_PACKET socket that receives nothing until bound (protocol 0), close-on-exec.
pub fn raw_socket() -> io::Result<Socket> {
    Socket::new(Domain::PACKET, Type::RAW, None)
}

/// The address of device `ifindex` for frames of `ethertype` (host order;
/// `libc::ETH_P_ALL` for all of them), with `destination` as the link-layer destination when
/// sending.
pub fn device_address(
    ifindex: u32,
    ethertype: u16,
    destination: Option<[u8; 6]>,
) -> io::Result<SockAddr> {
    let ifindex =
        libc::c_int::try_from(ifindex).map_err(|_| io::Error::from_raw_os_error(libc::ENODEV))?;
    let mut sll_addr = [0u8; 8];
    let mut sll_halen = 0;
    if let Some(mac) = destination {
        sll_addr[..6].copy_from_slice(&mac);
        sll_halen = 6;
    }
    let address = libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as libc::c_ushort,
        sll_protocol: ethertype.to_be(),
        sll_ifindex: ifindex,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen,
        sll_addr,
    };
    let mut storage = SockAddrStorage::zeroed();
    // SAFETY: sockaddr_ll is one of this platform's sockaddr types (`view_as` checks it fits),
    // and the length given to `SockAddr::new` is exactly that of the sockaddr_ll written, whose
    // family says what it is.
    unsafe {
        *storage.view_as::<libc::sockaddr_ll>() = address;
        Ok(SockAddr::new(
            storage,
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        ))
    }
}

/// Makes `socket` skip the frames its device transmits. Without it every frame the device
/// sends is cloned for the socket before its filter drops it: a per-packet cost on that
/// device's transmit path.
pub fn ignore_outgoing(socket: &Socket) -> io::Result<()> {
    let enabled: libc::c_int = 1;
    // SAFETY: a c_int option value, valid for the call; the fd is `socket`'s, open throughout.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_PACKET,
            PACKET_IGNORE_OUTGOING,
            (&raw const enabled).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
