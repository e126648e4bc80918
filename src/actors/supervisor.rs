//! Supervision of long-lived actors: when one stops or panics it is re-created, with backoff, and
//! everyone holding a [`SupervisedAddr`] handle reaches the new incarnation. A request to a dead
//! incarnation fails with a mailbox error at once, so callers see an error, never a hang.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use actix::{Actor, Addr};
use tracing::{error, info};

/// How often the supervisor checks that the actor is alive.
const LIVENESS_CHECK_INTERVAL: Duration = Duration::from_millis(200);
/// First delay before re-creating a dead actor; doubles per quick death up to the ceiling.
const FIRST_RESTART_DELAY: Duration = Duration::from_millis(100);
const MAX_RESTART_DELAY: Duration = Duration::from_secs(10);
/// An incarnation that lived this long resets the backoff: its death was not a crash loop.
const STABLE_LIFETIME: Duration = Duration::from_secs(30);

/// A handle to whichever incarnation of a supervised actor is current.
pub struct SupervisedAddr<A: Actor> {
    inner: Arc<Slot<A>>,
}

struct Slot<A: Actor> {
    addr: RwLock<Addr<A>>,
    generation: AtomicU64,
    restarts: AtomicU64,
}

impl<A: Actor> Clone for SupervisedAddr<A> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<A: Actor> SupervisedAddr<A> {
    /// The current incarnation's address.
    pub fn addr(&self) -> Addr<A> {
        match self.inner.addr.read() {
            Ok(addr) => addr.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Bumped on every re-creation: state registered with an older generation is gone.
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    pub fn restarts(&self) -> u64 {
        self.inner.restarts.load(Ordering::Relaxed)
    }
}

impl<A: Actor> SupervisedAddr<A> {
    /// Starts the actor with `factory` and keeps re-creating it with `factory` whenever it dies.
    /// Must be called inside an actix system.
    pub fn start<F>(name: crate::metrics::ActorKind, factory: F) -> Self
    where
        F: Fn() -> Addr<A> + 'static,
    {
        let handle = Self {
            inner: Arc::new(Slot {
                addr: RwLock::new(factory()),
                generation: AtomicU64::new(0),
                restarts: AtomicU64::new(0),
            }),
        };
        let watched = handle.clone();
        actix_rt::spawn(async move {
            let mut delay = FIRST_RESTART_DELAY;
            let mut born = Instant::now();
            loop {
                tokio::time::sleep(LIVENESS_CHECK_INTERVAL).await;
                if watched.addr().connected() {
                    continue;
                }
                if born.elapsed() >= STABLE_LIFETIME {
                    delay = FIRST_RESTART_DELAY;
                }
                error!("{name} stopped unexpectedly; restarting it in {delay:?}");
                tokio::time::sleep(delay).await;
                let addr = factory();
                match watched.inner.addr.write() {
                    Ok(mut slot) => *slot = addr,
                    Err(poisoned) => *poisoned.into_inner() = addr,
                }
                watched.inner.generation.fetch_add(1, Ordering::AcqRel);
                watched.inner.restarts.fetch_add(1, Ordering::Relaxed);
                crate::metrics::actor_restarted(name);
                info!("{name} restarted");
                born = Instant::now();
                delay = (delay * 2).min(MAX_RESTART_DELAY);
            }
        });
        handle
    }
}

/// Something that yields the current recipient of `M`: a supervised actor (whichever
/// incarnation is current) or, in tests, a fixed recipient. Depending on this instead of a
/// concrete address keeps each actor testable on its own.
pub trait RecipientSource<M>: Send + Sync
where
    M: actix::Message + Send,
    M::Result: Send,
{
    fn recipient(&self) -> actix::Recipient<M>;
}

impl<A, M> RecipientSource<M> for SupervisedAddr<A>
where
    A: Actor + actix::Handler<M>,
    A::Context: actix::dev::ToEnvelope<A, M>,
    M: actix::Message + Send + 'static,
    M::Result: Send,
{
    fn recipient(&self) -> actix::Recipient<M> {
        self.addr().recipient()
    }
}

/// A recipient that never changes.
pub struct Fixed<M: actix::Message + Send>(pub actix::Recipient<M>)
where
    M::Result: Send;

impl<M> RecipientSource<M> for Fixed<M>
where
    M: actix::Message + Send,
    M::Result: Send,
{
    fn recipient(&self) -> actix::Recipient<M> {
        self.0.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix::{Context, Handler, Message};

    struct Counter {
        count: u32,
    }
    impl Actor for Counter {
        type Context = Context<Self>;
    }

    #[derive(Message)]
    #[rtype(result = "u32")]
    struct Bump;
    impl Handler<Bump> for Counter {
        type Result = u32;
        fn handle(&mut self, _: Bump, _: &mut Context<Self>) -> u32 {
            self.count += 1;
            self.count
        }
    }

    #[derive(Message)]
    #[rtype(result = "()")]
    struct Explode;
    impl Handler<Explode> for Counter {
        type Result = ();
        fn handle(&mut self, _: Explode, _: &mut Context<Self>) {
            panic!("injected fault");
        }
    }

    #[actix_rt::test]
    async fn a_panicking_actor_is_recreated_and_callers_get_an_error_not_a_hang() {
        let supervised = SupervisedAddr::start(crate::metrics::ActorKind::Gossip, || {
            Counter { count: 0 }.start()
        });
        assert_eq!(supervised.addr().send(Bump).await.unwrap(), 1);
        let dead = supervised.addr();
        // The panic ends only that actor's task; the caller sees a mailbox error.
        assert!(dead.send(Explode).await.is_err());
        assert!(dead.send(Bump).await.is_err());
        let deadline = Instant::now() + Duration::from_secs(5);
        while supervised.generation() == 0 {
            assert!(Instant::now() < deadline, "actor was not re-created");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The new incarnation starts from scratch and answers.
        assert_eq!(supervised.addr().send(Bump).await.unwrap(), 1);
        assert_eq!(supervised.restarts(), 1);
    }
}
