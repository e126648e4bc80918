//! One reclaim round: read the peer record, do what [`PeerList::next_step`](super::peer_list::PeerList::next_step) says (register us,
//! claim a dead peer, take its ranges over, forget it), and read again, until nothing is left
//! to do. Every write is optimistic, so two routers racing for one dead peer end with one claim.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::{debug, info, warn};

use super::client::{KubeClient, KubeError, Written};
use super::peer_list::{Me, Orphaned, PeerEntry, Step};
use crate::actors::ipam::{IpamActorError, Submit};
use crate::actors::supervisor::RecipientSource;
use crate::ipam::{IpamError, Reply, Request};
use crate::metrics;

/// Steps in one round, so that a record that keeps changing under us cannot keep us busy.
const MAX_STEPS_PER_ROUND: usize = 16;

/// What a round needs; cheap to clone into the round's future.
#[derive(Clone)]
pub struct ReclaimContext {
    pub client: KubeClient,
    pub me: Me,
    /// `None` when the router runs without IPAM: dead peers are only forgotten.
    pub ipam: Option<Arc<dyn RecipientSource<Submit>>>,
}

/// How a take-over went.
enum TakeOver {
    Done {
        count: u64,
    },
    /// The peer still answers on the mesh (its node is being deleted, its router not yet
    /// stopped): try again next round.
    StillLive,
    Failed(String),
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// Runs one round against the complete set of `nodes`.
pub async fn reclaim_round(
    context: ReclaimContext,
    nodes: BTreeSet<String>,
) -> Result<(), KubeError> {
    let exists = |name: &str| nodes.contains(name);
    for _ in 0..MAX_STEPS_PER_ROUND {
        let read = context.client.read_peer_list().await?;
        let mut list = read.list.clone();
        match list.next_step(&context.me, &exists, unix_now()) {
            Step::Idle => return Ok(()),
            Step::Register => {
                list.register(&context.me);
                if context.client.write_peer_list(&list, &read).await? == Written::Yes {
                    info!(
                        "recorded peer {} as node {}'s in the Kubernetes API",
                        context.me.peer_name, context.me.node_name
                    );
                }
            }
            Step::Claim { entry, why } => {
                // Our watch may be behind a node that was just created: ask the API server.
                if why == Orphaned::NodeDeleted
                    && context.client.node_exists(&entry.node_name).await?
                {
                    debug!(
                        "node {} exists after all; not reclaiming {}",
                        entry.node_name, entry.peer_name
                    );
                    return Ok(());
                }
                list.claim(&entry.peer_name, &context.me, unix_now());
                if context.client.write_peer_list(&list, &read).await? == Written::Yes {
                    info!(
                        "claimed {}({}) for reclaiming: {}",
                        entry.peer_name,
                        entry.node_name,
                        why.as_str()
                    );
                }
            }
            Step::TakeOver { entry, why } => match take_over(&context, &entry).await {
                TakeOver::Done { count } => {
                    forget(&context, &entry.peer_name).await?;
                    metrics::kube_reclaimed();
                    info!(
                        "reclaimed {count} addresses of {}({}): {}",
                        entry.peer_name,
                        entry.node_name,
                        why.as_str()
                    );
                }
                TakeOver::StillLive => {
                    debug!(
                        "{}({}) still answers; reclaiming it later",
                        entry.peer_name, entry.node_name
                    );
                    return Ok(());
                }
                TakeOver::Failed(why) => {
                    warn!(
                        "cannot reclaim {}({}) yet: {why}",
                        entry.peer_name, entry.node_name
                    );
                    return Ok(());
                }
            },
        }
    }
    Ok(())
}

async fn take_over(context: &ReclaimContext, entry: &PeerEntry) -> TakeOver {
    let Some(ipam) = &context.ipam else {
        return TakeOver::Done { count: 0 };
    };
    let request = Submit(Request::RemovePeer {
        peer: entry.peer_name.clone(),
    });
    let answer = match ipam.recipient().send(request).await {
        Ok(receiver) => receiver.await,
        Err(err) => return TakeOver::Failed(format!("IP address management is restarting: {err}")),
    };
    match answer {
        Ok(Ok(Reply::TookOver { count, .. })) => TakeOver::Done { count },
        Ok(Ok(other)) => TakeOver::Failed(format!("unexpected answer {other:?}")),
        Ok(Err(IpamActorError::Ipam(IpamError::PeerIsLive { .. }))) => TakeOver::StillLive,
        // IPAM never heard of it (it never allocated, or an earlier round finished the
        // take-over before the record was updated): nothing to take.
        Ok(Err(IpamActorError::Ipam(IpamError::UnknownPeer { .. }))) => TakeOver::Done { count: 0 },
        Ok(Err(err)) => TakeOver::Failed(err.to_string()),
        Err(_) => TakeOver::Failed("IP address management restarted during the request".into()),
    }
}

/// Removes the reclaimed peer from the record, re-reading on conflicts.
async fn forget(context: &ReclaimContext, peer: &str) -> Result<(), KubeError> {
    for _ in 0..MAX_STEPS_PER_ROUND {
        let read = context.client.read_peer_list().await?;
        let mut list = read.list.clone();
        if !list.forget(peer) || context.client.write_peer_list(&list, &read).await? == Written::Yes
        {
            return Ok(());
        }
    }
    // Left in the record with our claim on it: the next round takes it over again (it then
    // has nothing left to take) and forgets it.
    Ok(())
}
