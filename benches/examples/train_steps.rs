//! Runs N training steps of a tiny model and prints the loss: a fixed amount
//! of work for CPU-time comparisons on a busy machine
//! (`/usr/bin/time -f %U cargo run --release -p allmlp-benches --example train_steps -- mixer 5`).
//!
//! With `ALLMLP_GEMM_PROFILE` set it also prints where the GEMM time of the
//! steps after the first went, by shape (`allmlp_tensor_core::gemm::profile`).
//! The batch is cut into parts as `allmlp train` cuts it
//! (`allmlp_layers::batch_parts`); `ALLMLP_BATCH_PARTS=1` runs it whole.
//! `--muon` trains with `allmlp train --optimizer muon`'s optimizer (Muon for the blocks'
//! matrices, AdamW for the rest) instead of AdamW; the time of the optimizer's steps is printed.

use allmlp_autograd::Var;
use allmlp_autograd::ops::{Targets, cross_entropy};
use allmlp_autograd::optim::{
    Adam, AdamConfig, Combined, Muon, MuonConfig, MuonLrAdjust, Optimizer, ParamGroup,
    param_groups_weight_decay,
};
use allmlp_layers::batch_parts::{batch_parts, forward_backward_parts};
use allmlp_layers::{Ctx, named_parameters};
use allmlp_models::{ModelOptions, create_model};
use allmlp_tensor_core::Tensor;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `--system-malloc` keeps glibc's defaults, to measure what `keep_freed_memory` buys.
    if !args.iter().any(|a| a == "--system-malloc") {
        allmlp_tensor_core::allocator::keep_freed_memory();
    }
    let muon = args.iter().any(|a| a == "--muon");
    let args: Vec<String> = args
        .into_iter()
        .filter(|a| a != "--system-malloc" && a != "--muon")
        .collect();
    let arch = args.get(1).map_or("mixer", String::as_str);
    let steps: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    let model = create_model(&format!("{arch}_tiny"), &ModelOptions::default()).expect("model");
    let named = named_parameters(model.as_ref());
    let mut opt: Box<dyn Optimizer> = if muon {
        let (matrices, rest): (Vec<_>, Vec<_>) = named
            .into_iter()
            .partition(|(n, v)| v.shape().len() == 2 && n.starts_with("blocks."));
        let cfg = MuonConfig {
            weight_decay: 0.05,
            adjust_lr: MuonLrAdjust::MatchRmsAdamw,
            ..MuonConfig::default()
        };
        let groups = param_groups_weight_decay(rest, 0.05, &[]);
        Box::new(
            Combined::new(vec![
                (
                    "muon".into(),
                    Box::new(Muon::new(vec![ParamGroup::new(matrices)], cfg).expect("muon")),
                ),
                (
                    "adamw".into(),
                    Box::new(Adam::adamw(groups, AdamConfig::adamw()).expect("adamw")),
                ),
            ])
            .expect("combined"),
        )
    } else {
        let groups = param_groups_weight_decay(named, 0.05, &[]);
        Box::new(Adam::adamw(groups, AdamConfig::adamw()).expect("optimizer"))
    };
    let images = Var::constant(Tensor::randn(&[128, 1, 28, 28], 0.0, 1.0, 9).expect("input"));
    let labels: Vec<usize> = (0..128).map(|i| i % 10).collect();
    let profile = std::env::var_os("ALLMLP_GEMM_PROFILE").is_some();
    // As `allmlp train` does; `ALLMLP_BATCH_PARTS=1` runs the whole batch as one.
    let parts = std::env::var("ALLMLP_BATCH_PARTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| batch_parts(model.as_ref(), 128));
    let mut timed = std::time::Duration::ZERO;
    let mut optimizer = std::time::Duration::ZERO;
    for step in 0..steps {
        if profile && step == 1 {
            allmlp_tensor_core::gemm::profile::start();
        }
        let t0 = std::time::Instant::now();
        opt.zero_grad();
        let x = images.value();
        let (loss, _) = forward_backward_parts(128, parts, |i, rows| {
            let xi = Var::constant(x.narrow(0, rows.start, rows.len())?);
            let logits = model.forward(&xi, &Ctx::train(step as u64 * 2 + i as u64))?;
            let loss = cross_entropy(&logits, Targets::Classes(&labels[rows]), 0.1)?;
            Ok((loss, ()))
        })
        .expect("forward and backward");
        let t1 = std::time::Instant::now();
        opt.step().expect("step");
        if step > 0 {
            timed += t0.elapsed();
            optimizer += t1.elapsed();
        }
        println!("step {step}: loss {loss:.4}");
    }
    if steps > 1 {
        println!(
            "per step (after the first): {:.1} ms, of which the optimizer {:.1} ms",
            timed.as_secs_f64() / (steps - 1) as f64 * 1e3,
            optimizer.as_secs_f64() / (steps - 1) as f64 * 1e3
        );
    }
    if profile && steps > 1 {
        let per_step = |s: f64| s / (steps - 1) as f64 * 1e3;
        let rows = allmlp_tensor_core::gemm::profile::take();
        let gemm: f64 = rows.iter().map(|r| r.seconds).sum();
        println!(
            "per step (after the first): {:.1} ms, of which GEMM {:.1} ms; by shape, over all {} steps:",
            per_step(timed.as_secs_f64()),
            per_step(gemm),
            steps - 1
        );
        for r in rows {
            println!("{r}");
        }
    }
}
