//! The `Ipam` actor itself.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;
use tracing::{error, info, warn};

use super::snapshot::snapshot;
use crate::actors::connection::ClosingReason;
use crate::actors::gossip::messages::{
    Audience, ChannelGossip, ClosePeerLink, GossipStatus, RegisterChannel, SendChannelGossip,
};
use crate::actors::gossip::view::follow;
use crate::actors::gossip::{Gossip, GossipView};
use crate::actors::supervisor::SupervisedAddr;
use crate::ipam::durable::{DurableAllocator, RestoreError, WriteHealth};
use crate::ipam::{
    Address, AddressCidr, Allocator, AllocatorConfig, Effect, IpamError, Reply, Request, RequestId,
    decode_message, encode_message,
};
use crate::metrics;
use crate::snapshot::IpamSnapshot;
use crate::store::Store;
use crate::topology::PeerName;

/// The gossip channel of IPAM (Weave Net called it `IPallocation`).
pub const IPAM_CHANNEL: &str = "ipam";
/// How often pending operations are retried and the live peers refreshed (Weave Net: 5 s; we
/// retry sooner so that a pod waiting for space waits less).
const TICK_INTERVAL: Duration = Duration::from_secs(1);
const MAILBOX_CAPACITY: usize = 4096;

/// What the router hands every incarnation of the actor.
pub struct IpamConfig {
    pub allocator: AllocatorConfig,
    pub store: Arc<Store>,
    pub gossip: SupervisedAddr<Gossip>,
    /// The topology as the gossip publishes it: which peers are live.
    pub view: GossipView,
}

/// Why an IPAM request or the actor's start failed.
#[derive(Debug, thiserror::Error)]
pub enum IpamActorError {
    #[error(transparent)]
    Ipam(#[from] IpamError),
    /// The state could not be written: the answer is withheld, since a crash would lose it.
    #[error("cannot persist the IPAM state: {0}")]
    Persistence(String),
    /// The persisted state cannot be read back.
    #[error("{0}")]
    Restore(String),
}

type Answer = Result<Reply, IpamActorError>;

pub struct Ipam {
    durable: DurableAllocator,
    config: Arc<IpamConfig>,
    next_request: RequestId,
    waiting: HashMap<RequestId, oneshot::Sender<Answer>>,
    /// The gossip incarnation our channel is registered with.
    registered_with: Option<u64>,
    /// Something the operator must know about (split brain, adoption), shown in the status.
    warning: Option<String>,
}

impl Ipam {
    /// A new incarnation, restored from the store.
    pub fn new(config: Arc<IpamConfig>) -> Result<Self, IpamActorError> {
        let stored = config
            .store
            .ipam_state()
            .map_err(|err| IpamActorError::Restore(err.to_string()))?;
        let durable = DurableAllocator::restore(config.allocator.clone(), stored.as_deref())
            .map_err(|err| match err {
                RestoreError::Ipam(err) => IpamActorError::Ipam(err),
                err @ RestoreError::Undecodable(_) => IpamActorError::Restore(format!(
                    "{err} in {}; refusing to start rather than hand out addresses twice",
                    config.store.path().display()
                )),
            })?;
        Ok(Self {
            durable,
            config,
            next_request: 1,
            waiting: HashMap::new(),
            registered_with: None,
            warning: None,
        })
    }

    /// Runs one call of the allocator (see [`DurableAllocator::run`]: nothing is said before
    /// the state it depends on is written) and carries out what it leaves to do.
    fn run(
        &mut self,
        submitted: Option<RequestId>,
        call: impl FnOnce(&mut Allocator) -> Vec<Effect>,
    ) {
        let store = Arc::clone(&self.config.store);
        let mut write = |bytes: &[u8]| store.set_ipam_state(bytes).map_err(|err| err.to_string());
        let outcome = self.durable.run(submitted, call, &mut write);
        for health in outcome.health {
            match health {
                WriteHealth::Failing(err) => error!(
                    "cannot persist the IPAM state: {err}; requests fail until it can be written"
                ),
                WriteHealth::Recovered => info!("the IPAM state is written again"),
            }
        }
        for (id, err) in outcome.refused {
            if let Some(waiter) = self.waiting.remove(&id) {
                let _ = waiter.send(Err(IpamActorError::Persistence(err)));
            }
        }
        self.apply(outcome.effects);
    }

