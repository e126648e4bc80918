//! The `MacLearner` actor: a thin shell around [`MacTable`]. It takes the batches of sightings
//! the hot paths and the kernel's VXLAN learning report ([`MacsSeen`]), sweeps expired entries
//! every [`EXPIRY_INTERVAL`], forgets the MACs of peers that left the topology (following the
//! gossip's published view), logs what [`super::journal`] says of each change, and publishes the table ([`MacTablePublished`]) to its subscribers:
//! coalesced after changes, and again every [`REPUBLISH_INTERVAL`] so that a subscriber that
//! restarted catches up.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tracing::{info, warn};

use super::journal::{Journal, LogLine, names_an_unknown_peer};
use super::state::{EXPIRY_INTERVAL, Location, MacEvent, MacTable, PeerNames};
use crate::actors::gossip::messages::GossipStatus;
use crate::actors::gossip::view::{GossipView, follow};
use crate::actors::overlay::{MacTablePublished, MacsSeen, Subscribers};
use crate::topology::PeerName;
use crate::wire::MacAddr;

/// Changes are published at most this often: a burst of discoveries (a node with many pods
/// joining) costs one snapshot, and the hot paths see a new MAC within this delay.
pub const PUBLISH_DELAY: Duration = Duration::from_millis(100);
/// The table is published again this often even without changes.
pub const REPUBLISH_INTERVAL: Duration = Duration::from_secs(5);
/// Our name and the peers' nicknames, as last read from the topology.
#[derive(Debug)]
struct Names {
    local: PeerName,
    nicknames: HashMap<PeerName, String>,
}

impl PeerNames for Names {
    fn local_name(&self) -> PeerName {
        self.local
    }

    fn nickname(&self, peer: PeerName) -> Option<&str> {
        self.nicknames.get(&peer).map(String::as_str)
    }
}

/// One row of the table for `/report` (Weave Net's `MACs[{Mac,Name,NickName,LastSeen}]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MacRow {
    pub mac: MacAddr,
    pub peer: PeerName,
    pub nickname: Option<String>,
    /// How long ago a frame from it was last seen (refreshed at most once a minute).
    pub last_seen_ago: Duration,
}

/// Asks for the table, for `/report`.
#[derive(Message)]
#[rtype(result = "Vec<MacRow>")]
pub struct GetMacTable;

pub struct MacLearner {
    table: MacTable,
    names: Names,
    /// The topology as the gossip publishes it: departed peers and nicknames.
    view: GossipView,
    subscribers: Subscribers<MacTablePublished>,
    pending: Vec<MacEvent>,
    publish_scheduled: bool,
    journal: Journal,
}

impl MacLearner {
    pub fn new(
        local: PeerName,
        view: GossipView,
        subscribers: Subscribers<MacTablePublished>,
    ) -> Self {
        Self {
            table: MacTable::new(),
            names: Names {
                local,
                nicknames: HashMap::new(),
            },
            view,
            subscribers,
            pending: Vec::new(),
            publish_scheduled: false,
            journal: Journal::default(),
        }
    }

    fn record(&mut self, events: Vec<MacEvent>, ctx: &mut Context<Self>) {
        if events.is_empty() {
            return;
        }
        // Read the latest topology first when a line would name a peer we have no nickname
        // for, so the line names it as operators know it.
        if names_an_unknown_peer(&events, &self.names) {
            let status = Arc::clone(&self.view.borrow());
            self.learn_nicknames(&status);
        }
        for line in self.journal.lines(&events, &self.names, Instant::now()) {
            match line {
                LogLine::Info(line) => info!("{line}"),
                LogLine::Warn(line) => warn!("{line}"),
            }
        }
        let changed = events
            .iter()
            .any(|event| !matches!(event, MacEvent::Conflict { .. }));
        self.pending.extend(
            events
                .into_iter()
                .filter(|e| !matches!(e, MacEvent::Conflict { .. })),
        );
        if changed && !self.publish_scheduled {
            self.publish_scheduled = true;
            ctx.run_later(PUBLISH_DELAY, |act, _| act.publish());
        }
    }

    fn publish(&mut self) {
        self.publish_scheduled = false;
        let message = MacTablePublished {
            snapshot: self.table.snapshot(),
            events: std::mem::take(&mut self.pending),
        };
        let missed = self.subscribers.publish(&message);
        if missed > 0 {
            // They catch up with the next periodic publication.
            tracing::debug!("{missed} MAC table subscribers missed a publication");
        }
    }

    fn learn_nicknames(&mut self, status: &GossipStatus) {
        self.names.nicknames = status
            .peers
            .iter()
            .map(|record| (record.name, record.nickname.clone()))
            .collect();
    }

