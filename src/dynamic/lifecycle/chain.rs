//! A multi-step operation as a chain of steps, each with its undo, run by one executor: when a
//! step fails, the steps done so far are undone in reverse order, so no operation writes its own
//! rollback and none leaves anything half-done.

use crate::BoxFuture;
use crate::dynamic::error::Result;

pub(super) trait Step<C: ?Sized>: Send {
    /// For logs: what this step does.
    fn name(&self) -> String;

    fn run<'a>(&'a mut self, cx: &'a C) -> BoxFuture<'a, Result<()>>;

    /// Takes back what `run` did. `clean` says whether every later step was undone completely;
    /// a step that records the operation for crash recovery keeps its record when it was not.
    /// Returns whether this undo was complete.
    fn undo<'a>(&'a mut self, _cx: &'a C, _clean: bool) -> BoxFuture<'a, bool> {
        Box::pin(std::future::ready(true))
    }

    /// The whole chain succeeded.
    fn finish<'a>(&'a mut self, _cx: &'a C) -> BoxFuture<'a, ()> {
        Box::pin(std::future::ready(()))
    }
}

/// The executor: steps run as they are pushed, so the caller can decide between steps (e.g. hold
/// a lock for the first few); a failure undoes everything done so far.
pub(super) struct Chain<'c, C: ?Sized> {
    cx: &'c C,
    done: Vec<Box<dyn Step<C> + 'c>>,
}

impl<'c, C: ?Sized + Sync> Chain<'c, C> {
    pub fn new(cx: &'c C) -> Self {
        Self {
            cx,
            done: Vec::new(),
        }
    }

    /// Runs `step`; on failure undoes it and every step before it, and returns the failure.
    pub async fn run(&mut self, mut step: impl Step<C> + 'c) -> Result<()> {
        match step.run(self.cx).await {
            Ok(()) => {
                self.done.push(Box::new(step));
                Ok(())
            }
            Err(e) => {
                tracing::debug!(step = %step.name(), error = %e, "step failed; undoing the steps before it");
                // The failed step cleans up after itself (it may have done part of its work).
                let clean = step.undo(self.cx, true).await;
                self.undo_all(clean).await;
                Err(e)
            }
        }
    }

    async fn undo_all(&mut self, mut clean: bool) {
        while let Some(mut step) = self.done.pop() {
            clean &= step.undo(self.cx, clean).await;
        }
    }

    /// Every step succeeded.
    pub async fn finish(mut self) {
        for step in &mut self.done {
            step.finish(self.cx).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::dynamic::error::Error;

    #[derive(Default)]
    struct Log(Mutex<Vec<String>>);

    struct S {
        name: &'static str,
        fail: bool,
        undo_ok: bool,
    }

    impl Step<Log> for S {
        fn name(&self) -> String {
            self.name.into()
        }
        fn run<'a>(&'a mut self, cx: &'a Log) -> BoxFuture<'a, Result<()>> {
            cx.0.lock().unwrap().push(format!("run {}", self.name));
            let fail = self.fail;
            Box::pin(async move {
                if fail {
                    Err(Error::Internal("boom".into()))
                } else {
                    Ok(())
                }
            })
        }
        fn undo<'a>(&'a mut self, cx: &'a Log, clean: bool) -> BoxFuture<'a, bool> {
            cx.0.lock()
                .unwrap()
                .push(format!("undo {} clean={clean}", self.name));
            Box::pin(std::future::ready(self.undo_ok))
        }
        fn finish<'a>(&'a mut self, cx: &'a Log) -> BoxFuture<'a, ()> {
            cx.0.lock().unwrap().push(format!("finish {}", self.name));
            Box::pin(std::future::ready(()))
        }
    }

    fn step(name: &'static str, fail: bool, undo_ok: bool) -> S {
        S {
            name,
            fail,
            undo_ok,
        }
    }

    #[tokio::test]
    async fn a_failure_undoes_everything_before_it_in_reverse() {
        let log = Log::default();
        let mut chain = Chain::new(&log);
        chain.run(step("a", false, true)).await.unwrap();
        chain.run(step("b", false, false)).await.unwrap();
        chain.run(step("c", false, true)).await.unwrap();
        assert!(chain.run(step("d", true, true)).await.is_err());
        assert_eq!(
            *log.0.lock().unwrap(),
            [
                "run a",
                "run b",
                "run c",
                "run d",
                "undo d clean=true",
                "undo c clean=true",
                "undo b clean=true",
                // b's undo was incomplete: a learns that not everything is gone.
                "undo a clean=false",
            ]
        );
    }

    #[tokio::test]
    async fn success_finishes_every_step_and_undoes_none() {
        let log = Log::default();
        let mut chain = Chain::new(&log);
        chain.run(step("a", false, true)).await.unwrap();
        chain.run(step("b", false, true)).await.unwrap();
        chain.finish().await;
        assert_eq!(
            *log.0.lock().unwrap(),
            ["run a", "run b", "finish a", "finish b"]
        );
    }
}
