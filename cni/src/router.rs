//! [`Router`]: the plugin's side of the router's Weave Net-compatible IPAM API (`/ip/...`) and
//! readiness (`/status`, the report's IPAM state), over the CLI's blocking HTTP client. Every
//! failure comes back as a [`CniError`] with the CNI code it deserves.

use std::net::Ipv4Addr;
use std::time::Duration;

use serde::Deserialize;
use weft_client::ApiError;
use weft_client::Client;

use crate::error::CniError;
use crate::result::parse_ipv4_cidr;

/// The IPAM identity of the bridge's own address (`weave:expose`): the router allocates it
/// under this name, and so does the plugin when the bridge has none yet.
pub use weft_client::EXPOSE_IDENT;

/// The report's IPAM state when allocations are served at once.
const IPAM_READY: &str = "ready";

/// How long one exchange with the router may take, allocations included. The router answers an
/// allocation only once its IPAM can (consensus, space from a peer); past this the plugin
/// answers "try again later" (code 11) with the allocator's state, and the router drops the
/// abandoned request. Ten seconds is far above a healthy allocation (milliseconds, see
/// load-tests/cni_bench.py) and well below kubelet's 2-minute runtime request timeout.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// One router's HTTP API.
pub struct Router {
    client: Client,
}

#[derive(Deserialize)]
struct Owned {
    owned: Vec<OwnedEntry>,
}

#[derive(Deserialize)]
struct OwnedEntry {
    containerid: String,
}

impl Router {
    /// The router at `http_addr` (`host:port`).
    pub fn new(http_addr: &str) -> Self {
        Self {
            client: Client::with_timeout(http_addr, EXCHANGE_TIMEOUT),
        }
    }

    /// Allocates (or returns the existing) address of `ident`, in the default subnet or in
    /// `subnet` (`NETWORK/PREFIX`). The router answers once IPAM can (it may wait for
    /// consensus first).
    pub fn allocate(&self, ident: &str, subnet: Option<&str>) -> Result<(Ipv4Addr, u8), CniError> {
        let what = format!("an address for {ident}");
        let path = match subnet {
            None => format!("/ip/{ident}"),
            Some(subnet) => format!("/ip/{ident}/{subnet}"),
        };
        let body = match self.client.post_form(&path, &[]) {
            Ok(body) => body,
            // Timed out waiting: say what the allocator waits for, when the router can tell.
            Err(e @ ApiError::Request { .. }) => {
                let state = self.ipam_state().unwrap_or_else(|| "unknown".into());
                return Err(CniError::TryAgainLater(format!(
                    "{what}: {e}; the router's IP allocator is {state}"
                )));
            }
            Err(e) => return Err(CniError::from_router(what, e)),
        };
        parse_ipv4_cidr(&body).ok_or_else(|| CniError::RouterRefused {
            what,
            detail: format!("unexpected answer {:?}", body.trim()),
        })
    }

    /// Has the router announce, with a gratuitous ARP from the bridge, that `address` is now at
    /// `mac` (the pod's interface, wired). The router's socket stays open, so this costs one
    /// exchange on the open connection instead of the RCU grace period that closing a packet
    /// socket of our own would cost the ADD.
    pub fn announce(&self, address: Ipv4Addr, mac: &str) -> Result<(), CniError> {
        let address = address.to_string();
        self.client
            .post_form("/announce", &[("ip", &address), ("mac", mac)])
            .map(drop)
            .map_err(|e| CniError::from_router(format!("the announcement of {address}"), e))
    }

    /// The addresses the router holds for `ident` (empty when none).
    pub fn lookup(&self, ident: &str) -> Result<Vec<(Ipv4Addr, u8)>, CniError> {
        match self.client.get(&format!("/ip/{ident}")) {
            Ok(body) => Ok(body
                .split_whitespace()
                .filter_map(parse_ipv4_cidr)
                .collect()),
            Err(ApiError::Rejected { status: 404, .. }) => Ok(Vec::new()),
            Err(e) => Err(CniError::from_router(
                format!("the addresses of {ident}"),
                e,
            )),
        }
    }

    /// Frees every address of `ident`; nothing to free is fine.
    pub fn free(&self, ident: &str) -> Result<(), CniError> {
        self.client
            .delete(&format!("/ip/{ident}"))
            .map(drop)
            .map_err(|e| CniError::from_router(format!("freeing the addresses of {ident}"), e))
    }

    /// The idents holding addresses from this router.
    pub fn owned(&self) -> Result<Vec<String>, CniError> {
        let body = self
            .client
            .get("/ip")
            .map_err(|e| CniError::from_router("the list of allocations", e))?;
        let owned: Owned = serde_json::from_str(&body).map_err(|source| CniError::Decode {
            what: "the router's list of allocations",
            source,
        })?;
        Ok(owned.owned.into_iter().map(|e| e.containerid).collect())
    }

    /// The allocator's state as the report words it (`ready`, `awaiting consensus (...)`).
    fn ipam_state(&self) -> Option<String> {
        let report = self.client.get_json("/report").ok()?;
        let report: serde_json::Value = serde_json::from_str(&report).ok()?;
        report["IPAM"]["Status"].as_str().map(String::from)
    }

    /// `Ok` when the router answers and has finished starting.
    pub fn reachable(&self) -> Result<(), CniError> {
        self.client
            .get("/status")
            .map(drop)
            .map_err(|e| CniError::NotAvailable(e.to_string()))
    }

    /// `Ok` when the router is up and its IPAM serves allocations now; otherwise why not.
    pub fn ready(&self) -> Result<(), CniError> {
        let not_ready = |e: ApiError| CniError::NotAvailable(e.to_string());
        self.reachable()?;
        let report = self.client.get_json("/report").map_err(not_ready)?;
        let report: serde_json::Value =
            serde_json::from_str(&report).map_err(|source| CniError::Decode {
                what: "the router's report",
                source,
            })?;
        match report["IPAM"]["Status"].as_str() {
            Some(IPAM_READY) => Ok(()),
            Some(state) => Err(CniError::NotAvailable(format!(
                "the router's IP allocator is {state}"
            ))),
            None => Err(CniError::NotAvailable(
                "the router runs without IP address management (no --ipalloc-range)".into(),
            )),
        }
    }
}
