//! Job lanes: git and process work off the loop, queued instead of a thread per call (gitui's
//! shape). A lane is one thread taking boxed jobs in order from an unbounded queue; jobs with a
//! key (a task and a kind) are coalesced: while one is queued and not started, another with the
//! same key is dropped, so a burst of requests for a task runs once.

use std::collections::HashSet;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// One job lane (one thread, jobs in order).
#[derive(Clone)]
pub struct Lane {
    tx: mpsc::Sender<(Option<(usize, &'static str)>, Job)>,
    queued: Arc<Mutex<HashSet<(usize, &'static str)>>>,
}

impl Lane {
    /// Starts a lane whose thread is called `name`. Errors when the thread cannot start.
    pub fn new(name: &str) -> std::io::Result<Lane> {
        let (tx, rx) = mpsc::channel::<(Option<(usize, &'static str)>, Job)>();
        let queued: Arc<Mutex<HashSet<(usize, &'static str)>>> = Arc::default();
        let q = queued.clone();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                for (key, job) in rx {
                    if let Some(k) = key {
                        q.lock().unwrap_or_else(|e| e.into_inner()).remove(&k);
                    }
                    job();
                }
            })?;
        Ok(Lane { tx, queued })
    }

    /// Queues a job. With a key, a job already queued (not started) under the same key makes
    /// this one a no-op; returns false then, or when the lane has stopped.
    pub fn push(
        &self,
        key: Option<(usize, &'static str)>,
        job: impl FnOnce() + Send + 'static,
    ) -> bool {
        if let Some(k) = key {
            let mut q = self.queued.lock().unwrap_or_else(|e| e.into_inner());
            if !q.insert(k) {
                return false;
            }
        }
        self.tx.send((key, Box::new(job))).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn jobs_run_in_order_and_queued_duplicates_coalesce() {
        let lane = Lane::new("test-lane").unwrap();
        let (gate_tx, gate_rx) = mpsc::channel::<()>();
        // Hold the lane busy so the next jobs stay queued.
        lane.push(None, move || {
            let _ = gate_rx.recv();
        });
        let runs = Arc::new(AtomicUsize::new(0));
        let order = Arc::new(Mutex::new(Vec::new()));
        for i in 0..5 {
            let runs = runs.clone();
            let order = order.clone();
            let queued = lane.push(Some((7, "inspect")), move || {
                runs.fetch_add(1, Ordering::SeqCst);
                order.lock().unwrap().push(i);
            });
            assert_eq!(queued, i == 0, "only the first of a burst is queued");
        }
        let o = order.clone();
        lane.push(Some((8, "inspect")), move || o.lock().unwrap().push(99));
        gate_tx.send(()).unwrap();
        let (done_tx, done_rx) = mpsc::channel();
        lane.push(None, move || done_tx.send(()).unwrap());
        done_rx.recv().unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(*order.lock().unwrap(), vec![0, 99]);
        // Once it ran, the key is free again.
        assert!(lane.push(Some((7, "inspect")), || {}));
    }
}
