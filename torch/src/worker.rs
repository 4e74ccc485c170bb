//! A second thread for K-FAC's own work: the Fisher pass, the factor statistics and, when due,
//! the damped inverses run there while the calling thread backpropagates the loss.
//!
//! Both need only the forward pass and the current weights, and neither writes what the other
//! reads, so they can run at the same time; the step waits for both. The numbers are the same
//! as in sequence (the same operations on the same tensors; the Fisher pass's random draws are
//! the only draws in flight, so libtorch's generator yields the same sequence). Baselines'
//! ACKTR runs its inverses on a queue of their own for the same reason.

use std::sync::mpsc;
use std::thread;

type Job = Box<dyn FnOnce() + Send>;

/// One long-lived thread that runs jobs in the order given.
pub struct Worker {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<thread::JoinHandle<()>>,
}

/// A job's result, to [`Pending::wait`] for.
pub struct Pending<T>(mpsc::Receiver<thread::Result<T>>);

/// Why a job has no result.
#[derive(Debug)]
pub enum WorkerError {
    /// The job panicked (its message).
    Panicked(String),
    /// The thread is gone.
    Gone,
}

impl std::fmt::Display for WorkerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Panicked(m) => write!(f, "the K-FAC worker thread panicked: {m}"),
            Self::Gone => write!(f, "the K-FAC worker thread is gone"),
        }
    }
}

impl Worker {
    /// Start the thread. Its operators run on it alone (one intra-op thread): libtorch's
    /// OpenMP setting is per thread, and a pool of its own beside the caller's would put more
    /// busy threads than cores on a small machine.
    pub fn start() -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = thread::Builder::new()
            .name("acktr-kfac".into())
            .spawn(move || {
                tch::set_num_threads(1);
                while let Ok(job) = rx.recv() {
                    job();
                }
            })?;
        Ok(Self {
            jobs: Some(tx),
            thread: Some(thread),
        })
    }

    /// Queue `f`; a panic in it comes back from [`Pending::wait`] as an error.
    pub fn spawn<T, F>(&self, f: F) -> Pending<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            let _ = tx.send(r);
        });
        if let Some(jobs) = &self.jobs {
            // A send fails only if the thread is gone; `wait` then reports it.
            let _ = jobs.send(job);
        }
        Pending(rx)
    }
}

impl<T> Pending<T> {
    /// Block until the job has run.
    pub fn wait(self) -> Result<T, WorkerError> {
        match self.0.recv() {
            Ok(Ok(t)) => Ok(t),
            Ok(Err(p)) => Err(WorkerError::Panicked(
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default(),
            )),
            Err(_) => Err(WorkerError::Gone),
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_run_in_order_and_panics_come_back_as_errors() {
        let w = Worker::start().expect("thread");
        let a = w.spawn(|| 1 + 1);
        let b = w.spawn(|| -> i32 { panic!("boom") });
        let c = w.spawn(|| tch::Tensor::from_slice(&[1.0f32, 2.0]).sum(tch::Kind::Float));
        assert_eq!(a.wait().ok(), Some(2));
        match b.wait() {
            Err(WorkerError::Panicked(m)) => assert!(m.contains("boom"), "{m}"),
            other => panic!("expected a panic report, got {:?}", other.map(|_| ())),
        }
        let s = c.wait().expect("third job runs after a panic");
        assert_eq!(f64::try_from(s).ok(), Some(3.0));
    }
}
