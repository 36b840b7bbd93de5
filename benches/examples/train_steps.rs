//! Runs N training steps of a tiny model and prints the loss: a fixed amount
//! of work for CPU-time comparisons on a busy machine
//! (`/usr/bin/time -f %U cargo run --release -p allmlp-benches --example train_steps -- mixer 5`).

use allmlp_autograd::Var;
use allmlp_autograd::ops::{Targets, cross_entropy};
use allmlp_autograd::optim::{Adam, AdamConfig, Optimizer, param_groups_weight_decay};
use allmlp_layers::{Ctx, named_parameters};
use allmlp_models::{ModelOptions, create_model};
use allmlp_tensor_core::Tensor;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `--system-malloc` keeps glibc's defaults, to measure what `keep_freed_memory` buys.
    if !args.iter().any(|a| a == "--system-malloc") {
        allmlp_tensor_core::allocator::keep_freed_memory();
    }
    let args: Vec<String> = args
        .into_iter()
        .filter(|a| a != "--system-malloc")
        .collect();
    let arch = args.get(1).map_or("mixer", String::as_str);
    let steps: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    let model = create_model(&format!("{arch}_tiny"), &ModelOptions::default()).expect("model");
    let groups = param_groups_weight_decay(named_parameters(model.as_ref()), 0.05, &[]);
    let mut opt = Adam::adamw(groups, AdamConfig::adamw()).expect("optimizer");
    let images = Var::constant(Tensor::randn(&[128, 1, 28, 28], 0.0, 1.0, 9).expect("input"));
    let labels: Vec<usize> = (0..128).map(|i| i % 10).collect();
    for step in 0..steps {
        opt.zero_grad();
        let logits = model
            .forward(&images, &Ctx::train(step as u64))
            .expect("forward");
        let loss = cross_entropy(&logits, Targets::Classes(&labels), 0.1).expect("loss");
        loss.backward().expect("backward");
        opt.step().expect("step");
        println!(
            "step {step}: loss {:.4}",
            loss.value().item().expect("scalar")
        );
    }
}
