//! The threads jq transformations run on. A run is CPU work of up to the
//! sandbox's limits (50 ms, a million steps) and needs a large stack (jaq
//! drops deep values recursively: `herald_core::transform::RUN_STACK_BYTES`),
//! so it runs neither on a tokio worker, where it would hold up every task
//! queued behind it, nor on the blocking pool, whose threads have 2 MiB.
//! An attempt hands its run here and awaits the answer; the scheduler's
//! loop never waits for one.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use herald_core::transform::RUN_STACK_BYTES;
use tokio::sync::oneshot;

type Run = Box<dyn FnOnce() + Send>;

/// Runs waiting beyond those being run; past this an attempt waits to hand
/// its run over (in its own task).
const QUEUE: usize = 1024;

pub(crate) struct Transforms {
    tx: SyncSender<Run>,
}

impl Transforms {
    /// `threads` threads, named `herald-jq-N`; they end when this is
    /// dropped and the runs queued are done.
    pub fn start(threads: usize) -> std::io::Result<Self> {
        let (tx, rx) = sync_channel::<Run>(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        for n in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("herald-jq-{n}"))
                .stack_size(RUN_STACK_BYTES)
                .spawn(move || work(&rx))?;
        }
        Ok(Self { tx })
    }

    /// `f`'s result, computed on one of the threads; `None` if the pool
    /// is gone (shutting down).
    pub async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (done, answer) = oneshot::channel();
        let run: Run = Box::new(move || {
            let _ = done.send(f());
        });
        let tx = self.tx.clone();
        // A full queue blocks the sender: wait for room off the runtime.
        let sent = match tx.try_send(run) {
            Ok(()) => true,
            Err(std::sync::mpsc::TrySendError::Full(run)) => tokio::task::spawn_blocking(move || tx.send(run).is_ok())
                .await
                .unwrap_or(false),
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => false,
        };
        if !sent {
            return None;
        }
        answer.await.ok()
    }
}

fn work(rx: &Mutex<Receiver<Run>>) {
    loop {
        let next = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        match next {
            Ok(run) => run(),
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_on_its_own_threads_with_a_large_stack() {
        let pool = Transforms::start(2).expect("threads");
        let name = pool
            .run(|| std::thread::current().name().map(str::to_owned))
            .await
            .flatten();
        assert!(name.is_some_and(|n| n.starts_with("herald-jq-")));
        // Deeper than a 2 MiB thread could go.
        let deep = pool.run(|| recurse(20_000)).await;
        assert_eq!(deep, Some(20_000));
    }

    #[inline(never)]
    fn recurse(n: u64) -> u64 {
        let pad = std::hint::black_box([0u8; 256]);
        if n == 0 { u64::from(pad[0]) } else { 1 + recurse(n - 1) }
    }
}
