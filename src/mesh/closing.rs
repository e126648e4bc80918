//! Why a peer link ended, and whether that is worth a retry.

use crate::wire::RefusalReason;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClosingReason {
    /// The remote refused us (connection limit, shutting down).
    Refused(RefusalReason),
    /// The remote did not finish the handshake in time.
    HandshakeTimeout,
    /// The remote spoke something we cannot accept (bad magic, versions, malformed frame).
    Protocol(String),
    /// We dialled ourselves.
    ConnectToSelf,
    /// Another process uses our name.
    NameCollision,
    /// Our connection limit filled up while this inbound link's handshake ran.
    LimitReached {
        limit: u32,
    },
    /// A second link to the same peer lost the tie-break.
    Duplicate,
    /// Nothing heard from the remote within the read timeout.
    HeartbeatTimeout,
    /// The remote closed the stream.
    PeerClosed,
    Io(String),
    /// The subsystem this link was registered with was restarted; the link re-registers by
    /// reconnecting.
    SubsystemRestarted,
    /// The link's actor panicked.
    Panicked,
    /// Our own router is stopping, or the link was asked to close.
    ShuttingDown,
    /// The remote's IP allocation belongs to another cluster (split brain): linking the two
    /// would hand out the same addresses twice. Retried with back-off, in case one side is reset.
    SplitBrain(String),
    /// The mesh has a password and the peer does not know it: its header said it has none, it
    /// gave up on our proof of the password, or its own proof did not authenticate.
    PeerLacksPassword,
    /// The peer's mesh has a password and we have none.
    PasswordRequired,
    /// The peer's proof of the mesh password (in the Noise handshake) did not authenticate: its
    /// password is not ours.
    AuthenticationFailed,
    /// The sleeve heard no UDP heartbeat from the remote for its timeout: the mesh link is up
    /// but no overlay path carries frames.
    UdpHeartbeatTimeout,
    /// Our connection maker closed this link to make room for one to a far peer: the peer stays
    /// within two hops of us without it. Retried, but only after a hold (the connection maker's
    /// `REDIAL_HOLD_AFTER_DROP`), and discovery does not dial a peer that close.
    Rebalanced,
}

impl ClosingReason {
    /// Whether the connection maker should ever dial this target again.
    pub fn retry(&self) -> bool {
        !matches!(
            self,
            ClosingReason::ConnectToSelf | ClosingReason::NameCollision
        )
    }

    /// Whether the ending counts as a termination for metrics (Weave did not count links to
    /// ourselves).
    pub fn counts_as_termination(&self) -> bool {
        !matches!(self, ClosingReason::ConnectToSelf)
    }
}

impl std::fmt::Display for ClosingReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClosingReason::Refused(RefusalReason::ConnectionLimit { limit }) => {
                write!(
                    f,
                    "refused by the remote: connection limit reached ({limit})"
                )
            }
            ClosingReason::Refused(RefusalReason::ShuttingDown) => {
                write!(f, "refused by the remote: it is shutting down")
            }
            ClosingReason::HandshakeTimeout => write!(f, "timed out waiting for the handshake"),
            ClosingReason::Protocol(why) => write!(f, "protocol error: {why}"),
            ClosingReason::ConnectToSelf => write!(f, "cannot connect to ourself"),
            ClosingReason::NameCollision => {
                write!(f, "peer names collision: another peer has our name")
            }
            ClosingReason::LimitReached { limit } => {
                write!(f, "connection limit reached ({limit}) during the handshake")
            }
            ClosingReason::Duplicate => write!(f, "multiple connections to the same peer"),
            ClosingReason::HeartbeatTimeout => write!(f, "timed out waiting for a heartbeat"),
            ClosingReason::PeerClosed => write!(f, "connection closed by the remote"),
            ClosingReason::Io(why) => write!(f, "{why}"),
            ClosingReason::SubsystemRestarted => write!(f, "gossip subsystem restarted"),
            ClosingReason::Panicked => write!(f, "internal error (link actor panicked)"),
            ClosingReason::ShuttingDown => write!(f, "shutting down"),
            ClosingReason::SplitBrain(why) => write!(f, "{why}"),
            ClosingReason::PeerLacksPassword => {
                write!(
                    f,
                    "connection refused: peer does not know the mesh password"
                )
            }
            ClosingReason::PasswordRequired => write!(
                f,
                "connection refused: the peer's mesh has a password and we have none \
                 (--password, WEAVE_PASSWORD or WEAVE_PASSWORD_FILE)"
            ),
            ClosingReason::AuthenticationFailed => write!(
                f,
                "authentication failed: the peer does not know our mesh password"
            ),
            ClosingReason::UdpHeartbeatTimeout => write!(f, "timed out waiting for UDP heartbeat"),
            ClosingReason::Rebalanced => write!(
                f,
                "closed to rebalance the mesh (the peer stays within two hops without it)"
            ),
        }
    }
}
