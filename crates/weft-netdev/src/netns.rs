//! Running work inside another network namespace. `setns` moves only the calling thread, and a
//! runtime's threads (or the caller's) must never move, so the work runs on a fresh thread that
//! enters the namespace first. Sockets it opens stay in that namespace after the thread ends.

use std::fs::File;
use std::io;
use std::path::Path;
use std::thread::JoinHandle;

use nix::sched::CloneFlags;

/// Starts `work` on a new thread named `thread_name` inside the namespace at `netns`. The
/// handle's result is the error of entering the namespace, or what `work` returned.
pub fn spawn_in<T, F>(
    netns: &Path,
    thread_name: &str,
    work: F,
) -> io::Result<JoinHandle<io::Result<T>>>
where
    T: Send + 'static,
    F: FnOnce() -> io::Result<T> + Send + 'static,
{
    let file = File::open(netns)?;
    std::thread::Builder::new()
        .name(thread_name.to_string())
        .spawn(move || {
            nix::sched::setns(&file, CloneFlags::CLONE_NEWNET)?;
            work()
        })
}

/// Runs `work` inside the namespace at `netns` and waits for it. A panic in `work` is raised
/// again here.
pub fn run_in<T, F>(netns: &Path, thread_name: &str, work: F) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> io::Result<T> + Send + 'static,
{
    match spawn_in(netns, thread_name, work)?.join() {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testns::TestNs;

    /// The namespace a thread is in, as the inode of its nsfs file.
    fn namespace_of(path: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).expect("namespace file").ino()
    }

    #[test]
    fn work_runs_inside_the_namespace_and_the_caller_stays_where_it_was() {
        let ns = TestNs::new("netns-run");
        let target = namespace_of(&ns.path());
        let ours = namespace_of(Path::new("/proc/thread-self/ns/net"));
        assert_ne!(ours, target);
        let inside = run_in(&ns.path(), "netns-test", || {
            Ok(namespace_of(Path::new("/proc/thread-self/ns/net")))
        })
        .expect("run in namespace");
        assert_eq!(inside, target);
        assert_eq!(namespace_of(Path::new("/proc/thread-self/ns/net")), ours);
    }

    #[test]
    fn a_missing_namespace_is_an_error_not_a_panic() {
        let error = run_in(
            Path::new("/run/netns/weft-no-such-ns"),
            "netns-test",
            || Ok(()),
        )
        .expect_err("no such namespace");
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
    }
}
