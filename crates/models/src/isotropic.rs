//! Pieces shared by the isotropic patch-MLP models (MLP-Mixer, ResMLP): the input
//! check, the stochastic-depth schedule, timm's Linear initialisations, the
//! classifier head and configuration checks.

use allmlp_layers::autograd::tensor_core::error::fmt_shape;
use allmlp_layers::autograd::tensor_core::{Rng, Tensor};
use allmlp_layers::autograd::{AutogradError, Var};
use allmlp_layers::{Ctx, Dropout, Linear, Module, init};
use serde_json::Value;

use crate::error::{ModelError, Result};

/// `Ok` if `shape` is `[B, C, H, W]` with `[C, H, W] == want`, else
/// [`ModelError::BadInput`] naming `model`, the expected input and what it got.
pub(crate) fn check_image(model: &str, shape: &[usize], want: [usize; 3]) -> Result<()> {
    let [c, h, w] = want;
    if shape.len() == 4 && shape[0] > 0 && shape[1..] == want {
        return Ok(());
    }
    Err(ModelError::BadInput {
        model: model.to_string(),
        expected: format!(
            "an image batch [B, {c}, {h}, {w}] ([C, H, W] = [{c}, {h}, {w}]: the token-mixing \
             weights fix the input size; another size needs another model)"
        ),
        got: fmt_shape(shape),
    })
}

/// A model error carried through `Module::forward`'s autograd result.
pub(crate) fn into_autograd(e: ModelError) -> AutogradError {
    match e {
        ModelError::Autograd(a) => a,
        other => AutogradError::InvalidArgument {
            op: "model input",
            msg: other.to_string(),
        },
    }
}

/// timm's stochastic-depth schedule: `rate · i / (depth − 1)` for block `i`
/// (`torch.linspace(0, rate, depth)`).
pub(crate) fn drop_path_rates(rate: f32, depth: usize) -> Vec<f32> {
    (0..depth)
        .map(|i| {
            if depth <= 1 {
                0.0
            } else {
                (rate as f64 * i as f64 / (depth - 1) as f64) as f32
            }
        })
        .collect()
}

/// timm's Mixer Linear init: weight xavier-uniform, bias `N(0, 1e-6)` when the
/// module's name contains "mlp", else zero.
pub(crate) fn xavier_linear(
    in_f: usize,
    out_f: usize,
    mlp_bias: bool,
    rng: &mut Rng,
) -> Result<Linear> {
    let w = init::xavier_uniform(&[out_f, in_f], 1.0, rng.next_u64())?;
    let b = if mlp_bias {
        Tensor::randn(&[out_f], 0.0, 1e-6, rng.next_u64())?
    } else {
        Tensor::zeros(&[out_f])?
    };
    Ok(Linear::from_tensors(w, Some(b))?)
}

/// The head: timm zero-initialises weight and bias (`nlhb` off).
pub(crate) fn zero_head(dim: usize, classes: usize) -> Result<Linear> {
    Ok(Linear::from_tensors(
        Tensor::zeros(&[classes, dim])?,
        Some(Tensor::zeros(&[classes])?),
    )?)
}

/// Mean over tokens, dropout, Linear: `x [B, S, C]` → `[B, classes]`.
pub(crate) fn head_forward(
    x: &Var,
    drop: &Dropout,
    head: &Linear,
    ctx: &Ctx,
) -> allmlp_layers::autograd::Result<Var> {
    let pooled = x.mean(&[1], false)?;
    head.forward(&drop.forward(&pooled, ctx)?, ctx)
}

/// Configuration checks shared by both families.
pub(crate) struct Check<'a> {
    pub(crate) model: &'a str,
}

impl Check<'_> {
    fn err(&self, msg: String) -> ModelError {
        ModelError::InvalidConfig {
            model: self.model.to_string(),
            msg,
        }
    }

    /// Every named size must be non-zero.
    pub(crate) fn positive(&self, fields: &[(&str, usize)]) -> Result<()> {
        match fields.iter().find(|(_, v)| *v == 0) {
            Some((k, _)) => Err(self.err(format!("{k} must be > 0, got 0"))),
            None => Ok(()),
        }
    }

    /// `img_size` must be a multiple of `patch_size`.
    pub(crate) fn patches(&self, img: usize, patch: usize) -> Result<()> {
        if img.is_multiple_of(patch) {
            Ok(())
        } else {
            Err(self.err(format!(
                "img_size {img} must be a multiple of patch_size {patch}"
            )))
        }
    }

    /// Every named probability must be in `[0, 1)`.
    pub(crate) fn probs(&self, fields: &[(&str, f32)]) -> Result<()> {
        match fields.iter().find(|(_, p)| !(0.0..1.0).contains(p)) {
            Some((k, p)) => Err(self.err(format!("{k} must be in [0, 1), got {p}"))),
            None => Ok(()),
        }
    }

    /// A finite value.
    pub(crate) fn finite(&self, k: &str, v: f32) -> Result<()> {
        if v.is_finite() {
            Ok(())
        } else {
            Err(self.err(format!("{k} must be finite, got {v}")))
        }
    }
}

/// Reads a JSON config field, naming it when missing or mistyped.
pub(crate) fn field<T: FromJson>(model: &str, v: &Value, k: &str) -> Result<T> {
    v.get(k)
        .and_then(T::from_json)
        .ok_or_else(|| ModelError::InvalidConfig {
            model: model.to_string(),
            msg: format!(
                "config field `{k}` missing or not a {}: {}",
                T::KIND,
                v.get(k).map_or("absent".to_string(), Value::to_string)
            ),
        })
}

/// A JSON value that maps to a config field.
pub(crate) trait FromJson: Sized {
    const KIND: &'static str;
    fn from_json(v: &Value) -> Option<Self>;
}

impl FromJson for usize {
    const KIND: &'static str = "non-negative integer";
    fn from_json(v: &Value) -> Option<usize> {
        v.as_u64().and_then(|u| usize::try_from(u).ok())
    }
}

impl FromJson for f32 {
    const KIND: &'static str = "number";
    fn from_json(v: &Value) -> Option<f32> {
        v.as_f64().map(|f| f as f32)
    }
}

impl FromJson for bool {
    const KIND: &'static str = "boolean";
    fn from_json(v: &Value) -> Option<bool> {
        v.as_bool()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_path_schedule_is_linear_from_zero() {
        assert_eq!(drop_path_rates(0.1, 1), [0.0]);
        let r = drop_path_rates(0.3, 4);
        assert_eq!(r.len(), 4);
        for (i, want) in [0.0f32, 0.1, 0.2, 0.3].iter().enumerate() {
            assert!((r[i] - want).abs() < 1e-7, "{r:?}");
        }
    }

    #[test]
    fn bad_input_names_the_model_and_the_fixed_size() {
        assert!(check_image("m", &[2, 1, 28, 28], [1, 28, 28]).is_ok());
        for bad in [&[2, 1, 32, 32][..], &[1, 28, 28], &[0, 1, 28, 28]] {
            let e = check_image("mixer_tiny", bad, [1, 28, 28]).unwrap_err();
            let s = e.to_string();
            assert!(matches!(e, ModelError::BadInput { .. }));
            assert!(
                s.starts_with("mixer_tiny: expected input an image batch [B, 1, 28, 28]")
                    && s.contains("token-mixing")
                    && s.contains(&fmt_shape(bad)),
                "{s}"
            );
        }
    }
}
