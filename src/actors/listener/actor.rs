//! The `Listener` actor: accepts mesh connections on the TCP port. A connection over the limit is
//! refused right away with a typed reason and a list of other peers to try; the others become
//! `Connection` actors holding a pending-handshake place, which take their connection-limit
//! permit only once the handshake is done (a socket that never finishes one holds no permit).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use tokio::net::{TcpListener, TcpStream};
use tracing::{info, warn};

use super::pending::{PendingFull, PendingHandshakes};
use crate::actors::connection::{Connection, Direction, LinkContext, LinkSlot, refuse};
use crate::actors::log_limit::LogLimiter;
use crate::mesh::ConnectionLimiter;
use crate::metrics;
use crate::wire::{Refusal, RefusalReason};

pub struct Listener {
    listener: Option<TcpListener>,
    limiter: ConnectionLimiter,
    pending: PendingHandshakes,
    links: Arc<LinkContext>,
    /// Anyone who can reach the port can make us refuse at will: one line a minute per reason.
    log_limit: LogLimiter,
}

/// Why an inbound socket was turned away (or accepting one failed), one log line kind each.
#[derive(Clone, Copy, Debug)]
enum Refused {
    ConnectionLimit,
    Pending(PendingFull),
}

impl Refused {
    fn kind(self) -> &'static str {
        match self {
            Refused::ConnectionLimit => "connection_limit",
            Refused::Pending(_) => "pending_handshakes",
        }
    }
}

/// The line to log for a refusal of `remote_addr` at `now`, or None while `log` holds its kind
/// back.
fn refusal_line(
    log: &mut LogLimiter,
    refused: Refused,
    remote_addr: SocketAddr,
    now: Instant,
) -> Option<String> {
    let held_back = log.admit(refused.kind(), now)?;
    let what = match refused {
        Refused::ConnectionLimit => "refused: connection limit reached".to_string(),
        Refused::Pending(full) => format!("dropped: {full}"),
    };
    let mut line = format!("<-[{remote_addr}] {what}");
    if held_back > 0 {
        line.push_str(&format!(
            " ({held_back} such refusals not logged since the last)"
        ));
    }
    Some(line)
}

impl Listener {
    pub fn new(listener: TcpListener, limiter: ConnectionLimiter, links: Arc<LinkContext>) -> Self {
        Self {
            listener: Some(listener),
            limiter,
            pending: PendingHandshakes::default(),
            links,
            log_limit: LogLimiter::default(),
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
            log_limit: LogLimiter::default(),
        }
    }
}

impl Listener {
    fn log_refusal(&mut self, refused: Refused, remote_addr: SocketAddr) {
        if let Some(line) = refusal_line(&mut self.log_limit, refused, remote_addr, Instant::now())
        {
            info!("{line}");
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
                // E.g. EMFILE: keep listening; the next accept may succeed. It fails again at once
                // while the condition lasts, so this line is limited too.
                if let Some(held_back) = self.log_limit.admit("accept_failed", Instant::now()) {
                    warn!(
                        "accepting a mesh connection failed: {err} ({held_back} such failures \
                         not logged since the last)"
                    );
                }
                return;
            }
        };
        let _ = stream.set_nodelay(true);
        if self.limiter.available() == 0 {
            self.log_refusal(Refused::ConnectionLimit, remote_addr);
            metrics::connection_refused(metrics::RefusalKind::ConnectionLimit);
            let refusal = Refusal {
                reason: RefusalReason::ConnectionLimit {
                    limit: self.limiter.limit(),
                },
                alternatives: self.links.refusal_hints.borrow().clone(),
            };
            actix_rt::spawn(refuse(stream, refusal, self.links.clone()));
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
                self.log_refusal(Refused::Pending(full), remote_addr);
                metrics::connection_refused(metrics::RefusalKind::PendingHandshakes);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::log_limit::LOG_INTERVAL;
    use std::time::{Duration, Instant};

    #[test]
    fn refusals_are_logged_once_per_interval_with_the_count_held_back() {
        let t0 = Instant::now();
        let mut log = LogLimiter::default();
        let addr: SocketAddr = "127.0.0.2:40000".parse().unwrap();
        let first = refusal_line(&mut log, Refused::ConnectionLimit, addr, t0);
        assert_eq!(
            first.as_deref(),
            Some("<-[127.0.0.2:40000] refused: connection limit reached")
        );
        for second in 1..=5 {
            let at = t0 + Duration::from_secs(second);
            assert_eq!(
                refusal_line(&mut log, Refused::ConnectionLimit, addr, at),
                None
            );
        }
        // Another reason is not held back by the first.
        assert!(
            refusal_line(
                &mut log,
                Refused::Pending(PendingFull::Total { limit: 64 }),
                addr,
                t0
            )
            .is_some()
        );
        let later = refusal_line(&mut log, Refused::ConnectionLimit, addr, t0 + LOG_INTERVAL);
        assert_eq!(
            later.as_deref(),
            Some(
                "<-[127.0.0.2:40000] refused: connection limit reached \
                 (5 such refusals not logged since the last)"
            )
        );
    }
}
