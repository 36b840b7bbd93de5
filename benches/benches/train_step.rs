//! One full training step — forward, label-smoothed cross-entropy, backward,
//! AdamW — of the registered `mixer_tiny` and `resmlp_tiny` (28×28×1, 10
//! classes) at batch 128. `cargo xtask bench train-step` runs it beside
//! PyTorch's timm models on the same recipe.
//! The step cuts the batch into parts side by side as `allmlp train` does
//! (`allmlp_layers::batch_parts`).
//!
//! A counting allocator measures the peak heap in use during one step (above
//! what was live before it); the figure is written to
//! `$CRITERION_HOME/train_step/peak/<case>.json` for the xtask table. It
//! counts during that one step only: its shared counters, updated by both
//! threads on every allocation, cost a timed Mixer-tiny step 4% (296.7 →
//! 285.2 ms, criterion medians).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};

use allmlp_autograd::Var;
use allmlp_autograd::ops::{Targets, cross_entropy};
use allmlp_autograd::optim::{Adam, AdamConfig, Optimizer, param_groups_weight_decay};
use allmlp_benches::{TRAIN_STEP_CASES, TrainStepCase, per_call_median};
use allmlp_layers::batch_parts::{batch_parts, forward_backward_parts};
use allmlp_layers::{Ctx, named_parameters};
use allmlp_models::{Model, ModelOptions, create_model};
use allmlp_tensor_core::Tensor;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// The system allocator; while `COUNTING`, it adds the bytes allocated
/// minus those freed to `DELTA` and keeps `DELTA`'s high-water mark.
struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static DELTA: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged; the counters are plain atomics and never affect allocation.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract of `GlobalAlloc::alloc`.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() && COUNTING.load(Ordering::Relaxed) {
            let size = layout.size() as isize;
            PEAK.fetch_max(
                DELTA.fetch_add(size, Ordering::Relaxed) + size,
                Ordering::Relaxed,
            );
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if COUNTING.load(Ordering::Relaxed) {
            DELTA.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        }
        // SAFETY: forwarded contract of `GlobalAlloc::dealloc`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

struct Setup {
    model: Box<dyn Model>,
    opt: Adam,
    images: Var,
    labels: Vec<usize>,
}

fn setup(c: &TrainStepCase) -> Setup {
    let opts = ModelOptions {
        img_size: Some(c.img),
        in_chans: Some(c.in_chans),
        num_classes: Some(c.classes),
        patch_size: Some(c.patch),
        ..ModelOptions::default()
    };
    let model = create_model(&format!("{}_tiny", c.arch), &opts).unwrap();
    let groups = param_groups_weight_decay(
        named_parameters(model.as_ref()),
        0.05,
        &["*.alpha", "*.beta", "*.ls1", "*.ls2"],
    );
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
        model,
        opt,
        images,
        labels,
    }
}

/// One step as `allmlp train` runs it: the batch cut into parts side by side
/// (`allmlp_layers::batch_parts`), then AdamW.
fn step(s: &mut Setup, seed: u64) -> f32 {
    s.opt.zero_grad();
    let (model, x, labels) = (s.model.as_ref(), s.images.value(), &s.labels);
    let n = labels.len();
    let (loss, _) = forward_backward_parts(n, batch_parts(model, n), |part, rows| {
        let xp = Var::constant(x.narrow(0, rows.start, rows.len())?);
        let logits = model.forward(&xp, &Ctx::train(seed.wrapping_add(part as u64)))?;
        let loss = cross_entropy(&logits, Targets::Classes(&labels[rows]), 0.1)?;
        Ok((loss, ()))
    })
    .unwrap();
    s.opt.step().unwrap();
    loss as f32
}

/// Peak bytes allocated during one step above what was live before it
/// (buffers from before that the step frees count against it, as they do
/// against the heap).
fn peak_step_bytes(s: &mut Setup) -> usize {
    step(s, 1); // optimizer state allocated once, outside the measurement
    DELTA.store(0, Ordering::Relaxed);
    PEAK.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::Relaxed);
    step(s, 2);
    COUNTING.store(false, Ordering::Relaxed);
    PEAK.load(Ordering::Relaxed).max(0) as usize
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
    // As the `allmlp` binary does: freed activation buffers stay in the heap.
    allmlp_tensor_core::allocator::keep_freed_memory();
    let mut g = c.benchmark_group("train_step");
    g.sample_size(10);
    for case in &TRAIN_STEP_CASES {
        let mut s = setup(case);
        let first = step(&mut s, 0);
        assert!(first.is_finite(), "{}: loss {first}", case.name());
        record_peak(&case.name(), peak_step_bytes(&mut s));
        g.throughput(Throughput::Elements(case.batch as u64));
        let mut seed = 3;
        g.bench_function(BenchmarkId::new("tensor-core", case.name()), |b| {
            // The per-call median, as the PyTorch side reports (see `per_call_median`).
            b.iter_custom(|iters| {
                per_call_median(iters, || {
                    seed += 1;
                    step(&mut s, seed)
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
