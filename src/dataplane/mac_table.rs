//! The MAC-learning state machine: which peer each Ethernet address lives behind, as learned
//! from the source addresses of frames. Captured frames (from our bridge) teach local MACs;
//! frames arriving from the overlay teach remote MACs at their source peer. Synchronous and
//! time-injected: the actor feeds it the batches the hot paths report, sweeps it every
//! [`EXPIRY_INTERVAL`], logs the [`MacEvent`]s it returns and hands the overlays the
//! [`MacSnapshot`] they forward by, without locks.
//!
//! The table belongs to the data plane, below the actors, because the sleeve's hot path forwards
//! by its [`Location`] and [`MacSnapshot`]; the `MacLearner` actor (`crate::actors::mac_learner`)
//! is its shell.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::topology::{PeerName, Topology};
pub use crate::wire::{MacAddr, MacAddrError};

/// An entry not seen for longer than this is forgotten (Weave Net: `macMaxAge`, 10 min). It must
/// exceed the pods' ARP cache expiry, or a quiet peer's MAC would vanish while its neighbours
/// still hold its IP → MAC binding and keep sending it unicast frames, which would then flood.
pub const MAX_AGE: Duration = Duration::from_secs(10 * 60);
/// Period of the expiry sweep the actor runs (Weave Net: once a minute).
pub const EXPIRY_INTERVAL: Duration = Duration::from_secs(60);
/// An entry's `last_seen` is moved forward at most this often (Weave Net: once a minute), so a
/// busy flow costs a read, not a write of the age index, per frame. An entry may therefore expire
/// up to this much earlier than `MAX_AGE` after its very last frame.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(60);
/// Most entries the table holds (Weft's bound; Weave Net's cache was unbounded). A flood of
/// forged source MACs from one pod or peer then costs at most a few MiB (roughly 100 bytes an
/// entry across the table, its age index and the snapshot), and evicts the oldest entries.
pub const MAX_ENTRIES: usize = 64 * 1024;

/// Where frames to a MAC go: onto our own bridge, or across the overlay to a peer.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Location {
    Local,
    Remote(PeerName),
}

/// Names and nicknames for log lines: which peer we are, and what each peer calls itself.
pub trait PeerNames {
    fn local_name(&self) -> PeerName;
    /// `None` for a peer whose record has not arrived (or was already removed).
    fn nickname(&self, peer: PeerName) -> Option<&str>;
}

impl PeerNames for Topology {
    fn local_name(&self) -> PeerName {
        Topology::local_name(self)
    }

    fn nickname(&self, peer: PeerName) -> Option<&str> {
        self.peer(peer).map(|record| record.nickname.as_str())
    }
}

/// A change to the table, for the log and for the overlays (whose FDB entries and cached flows
/// follow the table).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MacEvent {
    /// A MAC we had no entry for.
    Discovered { mac: MacAddr, at: Location },
    /// A known MAC now sources frames somewhere else. Whatever was set up for `from` (an FDB
    /// entry, a cached flow to the old peer) is now wrong and must be invalidated.
    Moved {
        mac: MacAddr,
        from: Location,
        to: Location,
    },
    /// We captured a frame from our own bridge whose source MAC lives at a remote peer. As in
    /// Weave Net the entry stays as it is and the frame is dropped: most likely it is a frame we
    /// injected coming back, and re-learning it as local would black-hole the real owner.
    /// Returned for every such sighting (the hot path cannot tell them apart), so the caller
    /// should rate-limit its log line.
    Conflict { mac: MacAddr, at: PeerName },
    /// Not seen for longer than [`MAX_AGE`].
    Expired { mac: MacAddr, at: Location },
    /// Its peer was removed from the topology.
    Forgotten { mac: MacAddr, at: PeerName },
    /// Pushed out by a newer MAC when the table was full.
    Evicted { mac: MacAddr, at: Location },
}

impl MacEvent {
    pub fn mac(&self) -> MacAddr {
        match *self {
            Self::Discovered { mac, .. }
            | Self::Moved { mac, .. }
            | Self::Conflict { mac, .. }
            | Self::Expired { mac, .. }
            | Self::Forgotten { mac, .. }
            | Self::Evicted { mac, .. } => mac,
        }
    }

