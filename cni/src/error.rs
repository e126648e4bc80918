//! [`CniError`]: every way the plugin can fail, each mapped to the CNI spec's error code (or one
//! of ours, 100 and up) and turned into the error JSON the runtime reads on stdout.

use weft_client::ApiError;
use weft_netdev::DataplaneError;

/// Error codes of the CNI spec (SPEC.md, "Error" section) and our own (100 and up).
pub mod code {
    /// The config's `cniVersion` is not one we speak.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// Invalid necessary environment variables (`CNI_COMMAND`, `CNI_CONTAINERID`, ...).
    pub const INVALID_ENV: u32 = 4;
    /// I/O failure, e.g. reading the config from stdin.
    pub const IO: u32 = 5;
    /// The config (or a result) is not valid JSON.
    pub const DECODE: u32 = 6;
    /// The network config is JSON but fails validation.
    pub const INVALID_CONFIG: u32 = 7;
    /// Transient: the router is down, starting, or IPAM waits for consensus.
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// STATUS: the plugin can't serve ADD now.
    pub const NOT_AVAILABLE: u32 = 50;
    /// Ours: a kernel operation (veth, address, route, bridge) failed.
    pub const DATAPLANE: u32 = 100;
    /// Ours: the router refused an IPAM request.
    pub const ROUTER_REFUSED: u32 = 101;
    /// Ours: CHECK found the pod's wiring differs from what ADD made.
    pub const CHECK_FAILED: u32 = 102;
    /// Ours: the delegated IPAM plugin failed without a code of its own.
    pub const DELEGATE_FAILED: u32 = 103;
}

/// A failed plugin invocation.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error(
        "CNI version {version:?} is not supported (this plugin speaks {})",
        crate::version::SUPPORTED.join(", ")
    )]
    IncompatibleVersion { version: String },

    #[error("environment variable {var}: {reason}")]
    InvalidEnv { var: &'static str, reason: String },

    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },

    #[error("{what} is not valid JSON: {source}")]
    Decode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },

    #[error("invalid network configuration: {0}")]
    InvalidConfig(String),

    /// The router can't answer now; the runtime should retry.
    #[error("{0}")]
    TryAgainLater(String),

    #[error("the router refused {what}: {detail}")]
    RouterRefused { what: String, detail: String },

    #[error("not ready: {0}")]
    NotAvailable(String),

    #[error("{op}: {source}")]
    Dataplane {
        op: &'static str,
        #[source]
        source: DataplaneError,
    },

    #[error("CHECK failed: {0}")]
    Check(String),

    #[error("IPAM plugin {plugin}: {msg}")]
    Delegate {
        plugin: String,
        code: Option<u32>,
        msg: String,
    },

    #[error("cannot start the runtime for kernel operations: {0}")]
    Runtime(#[source] std::io::Error),

    /// A failure whose clean-up failed too: the code is the first failure's.
    #[error("{error} (and undoing it failed: {cleanup}; DEL will retry)")]
    Cleanup {
        error: Box<CniError>,
        cleanup: Box<CniError>,
    },
}

impl CniError {
    /// The CNI error code.
    pub fn code(&self) -> u32 {
        match self {
            CniError::IncompatibleVersion { .. } => code::INCOMPATIBLE_VERSION,
            CniError::InvalidEnv { .. } => code::INVALID_ENV,
            CniError::Io { .. } => code::IO,
            CniError::Decode { .. } => code::DECODE,
            CniError::InvalidConfig(_) => code::INVALID_CONFIG,
            CniError::TryAgainLater(_) => code::TRY_AGAIN_LATER,
            CniError::RouterRefused { .. } => code::ROUTER_REFUSED,
            CniError::NotAvailable(_) => code::NOT_AVAILABLE,
            CniError::Dataplane { .. } | CniError::Runtime(_) => code::DATAPLANE,
            CniError::Check(_) => code::CHECK_FAILED,
            CniError::Delegate { code, .. } => code.unwrap_or(code::DELEGATE_FAILED),
            CniError::Cleanup { error, .. } => error.code(),
        }
    }

    /// The error JSON of the spec: `cniVersion`, `code`, `msg`, and `details` when the message
    /// has a cause chain worth keeping apart.
    pub fn to_json(&self, cni_version: &str) -> serde_json::Value {
        serde_json::json!({
            "cniVersion": cni_version,
            "code": self.code(),
            "msg": self.to_string(),
        })
    }

    /// Wraps a data-plane failure with what we were doing.
    pub fn dataplane(op: &'static str) -> impl FnOnce(DataplaneError) -> CniError {
        move |source| CniError::Dataplane { op, source }
    }

    /// Maps a failed exchange with the router: no router or not ready is transient (11), a bad
    /// address is a bad environment, anything else is a refusal.
    pub fn from_router(what: impl Into<String>, error: ApiError) -> CniError {
        let what = what.into();
        match error {
            ApiError::Unreachable { .. } | ApiError::NotReady { .. } | ApiError::Request { .. } => {
                CniError::TryAgainLater(format!("{what}: {error}"))
            }
            ApiError::BadAddress { .. } => CniError::InvalidEnv {
                var: "WEAVE_HTTP_ADDR",
                reason: error.to_string(),
            },
            ApiError::Rejected { status: 503, .. } => {
                CniError::TryAgainLater(format!("{what}: {error}"))
            }
            other => CniError::RouterRefused {
                what,
                detail: other.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_the_spec_codes() {
        let env = CniError::InvalidEnv {
            var: "CNI_CONTAINERID",
            reason: "not set".into(),
        };
        assert_eq!(env.code(), 4);
        assert_eq!(CniError::InvalidConfig("x".into()).code(), 7);
        assert_eq!(CniError::TryAgainLater("x".into()).code(), 11);
        let json = env.to_json("1.0.0");
        assert_eq!(json["cniVersion"], "1.0.0");
        assert_eq!(json["code"], 4);
        assert_eq!(json["msg"], "environment variable CNI_CONTAINERID: not set");
    }

    #[test]
    fn router_failures_map_to_retry_or_refusal() {
        let down = CniError::from_router(
            "allocate",
            ApiError::NotReady {
                addr: "127.0.0.1:6784".into(),
                body: String::new(),
            },
        );
        assert_eq!(down.code(), 11);
        let refused = CniError::from_router(
            "allocate",
            ApiError::Rejected {
                status: 400,
                body: "bad subnet".into(),
            },
        );
        assert_eq!(refused.code(), 101);
        assert!(refused.to_string().contains("bad subnet"));
    }
}
