//! The commit thread: batches the index's commit requests (see "Commit semantics" in the
//! module above) and reloads the reader after each commit.

use super::*;

impl Inner {
    pub(super) fn lock_state(&self) -> Result<MutexGuard<'_, CommitState>, SearchError> {
        self.state.lock().map_err(|_| SearchError::Poisoned)
    }

    /// One tantivy commit with an optional mark, then a reader reload.
    pub(super) fn commit_now(&self, mark: Option<u64>) -> Result<(), SearchError> {
        {
            let mut writer = self.writer.write().map_err(|_| SearchError::Poisoned)?;
            let mut last_mark = self.last_mark.lock().map_err(|_| SearchError::Poisoned)?;
            let mark = mark.or(*last_mark);
            let mut prepared = writer.prepare_commit()?;
            if let Some(mark) = mark {
                prepared.set_payload(&mark.to_string());
            }
            prepared.commit()?;
            *last_mark = mark;
        }
        self.reader.reload()?;
        Ok(())
    }
}

/// The commit thread: waits for requests, commits at most every [`COMMIT_INTERVAL`] (at once
/// when a search waits), and once more on shutdown.
pub(super) fn commit_loop(inner: &Inner) {
    let mut last_commit: Option<Instant> = None;
    loop {
        let Ok(mut state) = inner.state.lock() else {
            return;
        };
        // Wait for a request not yet covered.
        while state.requested == state.visible && !state.shutdown {
            state = match inner.changed.wait(state) {
                Ok(state) => state,
                Err(_) => return,
            };
        }
        if state.requested == state.visible && state.shutdown {
            // Nothing requested, but writes may be pending: commit them before leaving.
            let mark = state.mark.take();
            drop(state);
            if let Err(error) = inner.commit_now(mark) {
                tracing::error!(%error, "search index final commit failed");
            }
            return;
        }
        // Rate-limit unless a search waits or we are stopping.
        if let Some(last) = last_commit {
            while !state.urgent && !state.shutdown {
                let due = last
                    + if inner.writes_pending.load(std::sync::atomic::Ordering::Relaxed)
                        >= COMMIT_WRITES_EARLY
                    {
                        COMMIT_INTERVAL
                    } else {
                        COMMIT_INTERVAL_QUIET
                    };
                let now = Instant::now();
                if now >= due {
                    break;
                }
                state = match inner.changed.wait_timeout(state, due - now) {
                    Ok((state, _)) => state,
                    Err(_) => return,
                };
            }
        }
        let target = state.requested;
        let mark = state.mark.take();
        state.urgent = false;
        inner.writes_pending.store(0, std::sync::atomic::Ordering::Relaxed);
        drop(state);

        let result = inner.commit_now(mark);
        last_commit = Some(Instant::now());

        let Ok(mut state) = inner.state.lock() else {
            return;
        };
        state.visible = target;
        if let Err(error) = result {
            tracing::error!(%error, "search index commit failed");
            state.failure = Some(error.to_string());
        }
        let stop = state.shutdown && state.requested == state.visible;
        drop(state);
        inner.changed.notify_all();
        if stop {
            return;
        }
    }
}
