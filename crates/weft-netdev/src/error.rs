//! [`DataplaneError`]: every way a data-plane kernel operation can fail, each carrying the
//! operation and the interface (or address) it was about, so a log line is actionable alone.

use std::net::Ipv4Addr;

/// A failed data-plane operation. Kernel errors are carried as text and errno rather than as
/// rtnetlink types, so that only `netlink.rs` depends on that crate.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    /// The kernel refused a request (or the netlink exchange failed).
    #[error("{op} {name}: {message}")]
    Kernel {
        /// What we were doing, e.g. "create bridge".
        op: &'static str,
        /// The interface (or address) concerned.
        name: String,
        /// The positive errno the kernel returned, when it returned one.
        errno: Option<i32>,
        /// The kernel's (or rtnetlink's) own description.
        message: String,
    },
    /// A local I/O step failed: opening a namespace file, creating a socket, entering a namespace.
    #[error("{op} {name}: {source}")]
    Io {
        /// What we were doing.
        op: &'static str,
        /// The path or interface concerned.
        name: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An interface the operation depends on does not exist.
    #[error("{op} {name}: no such interface")]
    NotFound {
        /// What we were doing.
        op: &'static str,
        /// The missing interface.
        name: String,
    },
    /// An interface with our name exists but is another kind of device: we never delete what we
    /// did not make, so the operator decides. The message says what conflicts and advises
    /// nothing destructive.
    #[error(
        "interface {name} exists but is a {found} device, not a {expected} device; \
         it was not made by us and is left as it is"
    )]
    WrongKind {
        /// The interface name.
        name: String,
        /// The kind we need.
        expected: String,
        /// The kind found ("none" for a device without a link kind, e.g. a physical NIC).
        found: String,
    },
    /// A pod's host veth name is taken by an interface that is not that pod's veth: a device
    /// left behind, or another pod's whose name hashes alike. It is never adopted or removed.
    #[error(
        "the host end of {pod} would be {name}, but an interface of that name exists that is \
         not paired with the pod's ({found} in the pod); it is left as it is"
    )]
    HostVethTaken {
        /// The host veth name.
        name: String,
        /// The pod interface it was meant for: `eth0 in /var/run/netns/x`.
        pod: String,
        /// What the pod's namespace has under that interface name.
        found: String,
    },
    /// An existing device of the right kind has a setting that can't be changed in place.
    #[error(
        "interface {name} exists with {setting} {found}, but {expected} is configured; \
         it is left as it is"
    )]
    Mismatch {
        /// The interface name.
        name: String,
        /// The setting, e.g. "VNI".
        setting: &'static str,
        /// The configured value.
        expected: String,
        /// The value found on the device.
        found: String,
    },
    /// No route to the address, so the underlay interface (and its MTU) can't be found.
    #[error("find the route to {dest}: {reason}")]
    NoRoute {
        /// The destination looked up.
        dest: Ipv4Addr,
        /// Why no usable route was found.
        reason: String,
    },
    /// The underlay MTU leaves too little room once the encapsulation overhead is taken off.
    #[error(
        "underlay interface {name} has MTU {underlay_mtu}: too small for VXLAN \
         (overhead {overhead} bytes, minimum overlay MTU {minimum}); set --mtu or WEAVE_MTU"
    )]
    MtuTooSmall {
        /// The underlay interface.
        name: String,
        /// Its MTU in bytes.
        underlay_mtu: u32,
        /// The encapsulation overhead in bytes.
        overhead: u32,
        /// The smallest overlay MTU we accept, in bytes.
        minimum: u32,
    },
    /// A request the data plane can't carry out as given (a bad name, MTU or path), caught
    /// before touching the kernel.
    #[error("{op} {name}: {reason}")]
    Invalid {
        /// What we were asked to do.
        op: &'static str,
        /// The interface, path or value concerned.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Shorthand for data-plane results.
pub type Result<T, E = DataplaneError> = std::result::Result<T, E>;
