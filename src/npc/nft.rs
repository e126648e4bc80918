//! The kernel side of `weft npc`: the table `render` builds, written through nftables' JSON
//! interface (the `nftables` crate drives the `nft` tool) in one transaction, so the kernel goes
//! from the old ruleset to the new one with no window between.

use nftables::batch::Batch;
use nftables::helper::{self, NftablesError};
use nftables::schema::{self, NfListObject, Nftables};

use super::render::{self, table};
use super::ruleset::Ruleset;

pub use super::render::{LOG_GROUP, TABLE};

#[derive(Debug, thiserror::Error)]
pub enum NpcKernelError {
    #[error("cannot {op} nftables table inet {TABLE}{netns}: {source}", netns = netns_label(.netns))]
    Nft {
        op: &'static str,
        netns: Option<String>,
        #[source]
        source: Box<NftablesError>,
    },
}

fn netns_label(netns: &Option<String>) -> String {
    netns
        .as_ref()
        .map(|ns| format!(" in network namespace {ns}"))
        .unwrap_or_default()
}

/// What the controller needs of the kernel: narrow, so that the controller's logic is tested
/// with a recording double and this is tested against the real kernel.
pub trait PolicyKernel: Send {
    /// Replaces our table with `ruleset`, in one transaction.
    fn apply(&self, ruleset: &Ruleset) -> Result<(), NpcKernelError>;
    /// Changes our table, holding `old`, to hold `new`, in one transaction: only the elements
    /// that differ, and the chains and sets of policies whose rules changed.
    fn update(&self, old: &Ruleset, new: &Ruleset) -> Result<(), NpcKernelError>;
    /// How many rules our table holds now (`None`: no table): a flushed or deleted table is
    /// told apart from ours by this.
    fn installed_rules(&self) -> Result<Option<usize>, NpcKernelError>;
    /// Removes our table; `false` when there was none.
    fn remove(&self) -> Result<bool, NpcKernelError>;
}

/// The `nft` tool, in this network namespace or (for tests) in a named one.
#[derive(Clone, Debug, Default)]
pub struct Nft {
    pub netns: Option<String>,
}

impl Nft {
    fn run(&self, op: &'static str, payload: &str) -> Result<String, NpcKernelError> {
        let fail = |source| NpcKernelError::Nft {
            op,
            netns: self.netns.clone(),
            source: Box::new(source),
        };
        match &self.netns {
            None => helper::apply_ruleset_raw(payload, helper::DEFAULT_NFT, helper::DEFAULT_ARGS),
            Some(ns) => helper::apply_ruleset_raw(
                payload,
                Some("ip"),
                ["netns", "exec", ns.as_str(), "nft"],
            ),
        }
        .map_err(fail)
    }

    fn list(&self) -> Result<Option<Nftables<'static>>, NpcKernelError> {
        let args = ["list", "table", "inet", TABLE];
        let listed = match &self.netns {
            None => helper::get_current_ruleset_raw(helper::DEFAULT_NFT, args),
            Some(ns) => helper::get_current_ruleset_raw(
                Some("ip"),
                ["netns", "exec", ns.as_str(), "nft", "-j"]
                    .into_iter()
                    .chain(args),
            ),
        };
        match listed {
            Ok(json) => serde_json::from_str(&json)
                .map(Some)
                .map_err(|err| NpcKernelError::Nft {
                    op: "read",
                    netns: self.netns.clone(),
                    source: Box::new(NftablesError::NftInvalidJson(err)),
                }),
            // No such table: nft says so on stderr and fails.
            Err(NftablesError::NftFailed { stderr, .. }) if stderr.contains("No such file") => {
                Ok(None)
            }
            Err(source) => Err(NpcKernelError::Nft {
                op: "read",
                netns: self.netns.clone(),
                source: Box::new(source),
            }),
        }
    }
}

impl PolicyKernel for Nft {
    fn apply(&self, ruleset: &Ruleset) -> Result<(), NpcKernelError> {
        let payload =
            serde_json::to_string(&render::render(ruleset)).expect("a ruleset always serialises");
        self.run("write", &payload).map(drop)
    }

    fn update(&self, old: &Ruleset, new: &Ruleset) -> Result<(), NpcKernelError> {
        let update = render::render_update(old, new);
        if update.objects.is_empty() {
            return Ok(());
        }
        let payload = serde_json::to_string(&update).expect("an update always serialises");
        self.run("update", &payload).map(drop)
    }

    fn installed_rules(&self) -> Result<Option<usize>, NpcKernelError> {
        Ok(self.list()?.map(|listing| {
            listing
                .objects
                .iter()
                .filter(|object| {
                    matches!(object, schema::NfObject::ListObject(NfListObject::Rule(_)))
                })
                .count()
        }))
    }

    fn remove(&self) -> Result<bool, NpcKernelError> {
        if self.list()?.is_none() {
            return Ok(false);
        }
        let mut batch = Batch::new();
        batch.delete(NfListObject::Table(table()));
        let payload = serde_json::to_string(&batch.to_nftables()).expect("serialises");
        self.run("remove", &payload).map(|_| true)
    }
}
