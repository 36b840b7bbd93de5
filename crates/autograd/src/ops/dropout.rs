//! Dropout and drop-path (stochastic depth), with seeded masks.
//!
//! Both scale kept values by `1/keep` during training (inverted dropout) and
//! are the identity in evaluation. Dropout draws one Bernoulli per element;
//! drop-path one per sample (leading dimension), as timm's `drop_path`.

use allmlp_tensor_core::{Rng, Tensor};

use crate::{AutogradError, Function, Result, Var};

struct Mask {
    mask: Tensor,
}

impl Function for Mask {
    fn name(&self) -> &'static str {
        "dropout"
    }

    fn backward(&self, g: &Tensor, _needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(g.mul(&self.mask)?)])
    }
}

fn check_p(op: &'static str, p: f32) -> Result<()> {
    if !(0.0..=1.0).contains(&p) {
        return Err(AutogradError::InvalidArgument {
            op,
            msg: format!("drop probability must be in [0, 1], got {p}"),
        });
    }
    Ok(())
}

/// A mask of `shape` holding `1/keep` with probability `keep`, else 0 (all 0
/// for `keep = 0`: `p = 1` drops everything, and `x·0` keeps a NaN, as in
/// PyTorch's `dropout` and timm's `drop_path`).
fn bernoulli_mask(shape: &[usize], keep: f32, rng: &mut Rng) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let scale = 1.0 / keep;
    let v = (0..n)
        .map(|_| if rng.next_f32() < keep { scale } else { 0.0 })
        .collect();
    Ok(Tensor::from_vec(v, shape)?)
}

fn apply_mask(x: &Var, mask: Tensor) -> Result<Var> {
    let out = x.value().mul(&mask)?;
    Ok(Var::from_op(out, &[x], Mask { mask }))
}

impl Var {
    /// Zeroes each element with probability `p` and scales the rest by `1/(1−p)`
    /// when `training`; the identity otherwise or when `p == 0`.
    pub fn dropout(&self, p: f32, training: bool, rng: &mut Rng) -> Result<Var> {
        check_p("dropout", p)?;
        if !training || p == 0.0 {
            return Ok(self.clone());
        }
        apply_mask(self, bernoulli_mask(&self.shape(), 1.0 - p, rng)?)
    }

    /// Drops whole samples (dimension 0) with probability `p`, scaling kept ones
    /// by `1/(1−p)` when `training` (stochastic depth on a residual branch).
    pub fn drop_path(&self, p: f32, training: bool, rng: &mut Rng) -> Result<Var> {
        check_p("drop_path", p)?;
        if !training || p == 0.0 {
            return Ok(self.clone());
        }
        let shape = self.shape();
        let Some(&samples) = shape.first() else {
            return Err(AutogradError::InvalidArgument {
                op: "drop_path",
                msg: "a 0-d input has no sample dimension to drop along (expected [N, ..])".into(),
            });
        };
        let mut mask_shape = vec![1; shape.len()];
        mask_shape[0] = samples;
        apply_mask(self, bernoulli_mask(&mask_shape, 1.0 - p, rng)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropout_mask_statistics_and_gradient() {
        let x = Var::parameter(Tensor::ones(&[100, 100]).unwrap());
        let mut rng = Rng::new(3);
        let y = x.dropout(0.25, true, &mut rng).unwrap();
        let v = y.value().to_vec();
        let kept = v.iter().filter(|&&e| e != 0.0).count() as f64 / v.len() as f64;
        assert!((kept - 0.75).abs() < 0.02, "kept fraction {kept}");
        assert!(v.iter().all(|&e| e == 0.0 || (e - 1.0 / 0.75).abs() < 1e-6));
        y.sum(&[], false).unwrap().backward().unwrap();
        // The gradient is the mask itself: same zeros, same scale.
        assert_eq!(x.grad().unwrap().to_vec(), v);
        // Same seed, same mask; evaluation is the identity.
        let again = x.dropout(0.25, true, &mut Rng::new(3)).unwrap().value();
        assert_eq!(again.to_vec(), v);
        assert_eq!(x.dropout(0.25, false, &mut rng).unwrap().value(), x.value());
        assert!(x.dropout(1.5, true, &mut rng).is_err());
        assert!(x.dropout(-0.1, true, &mut rng).is_err());
    }

    /// `p = 1` drops everything, as torch's `dropout(p=1)` and timm's
    /// `drop_path(1.0)` do: zeros (a NaN stays NaN: `x·0`), zero gradient.
    #[test]
    fn probability_one_drops_everything() {
        let x = Var::parameter(Tensor::from_vec(vec![1.0, -2.0, f32::NAN, 4.0], &[2, 2]).unwrap());
        for y in [
            x.dropout(1.0, true, &mut Rng::new(1)).unwrap(),
            x.drop_path(1.0, true, &mut Rng::new(1)).unwrap(),
        ] {
            let v = y.value().to_vec();
            assert_eq!([v[0], v[1], v[3]], [0.0; 3]);
            assert!(v[2].is_nan());
            y.sum(&[], false).unwrap().backward().unwrap();
            assert_eq!(x.grad().unwrap().to_vec(), [0.0; 4]);
            x.zero_grad();
        }
    }

    #[test]
    fn drop_path_is_per_sample() {
        let x = Var::parameter(Tensor::ones(&[64, 3, 5]).unwrap());
        let y = x.drop_path(0.5, true, &mut Rng::new(9)).unwrap().value();
        let mut dropped = 0;
        for b in 0..64 {
            let s = y.narrow(0, b, 1).unwrap().to_vec();
            assert!(
                s.iter().all(|&e| e == s[0]),
                "sample {b} is not uniformly kept or dropped"
            );
            assert!(s[0] == 0.0 || (s[0] - 2.0).abs() < 1e-6);
            dropped += (s[0] == 0.0) as usize;
        }
        assert!((16..=48).contains(&dropped), "dropped {dropped} of 64");
        // A 1-d input is one value per sample; a 0-d one has no sample dimension.
        let v = Var::parameter(Tensor::ones(&[8]).unwrap());
        let y = v.drop_path(0.5, true, &mut Rng::new(3)).unwrap();
        assert_eq!(y.shape(), [8]);
        let s = Var::parameter(Tensor::ones(&[]).unwrap());
        let e = s
            .drop_path(0.5, true, &mut Rng::new(3))
            .unwrap_err()
            .to_string();
        assert!(e.contains("drop_path") && e.contains("0-d"), "{e}");
    }
}
