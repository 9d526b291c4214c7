//! A hybrid logical clock: millisecond wall time plus a counter, so ids minted by one node are
//! strictly increasing even when the wall clock stalls or steps back. The caller hands in `now`.

use serde::{Deserialize, Serialize};

/// A point in hybrid logical time.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct HlcTime {
    pub ms: u64,
    pub counter: u16,
}

/// Clock state: the last time handed out.
#[derive(Clone, Debug, Default)]
pub struct Hlc {
    last: HlcTime,
}

impl Hlc {
    pub fn new() -> Self {
        Self::default()
    }

    /// Resumes after `last` (for example the newest id persisted before a restart).
    pub fn resume_after(last: HlcTime) -> Self {
        Self { last }
    }

    /// The next time, strictly after every time handed out or observed so far.
    pub fn tick(&mut self, now_ms: u64) -> HlcTime {
        let next = if now_ms > self.last.ms {
            HlcTime { ms: now_ms, counter: 0 }
        } else {
            Self::successor(self.last)
        };
        self.last = next;
        next
    }

    /// Takes note of a remote time so later ticks sort after it.
    pub fn observe(&mut self, remote: HlcTime) {
        if remote > self.last {
            self.last = remote;
        }
    }

    fn successor(time: HlcTime) -> HlcTime {
        match time.counter.checked_add(1) {
            Some(counter) => HlcTime { ms: time.ms, counter },
            None => HlcTime { ms: time.ms + 1, counter: 0 },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strictly_increasing_even_when_the_clock_steps_back() {
        let mut hlc = Hlc::new();
        let a = hlc.tick(100);
        let b = hlc.tick(100);
        let c = hlc.tick(50);
        let d = hlc.tick(101);
        assert!(a < b && b < c && c < d, "{a:?} {b:?} {c:?} {d:?}");
        hlc.observe(HlcTime { ms: 500, counter: 3 });
        assert_eq!(hlc.tick(200), HlcTime { ms: 500, counter: 4 });
    }

    #[test]
    fn counter_overflow_moves_to_the_next_millisecond() {
        let mut hlc = Hlc::resume_after(HlcTime { ms: 7, counter: u16::MAX });
        assert_eq!(hlc.tick(7), HlcTime { ms: 8, counter: 0 });
    }
}