    /// A new view of the mesh: learn the nicknames, forget the MACs of peers no longer in it.
    fn on_view(&mut self, ctx: &mut Context<Self>, status: Arc<GossipStatus>) {
        self.learn_nicknames(&status);
        self.forget_departed(&status, ctx);
    }

    fn forget_departed(&mut self, status: &GossipStatus, ctx: &mut Context<Self>) {
        let present: BTreeSet<PeerName> = status.peers.iter().map(|p| p.name).collect();
        let events = self.table.forget_departed(&present);
        self.record(events, ctx);
    }
}

impl Actor for MacLearner {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(EXPIRY_INTERVAL, |act, ctx| {
            let events = act.table.expire(Instant::now());
            act.record(events, ctx);
        });
        ctx.run_interval(REPUBLISH_INTERVAL, |act, _| act.publish());
        follow(self, ctx, self.view.clone(), Self::on_view);
    }
}

impl Handler<MacsSeen> for MacLearner {
    type Result = ();

    fn handle(&mut self, seen: MacsSeen, ctx: &mut Context<Self>) {
        let events = self.table.observe_batch(&seen.0, Instant::now());
        self.record(events, ctx);
        let remote = |(_, location): &(MacAddr, Location)| matches!(location, Location::Remote(_));
        if seen.0.iter().any(remote) {
            // A sighting at a peer the topology no longer holds goes as its other MACs went.
            let status = Arc::clone(&self.view.borrow());
            self.forget_departed(&status, ctx);
        }
    }
}

impl Handler<GetMacTable> for MacLearner {
    type Result = MessageResult<GetMacTable>;

    fn handle(&mut self, _: GetMacTable, _: &mut Context<Self>) -> Self::Result {
        let now = Instant::now();
        let rows = self
            .table
            .entries()
            .into_iter()
            .map(|entry| {
                let peer = match entry.location {
                    Location::Local => self.names.local,
                    Location::Remote(peer) => peer,
                };
                MacRow {
                    mac: entry.mac,
                    peer,
                    nickname: self.names.nickname(peer).map(str::to_string),
                    last_seen_ago: now.saturating_duration_since(entry.last_seen),
                }
            })
            .collect();
        MessageResult(rows)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::actors::overlay::Subscriber;
    use crate::actors::supervisor::Fixed;
    use crate::actors::test_support::lone_gossip_with_view;

    /// Keeps every publication it receives.
    struct Collector(Arc<Mutex<Vec<MacTablePublished>>>);

    impl Actor for Collector {
        type Context = Context<Self>;
    }

    impl Handler<MacTablePublished> for Collector {
        type Result = ();
        fn handle(&mut self, published: MacTablePublished, _: &mut Context<Self>) {
            self.0.lock().unwrap().push(published);
        }
    }

    #[actix_rt::test]
    async fn sightings_are_published_coalesced_and_reported() {
        let received = Arc::new(Mutex::new(Vec::new()));
        let collector = Collector(received.clone()).start();
        let subscribers = Subscribers::default();
        let subscriber: Subscriber<MacTablePublished> = Arc::new(Fixed(collector.recipient()));
        subscribers.add(subscriber);
        let local = PeerName::from_u64(1).unwrap();
        let remote = PeerName::from_u64(2).unwrap();
        let (_gossip, view) = lone_gossip_with_view(1);
        let learner = MacLearner::new(local, view, subscribers).start();
        let mac = |n: u8| MacAddr([0x0a, 0, 0, 0, 0, n]);
        // Three batches queued at once: handled before the publication delay runs out. The
        // remote peer is not in the (lone) topology: its MAC is forgotten at once.
        for n in 1..=3 {
            learner
                .try_send(MacsSeen(vec![(mac(n), Location::Local)]))
                .unwrap();
        }
        learner
            .try_send(MacsSeen(vec![(mac(9), Location::Remote(remote))]))
            .unwrap();
        tokio::time::sleep(PUBLISH_DELAY * 5).await;
        let published = received.lock().unwrap().clone();
        assert!(
            (1..=2).contains(&published.len()),
            "four batches, coalesced: {}",
            published.len()
        );
        let events: Vec<MacEvent> = published.iter().flat_map(|p| p.events.clone()).collect();
        assert_eq!(
            events
                .iter()
                .filter(|e| matches!(e, MacEvent::Discovered { .. }))
                .count(),
            4
        );
        assert!(events.contains(&MacEvent::Forgotten {
            mac: mac(9),
            at: remote
        }));
        let last = &published.last().unwrap().snapshot;
        assert_eq!(last.len(), 3);
        assert_eq!(last.lookup(mac(2)), Some(Location::Local));
        assert_eq!(last.lookup(mac(9)), None);
        let rows = learner.send(GetMacTable).await.unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].mac, mac(1));
        assert_eq!(rows[0].peer, local);
        assert_eq!(rows[0].nickname.as_deref(), Some("peer1"));
    }
}
