//! The replay window of one key (one peer, one direction, one epoch): which counters were already
//! accepted, as a sliding bitmap in the style of RFC 6479 (IPsec anti-replay without bit
//! shifting). The bitmap is a ring of [`WORDS`] 64-bit words indexed by the counter itself; when
//! the newest counter moves on, only the words it passes are cleared, so sliding costs at most
//! [`WORDS`] stores whatever the jump, and checking one counter is one load.
//!
//! The newest word is partly in the future, so the window a counter may lag behind the newest
//! one is one word short of the bitmap: [`WINDOW`] = 2048 - 64 = 1984 datagrams (RFC 6479,
//! section 2; WireGuard's kernel module uses the same 2048-bit ring). Later than that it is
//! rejected as too old, whether or not it was seen: the window has forgotten.

/// Bits of the ring: 2,048, as in WireGuard's `COUNTER_BITS_TOTAL` (boringtun keeps 1,024).
pub const BITS: usize = 2048;
/// 64-bit words of the ring.
pub const WORDS: usize = BITS / 64;
/// How far behind the newest accepted counter a counter may still be accepted, in datagrams: the
/// ring less its (partly future) newest word.
pub const WINDOW: u64 = (BITS - 64) as u64;

/// What the window says of a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Never accepted, and recent enough to remember: may be accepted.
    Fresh,
    /// Already accepted.
    Replay,
    /// Too far behind the newest accepted counter for the window to know.
    TooOld { newest: u64 },
}

/// The counters accepted under one key.
#[derive(Debug, Clone)]
pub struct ReplayWindow {
    ring: [u64; WORDS],
    /// The newest accepted counter; `None` until the first.
    newest: Option<u64>,
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplayWindow {
    pub const fn new() -> Self {
        Self {
            ring: [0; WORDS],
            newest: None,
        }
    }

    /// The newest counter accepted so far.
    pub fn newest(&self) -> Option<u64> {
        self.newest
    }

    /// Whether `counter` may be accepted. Changes nothing: a datagram is checked before its tag,
    /// and only committed after it (see [`Self::commit`]).
    pub fn check(&self, counter: u64) -> Verdict {
        let Some(newest) = self.newest else {
            return Verdict::Fresh;
        };
        if counter > newest {
            return Verdict::Fresh;
        }
        if newest - counter >= WINDOW {
            return Verdict::TooOld { newest };
        }
        let (word, bit) = position(counter);
        if self.ring[word] & bit != 0 {
            Verdict::Replay
        } else {
            Verdict::Fresh
        }
    }

    /// Records `counter` as accepted, sliding the window when it is the newest: to be called only
    /// once the datagram authenticated, so that a forged counter (far in the future, say) never
    /// moves the window. Checks again and changes nothing unless the verdict is [`Verdict::Fresh`],
    /// so a counter is committed at most once whatever the caller does.
    pub fn commit(&mut self, counter: u64) -> Verdict {
        let verdict = self.check(counter);
        if verdict != Verdict::Fresh {
            return verdict;
        }
        match self.newest {
            Some(newest) if counter > newest => {
                // Clear the words between the old newest word and the new one: they hold
                // counters a whole ring older, which now fall outside the window.
                let (old_word, new_word) = (newest / 64, counter / 64);
                let passed = (new_word - old_word).min(WORDS as u64);
                for step in 1..=passed {
                    // Reduced modulo WORDS (32): fits usize.
                    self.ring[((old_word + step) % WORDS as u64) as usize] = 0;
                }
                self.newest = Some(counter);
            }
            Some(_) => {}
            None => self.newest = Some(counter),
        }
        let (word, bit) = position(counter);
        self.ring[word] |= bit;
        Verdict::Fresh
    }
}

/// The ring word and bit mask of `counter`.
fn position(counter: u64) -> (usize, u64) {
    // Reduced modulo BITS (2048): fits usize.
    let index = (counter % BITS as u64) as usize;
    (index / 64, 1 << (index % 64))
}

#[cfg(test)]
mod tests;
