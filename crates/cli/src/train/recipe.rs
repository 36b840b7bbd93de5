//! The training recipe: every hyper-parameter of a run, its defaults, and its JSON form (kept
//! with the checkpoints so `--resume` continues the same run).

use serde::{Deserialize, Serialize};

/// Optimizer choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// AdamW (decoupled weight decay), betas (0.9, 0.999), eps 1e-8.
    Adamw,
    /// SGD with Nesterov momentum 0.9 (weight decay added to the gradient).
    Sgd,
    /// LAMB (timm's), betas (0.9, 0.999), eps 1e-6, gradient norm clipped at 1.
    Lamb,
    /// Muon (torch's, momentum 0.95, Nesterov, AdamW-matched update size) for every 2-D weight
    /// but the classifier's (the blocks' mixing matrices), AdamW for the rest (stem, norms,
    /// biases, classifier).
    Muon,
}

/// Learning-rate schedule after the warm-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// Cosine decay towards zero, reached one step after the last.
    Cosine,
    /// Linear decay towards zero, reached one step after the last.
    Linear,
    /// Multiply by 0.1 after each third of the run (after the warm-up).
    Step,
}

/// Every setting that determines a training run's result (given the data and thread count).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    /// Registered model name.
    pub model: String,
    /// Dataset name (`fashion-mnist`, …, `folder:PATH`).
    pub dataset: String,
    /// Epochs to train.
    pub epochs: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Optimizer.
    pub optimizer: OptimizerKind,
    /// Peak learning rate (after the warm-up).
    pub lr: f64,
    /// Weight decay (not applied to biases, norms, affine and layer-scale parameters).
    pub weight_decay: f64,
    /// Linear warm-up steps from 0 to `lr`; `None`: [`DEFAULT_WARMUP_STEPS`], at most a quarter
    /// of the run ([`Recipe::warmup`]).
    pub warmup_steps: Option<u64>,
    /// Decay after the warm-up.
    pub schedule: ScheduleKind,
    /// Label smoothing of the training loss.
    pub label_smoothing: f32,
    /// Mixup alpha (0: off). With mixup, CutMix (alpha 1.0) alternates with it half the time.
    pub mixup: f32,
    /// Stochastic-depth rate, the same in every block (as timm).
    pub drop_path: f32,
    /// Start every residual branch at zero, each block as the identity
    /// (`ModelOptions::zero_init_residual`; Mixer and ResMLP). Absent from runs saved before
    /// it existed, which were initialised without it.
    #[serde(default)]
    pub zero_init_residual: bool,
    /// Random crop padding in pixels (0: no crop).
    pub crop_padding: usize,
    /// Random horizontal flips.
    pub hflip: bool,
    /// Random-erasing probability.
    pub random_erasing: f32,
    /// Seed of initialisation, shuffling, augmentation and dropout.
    pub seed: u64,
    /// Train on only the first N training images (`None`: all).
    #[serde(default)]
    pub train_limit: Option<usize>,
    /// Evaluate on only the first N test images (`None`: all).
    #[serde(default)]
    pub test_limit: Option<usize>,
}

/// Warm-up steps of the default recipe, in runs of at least four times as many steps.
pub const DEFAULT_WARMUP_STEPS: u64 = 500;

/// Default peak learning rate for `model`, chosen on four-epoch runs of the tiny models
/// (docs/results.md): 4e-3 for ResMLP (`resmlp_tiny` 87.98% at 1e-3, 89.74% at 2e-3, 90.51% at
/// 4e-3, 90.55% at 6e-3: its affine pre-norms and layer-scale of 0.1 start it slowly), 1e-3 for
/// the RepMLP family (`repmlp_tiny` 92.14%, against 91.98% at 2e-3), 2e-3 for the rest
/// (`mixer_tiny` with AdamW and timm's initialisation 88.97% at 1e-3, 89.38% at 2e-3, 89.37% at
/// 3e-3; with its residual branches started at zero 89.99%, 90.03% at 3e-3, 90.07% at 4e-3).
/// These runs used AdamW; Muon, the isotropic nets' default since, kept them (docs/results.md).
pub fn default_lr(model: &str) -> f64 {
    if model.starts_with("resmlp") {
        4e-3
    } else if model.starts_with("repmlp") {
        1e-3
    } else {
        2e-3
    }
}

