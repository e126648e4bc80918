//! The sleeve's forwarding decisions, as a pure function of a frame's addressing and the
//! [`ForwardingTable`]: where a frame captured from our bridge goes, and what happens to a frame
//! (or fragment) arriving from the overlay. The I/O threads carry the [`Action`]s out; keeping the
//! decisions here lets the exactly-once broadcast rules of [`super::forwarding`] be
//! property-tested over whole simulated meshes.

use super::forwarding::ForwardingTable;
use crate::dataplane::mac_table::Location;
use crate::topology::PeerName;
use crate::wire::MacAddr;
use crate::wire::sleeve::RecordDestination;

/// One thing to do with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send the frame (or re-send the record as it is) to neighbour `hop`, addressed to
    /// `destination`.
    Send {
        hop: PeerName,
        destination: RecordDestination,
    },
    /// Write the frame to our TAP, onto the bridge.
    Deliver,
    /// Nothing more to do, and why (for the counters).
    Drop(DropReason),
}

/// Why a frame was not sent on, counted per reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Its destination MAC is on our own bridge: the bridge delivers it, not us.
    LocalDestination,
    /// The destination peer is a fastdp neighbour: the kernel already carried it.
    KernelCarries,
    /// No route (or no neighbour entry for the next hop) towards the destination peer.
    NoRoute,
    /// It came back to its own source, or the route would send it back where it came from.
    Loop,
    /// A broadcast with nobody to pass it to (not an error: leaves of the tree end here).
    NoChildren,
}

/// Decides for a frame captured from our bridge whose destination MAC is `dst`. Unicast to a MAC
/// known at a peer goes towards that peer unless fastdp carried it; anything else (broadcast,
/// multicast, unknown unicast) goes down our own broadcast tree: a delivering copy to each sleeve
/// child, a relay-only copy to each fastdp child that relays for others, nothing to fastdp leaves.
pub fn forward_captured(table: &ForwardingTable, dst: MacAddr, out: &mut Vec<Action>) {
    if !dst.is_multicast() {
        match table.macs.lookup(dst) {
            Some(Location::Local) => {
                out.push(Action::Drop(DropReason::LocalDestination));
                return;
            }
            Some(Location::Remote(peer)) if peer == table.local => {
                out.push(Action::Drop(DropReason::LocalDestination));
                return;
            }
            Some(Location::Remote(peer)) => {
                out.push(unicast_towards(table, peer, None, true));
                return;
            }
            None => {}
        }
    }
    let before = out.len();
    for &child in table.children_of(table.local) {
        let Some(neighbour) = table.neighbours.get(&child) else {
            continue;
        };
        if !neighbour.fastdp {
            out.push(Action::Send {
                hop: child,
                destination: RecordDestination::Broadcast,
            });
        } else if table.relays_through(child) {
            out.push(Action::Send {
                hop: child,
                destination: RecordDestination::RelayOnly,
            });
        }
    }
    if out.len() == before {
        out.push(Action::Drop(DropReason::NoChildren));
    }
}

/// Decides for a frame (or fragment) from the overlay: captured at `source`, addressed to
/// `destination`, received from neighbour `sender`. Ours is delivered; another peer's is re-sent
/// to the next hop; a broadcast is delivered (unless relay-only) and passed to our children in
/// the source's tree, always as a delivering copy (none of them is the source's fastdp
/// neighbour, so the kernel delivered nothing there).
pub fn forward_received(
    table: &ForwardingTable,
    sender: PeerName,
    source: PeerName,
    destination: RecordDestination,
    out: &mut Vec<Action>,
) {
    if source == table.local {
        out.push(Action::Drop(DropReason::Loop));
        return;
    }
    match destination {
        RecordDestination::Peer(peer) if peer == table.local => out.push(Action::Deliver),
        RecordDestination::Peer(peer) => {
            out.push(unicast_towards(table, peer, Some(sender), false))
        }
        RecordDestination::Broadcast | RecordDestination::RelayOnly => {
            if destination == RecordDestination::Broadcast {
                out.push(Action::Deliver);
            }
            for &child in table.children_of(source) {
                if child == sender || child == source || !table.neighbours.contains_key(&child) {
                    continue;
                }
                out.push(Action::Send {
                    hop: child,
                    destination: RecordDestination::Broadcast,
                });
            }
        }
        // Control records never reach here: the engine hands them to the actor.
        RecordDestination::Control => out.push(Action::Drop(DropReason::NoRoute)),
    }
}

/// The action sending a frame for `peer` along the unicast route. A captured frame to a fastdp
/// next hop that is the destination itself was carried by the kernel, unless the kernel took that
/// peer over so recently that the frame was queued on the TAP before (it drains); a relayed one
/// was not (it came to us over sleeve), so it goes over sleeve too.
fn unicast_towards(
    table: &ForwardingTable,
    peer: PeerName,
    sender: Option<PeerName>,
    captured: bool,
) -> Action {
    let Some((hop, _)) = table.route(peer) else {
        return Action::Drop(DropReason::NoRoute);
    };
    if captured
        && table
            .neighbours
            .get(&peer)
            .is_some_and(|n| n.fastdp && !n.draining)
    {
        return Action::Drop(DropReason::KernelCarries);
    }
    if Some(hop) == sender {
        return Action::Drop(DropReason::Loop);
    }
    Action::Send {
        hop,
        destination: RecordDestination::Peer(peer),
    }
}

#[cfg(test)]
mod tests;
