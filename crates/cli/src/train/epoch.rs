//! One epoch of training: batches from the prefetching loader, forward, loss, backward, step.
//! Each batch runs as parts side by side (`allmlp_layers::batch_parts`): two halves, one
//! per share of the threads, unless the model has BatchNorm.

use std::sync::Arc;
use std::time::{Duration, Instant};

use allmlp_autograd::Var;
use allmlp_autograd::ops::{Targets, cross_entropy};
use allmlp_autograd::optim::{Optimizer, Schedule};
use allmlp_layers::Ctx;
use allmlp_layers::batch_parts::{batch_parts, forward_backward_parts};
use allmlp_models::Model;
use allmlp_tensor_core::Tensor;

use super::progress;
use super::recipe::Recipe;
use crate::commands::{CliError, CliResult};
use crate::data::loader::derive_seed;
use crate::data::{Augment, Batch, Dataset, Loader, LoaderConfig, Mix, Normalization};

/// The `epoch` argument of [`derive_seed`] reserved for dropout/drop-path: stream `step` seeds
/// the step's [`Ctx`], so those draws depend on the step alone.
const DROPOUT_STREAMS: u64 = u64::MAX;

/// The training loader of recipe `r`: shuffled full batches, its augmentation and mixing.
fn loader_config(r: &Recipe, norm: &Normalization) -> LoaderConfig {
    LoaderConfig {
        augment: Augment {
            crop_padding: r.crop_padding,
            hflip: r.hflip,
            erase_prob: r.random_erasing,
        },
        mix: (r.mixup > 0.0).then_some(Mix {
            mixup_alpha: r.mixup,
            cutmix_alpha: 1.0,
            prob: 1.0,
            switch_prob: 0.5,
        }),
        label_smoothing: r.label_smoothing,
        drop_last: true,
        ..LoaderConfig::train(r.batch_size, norm.clone())
    }
}

/// One epoch of training.
#[allow(clippy::too_many_arguments)]
pub fn train_epoch(
    net: &dyn Model,
    opt: &mut dyn Optimizer,
    schedule: &Schedule,
    train: &Arc<Dataset>,
    norm: &Normalization,
    r: &Recipe,
    epoch: usize,
    step: &mut u64,
) -> CliResult<EpochStats> {
    let steps = r.steps_per_epoch(train.len());
    let loader = Loader::new(
        Arc::clone(train),
        loader_config(r, norm),
        r.seed,
        epoch as u64,
    )
    .map_err(|e| CliError(e.to_string()))?;
    let bar = progress::EpochBar::new(epoch, r.epochs, steps);
    let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
    let start = Instant::now();
    let mut batches = loader.take(steps);
    let mut data_wait = Duration::ZERO;
    loop {
        let waited = Instant::now();
        let Some(Batch {
            images: x,
            labels,
            targets,
        }) = batches.next()
        else {
            break;
        };
        data_wait += waited.elapsed();
        opt.set_lr(schedule.lr_at(*step))?;
        opt.zero_grad();
        let seed = derive_seed(r.seed, DROPOUT_STREAMS, *step);
        let n = labels.len();
        let (value, correct_parts) =
            forward_backward_parts(n, batch_parts(net, n), |part, rows| {
                // Part 0 draws its masks from the step's stream, so an uncut batch
                // (a model with BatchNorm) trains as it did before batches were cut.
                let seed = match part {
                    0 => seed,
                    p => derive_seed(seed, DROPOUT_STREAMS, p as u64),
                };
                let xp = Var::constant(x.narrow(0, rows.start, rows.len())?);
                let logits = net.forward(&xp, &Ctx::train(seed))?;
                // Mixed batches carry soft targets with the smoothing already applied.
                let loss = match &targets {
                    Some(t) => {
                        let tp = t.narrow(0, rows.start, rows.len())?;
                        cross_entropy(&logits, Targets::Soft(&tp), 0.0)?
                    }
                    None => {
                        let lp = &labels[rows.clone()];
                        cross_entropy(&logits, Targets::Classes(lp), r.label_smoothing)?
                    }
                };
                let correct = count_correct(&logits.value(), &labels[rows]);
                Ok((loss, correct))
            })?;
        if !value.is_finite() {
            bar.finish();
            return Err(CliError(format!(
                "the training loss became {value} at epoch {epoch}, step {} (lr {:.3e}); \
                 training stopped. {}; try a lower --lr or a longer --warmup-steps",
                *step,
                opt.lr(),
                kept_checkpoint(epoch)
            )));
        }
        opt.step()?;
        *step += 1;
        loss_sum += value * n as f64;
        for c in correct_parts {
            correct += c?;
        }
        seen += n;
        bar.step(
            loss_sum / seen as f64,
            correct as f64 / seen as f64,
            seen as f64 / start.elapsed().as_secs_f64(),
        );
    }
    bar.finish();
    let n = seen.max(1) as f64;
    let seconds = start.elapsed().as_secs_f64();
    Ok(EpochStats {
        loss: loss_sum / n,
        accuracy: correct as f64 / n,
        images_per_s: seen as f64 / seconds,
        data_wait: data_wait.as_secs_f64() / seconds,
    })
}

/// What one epoch of training measured.
pub struct EpochStats {
    /// Mean training loss.
    pub loss: f64,
    /// Training accuracy (against the un-mixed labels).
    pub accuracy: f64,
    /// Images per second of the training steps (data waits included).
    pub images_per_s: f64,
    /// Fraction of the epoch spent waiting for the loader's next batch.
    pub data_wait: f64,
}

fn count_correct(logits: &Tensor, labels: &[usize]) -> CliResult<usize> {
    let pred = logits.argmax(1, false)?;
    Ok(pred
        .data
        .iter()
        .zip(labels)
        .filter(|(p, l)| **p == **l)
        .count())
}

/// What a run stopped during `epoch` keeps on disk: the files of the epoch before, if any.
pub(super) fn kept_checkpoint(epoch: usize) -> String {
    match epoch {
        0 | 1 => "No checkpoint was written (the first epoch did not finish)".into(),
        e => format!("The last good checkpoint (end of epoch {}) is kept", e - 1),
    }
}