/// Epochs of the default recipe: as many as fit 15 minutes of training on this project's two
/// cores for each tiny configuration (docs/results.md).
pub const DEFAULT_EPOCHS: usize = 4;

/// Whether `model` starts its residual branches at zero by default: the MLP-Mixers.
/// `mixer_tiny`'s four-epoch recipe with AdamW ends at 89.99% with it against 89.38% without,
/// ahead at every epoch (docs/results.md, runs S and D); ResMLP keeps timm's initialisation,
/// its layer-scale of 0.1 already starts each branch small.
pub fn default_zero_init_residual(model: &str) -> bool {
    model.starts_with("mixer")
}

/// Default optimizer for `model`: Muon (with AdamW for what it does not take) for the
/// isotropic nets, MLP-Mixer and ResMLP: it takes `mixer_tiny`'s four-epoch run from 89.99% to
/// 91.59% (PyTorch with torch.optim.Muon: 90.16% → 91.35%) and `resmlp_tiny` to 92.73% in four
/// epochs, where AdamW needed five for 91.00% (docs/results.md). AdamW for the RepMLP nets,
/// whose mixing weights are mostly convolutions.
pub fn default_optimizer(model: &str) -> OptimizerKind {
    if model.starts_with("mixer") || model.starts_with("resmlp") {
        OptimizerKind::Muon
    } else {
        OptimizerKind::Adamw
    }
}

impl Recipe {
    /// The default recipe: what `allmlp train` runs with no flags (for `mixer_tiny` on
    /// Fashion-MNIST), chosen to fit 15 minutes on two cores for each tiny model:
    /// [`DEFAULT_EPOCHS`] (4), batch 64, [`default_optimizer`] (Muon + AdamW for Mixer and
    /// ResMLP, AdamW for the RepMLP nets) at [`default_lr`] (2e-3; 4e-3 for ResMLP, 1e-3 for the
    /// RepMLP nets) and weight decay 0.05, 500 warm-up steps (at most a quarter of the run,
    /// [`Recipe::warmup`]) then cosine to 0, label smoothing 0.1, horizontal flips only (random
    /// crops slow such a short run down), and for the Mixers residual branches started at zero
    /// ([`default_zero_init_residual`]). docs/results.md has
    /// what it reaches.
    pub fn default_for(model: &str, dataset: &str) -> Recipe {
        Recipe {
            model: model.to_string(),
            dataset: dataset.to_string(),
            epochs: DEFAULT_EPOCHS,
            batch_size: 64,
            optimizer: default_optimizer(model),
            lr: default_lr(model),
            weight_decay: 0.05,
            warmup_steps: None,
            schedule: ScheduleKind::Cosine,
            label_smoothing: 0.1,
            mixup: 0.0,
            drop_path: 0.0,
            zero_init_residual: default_zero_init_residual(model),
            crop_padding: 0,
            hflip: true,
            random_erasing: 0.0,
            seed: 0,
            train_limit: None,
            test_limit: None,
        }
    }

    /// Warm-up steps of a run of `total_steps`: the recipe's, or by default
    /// [`DEFAULT_WARMUP_STEPS`] but at most a quarter of the run, so that a short run (say, on
    /// the embedded 5,000-image subset) still decays. Either way at most all but the last step.
    pub fn warmup(&self, total_steps: u64) -> u64 {
        self.warmup_steps
            .unwrap_or(DEFAULT_WARMUP_STEPS.min(total_steps / 4))
            .min(total_steps.saturating_sub(1))
    }

    /// Steps per epoch for `n` training images (the last partial batch is dropped, as with
    /// timm's `drop_last=True`, so every step has `batch_size` images).
    pub fn steps_per_epoch(&self, n: usize) -> usize {
        n / self.batch_size
    }
}
