//! Throwaway network namespaces for tests against the real kernel: [`TestNs`] makes a uniquely
//! named namespace, runs async test code inside it, and removes it on drop, even after a failed
//! assertion. Test-only, so it may panic: a failed setup is a failed test.

use std::future::Future;
use std::path::PathBuf;
use std::process::Command;

/// Where `ip netns add` puts its namespace files.
const NETNS_DIR: &str = "/var/run/netns";

/// Why a test can't start when `ip` is missing: say what to install, not just ENOENT.
const NEED_IP: &str = "run `ip` (install iproute2: apt-get install iproute2)";

/// A named network namespace (`weft-nl-<tag>-<pid>`), deleted when dropped.
pub struct TestNs {
    name: String,
}

impl TestNs {
    /// Creates the namespace. `tag` must be unique among the tests running in this process.
    pub fn new(tag: &str) -> Self {
        let name = format!("weft-nl-{tag}-{}", std::process::id());
        // A namespace left over from a killed run of the same pid would make `add` fail.
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .expect(NEED_IP);
        assert!(
            out.status.success(),
            "ip netns add {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { name }
    }

    /// The namespace name, for `ip -n`, `bridge -n` and `ip link ... netns`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace file, as the data plane takes it.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(NETNS_DIR).join(&self.name)
    }

    /// Runs `test` on a fresh thread that has entered the namespace, in its own current-thread
    /// tokio runtime, so every socket it opens lives in the namespace. A panic inside is
    /// re-raised here, after which the guard still removes the namespace.
    pub fn run<F, Fut>(&self, test: F) -> Fut::Output
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future,
        Fut::Output: Send + 'static,
    {
        crate::netns::run_in(&self.path(), "test-netns", move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            Ok(runtime.block_on(test()))
        })
        .expect("enter the test namespace")
    }

    /// Runs `ip -n <ns> ARGS` and returns its stdout, panicking when it fails.
    pub fn ip(&self, args: &[&str]) -> String {
        let out = Command::new("ip")
            .arg("-n")
            .arg(&self.name)
            .args(args)
            .output()
            .expect(NEED_IP);
        assert!(
            out.status.success(),
            "ip -n {} {args:?}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        // Deleting the namespace deletes every device in it (veth peers elsewhere go too).
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}
