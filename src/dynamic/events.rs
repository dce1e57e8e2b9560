//! Lifecycle events of dynamic containers: a bounded history plus a live broadcast, so that a
//! watcher can resume from a sequence number without gaps while the history reaches back.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use super::host::Host;
use super::model::Event;

/// Events kept for resuming watchers.
pub const HISTORY: usize = 4096;

pub struct EventLog {
    inner: Mutex<Inner>,
    live: broadcast::Sender<Event>,
    host: Arc<dyn Host>,
}

struct Inner {
    next: u64,
    history: VecDeque<Event>,
}

/// What a new watcher gets: the missed events it asked for (or a note that they are gone), and
/// the live feed from right after them.
pub struct Subscription {
    pub backlog: Vec<Event>,
    /// The requested start is older than the history: the watcher must re-list.
    pub gap: bool,
    pub live: broadcast::Receiver<Event>,
}

impl EventLog {
    pub fn new(host: Arc<dyn Host>) -> Self {
        Self {
            host,
            inner: Mutex::new(Inner {
                next: 1,
                history: VecDeque::with_capacity(256),
            }),
            live: broadcast::channel(1024).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stamps `event` with the next sequence number and the time, records and broadcasts it.
    pub fn emit(&self, mut event: Event) -> u64 {
        let mut inner = self.lock();
        event.sequence = inner.next;
        inner.next += 1;
        if event.time_unix_nanos == 0 {
            event.time_unix_nanos = self.host.now_unix_nanos();
        }
        if inner.history.len() == HISTORY {
            inner.history.pop_front();
        }
        event.oldest_sequence = inner.history.front().map_or(event.sequence, |e| e.sequence);
        inner.history.push_back(event.clone());
        // No receivers is fine: nobody is watching.
        let _ = self.live.send(event);
        inner.next - 1
    }

    /// Subscribes from sequence `since` on (inclusive; 0 = live only): a watcher resumes with its
    /// last sequence + 1. Taken under the lock so that no event falls between the backlog and the
    /// live feed.
    pub fn subscribe(&self, since: u64) -> Subscription {
        let inner = self.lock();
        let live = self.live.subscribe();
        if since == 0 {
            return Subscription {
                backlog: Vec::new(),
                gap: false,
                live,
            };
        }
        let oldest = inner.history.front().map_or(inner.next, |e| e.sequence);
        let gap = since < oldest;
        let backlog = inner
            .history
            .iter()
            .filter(|e| e.sequence >= since)
            .cloned()
            .collect();
        Subscription { backlog, gap, live }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(name: &str) -> Event {
        Event {
            name: name.into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn resumes_without_gaps_and_reports_lost_history() {
        let log = EventLog::new(Arc::new(crate::dynamic::host::FakeHost::default()));
        for i in 0..5 {
            log.emit(ev(&format!("e{i}")));
        }
        let mut sub = log.subscribe(4);
        assert!(!sub.gap);
        assert_eq!(
            sub.backlog.iter().map(|e| e.sequence).collect::<Vec<_>>(),
            [4, 5]
        );
        assert_eq!(
            log.subscribe(1).backlog.len(),
            5,
            "1 replays everything kept"
        );
        log.emit(ev("e5"));
        assert_eq!(sub.live.recv().await.unwrap().sequence, 6);
        for i in 0..HISTORY {
            log.emit(ev(&format!("x{i}")));
        }
        let sub = log.subscribe(3);
        assert!(sub.gap, "events 3.. fell out of the history");
        // 6 + HISTORY events so far; the history holds the last HISTORY of them.
        assert_eq!(sub.backlog.len(), HISTORY);
        assert_eq!(sub.backlog.first().unwrap().sequence, 7);
        assert_eq!(sub.backlog.last().unwrap().oldest_sequence, 7);
    }
}
