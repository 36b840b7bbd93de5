//! Parameter initialisers as PyTorch and timm define them, seeded and deterministic.
//!
//! Fan-in/fan-out follow `torch.nn.init._calculate_fan_in_and_fan_out`: for a
//! weight `[out, in, k…]`, `fan_in = in·Πk`, `fan_out = out·Πk`.

use allmlp_autograd::tensor_core::error::{checked_numel, try_vec};
use allmlp_autograd::tensor_core::{Result, Rng, Tensor, TensorError};

/// `(fan_in, fan_out)` of a weight shape (rank ≥ 2).
pub fn fans(shape: &[usize]) -> Result<(usize, usize)> {
    if shape.len() < 2 {
        return Err(TensorError::shape(
            "init",
            "a weight of rank >= 2 to compute fans",
            format!("{shape:?}"),
        ));
    }
    let receptive: usize = shape[2..].iter().product();
    Ok((shape[1] * receptive, shape[0] * receptive))
}

/// Uniform in `[−bound, bound)`.
pub fn uniform(shape: &[usize], bound: f32, seed: u64) -> Result<Tensor> {
    Tensor::rand_uniform(shape, -bound, bound, seed)
}

/// Xavier/Glorot uniform: bound `gain·√(6/(fan_in+fan_out))` (timm's Mixer Linear init).
pub fn xavier_uniform(shape: &[usize], gain: f32, seed: u64) -> Result<Tensor> {
    let (fi, fo) = fans(shape)?;
    uniform(shape, gain * (6.0 / (fi + fo) as f32).sqrt(), seed)
}

/// Kaiming uniform with `a = √5`: PyTorch's default for `Linear` and `Conv2d`
/// weights, bound `1/√fan_in`.
pub fn kaiming_uniform_default(shape: &[usize], seed: u64) -> Result<Tensor> {
    let (fi, _) = fans(shape)?;
    uniform(shape, 1.0 / (fi.max(1) as f32).sqrt(), seed)
}

/// The bias init paired with PyTorch's default weight init: `U(−1/√fan_in, 1/√fan_in)`.
pub fn default_bias(len: usize, fan_in: usize, seed: u64) -> Result<Tensor> {
    uniform(&[len], 1.0 / (fan_in.max(1) as f32).sqrt(), seed)
}

/// Normal `N(mean, std²)` truncated to `[a, b]` by resampling (timm's `trunc_normal_`).
pub fn trunc_normal(
    shape: &[usize],
    mean: f32,
    std: f32,
    a: f32,
    b: f32,
    seed: u64,
) -> Result<Tensor> {
    if a >= b || a.is_nan() || b.is_nan() || std <= 0.0 {
        return Err(TensorError::arg(
            "trunc_normal",
            format!("need a < b and std > 0, got [{a}, {b}], std {std}"),
        ));
    }
    let n = checked_numel("trunc_normal", shape)?;
    let mut rng = Rng::new(seed);
    let mut v = try_vec("trunc_normal", shape, n)?;
    while v.len() < n {
        let x = mean as f64 + std as f64 * rng.normal();
        if x >= a as f64 && x <= b as f64 {
            v.push(x as f32);
        }
    }
    Tensor::from_vec(v, shape)
}

/// LeCun normal as timm's `lecun_normal_`: truncated normal (±2σ) with variance `1/fan_in`,
/// std corrected by 0.87962566103423978 for the truncation.
pub fn lecun_normal(shape: &[usize], seed: u64) -> Result<Tensor> {
    let (fi, _) = fans(shape)?;
    let std = (1.0 / fi.max(1) as f64).sqrt() / 0.879_625_661_034_239_8;
    trunc_normal(
        shape,
        0.0,
        std as f32,
        -2.0 * std as f32,
        2.0 * std as f32,
        seed,
    )
}

