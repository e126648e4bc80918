//! The command-line client (`weft status`, `weave status`, ...), talking to the router's HTTP API.
//! (Placeholder: to be implemented.)

/// A CLI subcommand.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum CliCommand {
    /// Show the router's status (`weave status`), or one section of it.
    Status {
        #[arg(value_enum)]
        section: Option<StatusSection>,
    },
    /// Print the router's full report as JSON.
    Report,
    /// Add peers to connect to.
    Connect {
        /// Replace the current list of direct peers instead of adding to it.
        #[arg(long)]
        replace: bool,
        peers: Vec<String>,
    },
    /// Remove peers from the list of direct peers.
    Forget {
        #[arg(required = true)]
        peers: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusSection {
    Peers,
    Connections,
    Targets,
}
