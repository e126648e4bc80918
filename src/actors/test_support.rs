//! Shared pieces of the actors' in-process tests: a supervised gossip actor for a lone peer, and
//! a wait for a supervised actor's re-creation.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::actors::gossip::messages::PeersChanged;
use crate::actors::gossip::{Gossip, GossipView};
use crate::actors::supervisor::{Fixed, RecipientSource, SupervisedAddr};
use crate::metrics::ActorKind;
use crate::topology::{PeerName, PeerRecord, PeerUid};

/// A connection maker that ignores what it is told.
struct NullMaker;

impl Actor for NullMaker {
    type Context = Context<Self>;
}

impl Handler<PeersChanged> for NullMaker {
    type Result = ();
    fn handle(&mut self, _: PeersChanged, _: &mut Context<Self>) {}
}

/// The record of test peer `n` (named `n`, nicknamed `peer<n>`).
pub fn lone_record(n: u64) -> PeerRecord {
    PeerRecord {
        name: PeerName::from_u64(n).expect("a small test name"),
        nickname: format!("peer{n}"),
        uid: PeerUid(n),
        version: 1,
        listen_addr: "127.0.0.1:6783".parse().expect("a literal address"),
        conn_limit: 30,
        connections: Default::default(),
    }
}

/// A supervised gossip actor for peer `n`, alone in its mesh.
pub fn lone_gossip(n: u64) -> SupervisedAddr<Gossip> {
    lone_gossip_with_view(n).0
}

/// A supervised gossip actor for peer `n`, alone in its mesh, and the view it publishes.
pub fn lone_gossip_with_view(n: u64) -> (SupervisedAddr<Gossip>, GossipView) {
    let maker: Arc<dyn RecipientSource<PeersChanged>> =
        Arc::new(Fixed(NullMaker.start().recipient()));
    let (hints, _) = tokio::sync::watch::channel(Vec::new());
    let (view_tx, view) = crate::actors::gossip::view::channel();
    let record = lone_record(n);
    let gossip = SupervisedAddr::start(ActorKind::Gossip, move || {
        Gossip::new(record.clone(), maker.clone(), hints.clone())
            .publishing_view(view_tx.clone())
            .start()
    });
    (gossip, view)
}

/// Waits (at most two seconds) until `actor` was re-created at least once; its generation.
pub async fn recreated<A: Actor>(actor: &SupervisedAddr<A>) -> u64 {
    for _ in 0..100 {
        if actor.generation() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    actor.generation()
}
