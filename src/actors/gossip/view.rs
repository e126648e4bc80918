//! The gossip's view of the mesh (peer records, routes, links), published whole as an `Arc`
//! snapshot on a `tokio::sync::watch` each time it changes. The data plane and IPAM follow it
//! instead of asking the gossip actor on a timer: a new link or route reaches the sleeve's table
//! and the overlay switch at once (a pod's first frames depend on it), and an idle mesh costs
//! nothing. The sender outlives the gossip actor's incarnations: a restarted gossip publishes
//! its (fresh) view on the same channel.

use std::sync::Arc;

use actix::{Actor, ActorFutureExt, AsyncContext, Context, WrapFuture};
use tokio::sync::watch;

use super::messages::GossipStatus;
use super::state::GossipState;

/// What a follower of the gossip holds: the latest view, and word of the next.
pub type GossipView = watch::Receiver<Arc<GossipStatus>>;

/// The publishing side, kept by the router's wiring and handed to each gossip incarnation.
pub type ViewSender = watch::Sender<Arc<GossipStatus>>;

/// A channel whose first view is an empty mesh (until the gossip actor publishes its own).
pub fn channel() -> (ViewSender, GossipView) {
    watch::channel(Arc::new(GossipStatus {
        peers: Vec::new(),
        routes: Default::default(),
        links: Vec::new(),
    }))
}

/// Publishes the state's view if it differs from the one last published. The records are known
/// unchanged by their change count, the links by comparing the few of them: cheap enough to run
/// after every gossip message and tick.
pub fn publish_if_changed(state: &mut GossipState, sender: &ViewSender) {
    let changes = state.topology().changes();
    let unchanged =
        state.published_changes() == Some(changes) && state.links_equal(&sender.borrow().links);
    if unchanged {
        return;
    }
    let view = GossipStatus {
        peers: state.topology().full_state(),
        routes: state.routes().clone(),
        links: state.links(),
    };
    // No follower is fine (they may come later, and read the latest value then).
    sender.send_replace(Arc::new(view));
    state.set_published_changes(changes);
}

/// Calls `on_change` with the current view now, and again with each new one, for as long as the
/// actor lives and the gossip's channel stays open. Views published while the actor was busy
/// are coalesced: it sees the latest.
pub fn follow<A>(
    act: &mut A,
    ctx: &mut Context<A>,
    mut view: GossipView,
    on_change: fn(&mut A, &mut Context<A>, Arc<GossipStatus>),
) where
    A: Actor<Context = Context<A>>,
{
    let current = Arc::clone(&view.borrow_and_update());
    on_change(act, ctx, current);
    let next = async move {
        let open = view.changed().await.is_ok();
        (open, view)
    };
    ctx.spawn(next.into_actor(act).map(move |(open, view), act, ctx| {
        if open {
            follow(act, ctx, view, on_change);
        }
    }));
}

#[cfg(test)]
mod tests;