    /// The line to log, worded as Weave Net did for the events it had:
    /// `Discovered remote MAC 0a:58:0a:20:00:02 at 7e:2c:..(node-b) (was at 5a:11:..(node-a))`.
    pub fn log_line(&self, names: &impl PeerNames) -> String {
        let peer = |name: PeerName| match names.nickname(name) {
            Some(nick) => format!("{name}({nick})"),
            None => name.to_string(),
        };
        let place = |at: Location| match at {
            Location::Local => peer(names.local_name()),
            Location::Remote(name) => peer(name),
        };
        let discovered = |mac: MacAddr, at: Location| match at {
            Location::Local => format!("Discovered local MAC {mac}"),
            Location::Remote(name) => format!("Discovered remote MAC {mac} at {}", peer(name)),
        };
        match *self {
            Self::Discovered { mac, at } => discovered(mac, at),
            Self::Moved { mac, from, to } => {
                format!("{} (was at {})", discovered(mac, to), place(from))
            }
            Self::Conflict { mac, at } => format!(
                "Captured frame from MAC ({mac}) associated with another peer {}",
                peer(at)
            ),
            Self::Expired { mac, at } => format!("Expired MAC {mac} at {}", place(at)),
            Self::Forgotten { mac, at } => {
                format!("Forgot MAC {mac} at {}: peer removed", peer(at))
            }
            Self::Evicted { mac, at } => {
                format!("Evicted MAC {mac} at {}: MAC table full", place(at))
            }
        }
    }
}

/// One row of the table, as `/report` shows it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct MacEntry {
    pub mac: MacAddr,
    pub location: Location,
    pub last_seen: Instant,
}

/// An immutable MAC → location map, shared by `Arc` with the hot paths, which read it without
/// locks and swap in a new one when the actor publishes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MacSnapshot {
    generation: u64,
    locations: HashMap<MacAddr, Location>,
}

impl MacSnapshot {
    pub fn lookup(&self, mac: MacAddr) -> Option<Location> {
        self.locations.get(&mac).copied()
    }

    /// The table generation this snapshot was taken at: equal generations, equal contents.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn len(&self) -> usize {
        self.locations.len()
    }

    pub fn is_empty(&self) -> bool {
        self.locations.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (MacAddr, Location)> + '_ {
        self.locations.iter().map(|(&mac, &at)| (mac, at))
    }
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    location: Location,
    last_seen: Instant,
}

/// The MAC → location table, with ageing, a size bound and cached snapshots.
#[derive(Debug)]
pub struct MacTable {
    slots: HashMap<MacAddr, Slot>,
    /// Every entry keyed by `(last_seen, mac)`, oldest first, so that expiry and eviction take
    /// the oldest entries without scanning the table (a MAC flood evicts on every frame).
    by_age: BTreeSet<(Instant, MacAddr)>,
    limit: usize,
    evicted: u64,
    /// Bumped on every change of some MAC's location; `last_seen` refreshes do not count, as the
    /// snapshot does not carry them.
    generation: u64,
    snapshot: Arc<MacSnapshot>,
}

impl Default for MacTable {
    fn default() -> Self {
        Self::new()
    }
}

impl MacTable {
    /// An empty table bounded at [`MAX_ENTRIES`].
    pub fn new() -> Self {
        Self::with_limit(MAX_ENTRIES)
    }

    /// An empty table holding at most `limit` entries (at least one: a table that can hold nothing
    /// could not forward anything but floods).
    pub fn with_limit(limit: usize) -> Self {
        Self {
            slots: HashMap::new(),
            by_age: BTreeSet::new(),
            limit: limit.max(1),
            evicted: 0,
            generation: 0,
            snapshot: Arc::default(),
        }
    }

    /// A frame with source `mac` was seen at `location` (captured from our bridge: `Local`;
    /// received from the overlay: `Remote(source peer)`).
    pub fn observe(&mut self, mac: MacAddr, location: Location, now: Instant) -> Vec<MacEvent> {
        if !mac.is_learnable() {
            return Vec::new();
        }
        let Some(slot) = self.slots.get_mut(&mac) else {
            return self.insert(mac, location, now);
        };
        if slot.location == location {
            if now.saturating_duration_since(slot.last_seen) >= REFRESH_INTERVAL {
                touch(&mut self.by_age, mac, slot, now);
            }
            return Vec::new();
        }
        match (slot.location, location) {
            (Location::Remote(at), Location::Local) => vec![MacEvent::Conflict { mac, at }],
            // A frame from the overlay is authenticated as coming from its source peer, so it
            // wins over whatever we knew (Weave Net: `AddForced`).
            (from, to) => {
                slot.location = to;
                touch(&mut self.by_age, mac, slot, now);
                self.generation += 1;
                vec![MacEvent::Moved { mac, from, to }]
            }
        }
    }

    /// [`Self::observe`] for each sighting in order, as a hot path reports them.
    pub fn observe_batch(
        &mut self,
        sightings: &[(MacAddr, Location)],
        now: Instant,
    ) -> Vec<MacEvent> {
        sightings
            .iter()
            .flat_map(|&(mac, location)| self.observe(mac, location, now))
            .collect()
    }

