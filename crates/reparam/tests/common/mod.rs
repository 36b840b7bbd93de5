//! Support shared by the reparam tests: fixtures, random BN statistics, naive f64 references.

#![allow(dead_code)]

use std::collections::BTreeMap;

use allmlp_reparam::{BnParams, Tensor};
use allmlp_tensor_core::Rng;
use safetensors::SafeTensors;

/// Every tensor of `tests/fixtures/{name}.safetensors` (all f32).
pub fn load_fixture(name: &str) -> BTreeMap<String, Tensor> {
    let path = format!(
        "{}/tests/fixtures/{name}.safetensors",
        env!("CARGO_MANIFEST_DIR")
    );
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let st = SafeTensors::deserialize(&bytes).unwrap_or_else(|e| panic!("{path}: {e}"));
    st.tensors()
        .into_iter()
        .map(|(k, v)| {
            assert_eq!(v.dtype(), safetensors::Dtype::F32, "{k}");
            let data = v
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (k, Tensor::from_vec(data, v.shape()).unwrap())
        })
        .collect()
}

/// max |got − want| / max |want| (the parity metric), in f64.
pub fn rel_err(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len(), "length");
    let max_ref = want.iter().fold(0f64, |m, v| m.max(v.abs()));
    let max_diff = got
        .iter()
        .zip(want)
        .fold(0f64, |m, (&a, &b)| m.max((a as f64 - b).abs()));
    max_diff / max_ref.max(1e-30)
}

/// f64 copy of a tensor's values.
pub fn f64s(t: &Tensor) -> Vec<f64> {
    t.to_vec().into_iter().map(f64::from).collect()
}

/// Asserts equal shapes and `rel_err ≤ tol`; returns the error.
pub fn assert_close(what: &str, got: &Tensor, want: &Tensor, tol: f64) -> f64 {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    let e = rel_err(&got.to_vec(), &f64s(want));
    assert!(e <= tol, "{what}: relative error {e:.3e} > {tol:.0e}");
    e
}

/// `N(0, std²)` samples of `shape`.
pub fn randn(shape: &[usize], std: f32, seed: u64) -> Tensor {
    Tensor::randn(shape, 0.0, std, seed).unwrap()
}

/// A BN of `c` channels with every statistic random (defaults would hide scale errors):
/// γ ∈ U(0.25, 1.75), β ~ N(0, 1), μ ~ N(0, 1), var ∈ U(0.1, 2.1), eps = 1e-5.
pub fn rand_bn(c: usize, seed: u64) -> BnParams {
    BnParams::new(
        Tensor::rand_uniform(&[c], 0.25, 1.75, seed).unwrap(),
        randn(&[c], 1.0, seed + 1),
        randn(&[c], 1.0, seed + 2),
        Tensor::rand_uniform(&[c], 0.1, 2.1, seed + 3).unwrap(),
        1e-5,
    )
    .unwrap()
}

/// The BN stored under `{prefix}.{weight,bias,running_mean,running_var}` (eps 1e-5).
pub fn fixture_bn(f: &BTreeMap<String, Tensor>, prefix: &str) -> BnParams {
    let g = |n: &str| f[&format!("{prefix}.{n}")].clone();
    BnParams::new(
        g("weight"),
        g("bias"),
        g("running_mean"),
        g("running_var"),
        1e-5,
    )
    .unwrap()
}

/// Naive stride-1 conv with zero padding `k/2`, f64: `x: [N, C, h, w]`,
/// `kernel: [O, C/g, k, k]` → `[N, O, h, w]`.
pub fn naive_conv(x: &Tensor, kernel: &Tensor, bias: Option<&Tensor>, g: usize) -> Vec<f64> {
    let [n, c, h, w] = *x.shape() else { panic!() };
    let [o, cg, k, _] = *kernel.shape() else {
        panic!()
    };
    assert_eq!(c, cg * g);
    let (xs, ks) = (f64s(x), f64s(kernel));
    let b = bias.map(f64s);
    let (og, p) = (o / g, (k / 2) as isize);
    let mut y = vec![0.0; n * o * h * w];
    for ni in 0..n {
        for oi in 0..o {
            let gi = oi / og;
            for yy in 0..h {
                for xx in 0..w {
                    let mut acc = b.as_ref().map_or(0.0, |b| b[oi]);
                    for ci in 0..cg {
                        let cin = gi * cg + ci;
                        for dy in 0..k {
                            for dx in 0..k {
                                let iy = yy as isize + dy as isize - p;
                                let ix = xx as isize + dx as isize - p;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                    continue;
                                }
                                let xv = xs[((ni * c + cin) * h + iy as usize) * w + ix as usize];
                                acc += xv * ks[((oi * cg + ci) * k + dy) * k + dx];
                            }
                        }
                    }
                    y[((ni * o + oi) * h + yy) * w + xx] = acc;
                }
            }
        }
    }
    y
}

/// Naive grouped FC, f64: `x: [N, In]` (flattened), `weight: [Out, In/g]` (any trailing 1s),
/// `bias: [Out]` → `[N, Out]`; group `j` maps inputs `j·In/g ..` to outputs `j·Out/g ..`.
pub fn naive_grouped_fc(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>, g: usize) -> Vec<f64> {
    let n = x.shape()[0];
    let inp = x.numel() / n;
    let out = weight.shape()[0];
    let ig = weight.numel() / out;
    assert_eq!(ig * g, inp);
    let (xs, ws) = (f64s(x), f64s(weight));
    let b = bias.map(f64s);
    let og = out / g;
    let mut y = vec![0.0; n * out];
    for ni in 0..n {
        for r in 0..out {
            let gi = r / og;
            let xrow = &xs[ni * inp + gi * ig..][..ig];
            let wrow = &ws[r * ig..][..ig];
            let dot: f64 = xrow.iter().zip(wrow).map(|(a, b)| a * b).sum();
            y[ni * out + r] = dot + b.as_ref().map_or(0.0, |b| b[r]);
        }
    }
    y
}

/// A small random-size generator for property tests.
pub fn rng(seed: u64) -> Rng {
    Rng::new(seed)
}

/// The element-wise sum of two tensors of equal shape.
pub fn add(a: &Tensor, b: &Tensor) -> Tensor {
    assert_eq!(a.shape(), b.shape());
    let v = a
        .to_vec()
        .iter()
        .zip(b.to_vec())
        .map(|(x, y)| x + y)
        .collect();
    Tensor::from_vec(v, a.shape()).unwrap()
}

/// Asserts `r` is an Err whose message contains `op`; returns the message.
pub fn err_of<T: std::fmt::Debug>(r: allmlp_reparam::Result<T>, op: &str) -> String {
    let e = r.expect_err("expected an error").to_string();
    assert!(e.contains(op), "error does not name {op}: {e}");
    e
}