    /// Carries out the effects of a call whose state, if it changed, is on disk.
    fn apply(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                // Written before any effect was carried out.
                Effect::Persist(_) => {}
                Effect::Reply { id, result } => {
                    if let Some(waiter) = self.waiting.remove(&id) {
                        let _ = waiter.send(result.map_err(IpamActorError::from));
                    }
                }
                Effect::Broadcast(msg) => self.gossip(Audience::Everyone, &msg),
                Effect::Unicast { to, msg } => self.gossip(Audience::Peer(to), &msg),
                Effect::SplitBrain { peer, reason } => {
                    metrics::ipam_split_brain();
                    let text = format!(
                        "IP allocation of {peer} cannot merge with ours: {reason}. The two sides \
                         were started as separate clusters; run 'weave reset' on the side with \
                         fewer allocations (or remove its database) so that it joins the other."
                    );
                    warn!("{text}");
                    self.warning = Some(text.clone());
                    let close = ClosePeerLink {
                        peer,
                        reason: ClosingReason::SplitBrain(text),
                    };
                    if self.config.gossip.addr().try_send(close).is_err() {
                        metrics::message_dropped(metrics::DropReason::ChannelMailboxFull);
                    }
                }
                Effect::Adopted { from, note } => {
                    let text = format!("adopted the IP allocation ring of {from}: {note}");
                    info!("{text}");
                    self.warning = Some(text);
                }
                Effect::Conflict { peer, reason } => {
                    // Never two owners of one address: the update was refused, and says why.
                    error!("IP allocation conflict with {peer}: {reason}");
                    self.warning = Some(format!("conflict with {peer}: {reason}"));
                }
            }
        }
    }

    fn gossip(&self, audience: Audience, msg: &crate::ipam::IpamMessage) {
        let payload = match encode_message(msg) {
            Ok(payload) => payload,
            Err(err) => return error!("cannot encode IPAM gossip: {err}"),
        };
        let send = SendChannelGossip {
            channel: IPAM_CHANNEL.to_string(),
            audience,
            payload,
        };
        if self.config.gossip.addr().try_send(send).is_err() {
            metrics::message_dropped(metrics::DropReason::ChannelMailboxFull);
        }
    }

    /// Registers our channel with the current gossip incarnation (again after it restarted).
    fn ensure_registered(&mut self, ctx: &mut Context<Self>) {
        let generation = self.config.gossip.generation();
        if self.registered_with == Some(generation) {
            return;
        }
        let register = RegisterChannel {
            channel: IPAM_CHANNEL.to_string(),
            handler: ctx.address().recipient(),
        };
        if self.config.gossip.addr().try_send(register).is_ok() {
            self.registered_with = Some(generation);
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        self.ensure_registered(ctx);
        // Requests whose HTTP client went away are cancelled (Weave Net answered `cancelled`).
        let gone: Vec<RequestId> = self
            .waiting
            .iter()
            .filter(|(_, waiter)| waiter.is_closed())
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            self.waiting.remove(&id);
            self.run(None, |allocator| allocator.cancel(id));
        }
        self.run(None, |allocator| allocator.tick(Instant::now()));
    }

    /// A new view of the mesh: tells the allocator which peers are live.
    fn on_view(&mut self, _: &mut Context<Self>, status: Arc<GossipStatus>) {
        let live: BTreeSet<PeerName> = status.peers.iter().map(|p| p.name).collect();
        let nicknames: BTreeMap<PeerName, String> = status
            .peers
            .iter()
            .map(|p| (p.name, p.nickname.clone()))
            .collect();
        self.run(None, |allocator| {
            allocator.peers_changed(&live, &nicknames, Instant::now())
        });
    }
}

impl Actor for Ipam {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        self.ensure_registered(ctx);
        follow(self, ctx, self.config.view.clone(), Self::on_view);
        ctx.run_interval(TICK_INTERVAL, |act, ctx| act.tick(ctx));
    }
}

