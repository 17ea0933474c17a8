//! The drain signal shared by the listeners (mini-redis' `Shutdown`): one [`Trigger`] fires,
//! every [`Shutdown`] clone wakes, listeners stop accepting and drain their connections.

use tokio::sync::watch;

/// Fires the shutdown; dropping it fires it too, so a lost trigger never leaves listeners
/// running unowned.
#[derive(Debug)]
pub struct Trigger(watch::Sender<bool>);

/// Waits for the shutdown; cheap to clone, one per listener.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// A new, not yet fired, shutdown signal.
pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Shutdown(rx))
}

impl Trigger {
    /// Tells every listener to stop accepting and drain.
    pub fn fire(&self) {
        self.0.send_replace(true);
    }
}

impl Shutdown {
    /// Returns once the shutdown has fired (or its trigger is gone).
    pub async fn wait(&mut self) {
        // An error means the trigger was dropped: treat it as fired.
        let _ = self.0.wait_for(|fired| *fired).await;
    }

    /// Whether the shutdown has fired already.
    pub fn is_fired(&self) -> bool {
        *self.0.borrow()
    }
}
