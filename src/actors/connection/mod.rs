//! Peer links: one `Connection` actor per link, a shell over its [`LinkState`] (handshake,
//! registration, heartbeats, framing). When a link ends (for any reason, a panic included) it
//! tells gossip and the connection maker why.

mod actor;
mod framed;
mod handshake;
mod psk;
mod refuse;
mod report;
mod secure;
pub mod sleeve_keying;
mod slot;
pub mod state;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::{Message, Recipient};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use crate::mesh::ClosingReason;
pub use crate::mesh::LinkId;
pub use actor::{Connection, Direction};
pub use framed::FramedMessage;
pub use handshake::MAX_HELLO_BYTES;
pub use psk::{
    ARGON2_LANES, ARGON2_MEMORY_KIB, ARGON2_PASSES, MESH_KEY_SALT, MeshKey, MeshKeyError,
    WEAK_PASSWORD_BITS, estimated_bits,
};
pub use refuse::refuse;
pub use secure::{NOISE_PARAMS, SecureChannel};
pub use slot::LinkSlot;
pub use state::{LinkEnd, LinkOutput, LinkState};

use crate::actors::gossip::messages::{LinkClosed, LinkEstablished, Received, RegisterLink};
use crate::actors::supervisor::RecipientSource;
use crate::topology::{PeerName, PeerUid};
use crate::wire::sleeve::seal::{Direction as SealDirection, SleeveKey};
use sleeve_keying::KeyRole;

/// What gossip sends to a link.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub enum Outgoing {
    /// A message framed once, however many links it goes to.
    Message(FramedMessage),
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

impl GossipSource for crate::actors::supervisor::SupervisedAddr<crate::actors::gossip::Gossip> {
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

/// What a link with a password tells the sleeve about its keys.
#[derive(Message, Debug)]
#[rtype(result = "Result<(), String>")]
pub enum SleeveKeyUpdate {
    /// Install `key` for `peer`'s link `link_id`: for opening its datagrams or sealing ours. A
    /// key of another link than the one the sleeve holds for `peer` replaces that link's keys.
    Install {
        peer: PeerName,
        link_id: u64,
        role: KeyRole,
        direction: SealDirection,
        key: SleeveKey,
    },
    /// The link ended: its keys go (unless a newer link to the peer replaced them already).
    Forget { peer: PeerName, link_id: u64 },
}

/// Where a link's sleeve keys go now.
pub enum SleeveKeyTarget {
    /// The `Sleeve` actor.
    Sleeve(Recipient<SleeveKeyUpdate>),
    /// The sleeve is still starting (links may come up first): try again shortly.
    Starting,
    /// This router runs no sleeve: keys are agreed (the peer may run one) but installed nowhere.
    None,
}

/// Where links hand their sleeve keys: the `Sleeve` actor, when this router runs a sleeve.
pub trait SleeveKeySink: Send + Sync {
    fn target(&self) -> SleeveKeyTarget;
}

/// A router without a sleeve.
pub struct NoSleeve;

impl SleeveKeySink for NoSleeve {
    fn target(&self) -> SleeveKeyTarget {
        SleeveKeyTarget::None
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
    /// With a password, how long one sleeve key seals before the next replaces it
    /// ([`sleeve_keying::REKEY_AFTER_TIME`] unless a test shortens it).
    pub sleeve_rekey_interval: Duration,
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
    /// The mesh key, when the mesh has a password: every link is sealed with it.
    pub mesh_key: Option<Arc<MeshKey>>,
    /// Where the sleeve keys agreed on links with a password go.
    pub sleeve_keys: Arc<dyn SleeveKeySink>,
    /// Cancelled when this router stops: its links close with [`ClosingReason::ShuttingDown`],
    /// and one torn down afterwards is not taken for a panic. One per router, not per process,
    /// so that routers sharing a process (tests) stop independently.
    pub shutdown: CancellationToken,
}

#[cfg(test)]
mod tests;
