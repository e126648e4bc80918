//! The `Listener` actor: accepts mesh connections on the TCP port. A connection over the limit is
//! refused right away with a typed reason and a list of other peers to try; the others become
//! `Connection` actors holding a pending-handshake place, which take their connection-limit
//! permit only once the handshake is done (a socket that never finishes one holds no permit).

use std::net::SocketAddr;
use std::sync::Arc;

use actix::prelude::*;
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

use super::limiter::ConnectionLimiter;
use super::pending::PendingHandshakes;
use crate::actors::connection::{Connection, Direction, LinkContext, LinkSlot, refuse};
use crate::api::metrics;
use crate::wire::{Refusal, RefusalReason};

pub struct Listener {
    listener: Option<TcpListener>,
    limiter: ConnectionLimiter,
    pending: PendingHandshakes,
    links: Arc<LinkContext>,
}

impl Listener {
    pub fn new(listener: TcpListener, limiter: ConnectionLimiter, links: Arc<LinkContext>) -> Self {
        Self {
            listener: Some(listener),
            limiter,
            pending: PendingHandshakes::default(),
            links,
        }
    }

    /// A listener without a socket: it stops as soon as it starts, so that its supervisor tries
    /// again later.
    pub fn stopped(limiter: ConnectionLimiter, links: Arc<LinkContext>) -> Self {
        Self {
            listener: None,
            limiter,
            pending: PendingHandshakes::default(),
            links,
        }
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Accepted(std::io::Result<(TcpStream, SocketAddr)>);

impl Actor for Listener {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let Some(listener) = self.listener.take() else {
            return ctx.stop();
        };
        let accepted = futures_util::stream::unfold(listener, |listener| async move {
            let next = listener.accept().await;
            Some((Accepted(next), listener))
        });
        ctx.add_message_stream(accepted);
    }
}

impl Handler<Accepted> for Listener {
    type Result = ();

    fn handle(&mut self, msg: Accepted, _: &mut Context<Self>) {
        let (stream, remote_addr) = match msg.0 {
            Ok(accepted) => accepted,
            Err(err) => {
                // E.g. EMFILE: keep listening; the next accept may succeed.
                warn!("accepting a mesh connection failed: {err}");
                return;
            }
        };
        let _ = stream.set_nodelay(true);
        if self.limiter.available() == 0 {
            debug!("<-[{remote_addr}] refused: connection limit reached");
            metrics::connection_refused(metrics::RefusalKind::ConnectionLimit);
            let refusal = Refusal {
                reason: RefusalReason::ConnectionLimit {
                    limit: self.limiter.limit(),
                },
                alternatives: self.links.refusal_hints.borrow().clone(),
            };
            actix_rt::spawn(refuse(stream, refusal, self.links.timers.handshake_timeout));
            return;
        }
        match self.pending.try_acquire(remote_addr.ip()) {
            Ok(pending) => {
                let slot = LinkSlot::Pending {
                    _pending: pending,
                    limiter: self.limiter.clone(),
                };
                Connection::new(
                    stream,
                    remote_addr,
                    Direction::Inbound,
                    slot,
                    self.links.clone(),
                )
                .start();
            }
            Err(full) => {
                // Closed without a word: answering costs what the bound is there to save.
                debug!("<-[{remote_addr}] dropped: {full}");
                metrics::connection_refused(metrics::RefusalKind::PendingHandshakes);
            }
        }
    }
}