    pub fn lookup(&self, mac: MacAddr) -> Option<Location> {
        self.slots.get(&mac).map(|slot| slot.location)
    }

    /// Drops every entry not seen for longer than [`MAX_AGE`], oldest first.
    pub fn expire(&mut self, now: Instant) -> Vec<MacEvent> {
        let mut events = Vec::new();
        while let Some(&(seen, mac)) = self.by_age.first() {
            if now.saturating_duration_since(seen) <= MAX_AGE {
                break;
            }
            self.by_age.pop_first();
            if let Some(slot) = self.slots.remove(&mac) {
                events.push(MacEvent::Expired {
                    mac,
                    at: slot.location,
                });
            }
        }
        if !events.is_empty() {
            self.generation += 1;
        }
        events
    }

    /// Drops every MAC at `peer`, which has left the topology: frames to them would only be
    /// routed to nowhere until they expired.
    pub fn forget_peer(&mut self, peer: PeerName) -> Vec<MacEvent> {
        let mut gone: Vec<(MacAddr, Instant)> = self
            .slots
            .iter()
            .filter(|(_, slot)| slot.location == Location::Remote(peer))
            .map(|(&mac, slot)| (mac, slot.last_seen))
            .collect();
        gone.sort_unstable();
        for &(mac, seen) in &gone {
            self.slots.remove(&mac);
            self.by_age.remove(&(seen, mac));
        }
        if !gone.is_empty() {
            self.generation += 1;
        }
        gone.into_iter()
            .map(|(mac, _)| MacEvent::Forgotten { mac, at: peer })
            .collect()
    }

    /// Drops every MAC at a peer not in `present` (the peers the topology holds).
    pub fn forget_departed(&mut self, present: &BTreeSet<PeerName>) -> Vec<MacEvent> {
        let departed: BTreeSet<PeerName> = self
            .slots
            .values()
            .filter_map(|slot| match slot.location {
                Location::Remote(peer) if !present.contains(&peer) => Some(peer),
                _ => None,
            })
            .collect();
        departed
            .into_iter()
            .flat_map(|peer| self.forget_peer(peer))
            .collect()
    }

    /// The table as an immutable map for the hot paths. Rebuilt only when a location changed
    /// since the last call; otherwise the same `Arc` again, so publishing is cheap to repeat.
    pub fn snapshot(&mut self) -> Arc<MacSnapshot> {
        if self.snapshot.generation != self.generation {
            let locations = self
                .slots
                .iter()
                .map(|(&mac, slot)| (mac, slot.location))
                .collect();
            self.snapshot = Arc::new(MacSnapshot {
                generation: self.generation,
                locations,
            });
        }
        Arc::clone(&self.snapshot)
    }

    /// Every entry, ordered by MAC, for `/report`.
    pub fn entries(&self) -> Vec<MacEntry> {
        let mut entries: Vec<MacEntry> = self
            .slots
            .iter()
            .map(|(&mac, slot)| MacEntry {
                mac,
                location: slot.location,
                last_seen: slot.last_seen,
            })
            .collect();
        entries.sort_unstable_by_key(|entry| entry.mac);
        entries
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// How many entries were pushed out by a full table since start (a metric: non-zero means a
    /// MAC flood or a cluster outgrowing [`MAX_ENTRIES`]).
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Bumped whenever some MAC's location changes; see [`MacSnapshot::generation`].
    pub fn generation(&self) -> u64 {
        self.generation
    }

    fn insert(&mut self, mac: MacAddr, location: Location, now: Instant) -> Vec<MacEvent> {
        let mut events = Vec::with_capacity(2);
        while self.slots.len() >= self.limit {
            let Some((_, oldest)) = self.by_age.pop_first() else {
                break;
            };
            if let Some(slot) = self.slots.remove(&oldest) {
                self.evicted += 1;
                events.push(MacEvent::Evicted {
                    mac: oldest,
                    at: slot.location,
                });
            }
        }
        self.slots.insert(
            mac,
            Slot {
                location,
                last_seen: now,
            },
        );
        self.by_age.insert((now, mac));
        self.generation += 1;
        events.push(MacEvent::Discovered { mac, at: location });
        events
    }
}

/// Moves `slot`'s `last_seen` to `now`, keeping the age index in step. (A free function so that
/// it can run while the slot is borrowed out of the table.)
fn touch(by_age: &mut BTreeSet<(Instant, MacAddr)>, mac: MacAddr, slot: &mut Slot, now: Instant) {
    by_age.remove(&(slot.last_seen, mac));
    slot.last_seen = now;
    by_age.insert((now, mac));
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod proptests;
