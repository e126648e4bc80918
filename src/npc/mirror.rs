//! A local copy of one kind of Kubernetes object, kept from a watch's events: a re-list replaces
//! it only once the list is complete, so a half-finished list never looks like deletions (a
//! deleted pod's address leaving the sets early would open nothing, but a policy vanishing
//! would).

use std::collections::BTreeMap;

/// One step of a watch, with objects already in the npc model's types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent<T> {
    Relisting,
    Listed(String, T),
    Synced,
    Applied(String, T),
    Deleted(String),
}

#[derive(Clone, Debug)]
pub struct Mirror<T> {
    objects: BTreeMap<String, T>,
    listing: Option<BTreeMap<String, T>>,
    synced: bool,
}

impl<T> Default for Mirror<T> {
    fn default() -> Self {
        Self {
            objects: BTreeMap::new(),
            listing: None,
            synced: false,
        }
    }
}

impl<T: PartialEq> Mirror<T> {
    /// Applies `event`; answers whether the mirrored objects changed.
    pub fn apply(&mut self, event: WatchEvent<T>) -> bool {
        match event {
            WatchEvent::Relisting => {
                self.listing = Some(BTreeMap::new());
                false
            }
            WatchEvent::Listed(key, object) => match &mut self.listing {
                Some(listing) => {
                    listing.insert(key, object);
                    false
                }
                None => self.upsert(key, object),
            },
            WatchEvent::Synced => {
                let listed = self.listing.take().unwrap_or_default();
                let changed = listed != self.objects || !self.synced;
                self.objects = listed;
                self.synced = true;
                changed
            }
            WatchEvent::Applied(key, object) => self.upsert(key, object),
            WatchEvent::Deleted(key) => {
                if let Some(listing) = &mut self.listing {
                    listing.remove(&key);
                }
                self.objects.remove(&key).is_some()
            }
        }
    }

    fn upsert(&mut self, key: String, object: T) -> bool {
        if self.objects.get(&key) == Some(&object) {
            return false;
        }
        self.objects.insert(key, object);
        true
    }

    pub fn synced(&self) -> bool {
        self.synced
    }

    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.objects.values()
    }

    /// The objects with their keys.
    pub fn entries(&self) -> impl Iterator<Item = (&String, &T)> {
        self.objects.iter()
    }

    /// Whether `key` is mirrored now.
    pub fn contains(&self, key: &str) -> bool {
        self.objects.contains_key(key)
    }
}
