//! Notifications of the VXLAN device's learned FDB entries (RTM_NEWNEIGH, AF_BRIDGE, on the
//! RTNLGRP_NEIGH multicast group): the kernel tells us the moment it learns a remote MAC, so the
//! `MacLearner` hears of it without waiting for the next dump. The kernel notifies only on
//! changes, so the periodic dump still refreshes what stays the same.

use std::time::Duration;

use std::pin::Pin;

use futures_util::{Stream, StreamExt};
use rtnetlink::MulticastGroup;
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::neighbour::{NeighbourFlags, NeighbourMessage, NeighbourState};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::error::{DataplaneError, Result};
use crate::link::LearnedFdb;

/// rtnetlink's notification channel, by what it yields.
type Messages = Pin<
    Box<
        dyn Stream<
                Item = (
                    NetlinkMessage<RouteNetlinkMessage>,
                    rtnetlink::sys::SocketAddr,
                ),
            > + Send,
    >,
>;

/// A subscription to the learned entries of one VXLAN device, in the calling thread's network
/// namespace. Must be created inside a tokio runtime (the connection task is spawned on it).
pub struct LearnedFdbWatch {
    ifindex: u32,
    messages: Messages,
    /// Held so the connection task lives exactly as long as the watch.
    _handle: rtnetlink::Handle,
}

impl LearnedFdbWatch {
    /// Subscribes to the neighbour notifications of the device with interface index `ifindex`.
    pub fn new(ifindex: u32) -> Result<Self> {
        let (connection, handle, messages) =
            rtnetlink::new_multicast_connection(&[MulticastGroup::Neigh]).map_err(|source| {
                DataplaneError::Io {
                    op: "subscribe to neighbour notifications for",
                    name: format!("ifindex {ifindex}"),
                    source,
                }
            })?;
        tokio::spawn(connection);
        Ok(Self {
            ifindex,
            messages: Box::pin(messages),
            _handle: handle,
        })
    }

    /// The next entry the device learned (or refreshed to a new remote); `None` when the
    /// subscription ended.
    pub async fn next(&mut self) -> Option<LearnedFdb> {
        while let Some((message, _)) = self.messages.next().await {
            let NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNeighbour(neighbour)) =
                message.payload
            else {
                continue;
            };
            if let Some(learned) = learned(&neighbour, self.ifindex) {
                return Some(learned);
            }
        }
        None
    }
}

/// A learned unicast entry of the device's own FDB; `None` for anything else.
fn learned(message: &NeighbourMessage, ifindex: u32) -> Option<LearnedFdb> {
    let header = &message.header;
    if header.family != AddressFamily::Bridge
        || header.ifindex != ifindex
        || !header.flags.contains(NeighbourFlags::Own)
        || matches!(
            header.state,
            NeighbourState::Permanent | NeighbourState::Noarp
        )
    {
        return None;
    }
    let entry = super::fdb::parse_fdb_entry(message)?;
    let mac = Some(entry.mac).filter(|mac| mac.0 != [0; 6])?;
    let remote = entry.remote;
    Some(LearnedFdb {
        mac,
        remote: remote?,
        // Notified as it happens.
        updated_ago: Duration::ZERO,
    })
}
