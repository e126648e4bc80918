//! `weft attach`, `weft detach` and the device half of `weft reset`: the subcommands that act on
//! the kernel directly (as root, in the namespace the command runs in, which must be the
//! router's), through the data plane's [`attach_pod`], [`detach_pod`] and [`reset_node`].
//! Unlike the rest of the CLI they don't talk to the router.

use std::fmt;
use std::future::Future;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::str::FromStr;

use crate::dataplane::garp::BridgeAnnouncer;
use crate::dataplane::{
    AttachRequest, DataplaneError, NetlinkLinkOps, attach_pod, detach_pod, masquerade,
    reset_node_for_port,
};

use super::error::CliError;

/// Where `ip netns add NAME` puts a namespace file, and so where a bare NAME is looked up.
const NETNS_DIR: &str = "/var/run/netns";

/// The longest IPv4 prefix length, in bits.
const MAX_PREFIX_LEN: u8 = 32;

/// An IPv4 address with its prefix length, as `--ip 10.32.0.2/12` gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Cidr {
    /// The address.
    pub address: Ipv4Addr,
    /// The prefix length in bits (0–32).
    pub prefix_len: u8,
}

impl FromStr for Ipv4Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (address, prefix_len) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?} is not ADDRESS/PREFIX (e.g. 10.32.0.2/12)"))?;
        let address = address
            .parse()
            .map_err(|_| format!("{address:?} is not an IPv4 address"))?;
        let prefix_len = prefix_len
            .parse()
            .ok()
            .filter(|len| *len <= MAX_PREFIX_LEN)
            .ok_or_else(|| format!("{prefix_len:?} is not a prefix length (0-32)"))?;
        Ok(Self {
            address,
            prefix_len,
        })
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix_len)
    }
}

/// What `weft attach` was asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachArgs {
    /// Namespace name (under /var/run/netns) or absolute path.
    pub netns: String,
    /// The pod's address.
    pub ip: Option<Ipv4Cidr>,
    /// Interface name inside the namespace.
    pub ifname: String,
    /// Default route inside the namespace via this address.
    pub gateway: Option<Ipv4Addr>,
    /// Hairpin mode on the host port.
    pub hairpin: bool,
}

/// `weft attach`: wires the namespace to the bridge and prints the host veth.
pub fn attach(args: &AttachArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let path = netns_path(&args.netns)?;
    let request = AttachRequest {
        ifname: args.ifname.clone(),
        address: args.ip.map(|cidr| (cidr.address, cidr.prefix_len)),
        gateway: args.gateway,
        hairpin: args.hairpin,
        ..AttachRequest::new(path.clone())
    };
    let wired = block_on(async {
        let ops = NetlinkLinkOps::new()?;
        let wired = attach_pod(&ops, &request).await?;
        if let (Some((address, _)), Some(mac)) = (request.address, wired.pod.mac) {
            // Best effort: without it, neighbours that cached the address's previous owner
            // learn the new MAC only when their entry goes stale.
            let announced = BridgeAnnouncer::open(ops, request.bridge.clone());
            if let Err(e) = async { announced?.announce(mac, address).await }.await {
                tracing::warn!(%e, "gratuitous ARP for the pod failed");
            }
        }
        Ok::<_, DataplaneError>(wired)
    })?;
    let verb = if wired.existing {
        "already attached"
    } else {
        "attached"
    };
    writeln!(
        out,
        "{verb} {} as {} on {} (pod interface {}, MTU {})",
        path.display(),
        wired.host.name,
        request.bridge,
        wired.pod.name,
        wired.pod.mtu
    )
    .map_err(CliError::Output)
}

/// `weft detach`: removes the namespace's veth pair; not attached is not an error.
pub fn detach(netns: &str, out: &mut dyn Write) -> Result<(), CliError> {
    let path = netns_path(netns)?;
    let removed = block_on(async {
        let ops = NetlinkLinkOps::new()?;
        detach_pod(&ops, &path).await
    })?;
    let what = if removed { "detached" } else { "not attached:" };
    writeln!(out, "{what} {}", path.display()).map_err(CliError::Output)
}

/// The device half of `weft reset`: removes the bridge, the VXLAN device of the router on
/// `mesh_port` (`vxlan-<port + 1>`), the sleeve TAPs and every pod veth, printing each device
/// removed, then the router's masquerading table.
pub fn remove_devices(mesh_port: u16, out: &mut dyn Write) -> Result<(), CliError> {
    let removed = block_on(async {
        let ops = NetlinkLinkOps::new()?;
        reset_node_for_port(&ops, mesh_port).await
    })?;
    for name in removed {
        writeln!(out, "removed {name}").map_err(CliError::Output)?;
    }
    match masquerade::remove() {
        Ok(true) => writeln!(out, "removed nftables table {}", masquerade::TABLE)
            .map_err(CliError::Output)?,
        Ok(false) => {}
        // No nft tool: the router could not have made the table either.
        Err(DataplaneError::Io { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// A bare NAME is `/var/run/netns/NAME` (as `ip netns` names it); an absolute path is taken as
/// is (e.g. `/proc/PID/ns/net`). Anything else is ambiguous, so refused.
fn netns_path(netns: &str) -> Result<PathBuf, CliError> {
    if netns.starts_with('/') {
        return Ok(PathBuf::from(netns));
    }
    if netns.is_empty() || netns.contains('/') || netns == "." || netns == ".." {
        return Err(CliError::Argument(format!(
            "--netns {netns:?}: give a namespace name (as `ip netns list` shows) or an absolute path"
        )));
    }
    Ok(PathBuf::from(NETNS_DIR).join(netns))
}

/// Runs a data-plane future on a small current-thread runtime: the netlink connection needs a
/// reactor, and one thread is plenty for a handful of requests.
fn block_on<T>(future: impl Future<Output = Result<T, DataplaneError>>) -> Result<T, CliError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?;
    Ok(runtime.block_on(future)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parses_and_rejects() {
        let cidr: Ipv4Cidr = "10.32.0.2/12".parse().expect("valid");
        assert_eq!(cidr.address, Ipv4Addr::new(10, 32, 0, 2));
        assert_eq!(cidr.prefix_len, 12);
        assert_eq!(cidr.to_string(), "10.32.0.2/12");
        for bad in ["10.32.0.2", "10.32.0/12", "10.32.0.2/33", "10.32.0.2/x"] {
            assert!(bad.parse::<Ipv4Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn netns_names_resolve_under_var_run_netns() {
        assert_eq!(
            netns_path("pod1").expect("name"),
            PathBuf::from("/var/run/netns/pod1")
        );
        assert_eq!(
            netns_path("/proc/7/ns/net").expect("path"),
            PathBuf::from("/proc/7/ns/net")
        );
        assert!(netns_path("a/b").is_err());
        assert!(netns_path("..").is_err());
        assert!(netns_path("").is_err());
    }
}
