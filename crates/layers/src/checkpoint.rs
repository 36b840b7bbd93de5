//! A module's weights as a [`StateDict`], and back: PyTorch's `state_dict()`
//! and `load_state_dict()`.
//!
//! ```
//! use allmlp_layers::{Linear, checkpoint::{load_state_dict, state_dict}};
//! use allmlp_layers::state_dict::Strictness;
//! let a = Linear::new(3, 2, true, 1)?;
//! let b = Linear::new(3, 2, true, 2)?;
//! let sd = state_dict(&a);
//! assert_eq!(sd.keys().collect::<Vec<_>>(), ["weight", "bias"]);
//! load_state_dict(&b, sd, Strictness::Strict)?;
//! assert_eq!(a.weight.value(), b.weight.value());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use allmlp_autograd::Var;
use allmlp_autograd::tensor_core::{Tensor, TensorError};

use crate::module::{Buffer, Module, Visitor};
use crate::state_dict::{LoadReport, Result, StateDict, StateDictError, Strictness};

struct Entries(Vec<(String, Tensor)>);

impl Visitor for Entries {
    fn param(&mut self, name: &str, p: &Var) {
        self.0.push((name.to_string(), p.value()));
    }
    fn buffer(&mut self, name: &str, b: &Buffer) {
        self.0.push((name.to_string(), b.get()));
    }
}

/// Every parameter and buffer of `m` under its PyTorch name, in visiting order.
pub fn state_dict(m: &dyn Module) -> StateDict {
    let mut e = Entries(Vec::new());
    m.visit("", &mut e);
    e.0.into_iter().collect()
}

/// Copies the values of `sd` into `m`'s parameters and buffers, matched by name.
///
/// Strict: any missing or unexpected key or shape mismatch is one error listing
/// all of them, and nothing is changed. Non-strict: matching entries are
/// loaded and the rest reported. As PyTorch's `load_state_dict` does, a
/// missing BatchNorm `num_batches_tracked` keeps the module's value (files
/// from before PyTorch 0.4.1, and exports that drop it), and a one-element
/// `[1]` tensor loads into a 0-d entry.
pub fn load_state_dict(
    m: &dyn Module,
    mut sd: StateDict,
    strictness: Strictness,
) -> Result<LoadReport> {
    let expected = state_dict(m);
    for (key, current) in expected.iter() {
        match sd.get(key) {
            None if key.rsplit('.').next() == Some("num_batches_tracked") => {
                sd.insert(key.to_string(), current.clone());
            }
            Some(t) if current.ndim() == 0 && t.shape() == [1] => {
                let scalar = t.reshape(&[]).map_err(|source| StateDictError::Tensor {
                    key: key.to_string(),
                    source,
                })?;
                sd.insert(key.to_string(), scalar);
            }
            _ => {}
        }
    }
    let loaded = sd.match_expected(
        expected
            .iter()
            .map(|(k, t)| (k.to_string(), t.shape().to_vec())),
        strictness,
    )?;
    let mut setter = Setter {
        values: loaded.state_dict,
        error: None,
    };
    m.visit("", &mut setter);
    match setter.error {
        Some(e) => Err(e),
        None => Ok(loaded.report),
    }
}

struct Setter {
    values: StateDict,
    error: Option<StateDictError>,
}

