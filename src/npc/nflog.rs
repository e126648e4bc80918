//! The kernel's NFLOG socket for our log group, read directly (Weave's npc went through a
//! ulogd side process and a pcap file). One blocking thread binds the group and hands every
//! blocked connection to the controller; when the group is still bound by a controller that is
//! shutting down, it retries until it gets it.

use std::time::Duration;

use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_netfilter::nflog::{
    ConfigCmd, ConfigMode, PacketNla, ULogMessage, config_request,
};
use netlink_packet_netfilter::{NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily};
use netlink_sys::{Socket, constants::NETLINK_NETFILTER};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::blocked::{Blocked, COPY_RANGE, parse};
use super::nft::LOG_GROUP;

/// Between attempts to bind the group (another controller may hold it for a moment).
const BIND_RETRY: Duration = Duration::from_secs(2);
/// Room for a batch of logged packets per read.
const RECEIVE_BUFFER_BYTES: usize = 64 * 1024;

/// Starts the reader thread; blocked connections arrive on the returned channel (a full channel
/// drops the newest: the log is rate-limited anyway, the enforcement is not affected).
pub fn start(capacity: usize) -> mpsc::Receiver<Blocked> {
    let (sender, receiver) = mpsc::channel(capacity);
    let spawned = std::thread::Builder::new()
        .name("npc-nflog".into())
        .spawn(move || {
            loop {
                match bind() {
                    Ok(socket) => {
                        info!("reading blocked connections from NFLOG group {LOG_GROUP}");
                        if let Err(err) = read(&socket, &sender) {
                            warn!("NFLOG group {LOG_GROUP}: {err}; binding again");
                        }
                    }
                    Err(err) => warn!("cannot bind NFLOG group {LOG_GROUP} yet: {err}"),
                }
                if sender.is_closed() {
                    return;
                }
                std::thread::sleep(BIND_RETRY);
            }
        });
    if let Err(err) = spawned {
        warn!("cannot start the NFLOG reader: {err}; blocked connections will not be logged");
    }
    receiver
}

fn request(
    socket: &Socket,
    group: u16,
    commands: Vec<netlink_packet_netfilter::nflog::ConfigNla>,
) -> std::io::Result<()> {
    let mut message = config_request(NetfilterProtoFamily::IPv4, group, commands);
    message.finalize();
    let mut bytes = vec![0; message.buffer_len()];
    message.serialize(&mut bytes);
    socket.send(&bytes, 0)?;
    let mut answer = vec![0; 4096];
    let size = socket.recv(&mut &mut answer[..], 0)?;
    match <NetlinkMessage<NetfilterMessage>>::deserialize(&answer[..size]) {
        Ok(NetlinkMessage {
            payload: NetlinkPayload::Error(error),
            ..
        }) if error.code.is_some() => Err(std::io::Error::from_raw_os_error(
            -error.code.map_or(0, |code| code.get()),
        )),
        Ok(_) => Ok(()),
        Err(err) => Err(std::io::Error::other(format!("unreadable answer: {err}"))),
    }
}

fn bind() -> std::io::Result<Socket> {
    let mut socket = Socket::new(NETLINK_NETFILTER)?;
    socket.bind_auto()?;
    request(&socket, 0, vec![ConfigCmd::PfBind.into()])?;
    request(
        &socket,
        LOG_GROUP as u16,
        vec![
            ConfigCmd::Bind.into(),
            ConfigMode::new_packet(COPY_RANGE).into(),
        ],
    )?;
    Ok(socket)
}

fn read(socket: &Socket, sender: &mpsc::Sender<Blocked>) -> std::io::Result<()> {
    let mut buffer = vec![0; RECEIVE_BUFFER_BYTES];
    loop {
        let size = socket.recv(&mut &mut buffer[..], 0)?;
        let mut offset = 0;
        while offset < size {
            let Ok(message) =
                <NetlinkMessage<NetfilterMessage>>::deserialize(&buffer[offset..size])
            else {
                break;
            };
            let length = message.header.length as usize;
            if let NetlinkPayload::InnerMessage(NetfilterMessage {
                inner: NetfilterMessageInner::ULog(ULogMessage::Packet(nlas)),
                ..
            }) = &message.payload
            {
                let prefix = nlas.iter().find_map(|nla| match nla {
                    PacketNla::Prefix(prefix) => Some(prefix.as_bytes()),
                    _ => None,
                });
                let payload = nlas.iter().find_map(|nla| match nla {
                    PacketNla::Payload(payload) => Some(payload.as_slice()),
                    _ => None,
                });
                if let (Some(prefix), Some(payload)) = (prefix, payload)
                    && let Some(blocked) = parse(prefix, payload)
                    && sender.try_send(blocked).is_err()
                    && sender.is_closed()
                {
                    return Ok(());
                }
            }
            if length == 0 {
                break;
            }
            offset += length;
        }
    }
}
