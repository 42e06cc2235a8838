//! Process plumbing, below the application: the executor and its threads ([`Pool`]), OS
//! signals and the drain deadline ([`shutdown`]), systemd's notify protocol ([`systemd`]),
//! log output ([`logging`]), the process's own memory and disk use ([`probe`]), the
//! board's temperature, memory and load ([`health`]), the memory ceiling the kernel holds
//! the service to ([`memory`]) and the command line's blocking HTTP/1.1 client
//! ([`http1`]). `cli` and the tests run the server on a `Pool`.

pub mod health;
pub mod http1;
pub mod logging;
pub mod memory;
pub mod probe;
pub mod shutdown;
pub mod systemd;

use std::future::Future;
use std::sync::Arc;
use std::thread::JoinHandle;

use smol::Executor;

/// A smol executor run by `threads` OS threads: the calling thread (inside
/// [`Pool::block_on`]) and `threads - 1` workers that run until the pool is dropped.
pub struct Pool {
    ex: Arc<Executor<'static>>,
    stop: Option<smol::channel::Sender<()>>,
    workers: Vec<JoinHandle<()>>,
}

impl Pool {
    /// Starts the worker threads (`threads` is at least 1; the caller's thread is one).
    pub fn new(threads: usize) -> std::io::Result<Pool> {
        let ex = Arc::new(Executor::new());
        let (stop, stopped) = smol::channel::bounded::<()>(1);
        let mut workers = Vec::new();
        for i in 1..threads.max(1) {
            let (ex, stopped) = (ex.clone(), stopped.clone());
            workers.push(
                std::thread::Builder::new()
                    .name(format!("worker-{i}"))
                    .spawn(move || {
                        let _ = smol::block_on(ex.run(stopped.recv()));
                    })?,
            );
        }
        Ok(Pool {
            ex,
            stop: Some(stop),
            workers,
        })
    }

    pub fn executor(&self) -> &Arc<Executor<'static>> {
        &self.ex
    }

    /// Runs `fut` on the calling thread while it also serves the executor's tasks.
    pub fn block_on<T>(&self, fut: impl Future<Output = T>) -> T {
        smol::block_on(self.ex.run(fut))
    }
}

impl Drop for Pool {
    /// Stops the worker threads once they finish the task in hand.
    fn drop(&mut self) {
        self.stop.take();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}
