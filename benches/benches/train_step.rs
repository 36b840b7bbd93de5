//! One full training step — forward, label-smoothed cross-entropy, backward,
//! AdamW — of the spec's 28×28 tiny Mixer and ResMLP at batch 128, built from
//! autograd ops with raw parameters (the model code is shared with the
//! autograd PyTorch-parity test). `cargo xtask bench train-step` runs it beside
//! PyTorch's timm models on the same recipe.
//!
//! A counting allocator measures the peak heap in use during one step (above
//! what was live before it); the figure is written to
//! `$CRITERION_HOME/train_step/peak/<case>.json` for the xtask table.

#[path = "../../crates/autograd/tests/common/tiny_mlp.rs"]
mod tiny_mlp;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use allmlp_autograd::Var;
use allmlp_autograd::ops::{Targets, cross_entropy};
use allmlp_autograd::optim::{Adam, AdamConfig, Optimizer, param_groups_weight_decay};
use allmlp_benches::{TRAIN_STEP_CASES, TrainStepCase};
use allmlp_tensor_core::Tensor;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tiny_mlp::{Arch, TinyMlp, param_shapes};

/// The system allocator, counting bytes in use and their high-water mark.
struct Counting;

static IN_USE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged; the counters are plain atomics and never affect allocation.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract of `GlobalAlloc::alloc`.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = IN_USE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded contract of `GlobalAlloc::dealloc`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

struct Setup {
    model: TinyMlp,
    opt: Adam,
    images: Var,
    labels: Vec<usize>,
}

fn setup(c: &TrainStepCase) -> Setup {
    let arch = if c.arch == "mixer" {
        Arch::Mixer
    } else {
        Arch::ResMlp
    };
    let shapes = param_shapes(arch, c.in_chans, c.img, c.patch, c.dim, c.depth, c.classes);
    let params: BTreeMap<String, Var> = shapes
        .iter()
        .enumerate()
        .map(|(i, (name, shape))| {
            let is_scale = name.ends_with("norm1.weight")
                || name.ends_with("norm2.weight")
                || name == "norm.weight"
                || name.ends_with("alpha");
            let t = if is_scale {
                Tensor::ones(shape)
            } else {
                Tensor::randn(shape, 0.0, 0.02, i as u64)
            };
            (name.clone(), Var::parameter(t.unwrap()))
        })
        .collect();
    let named: Vec<(String, Var)> = params.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let groups = param_groups_weight_decay(named, 0.05, &["*.alpha", "*.beta", "*.ls1", "*.ls2"]);
    let opt = Adam::adamw(
        groups,
        AdamConfig {
            lr: 1e-3,
            weight_decay: 0.05,
            ..AdamConfig::adamw()
        },
    )
    .unwrap();
    let images =
        Var::constant(Tensor::randn(&[c.batch, c.in_chans, c.img, c.img], 0.0, 1.0, 99).unwrap());
    let labels = (0..c.batch).map(|i| (i * 7) % c.classes).collect();
    Setup {
        model: TinyMlp {
            arch,
            params,
            patch: c.patch,
            depth: c.depth,
        },
        opt,
        images,
        labels,
    }
}

fn step(s: &mut Setup) -> f32 {
    s.opt.zero_grad();
    let logits = s.model.forward(&s.images).unwrap();
    let loss = cross_entropy(&logits, Targets::Classes(&s.labels), 0.1).unwrap();
    loss.backward().unwrap();
    s.opt.step().unwrap();
    loss.value().item().unwrap()
}

/// Peak bytes allocated during one step above what was live before it.
fn peak_step_bytes(s: &mut Setup) -> usize {
    step(s); // optimizer state allocated once, outside the measurement
    let before = IN_USE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    step(s);
    PEAK.load(Ordering::Relaxed) - before
}

fn record_peak(case: &str, bytes: usize) {
    let home = std::env::var_os("CRITERION_HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from("target/criterion"));
    let dir = home.join("train_step").join("peak");
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(
            dir.join(format!("{case}.json")),
            format!("{{\"bytes\": {bytes}}}\n"),
        );
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("train_step");
    g.sample_size(10);
    for case in &TRAIN_STEP_CASES {
        let mut s = setup(case);
        let first = step(&mut s);
        assert!(first.is_finite(), "{}: loss {first}", case.name());
        record_peak(&case.name(), peak_step_bytes(&mut s));
        g.throughput(Throughput::Elements(case.batch as u64));
        g.bench_function(format!("tensor-core/{}", case.name()), |b| {
            b.iter(|| step(&mut s))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
