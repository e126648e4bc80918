//! The `Connection` actor: one per peer link. It runs the handshake, registers the link with
//! gossip, sends heartbeats, frames messages both ways, and when it ends (for any reason, a panic
//! included) tells gossip and the connection maker why.

mod actor;
mod handshake;
mod reason;
mod slot;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix::{Message, Recipient};
use tokio::sync::watch;

pub use actor::{Connection, Direction};
pub use handshake::{MAX_HELLO_BYTES, handshake, refuse};
pub use reason::ClosingReason;
pub use slot::LinkSlot;

use crate::actors::gossip::messages::{LinkClosed, LinkEstablished, Received, RegisterLink};
use crate::actors::supervisor::RecipientSource;
use crate::topology::{PeerName, PeerUid};

static SHUTTING_DOWN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Marks the process as stopping: links torn down from now on end with
/// [`ClosingReason::ShuttingDown`] rather than being taken for panics.
pub fn begin_shutdown() {
    SHUTTING_DOWN.store(true, Ordering::Release);
}

fn shutting_down() -> bool {
    SHUTTING_DOWN.load(Ordering::Acquire)
}

/// Identifies one link actor within this process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LinkId(pub u64);

impl LinkId {
    pub fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Self(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// What gossip sends to a link.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub enum Outgoing {
    Message(crate::wire::ProtocolMsg),
    Close(ClosingReason),
}

/// The recipients of the gossip incarnation a link registers with.
#[derive(Clone)]
pub struct GossipPort {
    pub register: Recipient<RegisterLink>,
    pub established: Recipient<LinkEstablished>,
    pub closed: Recipient<LinkClosed>,
    pub received: Recipient<Received>,
    /// Changes when gossip is re-created: a link registered with an older one must reconnect.
    pub generation: u64,
}

pub trait GossipSource: Send + Sync {
    fn current(&self) -> GossipPort;
}

impl GossipSource for crate::actors::supervisor::Supervised<crate::actors::gossip::Gossip> {
    fn current(&self) -> GossipPort {
        let addr = self.addr();
        GossipPort {
            register: addr.clone().recipient(),
            established: addr.clone().recipient(),
            closed: addr.clone().recipient(),
            received: addr.recipient(),
            generation: self.generation(),
        }
    }
}

/// What a link reports to the connection maker.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub enum LinkEvent {
    /// An outbound link to `target` reached `peer` and registered.
    Up { target: String, peer: PeerName },
    /// An outbound link to `target` ended (or never came up).
    Ended {
        target: String,
        peer: Option<PeerName>,
        reason: ClosingReason,
        /// Other peers a refusing remote suggested.
        alternatives: Vec<SocketAddr>,
        /// How long the link was up (zero when it never came up).
        lived: Duration,
    },
}

/// Who we are, as every link presents it.
#[derive(Clone, Debug)]
pub struct LocalIdentity {
    pub name: PeerName,
    pub nickname: String,
    pub uid: PeerUid,
    pub listen_port: u16,
    pub overlays: Vec<String>,
}

/// Timers of a link.
#[derive(Clone, Copy, Debug)]
pub struct LinkTimers {
    /// The whole handshake must finish within this (Weave Net: 10 s header timeout).
    pub handshake_timeout: Duration,
    pub heartbeat_interval: Duration,
    /// A link that hears nothing for this long is dead.
    pub read_timeout: Duration,
}

/// Everything a link needs besides its socket, shared by all links.
pub struct LinkContext {
    pub identity: LocalIdentity,
    pub timers: LinkTimers,
    pub gossip: Arc<dyn GossipSource>,
    pub maker: Arc<dyn RecipientSource<LinkEvent>>,
    /// Alternatives named when refusing a connection, kept current by gossip.
    pub refusal_hints: watch::Receiver<Vec<SocketAddr>>,
    pub conn_limit: u32,
}

#[cfg(test)]
mod tests;
