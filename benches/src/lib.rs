//! Shared shapes and helpers for allmlp's criterion benchmarks.
//!
//! The shapes are the products the models spend their time in; `cargo xtask
//! bench` reads criterion's results and prints one summary table.

/// GEMM shapes `(m, k, n)`: Mixer/ResMLP channel and token MLPs and square references.
pub const GEMM_SHAPES: [(usize, usize, usize); 8] = [
    (1568, 512, 2048),
    (1568, 2048, 512),
    (4096, 196, 256),
    (4096, 256, 196),
    (1024, 1024, 1024),
    (6272, 128, 512),
    (6272, 512, 128),
    (8192, 49, 64),
];

/// Linear + GELU shapes `(rows, in, out)` of the fused-epilogue benchmark:
/// Mixer-tiny's channel `fc1` at batch 128 (128·49 rows, 128 → 512) and
/// Mixer-S/16's at batch 8 (8·196 rows, 512 → 2048).
pub const EPILOGUE_SHAPES: [(usize, usize, usize); 2] = [(6272, 128, 512), (1568, 512, 2048)];

/// A 2-D convolution benchmark case (NCHW input, PyTorch semantics).
#[derive(Clone, Copy, Debug)]
pub struct ConvCase {
    /// Short name used in benchmark ids and the summary table.
    pub name: &'static str,
    /// Batch size.
    pub n: usize,
    /// Input channels.
    pub c: usize,
    /// Output channels.
    pub o: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Square kernel size.
    pub k: usize,
    /// Stride.
    pub stride: usize,
    /// Zero padding on each side.
    pub pad: usize,
    /// Groups.
    pub groups: usize,
}

impl ConvCase {
    /// Output height and width.
    pub fn out_hw(&self) -> (usize, usize) {
        (
            (self.h + 2 * self.pad - self.k) / self.stride + 1,
            (self.w + 2 * self.pad - self.k) / self.stride + 1,
        )
    }

    /// Floating-point operations of the forward pass (2 per multiply-add).
    pub fn flops(&self) -> f64 {
        let (oh, ow) = self.out_hw();
        2.0 * (self.n * self.o * oh * ow * (self.c / self.groups) * self.k * self.k) as f64
    }
}

/// Convolutions of RepMLP-Res50 (3×3, 7×7 stem, local perceptrons) and RepMLP's
/// grouped FC3 written as a grouped 1×1 convolution.
pub const CONV_CASES: [ConvCase; 7] = [
    ConvCase {
        name: "stem7x7s2",
        n: 4,
        c: 3,
        o: 64,
        h: 224,
        w: 224,
        k: 7,
        stride: 2,
        pad: 3,
        groups: 1,
    },
    ConvCase {
        name: "res3x3_64x56",
        n: 4,
        c: 64,
        o: 64,
        h: 56,
        w: 56,
        k: 3,
        stride: 1,
        pad: 1,
        groups: 1,
    },
    ConvCase {
        name: "res3x3s2_128x56",
        n: 4,
        c: 128,
        o: 128,
        h: 56,
        w: 56,
        k: 3,
        stride: 2,
        pad: 1,
        groups: 1,
    },
    ConvCase {
        name: "res3x3_256x14",
        n: 4,
        c: 256,
        o: 256,
        h: 14,
        w: 14,
        k: 3,
        stride: 1,
        pad: 1,
        groups: 1,
    },
    ConvCase {
        name: "local5x5g4_64x7",
        n: 512,
        c: 64,
        o: 64,
        h: 7,
        w: 7,
        k: 5,
        stride: 1,
        pad: 2,
        groups: 4,
    },
    ConvCase {
        name: "fc3g4_3136",
        n: 512,
        c: 3136,
        o: 3136,
        h: 1,
        w: 1,
        k: 1,
        stride: 1,
        pad: 0,
        groups: 4,
    },
    ConvCase {
        name: "fc3g4_6272",
        n: 128,
        c: 6272,
        o: 6272,
        h: 1,
        w: 1,
        k: 1,
        stride: 1,
        pad: 0,
        groups: 4,
    },
];

