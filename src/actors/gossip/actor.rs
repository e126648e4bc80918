//! The `Gossip` actor: a thin shell over [`GossipState`] that carries out its effects (sending on
//! links, closing duplicates, notifying the connection maker, publishing refusal hints).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Actor, AsyncContext, Context, Handler, Recipient};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::messages::*;
use super::state::{Effect, GossipError, GossipState};
use super::view::ViewSender;
use crate::actors::connection::{FramedMessage, Outgoing};
use crate::actors::log_limit::LogLimiter;
use crate::actors::supervisor::RecipientSource;
use crate::mesh::{ClosingReason, LinkId};
use crate::metrics;
use crate::topology::PeerRecord;
use crate::wire::{MAX_TOPOLOGY_PAYLOAD_BYTES, ProtocolMsg};

/// How often coalesced updates and anti-entropy are considered.
const TICK_INTERVAL: Duration = Duration::from_millis(100);
/// Mailbox size: every link's received gossip passes through here.
const MAILBOX_CAPACITY: usize = 1024;

pub struct Gossip {
    state: GossipState,
    outboxes: BTreeMap<LinkId, Recipient<Outgoing>>,
    channels: BTreeMap<String, Recipient<ChannelGossip>>,
    maker: Arc<dyn RecipientSource<PeersChanged>>,
    hints: watch::Sender<Vec<SocketAddr>>,
    /// Warnings any neighbour can trigger with every update it sends.
    log_limit: LogLimiter,
    /// Where the view of the mesh is published on change (none in tests that do not follow it).
    view: Option<ViewSender>,
}

impl Gossip {
    pub fn new(
        local: PeerRecord,
        maker: Arc<dyn RecipientSource<PeersChanged>>,
        hints: watch::Sender<Vec<SocketAddr>>,
    ) -> Self {
        Self {
            state: GossipState::new(local, Instant::now(), rand::random()),
            outboxes: BTreeMap::new(),
            channels: BTreeMap::new(),
            maker,
            hints,
            log_limit: LogLimiter::default(),
            view: None,
        }
    }

    /// Publishes the view of the mesh on `view` whenever it changes (and once at start).
    pub fn publishing_view(mut self, view: ViewSender) -> Self {
        self.view = Some(view);
        self
    }

    fn publish_view(&mut self) {
        if let Some(view) = &self.view {
            super::view::publish_if_changed(&mut self.state, view);
        }
    }

    fn apply(&mut self, effects: Vec<Effect>) {
        // Each message is framed once, for all the links it goes to in this batch.
        let mut framed: Vec<(Arc<ProtocolMsg>, FramedMessage)> = Vec::new();
        let mut peers_changed = false;
        for effect in effects {
            match effect {
                Effect::Send { link, msg } => {
                    let Some(outbox) = self.outboxes.get(&link) else {
                        continue;
                    };
                    let frame = match framed.iter().find(|(sent, _)| Arc::ptr_eq(sent, &msg)) {
                        Some((_, frame)) => frame.clone(),
                        None => {
                            let frame = FramedMessage::of(&msg);
                            framed.push((msg, frame.clone()));
                            frame
                        }
                    };
                    if outbox.try_send(Outgoing::Message(frame)).is_err() {
                        metrics::message_dropped(metrics::DropReason::LinkMailboxFull);
                    }
                }
                Effect::Close { link, reason } => {
                    if let Some(outbox) = self.outboxes.remove(&link)
                        && outbox.try_send(Outgoing::Close(reason)).is_err()
                    {
                        metrics::message_dropped(metrics::DropReason::LinkMailboxFull);
                    }
                }
                Effect::Deliver {
                    channel,
                    source,
                    payload,
                } => match self.channels.get(&channel) {
                    Some(handler) => {
                        let gossip = ChannelGossip {
                            channel,
                            source,
                            payload,
                        };
                        if handler.try_send(gossip).is_err() {
                            metrics::message_dropped(metrics::DropReason::ChannelMailboxFull);
                        }
                    }
                    None => debug!("gossip for unknown channel {channel:?} from {source}"),
                },
                Effect::PeersRemoved(records) => {
                    for record in records {
                        info!(
                            "Removed unreachable peer {}({})",
                            record.name, record.nickname
                        );
                    }
                }
                Effect::RecordsRejected { from, count } => {
                    if let Some(held_back) = self.log_limit.admit("rejected", Instant::now()) {
                        warn!(
                            "ignored {count} peer records from {from}: versions too far ahead \
                             to be genuine, or invalid nicknames ({held_back} such warnings \
                             held back)"
                        );
                    }
                }
                Effect::RecordTooLarge { peer, bytes } => {
                    if let Some(held_back) = self.log_limit.admit("too_large", Instant::now()) {
                        warn!(
                            "not passing on the record of {peer}: {bytes} bytes, over the \
                             {MAX_TOPOLOGY_PAYLOAD_BYTES}-byte limit of a topology message \
                             ({held_back} such warnings held back)"
                        );
                    }
                }
                Effect::PeersChanged => peers_changed = true,
            }
        }
        // Once per batch, after all of it: the directory is a pass over every record.
        if peers_changed {
            self.publish_peers();
        }
        metrics::set_peers(self.state.topology().len());
        self.publish_view();
    }

