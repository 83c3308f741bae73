//! The HTTP connection cap, without letting idle connections lock out
//! `/healthz`: when every slot is taken, the connection idle longest (no
//! request in progress: waiting for its first or next request's headers) is
//! closed to admit the new one. Only when all are busy is the new one refused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::Notify;

pub struct Connections {
    cap: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    open: HashMap<u64, Entry>,
}

struct Entry {
    /// A request is being handled.
    busy: bool,
    /// When it last became idle (or opened).
    idle_since: Instant,
    evict: Arc<Notify>,
}

/// One admitted connection; its entry goes when the last clone is dropped.
pub struct Slot {
    id: u64,
    connections: Arc<Connections>,
    evict: Arc<Notify>,
}

/// Marks a connection busy while it lives.
pub struct Busy(Arc<Slot>);

impl Connections {
    pub fn new(cap: usize) -> Arc<Connections> {
        Arc::new(Connections {
            cap: cap.max(1),
            inner: Mutex::new(Inner::default()),
        })
    }

    /// A slot for a new connection, closing the longest-idle one when the cap
    /// is reached; `None` when every connection is busy.
    pub fn admit(self: &Arc<Self>) -> Option<Arc<Slot>> {
        let mut inner = self.lock();
        if inner.open.len() >= self.cap {
            let victim = inner
                .open
                .iter()
                .filter(|(_, e)| !e.busy)
                .min_by_key(|(_, e)| e.idle_since)
                .map(|(id, _)| *id)?;
            if let Some(e) = inner.open.remove(&victim) {
                e.evict.notify_one();
            }
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let evict = Arc::new(Notify::new());
        inner.open.insert(
            id,
            Entry {
                busy: false,
                idle_since: Instant::now(),
                evict: evict.clone(),
            },
        );
        Some(Arc::new(Slot {
            id,
            connections: self.clone(),
            evict,
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The map stays consistent even if a holder panicked.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    #[cfg(test)]
    fn open(&self) -> usize {
        self.lock().open.len()
    }
}

impl Slot {
    /// Marks the connection busy until the returned guard is dropped.
    pub fn busy(self: &Arc<Self>) -> Busy {
        self.set_busy(true);
        Busy(self.clone())
    }

    fn set_busy(&self, busy: bool) {
        let mut inner = self.connections.lock();
        if let Some(e) = inner.open.get_mut(&self.id) {
            e.busy = busy;
            if !busy {
                e.idle_since = Instant::now();
            }
        }
    }

    /// Resolves when this connection was chosen to make room.
    pub async fn evicted(&self) {
        self.evict.notified().await;
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.set_busy(false);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.connections.lock().open.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_longest_idle_makes_room_busy_ones_stay() {
        let c = Connections::new(2);
        let a = c.admit().unwrap();
        let b = c.admit().unwrap();
        let _busy_a = a.busy();
        // b is the only idle one: it goes.
        let third = c.admit().unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), b.evicted())
            .await
            .expect("b evicted");
        assert_eq!(c.open(), 2);
        let _busy_third = third.busy();
        assert!(c.admit().is_none(), "all busy: refused");
        drop(_busy_a);
        assert!(c.admit().is_some(), "a idle again: it makes room");
    }

    #[test]
    fn a_closed_connection_frees_its_slot() {
        let c = Connections::new(1);
        let a = c.admit().unwrap();
        drop(a);
        assert_eq!(c.open(), 0);
    }
}
