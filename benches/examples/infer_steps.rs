//! Runs N evaluation forwards (no tape) of a registered model and prints a
//! checksum of the logits: a fixed amount of inference work for CPU-time
//! comparisons on a busy machine
//! (`/usr/bin/time -f %U cargo run --release -p allmlp-benches --example infer_steps -- mixer_tiny 128 10`;
//! arguments: model name, batch, forwards). It prints the median time per forward (after
//! the first) and, with `ALLMLP_GEMM_PROFILE` set, where the GEMM time went by shape.

use allmlp_layers::{infer, named_parameters};
use allmlp_models::{ModelOptions, create_model};
use allmlp_tensor_core::Tensor;

fn main() {
    allmlp_tensor_core::allocator::keep_freed_memory();
    let args: Vec<String> = std::env::args().collect();
    let name = args.get(1).map_or("mixer_tiny", String::as_str);
    let batch: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(128);
    let steps: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(10);
    let model = create_model(name, &ModelOptions::default()).expect("model");
    // The heads start at zero (timm's init): give them weights so the checksum
    // depends on the whole network.
    for (pname, p) in named_parameters(model.as_ref()) {
        if pname.starts_with("head.") {
            let v = Tensor::randn(&p.shape(), 0.0, 0.1, 3).expect("head");
            p.set_value(v).expect("same shape");
        }
    }
    let [c, h, w] = model.input_shape();
    let x = Tensor::randn(&[batch, c, h, w], 0.0, 1.0, 9).expect("input");
    let profile = std::env::var_os("ALLMLP_GEMM_PROFILE").is_some();
    let mut sum = 0f64;
    let mut times = Vec::with_capacity(steps);
    for step in 0..steps {
        if profile && step == 1 {
            allmlp_tensor_core::gemm::profile::start();
        }
        let t0 = std::time::Instant::now();
        let y = infer(model.as_ref(), &x).expect("forward");
        if step > 0 {
            times.push(t0.elapsed().as_secs_f64());
        }
        sum += y.to_vec().iter().map(|&v| v as f64).sum::<f64>();
    }
    println!("{name} batch {batch} × {steps}: logit sum {sum:.6e}");
    if times.is_empty() {
        return;
    }
    let total: f64 = times.iter().sum();
    times.sort_by(f64::total_cmp);
    println!(
        "per forward (after the first): median {:.2} ms, mean {:.2} ms",
        times[times.len() / 2] * 1e3,
        total / times.len() as f64 * 1e3
    );
    if profile {
        let rows = allmlp_tensor_core::gemm::profile::take();
        let gemm: f64 = rows.iter().map(|r| r.seconds).sum();
        println!(
            "GEMM {:.2} ms per forward; by shape, over all {} forwards:",
            gemm / times.len() as f64 * 1e3,
            times.len()
        );
        for r in rows {
            println!("{r}");
        }
    }
}
