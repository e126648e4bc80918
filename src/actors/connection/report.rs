//! Telling the rest of the router that a link ended: the log line, the termination metric,
//! gossip (when the link was registered with it) and the connection maker (for links we dialled).
//! It runs from the link actor's `Drop`, a panic included, so it cannot wait for anyone.

use std::net::SocketAddr;

use actix::Recipient;
use tracing::info;

use super::state::LinkEnd;
use super::{ClosingReason, LinkEvent, LinkId};
use crate::actors::gossip::messages::LinkClosed;
use crate::metrics;

/// Who must hear of a link's end.
pub(super) struct EndReport {
    pub id: LinkId,
    pub remote_addr: SocketAddr,
    pub gossip_closed: Option<Recipient<LinkClosed>>,
    /// For a link we dialled: its target, and the connection maker that dialled it.
    pub outbound: Option<(String, Recipient<LinkEvent>)>,
}

impl EndReport {
    pub fn send(self, end: LinkEnd) {
        self.log(&end);
        if end.terminated {
            metrics::connection_terminated();
        }
        if let Some(failure) = auth_failure(&end.reason) {
            metrics::mesh_authentication_failed(failure);
        }
        // Sent from a task of the current arbiter: Drop cannot wait, and the mailboxes are
        // bounded.
        let Some(arbiter) = actix_rt::Arbiter::try_current() else {
            return;
        };
        let Self {
            id,
            gossip_closed,
            outbound,
            ..
        } = self;
        let ended = outbound.map(|(target, maker)| {
            let event = LinkEvent::Ended {
                target,
                peer: end.peer,
                reason: end.reason,
                alternatives: end.alternatives,
                lived: end.lived,
            };
            (maker, event)
        });
        arbiter.spawn(async move {
            if let Some(closed) = gossip_closed {
                let _ = closed.send(LinkClosed(id)).await;
            }
            if let Some((maker, event)) = ended {
                let _ = maker.send(event).await;
            }
        });
    }

    fn log(&self, end: &LinkEnd) {
        let arrow = if self.outbound.is_some() { "->" } else { "<-" };
        let remote_addr = self.remote_addr;
        let reason = &end.reason;
        match (reason, end.peer) {
            (ClosingReason::Duplicate, _) => {
                info!("{arrow}[{remote_addr}]: connection deleted: {reason}")
            }
            (_, Some(peer)) => info!(
                "{arrow}[{remote_addr}|{peer}]: connection shutting down due to error: {reason}"
            ),
            (_, None) => {
                info!("{arrow}[{remote_addr}]: connection shutting down due to error: {reason}")
            }
        }
    }
}

/// The password reason a link ended for, as the metric labels it.
fn auth_failure(reason: &ClosingReason) -> Option<metrics::AuthFailure> {
    match reason {
        ClosingReason::PeerLacksPassword => Some(metrics::AuthFailure::PeerLacksPassword),
        ClosingReason::AuthenticationFailed => Some(metrics::AuthFailure::AuthenticationFailed),
        ClosingReason::PasswordRequired => Some(metrics::AuthFailure::PasswordRequired),
        _ => None,
    }
}
