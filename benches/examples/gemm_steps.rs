//! Runs one GEMM variant N times: a fixed amount of work for CPU-time
//! comparisons on a busy machine (criterion's wall-clock medians drift with
//! the other load). Arguments: variant, m, k, n, repetitions.
//!
//! Variants (`y = gelu(x·Wᵀ + b)`, x `[m, k]`, W `[n, k]`, outputs allocated
//! per call as in the layers): `plain` (the GEMM alone, `C = x·Wᵀ`),
//! `separate` (bias broadcast into C, GEMM with β = 1, then `Tensor::gelu`),
//! `fused` (`gemm_fused` with the bias and GELU in the epilogue),
//! `fused-deriv` (also storing GELU's derivative, as training does) and
//! `fused-pre` (also storing the pre-activation instead).
//!
//! `/usr/bin/time -f %U cargo run --release -p allmlp-benches --example gemm_steps -- fused 6272 128 512 100`

use allmlp_tensor_core::gemm::{Activation, Bias, Epilogue, MatMut, MatRef, gemm, gemm_fused};
use allmlp_tensor_core::{Rng, Tensor};

fn main() {
    allmlp_tensor_core::allocator::keep_freed_memory();
    let args: Vec<String> = std::env::args().collect();
    let variant = args.get(1).map_or("fused", String::as_str);
    let num = |i: usize, d: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (m, k, n, reps) = (num(2, 6272), num(3, 128), num(4, 512), num(5, 100));
    let mut rng = Rng::new(1);
    let x: Vec<f32> = (0..m * k).map(|_| rng.normal() as f32).collect();
    let w: Vec<f32> = (0..n * k).map(|_| rng.normal() as f32 * 0.05).collect();
    let bias: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
    let a = MatRef::row_major(&x, m, k).expect("x fits");
    let b = MatRef::row_major(&w, n, k).expect("W fits").t();
    let mut check = 0f64;
    for _ in 0..reps {
        let y = match variant {
            "plain" => {
                let mut y = vec![0.0f32; m * n];
                gemm(1.0, a, b, 0.0, MatMut::row_major(&mut y, m, n).expect("C")).expect("gemm");
                y
            }
            "separate" => {
                let mut y = bias.repeat(m);
                gemm(1.0, a, b, 1.0, MatMut::row_major(&mut y, m, n).expect("C")).expect("gemm");
                Tensor::from_vec(y, &[m, n]).expect("shape").gelu().to_vec()
            }
            "fused" | "fused-deriv" | "fused-pre" => {
                let mut y = vec![0.0f32; m * n];
                let mut extra = vec![0.0f32; if variant == "fused" { 0 } else { m * n }];
                let out = (variant != "fused").then_some(&mut extra[..]);
                let (derivative, pre_activation) = match variant {
                    "fused-pre" => (None, out),
                    _ => (out, None),
                };
                let epi = Epilogue {
                    bias: Bias::PerColumn(&bias),
                    act: Activation::Gelu,
                    derivative,
                    pre_activation,
                };
                let c = MatMut::row_major(&mut y, m, n).expect("C");
                gemm_fused(1.0, a, b, 0.0, c, epi).expect("gemm");
                y
            }
            other => {
                panic!("unknown variant {other}: plain, separate, fused, fused-deriv or fused-pre")
            }
        };
        check += y[y.len() / 2] as f64;
    }
    println!("{variant} {m}x{k}x{n} × {reps}: {check:.6e}");
}
