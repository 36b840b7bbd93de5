//! Support shared by the layers' PyTorch parity tests.

#![allow(dead_code)]

use std::collections::BTreeMap;

use allmlp_layers::autograd::tensor_core::Tensor;
use safetensors::SafeTensors;

/// Every tensor of `tests/fixtures/{name}.safetensors` as f32 (integer tensors converted).
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
            let data: Vec<f32> = match v.dtype() {
                safetensors::Dtype::F32 => v
                    .data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
                safetensors::Dtype::I64 => v
                    .data()
                    .chunks_exact(8)
                    .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
                    .collect(),
                other => panic!("{path}: {k} has dtype {other:?}; fixtures use f32 or i64"),
            };
            (k, Tensor::from_vec(data, v.shape()).unwrap())
        })
        .collect()
}

/// max |got − want| / max(max |want|, floor): the parity metric of the fixtures.
pub fn rel_err(got: &Tensor, want: &Tensor, floor: f64) -> f64 {
    assert_eq!(got.shape(), want.shape(), "shape");
    let (g, w) = (got.to_vec(), want.to_vec());
    let max_ref = w.iter().fold(0f64, |m, &v| m.max((v as f64).abs()));
    let max_diff = g
        .iter()
        .zip(&w)
        .fold(0f64, |m, (&a, &b)| m.max((a as f64 - b as f64).abs()));
    max_diff / max_ref.max(floor)
}

/// Asserts `rel_err(got, want) <= tol`, naming `what` on failure.
pub fn assert_close(what: &str, got: &Tensor, want: &Tensor, tol: f64) {
    let e = rel_err(got, want, 1e-12);
    assert!(e <= tol, "{what}: relative error {e:.3e} > {tol:.0e}");
}
