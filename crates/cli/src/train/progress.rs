//! The per-epoch progress bar (loss, accuracy, images/s, ETA) on stderr.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress bar over one epoch's steps; hidden when stderr is not a terminal.
pub struct EpochBar {
    bar: ProgressBar,
}

impl EpochBar {
    /// A bar for `steps` steps of epoch `epoch` of `epochs`.
    pub fn new(epoch: usize, epochs: usize, steps: usize) -> EpochBar {
        let bar = ProgressBar::with_draw_target(Some(steps as u64), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template("{prefix} [{bar:28}] {pos}/{len} {msg} ETA {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(format!("epoch {epoch}/{epochs}"));
        EpochBar { bar }
    }

    /// Advances one step and shows the running loss, accuracy and throughput.
    pub fn step(&self, loss: f64, acc: f64, images_per_s: f64) {
        self.bar.set_message(format!(
            "loss {loss:.4} acc {:.2}% {images_per_s:.0} img/s",
            100.0 * acc
        ));
        self.bar.inc(1);
    }

    /// Removes the bar (the caller prints the epoch's summary line).
    pub fn finish(self) {
        self.bar.finish_and_clear();
    }
}
