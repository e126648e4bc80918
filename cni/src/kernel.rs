//! [`Kernel`]: the plugin's kernel operations (wire, unwire, read back a pod's wiring, the
//! bridge's address) over the data plane's rtnetlink implementation, each run to completion on a
//! small current-thread runtime built only when a command needs the kernel (start-up stays
//! cheap for VERSION, STATUS and a DEL without a namespace).

use std::future::Future;
use std::net::Ipv4Addr;
use std::path::Path;

use tokio::runtime::Runtime;
use weft_netdev::DataplaneError;
use weft_netdev::attach::{AttachRequest, Attachment, attach_pod, detach_pod_interface};
use weft_netdev::link::{Ipv4Route, Link, LinkOps};
use weft_netdev::netlink::NetlinkLinkOps;

use crate::error::CniError;

/// What CHECK reads back of a pod's wiring.
#[derive(Debug)]
pub struct PodView {
    /// The pod's interface, if there is one by that name.
    pub pod: Option<Link>,
    /// Its IPv4 addresses.
    pub addresses: Vec<(Ipv4Addr, u8)>,
    /// The pod namespace's main-table IPv4 routes.
    pub routes: Vec<Ipv4Route>,
    /// The host veth, if there is one by that name.
    pub host: Option<Link>,
    /// The bridge, if it exists.
    pub bridge: Option<Link>,
}

/// rtnetlink in the plugin's own (the node's) namespace.
pub struct Kernel {
    runtime: Runtime,
    ops: NetlinkLinkOps,
}

impl Kernel {
    /// Opens the runtime and the netlink connection.
    pub fn new() -> Result<Self, CniError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(CniError::Runtime)?;
        // The connection task is spawned on this runtime; it runs whenever we block_on.
        let ops = runtime
            .block_on(async { NetlinkLinkOps::new() })
            .map_err(CniError::dataplane("open netlink"))?;
        Ok(Self { runtime, ops })
    }

    fn run<T>(
        &self,
        op: &'static str,
        future: impl Future<Output = Result<T, DataplaneError>>,
    ) -> Result<T, CniError> {
        self.runtime
            .block_on(future)
            .map_err(CniError::dataplane(op))
    }

    /// The bridge, or `None` when it does not exist.
    pub fn bridge(&self, name: &str) -> Result<Option<Link>, CniError> {
        self.run("look up the bridge", self.ops.link(name))
    }

    /// The bridge's IPv4 addresses.
    pub fn addresses(&self, name: &str) -> Result<Vec<(Ipv4Addr, u8)>, CniError> {
        self.run("read the bridge's addresses", self.ops.ipv4_addresses(name))
    }

    /// Gives the bridge an address (already there is fine).
    pub fn add_address(&self, name: &str, address: (Ipv4Addr, u8)) -> Result<(), CniError> {
        self.run(
            "give the bridge its address",
            self.ops.add_ipv4_address(name, address.0, address.1),
        )
    }

    /// Wires the pod (see [`attach_pod`]: idempotent, removes its veth again on failure).
    pub fn attach(&self, request: &AttachRequest) -> Result<Attachment, CniError> {
        self.run("wire the pod", attach_pod(&self.ops, request))
    }

    /// Removes the pod's interface from inside its namespace; `false` when there was none.
    pub fn detach(&self, netns: &Path, ifname: &str) -> Result<bool, CniError> {
        self.run(
            "remove the pod's interface",
            detach_pod_interface(&self.ops, netns, ifname),
        )
    }

    /// Reads back the pod's interface, addresses and routes, and the host side.
    pub fn inspect(
        &self,
        netns: &Path,
        ifname: &str,
        host_name: &str,
        bridge: &str,
    ) -> Result<PodView, CniError> {
        self.run("read the pod's wiring", async {
            let pod_ops = self.ops.in_netns(netns).await?;
            let pod = pod_ops.link(ifname).await?;
            let addresses = match &pod {
                Some(_) => pod_ops.ipv4_addresses(ifname).await?,
                None => Vec::new(),
            };
            Ok(PodView {
                pod,
                addresses,
                routes: pod_ops.ipv4_routes().await?,
                host: self.ops.link(host_name).await?,
                bridge: self.ops.link(bridge).await?,
            })
        })
    }
}