    fn publish_peers(&mut self) {
        let directory = self.state.peer_directory();
        let changed = PeersChanged {
            connected: self.state.connected_peers(),
            discovered: directory.discovery_targets,
            addresses: directory.addresses,
        };
        if self.maker.recipient().try_send(changed).is_err() {
            metrics::message_dropped(metrics::DropReason::MakerMailboxFull);
        }
        self.hints.send_replace(directory.refusal_hints);
    }
}

impl Actor for Gossip {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        self.publish_view();
        ctx.run_interval(TICK_INTERVAL, |act, _| {
            let effects = act.state.tick(Instant::now());
            act.apply(effects);
        });
    }
}

impl Handler<RegisterLink> for Gossip {
    type Result = Result<(), ClosingReason>;

    fn handle(&mut self, msg: RegisterLink, _: &mut Context<Self>) -> Self::Result {
        let link = &msg.link;
        if let Some(linked) = self.state.linked_uid(link.remote)
            && linked != link.remote_uid
        {
            warn!(
                "[{}|{}({})]: peer {} connected with uid {} while its link with uid {linked} is up: \
                 a restart the old link has not noticed yet, or another process using its name; \
                 keeping the link that is up",
                link.remote_addr, link.remote, link.remote_nickname, link.remote, link.remote_uid
            );
        }
        let id = msg.link.id;
        let effects = self.state.register_link(msg.link, Instant::now())?;
        self.outboxes.insert(id, msg.outbox);
        self.apply(effects);
        Ok(())
    }
}

impl Handler<LinkEstablished> for Gossip {
    type Result = Result<(), GossipError>;

    fn handle(&mut self, msg: LinkEstablished, _: &mut Context<Self>) -> Self::Result {
        let established = self.state.link_established(msg.0, Instant::now());
        self.publish_view();
        established
    }
}

impl Handler<LinkClosed> for Gossip {
    type Result = ();

    fn handle(&mut self, msg: LinkClosed, _: &mut Context<Self>) {
        self.outboxes.remove(&msg.0);
        let effects = self.state.link_closed(msg.0, Instant::now());
        self.apply(effects);
    }
}

impl Handler<Received> for Gossip {
    type Result = Result<(), GossipError>;

    fn handle(&mut self, msg: Received, _: &mut Context<Self>) -> Self::Result {
        match self.state.receive(msg.link, msg.msg, Instant::now()) {
            Ok(effects) => {
                self.apply(effects);
                Ok(())
            }
            Err(err) => {
                warn!("{err}");
                // Part of the message may have been merged before the error.
                self.publish_view();
                Err(err)
            }
        }
    }
}

impl Handler<RegisterChannel> for Gossip {
    type Result = ();

    fn handle(&mut self, msg: RegisterChannel, _: &mut Context<Self>) {
        self.channels.insert(msg.channel, msg.handler);
    }
}

impl Handler<SendChannelGossip> for Gossip {
    type Result = ();

    fn handle(&mut self, msg: SendChannelGossip, _: &mut Context<Self>) {
        let effects = match msg.audience {
            Audience::Peer(dest) => self.state.send_unicast(&msg.channel, dest, msg.payload),
            Audience::Everyone => self.state.send_broadcast(&msg.channel, msg.payload),
            Audience::Neighbours => self.state.send_to_neighbours(&msg.channel, msg.payload),
        };
        self.apply(effects);
    }
}

impl Handler<ClosePeerLink> for Gossip {
    type Result = ();

    fn handle(&mut self, msg: ClosePeerLink, _: &mut Context<Self>) {
        let effects = self.state.close_link_to(msg.peer, msg.reason);
        self.apply(effects);
    }
}

impl Handler<GetGossipStatus> for Gossip {
    type Result = actix::MessageResult<GetGossipStatus>;

    fn handle(&mut self, _: GetGossipStatus, _: &mut Context<Self>) -> Self::Result {
        actix::MessageResult(GossipStatus {
            peers: self.state.topology().full_state(),
            routes: self.state.routes().clone(),
            links: self.state.links(),
        })
    }
}

#[cfg(test)]
#[derive(actix::Message)]
#[rtype(result = "()")]
pub struct InjectPanic;

#[cfg(test)]
impl Handler<InjectPanic> for Gossip {
    type Result = ();

    fn handle(&mut self, _: InjectPanic, _: &mut Context<Self>) {
        panic!("fault injected into the gossip actor");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::test_support::{lone_gossip, recreated};

    #[actix_rt::test]
    async fn a_panicking_gossip_actor_is_recreated_and_answers_again() {
        let gossip = lone_gossip(7);
        let status = gossip.addr().send(GetGossipStatus).await.unwrap();
        assert_eq!(status.peers.len(), 1);

        let dying = gossip.addr();
        assert!(
            dying.send(InjectPanic).await.is_err(),
            "the caller gets an error"
        );
        assert!(dying.send(GetGossipStatus).await.is_err(), "not a hang");
        assert_eq!(recreated(&gossip).await, 1, "re-created once");
        let status = gossip.addr().send(GetGossipStatus).await.unwrap();
        assert_eq!(status.peers[0].nickname, "peer7");
    }
}