/// A full training step (forward, backward, AdamW) of a small all-MLP model.
#[derive(Clone, Copy, Debug)]
pub struct TrainStepCase {
    /// `mixer` or `resmlp` (token MLP with hidden `dim/2`, or one token linear with LayerScale).
    pub arch: &'static str,
    /// Images per step.
    pub batch: usize,
    /// Square image side.
    pub img: usize,
    /// Input channels.
    pub in_chans: usize,
    /// Patch side.
    pub patch: usize,
    /// Embedding dimension (channel hidden is `4·dim`).
    pub dim: usize,
    /// Number of blocks.
    pub depth: usize,
    /// Classes.
    pub classes: usize,
}

impl TrainStepCase {
    /// `mixer_tiny_b128` etc.: the id used by criterion and the summary table.
    pub fn name(&self) -> String {
        format!("{}_tiny_b{}", self.arch, self.batch)
    }

    /// Arguments describing the case to `tools/bench_torch.py`.
    pub fn torch_args(&self) -> Vec<String> {
        let mut a = vec![
            "--kind".into(),
            "train_step".into(),
            "--case".into(),
            self.name(),
        ];
        a.extend(["--arch".into(), self.arch.into()]);
        for (flag, v) in [
            ("batch", self.batch),
            ("img", self.img),
            ("in-chans", self.in_chans),
            ("patch", self.patch),
            ("dim", self.dim),
            ("depth", self.depth),
            ("classes", self.classes),
        ] {
            a.extend([format!("--{flag}"), v.to_string()]);
        }
        a
    }
}

/// The spec's 28×28 tiny models (Fashion-MNIST shape), batch 128.
pub const TRAIN_STEP_CASES: [TrainStepCase; 2] = [
    TrainStepCase {
        arch: "mixer",
        batch: 128,
        img: 28,
        in_chans: 1,
        patch: 4,
        dim: 128,
        depth: 8,
        classes: 10,
    },
    TrainStepCase {
        arch: "resmlp",
        batch: 128,
        img: 28,
        in_chans: 1,
        patch: 4,
        dim: 128,
        depth: 8,
        classes: 10,
    },
];

/// Autograd overhead cases `(name, batch)`: the same computation through
/// tensor-core directly, through autograd under `no_grad`, and recording a tape.
pub const AUTOGRAD_CASES: [(&str, usize); 1] = [("mlp_block_b128", 128)];

/// Where the PyTorch side of a [`ModelCase`] comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TorchModel {
    /// `timm.create_model(name, pretrained=False)` (same name as ours).
    Timm,
    /// The RepMLP v1 reference modules of `tools/fixtures/models_repmlp.py` (written there from
    /// the spec and the authors' code; timm has no RepMLP).
    RepMlpRef,
    /// The RepMLPNet reference modules of `tools/fixtures/models_repmlpnet.py`.
    RepMlpNetRef,
}

impl TorchModel {
    /// The `--source` value `tools/bench_torch.py` takes.
    pub fn source(self) -> &'static str {
        match self {
            TorchModel::Timm => "timm",
            TorchModel::RepMlpRef => "repmlp-ref",
            TorchModel::RepMlpNetRef => "repmlpnet-ref",
        }
    }
}

/// Eval-mode inference of a registered model (no tape; `torch.inference_mode` on the
/// PyTorch side), random input, default-initialised weights.
///
/// Batch 1 cases measure latency (median ms per call); larger batches throughput (images/s).
#[derive(Clone, Copy, Debug)]
pub struct ModelCase {
    /// Registry name (`allmlp_models::create_model`).
    pub model: &'static str,
    /// The deploy (re-parameterized) form (`allmlp_models::create_deploy_model`) instead of
    /// the training form.
    pub deploy: bool,
    /// Images per call.
    pub batch: usize,
    /// The PyTorch counterpart.
    pub torch: TorchModel,
    /// The target for ours/torch, if there is one: at least this images/s ratio
    /// (throughput cases) or at most this latency ratio (batch-1 cases).
    pub target: Option<f64>,
}

impl ModelCase {
    /// `mixer_s16_224_b8`, `repmlpnet_t224_deploy_b1`: the id used by criterion and the table.
    pub fn name(&self) -> String {
        let form = if self.deploy { "_deploy" } else { "" };
        format!("{}{form}_b{}", self.model, self.batch)
    }

    /// True for a latency case (batch 1): report ms per call, lower is better.
    pub fn is_latency(&self) -> bool {
        self.batch == 1
    }