impl Visitor for Setter {
    fn param(&mut self, name: &str, p: &Var) {
        if let Some(t) = self.values.get(name)
            && let Err(e) = p.set_value(t.clone())
        {
            // Unreachable after `match_expected` checked the shapes; reported, not panicked.
            self.error.get_or_insert(StateDictError::Tensor {
                key: name.to_string(),
                source: TensorError::arg("load_state_dict", e.to_string()),
            });
        }
    }
    fn buffer(&mut self, name: &str, b: &Buffer) {
        if let Some(t) = self.values.get(name) {
            b.set(t.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BatchNorm2d, Conv2d, Sequential};
    use allmlp_autograd::ops::Conv2dParams;

    #[test]
    fn round_trip_and_strict_errors_through_a_file() {
        let mut a = Sequential::new();
        a.push(Conv2d::new(2, 4, (3, 3), Conv2dParams::square(1, 1, 1), false, 1).unwrap())
            .unwrap();
        a.push(BatchNorm2d::new(4).unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let mut sd = state_dict(&a);
        assert_eq!(
            sd.keys().collect::<Vec<_>>(),
            [
                "0.weight",
                "1.weight",
                "1.bias",
                "1.running_mean",
                "1.running_var",
                "1.num_batches_tracked"
            ]
        );
        sd.insert("1.running_mean", Tensor::randn(&[4], 0.0, 1.0, 3).unwrap());
        sd.save(&path).unwrap();
        let mut b = Sequential::new();
        b.push(Conv2d::new(2, 4, (3, 3), Conv2dParams::square(1, 1, 1), false, 2).unwrap())
            .unwrap();
        b.push(BatchNorm2d::new(4).unwrap()).unwrap();
        load_state_dict(&b, StateDict::load(&path).unwrap(), Strictness::Strict).unwrap();
        assert_eq!(state_dict(&b), StateDict::load(&path).unwrap());
        // A model with other shapes: one error naming every problem, nothing changed.
        let mut c = Sequential::new();
        c.push(Conv2d::new(2, 5, (3, 3), Conv2dParams::square(1, 1, 1), false, 2).unwrap())
            .unwrap();
        let before = state_dict(&c);
        let e = load_state_dict(&c, StateDict::load(&path).unwrap(), Strictness::Strict)
            .unwrap_err()
            .to_string();
        assert!(e.contains("0.weight") && e.contains("1.running_var"), "{e}");
        assert_eq!(state_dict(&c), before);
        let report =
            load_state_dict(&c, StateDict::load(&path).unwrap(), Strictness::NonStrict).unwrap();
        assert_eq!(report.unexpected.len(), 5);
        assert_eq!(report.mismatched.len(), 1);
    }

    /// PyTorch's allowances: a state without `num_batches_tracked` loads strictly and keeps
    /// the module's count; a `[1]` count loads into the 0-d buffer. Other missing keys and
    /// other shapes are still errors.
    #[test]
    fn batch_norm_counts_load_as_in_pytorch() {
        let bn = BatchNorm2d::new(3).unwrap();
        bn.num_batches_tracked
            .set(Tensor::from_vec(vec![7.0], &[]).unwrap());
        let mut sd = state_dict(&bn);
        sd.remove("num_batches_tracked");
        sd.insert("running_mean", Tensor::randn(&[3], 0.0, 1.0, 4).unwrap());
        load_state_dict(&bn, sd.clone(), Strictness::Strict).unwrap();
        assert_eq!(bn.num_batches_tracked.get().item().unwrap(), 7.0);
        assert_eq!(&bn.running_mean.get(), sd.get("running_mean").unwrap());

        sd.insert(
            "num_batches_tracked",
            Tensor::from_vec(vec![12.0], &[1]).unwrap(),
        );
        load_state_dict(&bn, sd.clone(), Strictness::Strict).unwrap();
        assert_eq!(bn.num_batches_tracked.get().shape(), [0usize; 0]);
        assert_eq!(bn.num_batches_tracked.get().item().unwrap(), 12.0);

        sd.insert(
            "num_batches_tracked",
            Tensor::from_vec(vec![1.0, 2.0], &[2]).unwrap(),
        );
        assert!(load_state_dict(&bn, sd.clone(), Strictness::Strict).is_err());
        sd.remove("num_batches_tracked");
        sd.remove("running_var");
        let e = load_state_dict(&bn, sd, Strictness::Strict)
            .unwrap_err()
            .to_string();
        assert!(e.contains("running_var"), "{e}");
    }
}