/// Submits a request; the answer comes on the returned channel (it may wait for consensus or for
/// space from another peer; dropping the receiver cancels the request).
#[derive(Message)]
#[rtype(result = "oneshot::Receiver<Result<Reply, IpamActorError>>")]
pub struct Submit(pub Request);

impl Handler<Submit> for Ipam {
    type Result = MessageResult<Submit>;

    fn handle(&mut self, msg: Submit, _: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        let id = self.next_request;
        self.next_request += 1;
        self.waiting.insert(id, tx);
        self.run(Some(id), |allocator| {
            allocator.request(id, msg.0, Instant::now())
        });
        MessageResult(rx)
    }
}

#[derive(Message)]
#[rtype(result = "Vec<AddressCidr>")]
pub struct Lookup(pub String);

impl Handler<Lookup> for Ipam {
    type Result = MessageResult<Lookup>;

    fn handle(&mut self, msg: Lookup, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.durable.allocator().lookup(&msg.0))
    }
}

#[derive(Message)]
#[rtype(result = "BTreeMap<String, Vec<Address>>")]
pub struct Owned;

impl Handler<Owned> for Ipam {
    type Result = MessageResult<Owned>;

    fn handle(&mut self, _: Owned, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.durable.allocator().owned().clone())
    }
}

#[derive(Message)]
#[rtype(result = "IpamSnapshot")]
pub struct GetIpamSnapshot;

impl Handler<GetIpamSnapshot> for Ipam {
    type Result = MessageResult<GetIpamSnapshot>;

    fn handle(&mut self, _: GetIpamSnapshot, _: &mut Context<Self>) -> Self::Result {
        MessageResult(snapshot(
            &self.durable.allocator().status(),
            self.warning.clone(),
        ))
    }
}

impl Handler<ChannelGossip> for Ipam {
    type Result = ();

    fn handle(&mut self, msg: ChannelGossip, _: &mut Context<Self>) {
        match decode_message(&msg.payload) {
            Ok(decoded) => self.run(None, |allocator| {
                allocator.on_message(msg.source, decoded, Instant::now())
            }),
            Err(err) => warn!("malformed IPAM gossip from {}: {err}", msg.source),
        }
    }
}

#[cfg(test)]
impl Handler<crate::actors::gossip::InjectPanic> for Ipam {
    type Result = ();

    fn handle(&mut self, _: crate::actors::gossip::InjectPanic, _: &mut Context<Self>) {
        panic!("fault injected into the IPAM actor");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::gossip::InjectPanic;
    use crate::actors::test_support::{lone_gossip_with_view, recreated};
    use crate::ipam::InitMode;
    use crate::metrics::ActorKind;
    use crate::topology::PeerUid;

    #[actix_rt::test]
    async fn a_panicking_ipam_actor_is_recreated_from_the_database_with_its_allocations() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&format!("{}/weave-net", dir.path().display())).unwrap());
        let name = PeerName::from_u64(9).unwrap();
        let (gossip, view) = lone_gossip_with_view(9);
        let universe = "10.32.0.0/12".parse().unwrap();
        let config = Arc::new(IpamConfig {
            allocator: AllocatorConfig {
                local: name,
                uid: PeerUid(9),
                nickname: "nine".into(),
                universe,
                default_subnet: universe,
                mode: InitMode::Consensus {
                    quorum: 1,
                    expected: 0,
                },
            },
            store,
            gossip,
            view,
        });
        let ipam = SupervisedAddr::start(ActorKind::Ipam, move || {
            Ipam::new(config.clone()).expect("restorable").start()
        });
        let allocate = Request::Allocate {
            ident: "pod".into(),
            subnet: universe,
        };
        let answer = ipam.addr().send(Submit(allocate)).await.unwrap();
        let Ok(Reply::Allocated(address)) = answer.await.unwrap() else {
            panic!("allocation failed");
        };

        let dying = ipam.addr();
        assert!(
            dying.send(InjectPanic).await.is_err(),
            "the caller gets an error"
        );
        assert_eq!(recreated(&ipam).await, 1, "re-created");
        let found = ipam.addr().send(Lookup("pod".into())).await.unwrap();
        assert_eq!(
            found,
            vec![address],
            "the allocation came back from the database"
        );
    }
}
