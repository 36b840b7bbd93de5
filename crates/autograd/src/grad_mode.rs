//! Whether ops record onto the graph: on by default, off inside [`no_grad`].

use std::cell::Cell;

thread_local! {
    static ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// True when ops on this thread record what they need for backward.
pub fn is_grad_enabled() -> bool {
    ENABLED.with(Cell::get)
}

/// Runs `f` with recording off on this thread: results are plain values with no
/// graph, so inference costs what the tensor kernels cost.
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    let _guard = NoGradGuard::new();
    f()
}

/// Turns recording off until dropped (restores the previous mode, so guards nest).
#[derive(Debug)]
pub struct NoGradGuard {
    previous: bool,
}

impl NoGradGuard {
    /// Disables recording on this thread until the guard is dropped.
    pub fn new() -> Self {
        NoGradGuard {
            previous: ENABLED.with(|e| e.replace(false)),
        }
    }
}

impl Default for NoGradGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for NoGradGuard {
    fn drop(&mut self) {
        ENABLED.with(|e| e.set(self.previous));
    }
}