    /// Arguments describing the case to `tools/bench_torch.py`.
    pub fn torch_args(&self) -> Vec<String> {
        let mut a: Vec<String> = ["--kind", "models", "--case"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.push(self.name());
        a.extend(["--model".into(), self.model.into()]);
        a.extend(["--source".into(), self.torch.source().into()]);
        a.extend(["--batch".into(), self.batch.to_string()]);
        if self.deploy {
            a.push("--deploy".into());
        }
        a
    }
}

/// The targets: ≥ 1.3× PyTorch's batch-8 images/s, ≤ 0.8× its batch-1 latency.
const THROUGHPUT_TARGET: Option<f64> = Some(1.3);
const LATENCY_TARGET: Option<f64> = Some(0.8);

const fn timm_case(model: &'static str, batch: usize) -> ModelCase {
    ModelCase {
        model,
        deploy: false,
        batch,
        torch: TorchModel::Timm,
        target: if batch == 1 {
            LATENCY_TARGET
        } else {
            THROUGHPUT_TARGET
        },
    }
}

const fn rep_case(model: &'static str, deploy: bool, batch: usize, torch: TorchModel) -> ModelCase {
    ModelCase {
        model,
        deploy,
        batch,
        torch,
        target: None,
    }
}

/// Full-size 224 models, batch 8 (throughput) and batch 1 (latency): the four timm models
/// with the targets, then RepMLP-Res50 (Light) and RepMLPNet-T224 in both forms
/// against the reference modules (no target).
pub const MODEL_CASES: [ModelCase; 16] = [
    timm_case("mixer_s16_224", 8),
    timm_case("mixer_s16_224", 1),
    timm_case("mixer_b16_224", 8),
    timm_case("mixer_b16_224", 1),
    timm_case("resmlp_12_224", 8),
    timm_case("resmlp_12_224", 1),
    timm_case("resmlp_24_224", 8),
    timm_case("resmlp_24_224", 1),
    rep_case("repmlp_res50_light_224", false, 8, TorchModel::RepMlpRef),
    rep_case("repmlp_res50_light_224", false, 1, TorchModel::RepMlpRef),
    rep_case("repmlp_res50_light_224", true, 8, TorchModel::RepMlpRef),
    rep_case("repmlp_res50_light_224", true, 1, TorchModel::RepMlpRef),
    rep_case("repmlpnet_t224", false, 8, TorchModel::RepMlpNetRef),
    rep_case("repmlpnet_t224", false, 1, TorchModel::RepMlpNetRef),
    rep_case("repmlpnet_t224", true, 8, TorchModel::RepMlpNetRef),
    rep_case("repmlpnet_t224", true, 1, TorchModel::RepMlpNetRef),
];

/// Times `iters` calls of `f` one by one and returns `iters` × their median,
/// for `criterion::Bencher::iter_custom`: criterion's per-iteration figure for
/// the sample is then the sample's per-call median, the statistic
/// `tools/bench_torch.py` reports for PyTorch (the median of calls timed one
/// by one). Plain `iter` gives each sample's mean instead, in which one slow
/// call (a page fault storm, the VM descheduling a thread) counts where the
/// PyTorch side's median drops it. Each call's output is dropped inside its
/// timing, as with `iter`.
pub fn per_call_median<O>(iters: u64, mut f: impl FnMut() -> O) -> std::time::Duration {
    let mut times: Vec<std::time::Duration> = (0..iters)
        .map(|_| {
            let t = std::time::Instant::now();
            drop(std::hint::black_box(f()));
            t.elapsed()
        })
        .collect();
    times.sort_unstable();
    match times.len() {
        0 => std::time::Duration::ZERO,
        n => times[n / 2] * u32::try_from(iters).unwrap_or(u32::MAX),
    }
}

#[cfg(test)]
mod per_call_median_tests {
    use super::per_call_median;
    use std::time::Duration;

    /// One slow call among five moves the median, not the mean: the sample's
    /// figure is the middle call's time, times the call count.
    #[test]
    fn a_slow_call_does_not_move_the_median() {
        let mut call = 0;
        let total = per_call_median(5, || {
            call += 1;
            std::thread::sleep(Duration::from_millis(if call == 3 { 60 } else { 2 }));
        });
        let per_call = total / 5;
        assert!(per_call >= Duration::from_millis(2), "{per_call:?}");
        assert!(
            per_call < Duration::from_millis(30),
            "{per_call:?}: the 60 ms call counted"
        );
        assert_eq!(per_call_median(0, || ()), Duration::ZERO);
    }
}
