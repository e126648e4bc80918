//! What can go wrong between the command line and the router's HTTP API, worded for an operator.

use std::io;

/// A failed CLI command. The `Display` text is the whole message (the caller only prefixes
/// `weft: `), so every variant says what happened and, where it can, what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The router's API could not be reached, or refused or failed the request.
    #[error(transparent)]
    Api(#[from] weft_client::ApiError),

    /// `/report` answered with something that is not JSON.
    #[error("the router's report is not valid JSON: {0}")]
    BadReport(#[source] serde_json::Error),

    /// The command line asks for something the router cannot do (checked before calling it).
    #[error("{0}")]
    Usage(&'static str),

    /// A command-line value the CLI can't use (checked before doing anything).
    #[error("{0}")]
    Argument(String),

    /// A kernel operation (attach, detach, reset) failed; the error names the operation and
    /// the interface.
    #[error("{0}")]
    Dataplane(#[from] crate::dataplane::DataplaneError),

    /// weave-npc's nftables table could not be read or removed (reset); the error names the
    /// operation and the table.
    #[error("{0}")]
    Policy(#[from] crate::npc::nft::NpcKernelError),

    /// The small runtime the kernel subcommands run on could not be started.
    #[error("cannot start the runtime for kernel operations: {0}")]
    Runtime(#[source] io::Error),

    /// Writing to stdout failed (e.g. the reading end of a pipe went away).
    #[error("cannot write the output: {0}")]
    Output(#[source] io::Error),
}
