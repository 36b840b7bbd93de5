//! PyTorch parity: a tiny timm MLP-Mixer and ResMLP, forward + label-smoothed
//! cross-entropy, built from autograd ops, must match PyTorch's loss and the
//! gradient of every parameter. Fixtures: `tools/fixtures/autograd_parity.py`.
//!
//! Tolerance: max |ours − torch| / max |torch| ≤ 1e-4 per tensor — f32 kernels
//! on both sides with different summation orders differ by ~1e-6 relative per
//! op; through two blocks and the backward pass this stays well under 1e-4.
//! One exception: a bias feeding a LayerNorm through the residual stream (the
//! Mixer's token-MLP `fc2.bias` shifts every channel of a token equally, which
//! LayerNorm removes) has an exactly-zero true gradient, so both sides hold
//! only rounding noise (~1e-8). Each tensor's scale is therefore floored at
//! 1e-3 × the largest gradient of the model.

mod common;

use std::collections::BTreeMap;

use allmlp_autograd::Var;
use allmlp_autograd::ops::{Targets, cross_entropy};
use allmlp_autograd::tensor_core::Tensor;
use common::tiny_mlp::{Arch, TinyMlp};
use safetensors::SafeTensors;

fn load(name: &str) -> BTreeMap<String, Tensor> {
    let path = format!(
        "{}/tests/fixtures/{name}.safetensors",
        env!("CARGO_MANIFEST_DIR")
    );
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let st = SafeTensors::deserialize(&bytes).unwrap();
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

fn max_abs(t: &Tensor) -> f64 {
    t.to_vec()
        .iter()
        .fold(0f64, |m, &v| m.max((v as f64).abs()))
}

fn rel_err(got: &Tensor, want: &Tensor, floor: f64) -> f64 {
    assert_eq!(got.shape(), want.shape());
    let (g, w) = (got.to_vec(), want.to_vec());
    let max_diff = g
        .iter()
        .zip(&w)
        .fold(0f64, |m, (&a, &b)| m.max((a as f64 - b as f64).abs()));
    max_diff / max_abs(want).max(floor)
}

fn check(name: &str, arch: Arch) {
    let f = load(name);
    let params: BTreeMap<String, Var> = f
        .iter()
        .filter(|(k, _)| {
            !k.starts_with("grad.") && !["input", "labels", "loss"].contains(&k.as_str())
        })
        .map(|(k, v)| (k.clone(), Var::parameter(v.clone())))
        .collect();
    let model = TinyMlp {
        arch,
        params,
        patch: 4,
        depth: 2,
    };
    let labels: Vec<usize> = f["labels"].to_vec().iter().map(|&v| v as usize).collect();
    let logits = model.forward(&Var::constant(f["input"].clone())).unwrap();
    let loss = cross_entropy(&logits, Targets::Classes(&labels), 0.1).unwrap();
    let want_loss = f["loss"].item().unwrap();
    let got_loss = loss.value().item().unwrap();
    assert!(
        ((got_loss - want_loss) / want_loss).abs() < 1e-5,
        "{name}: loss {got_loss} vs torch {want_loss}"
    );
    loss.backward().unwrap();
    let largest = f
        .iter()
        .filter(|(k, _)| k.starts_with("grad."))
        .map(|(_, g)| max_abs(g))
        .fold(0.0, f64::max);
    let mut worst = (0.0, String::new());
    for (k, p) in &model.params {
        let g = p
            .grad()
            .unwrap_or_else(|| panic!("{name}: no gradient reached {k}"));
        let e = rel_err(&g, &f[&format!("grad.{k}")], 1e-3 * largest);
        assert!(
            e <= 1e-4,
            "{name}: gradient of {k} differs from torch by {e:.2e} (relative to its max)"
        );
        if e > worst.0 {
            worst = (e, k.clone());
        }
    }
    assert_eq!(
        model.params.len() * 2 + 3,
        f.len(),
        "every parameter has a gradient in the fixture"
    );
    eprintln!(
        "{name}: loss {got_loss} (torch {want_loss}); worst gradient {:.2e} at {}",
        worst.0, worst.1
    );
}

#[test]
fn tiny_mixer_matches_pytorch_loss_and_every_gradient() {
    check("mixer_tiny_parity", Arch::Mixer);
}

#[test]
fn tiny_resmlp_matches_pytorch_loss_and_every_gradient() {
    check("resmlp_tiny_parity", Arch::ResMlp);
}
