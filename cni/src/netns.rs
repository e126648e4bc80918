//! What `CNI_NETNS` names, read before anything is touched: a pod's network namespace, the
//! node's own (the one the plugin runs in, where ADD would give the node a pod's `eth0` and
//! default route), or no namespace any more (unmounted by the runtime, which can leave an empty
//! file at the path, or removed).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::error::CniError;

/// The plugin's own network namespace (the node's).
const OWN_NETNS: &str = "/proc/self/ns/net";

/// `NS_GET_NSTYPE` of include/uapi/linux/nsfs.h: `_IO(0xb7, 0x3)`, the type of the namespace
/// an nsfs file descriptor refers to (Linux 4.11 and later).
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

/// What a `CNI_NETNS` path refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Netns {
    /// A network namespace other than ours: a pod's.
    Pod,
    /// The namespace the plugin runs in: the node's.
    Own,
    /// No network namespace: the path is missing, or is a file that is not one (what an
    /// unmounted namespace leaves behind).
    Gone,
}

/// Which of [`Netns`] `path` is.
pub fn classify(path: &Path) -> Result<Netns, CniError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Netns::Gone),
        Err(source) => {
            return Err(CniError::Io {
                what: "open CNI_NETNS",
                source,
            });
        }
    };
    // SAFETY: an ioctl without an argument on a descriptor we own; on a file that is not an
    // nsfs one it fails (ENOTTY) and touches nothing.
    let kind = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE as _) };
    if kind != libc::CLONE_NEWNET {
        return Ok(Netns::Gone);
    }
    let io = |source| CniError::Io {
        what: "stat a network namespace",
        source,
    };
    let theirs = file.metadata().map_err(io)?;
    let ours = std::fs::metadata(OWN_NETNS).map_err(io)?;
    // A namespace is one nsfs inode, however many paths (bind mounts, /proc/PID/ns/net) name it.
    if (theirs.dev(), theirs.ino()) == (ours.dev(), ours.ino()) {
        Ok(Netns::Own)
    } else {
        Ok(Netns::Pod)
    }
}

/// ADD and CHECK need a pod's namespace: the node's own, or none, is a bad `CNI_NETNS` (code 4).
pub fn require_pod(path: &Path) -> Result<(), CniError> {
    let reason = match classify(path)? {
        Netns::Pod => return Ok(()),
        Netns::Own => format!(
            "{} is the node's own network namespace (the plugin's), not a pod's",
            path.display()
        ),
        Netns::Gone => format!("{} is not a network namespace", path.display()),
    };
    Err(CniError::InvalidEnv {
        var: "CNI_NETNS",
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_namespace_a_missing_path_and_a_plain_file_are_told_apart() {
        assert_eq!(classify(Path::new(OWN_NETNS)).unwrap(), Netns::Own);
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(classify(&dir.path().join("none")).unwrap(), Netns::Gone);
        let empty = dir.path().join("empty");
        File::create(&empty).unwrap();
        assert_eq!(classify(&empty).unwrap(), Netns::Gone);
        // Another kind of namespace is not a network namespace either.
        assert_eq!(
            classify(Path::new("/proc/self/ns/uts")).unwrap(),
            Netns::Gone
        );
        let err = require_pod(Path::new(OWN_NETNS)).unwrap_err();
        assert_eq!(err.code(), 4);
        assert!(err.to_string().contains("the node's own"), "{err}");
    }
}
