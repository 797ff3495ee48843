//! Graceful shutdown: one token that Ctrl-C / SIGTERM trips and every task watches.

use tokio::sync::watch;

/// Cloneable handle that reports whether shutdown was requested.
#[derive(Clone, Debug)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

/// The side that requests shutdown (cloneable: any holder may trip it).
#[derive(Clone, Debug)]
pub struct ShutdownTrigger {
    tx: std::sync::Arc<watch::Sender<bool>>,
}

/// A new trigger and its first watcher.
pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (
        ShutdownTrigger {
            tx: std::sync::Arc::new(tx),
        },
        Shutdown { rx },
    )
}

impl ShutdownTrigger {
    /// Asks every watcher to stop.
    pub fn trigger(&self) {
        let _ = self.tx.send(true);
    }

    /// Another watcher.
    pub fn subscribe(&self) -> Shutdown {
        Shutdown {
            rx: self.tx.subscribe(),
        }
    }

    /// Trips the trigger on the first SIGINT or SIGTERM (a task on the current runtime).
    pub fn trip_on_signals(&self) {
        let this = self.clone();
        tokio::spawn(async move { this.wait_for_signal().await });
    }

    async fn wait_for_signal(self) {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!("cannot watch SIGTERM: {e}");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        tracing::info!("shutdown requested");
        self.trigger();
    }
}

impl Shutdown {
    /// Whether shutdown was requested.
    pub fn is_requested(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once shutdown is requested.
    pub async fn requested(&mut self) {
        let _ = self.rx.wait_for(|stop| *stop).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn watchers_see_the_trigger() {
        let (trigger, mut a) = channel();
        let b = trigger.subscribe();
        assert!(!a.is_requested());
        trigger.trigger();
        a.requested().await;
        assert!(b.is_requested());
    }
}