/// A (semi-)orthogonal matrix of `shape` (rows × product of the rest), as
/// `torch.nn.init.orthogonal_`: QR of a Gaussian matrix, signs fixed by R's diagonal.
pub fn orthogonal(shape: &[usize], gain: f32, seed: u64) -> Result<Tensor> {
    if shape.len() < 2 {
        return Err(TensorError::shape(
            "orthogonal",
            "a shape of rank >= 2",
            format!("{shape:?}"),
        ));
    }
    let rows = shape[0];
    let cols = checked_numel("orthogonal", &shape[1..])?;
    checked_numel("orthogonal", shape)?;
    // Orthonormalise the shorter side's vectors with modified Gram–Schmidt in f64.
    let (m, n) = if rows < cols {
        (cols, rows)
    } else {
        (rows, cols)
    };
    let mut rng = Rng::new(seed);
    let mut q: Vec<Vec<f64>> = (0..n)
        .map(|_| (0..m).map(|_| rng.normal()).collect())
        .collect();
    for j in 0..n {
        let (done, rest) = q.split_at_mut(j);
        let qj = &mut rest[0];
        for qi in done.iter() {
            let d: f64 = qi.iter().zip(qj.iter()).map(|(a, b)| a * b).sum();
            qj.iter_mut().zip(qi).for_each(|(b, a)| *b -= d * a);
        }
        let norm = q[j].iter().map(|v| v * v).sum::<f64>().sqrt();
        if norm < 1e-12 {
            return Err(TensorError::arg(
                "orthogonal",
                "degenerate random matrix (retry with another seed)",
            ));
        }
        q[j].iter_mut().for_each(|v| *v /= norm);
    }
    let mut out = vec![0f32; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            // q holds n orthonormal vectors of length m: columns of the taller matrix.
            let v = if rows < cols { q[r][c] } else { q[c][r] };
            out[r * cols + c] = (gain as f64 * v) as f32;
        }
    }
    Tensor::from_vec(out, shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shapes too large for memory are errors, not overflow or allocation panics.
    #[test]
    fn impossible_shapes_are_errors() {
        assert!(lecun_normal(&[128, 3 << 52, 4, 4], 0).is_err());
        assert!(trunc_normal(&[1 << 62], 0.0, 1.0, -2.0, 2.0, 0).is_err());
        assert!(orthogonal(&[4, 1 << 40, 1 << 40], 1.0, 0).is_err());
    }

    #[test]
    fn bounds_and_moments() {
        let w = xavier_uniform(&[64, 32], 1.0, 1).unwrap().to_vec();
        let bound = (6.0f32 / 96.0).sqrt();
        assert!(w.iter().all(|v| v.abs() <= bound));
        let var = w.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / w.len() as f64;
        assert!((var - (bound as f64).powi(2) / 3.0).abs() < 0.1 * var);
        let k = kaiming_uniform_default(&[8, 3, 4, 4], 2).unwrap().to_vec();
        assert!(k.iter().all(|v| v.abs() <= 1.0 / 48f32.sqrt()));
        let l = lecun_normal(&[256, 400], 3).unwrap().to_vec();
        let std = (l.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / l.len() as f64).sqrt();
        assert!(
            (std - (1.0f64 / 400.0).sqrt()).abs() < 0.03 * std,
            "lecun std {std}"
        );
        let t = trunc_normal(&[1000], 0.0, 0.02, -0.04, 0.04, 4)
            .unwrap()
            .to_vec();
        assert!(t.iter().all(|v| v.abs() <= 0.04));
        assert!(fans(&[3]).is_err());
        assert!(trunc_normal(&[2], 0.0, 1.0, 1.0, 0.0, 1).is_err());
    }

    #[test]
    fn orthogonal_rows_or_columns_are_orthonormal() {
        for shape in [[6usize, 10], [10, 6]] {
            let q = orthogonal(&shape, 1.0, 5).unwrap();
            let g = if shape[0] < shape[1] {
                q.matmul(&q.transpose(0, 1).unwrap()).unwrap()
            } else {
                q.transpose(0, 1).unwrap().matmul(&q).unwrap()
            };
            let n = shape[0].min(shape[1]);
            for i in 0..n {
                for j in 0..n {
                    let want = if i == j { 1.0 } else { 0.0 };
                    assert!((g.get(&[i, j]).unwrap() - want).abs() < 1e-5);
                }
            }
        }
    }
}
