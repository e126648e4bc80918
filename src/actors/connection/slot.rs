//! The place a link takes under the connection limit. An outbound link takes its permit before
//! dialling (we chose the target); an inbound one only holds a pending-handshake place until its
//! handshake shows a real peer, and takes its permit then.

use tokio::sync::OwnedSemaphorePermit;

use super::{ClosingReason, LinkContext};
use crate::actors::listener::{ConnectionLimiter, PendingPermit};
use crate::metrics;
use crate::wire::{Refusal, RefusalReason};

#[derive(Debug)]
pub enum LinkSlot {
    /// Counts against `--conn-limit`; released when the link actor is dropped.
    Held(OwnedSemaphorePermit),
    /// An inbound socket whose handshake is under way.
    Pending {
        _pending: PendingPermit,
        limiter: ConnectionLimiter,
    },
}

impl LinkSlot {
    /// Turns a pending place into a connection-limit permit, giving the pending place back.
    /// Refused when the limit filled up while the handshake ran.
    pub fn admit(&mut self) -> Result<(), ClosingReason> {
        let LinkSlot::Pending { limiter, .. } = self else {
            return Ok(());
        };
        match limiter.try_acquire() {
            Some(permit) => {
                *self = LinkSlot::Held(permit);
                Ok(())
            }
            None => {
                metrics::connection_refused(metrics::RefusalKind::ConnectionLimit);
                Err(ClosingReason::LimitReached {
                    limit: limiter.limit(),
                })
            }
        }
    }
}

/// An inbound link's admission once the dialler's `Hello` is in: a connection-limit permit, or a
/// refusal naming other peers to try.
pub(super) fn admission(
    slot: &mut Option<LinkSlot>,
    links: &LinkContext,
) -> Result<(), (ClosingReason, Refusal)> {
    let Some(slot) = slot else {
        return Ok(());
    };
    slot.admit().map_err(|reason| {
        let refusal = Refusal {
            reason: RefusalReason::ConnectionLimit {
                limit: links.conn_limit,
            },
            alternatives: links.refusal_hints.borrow().clone(),
        };
        (reason, refusal)
    })
}
