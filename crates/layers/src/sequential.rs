//! `Sequential`: modules applied one after another, PyTorch's `nn.Sequential`,
//! and [`visit_list`] for a `ModuleList`-style list of blocks.
//!
//! Children are named `"0"`, `"1"`, … as PyTorch numbers them ([`Sequential::push`]),
//! or by a custom name ([`Sequential::push_named`], like a Sequential built
//! from an `OrderedDict`); a child's parameters appear as `{prefix}.{name}.…`
//! in order. An empty Sequential is the identity.
//!
//! ```
//! use allmlp_layers::{Ctx, Gelu, Linear, Module, Sequential, named_parameters};
//! use allmlp_layers::autograd::{Var, tensor_core::Tensor};
//! let mut seq = Sequential::new();
//! seq.push(Linear::new(4, 8, true, 0)?)?.push(Gelu::new())?.push(Linear::new(8, 2, true, 1)?)?;
//! let y = seq.forward(&Var::constant(Tensor::ones(&[3, 4])?), &Ctx::eval())?;
//! assert_eq!(y.shape(), vec![3, 2]);
//! let names: Vec<String> = named_parameters(&seq).into_iter().map(|(n, _)| n).collect();
//! assert_eq!(names, ["0.weight", "0.bias", "2.weight", "2.bias"]);
//! # Ok::<(), allmlp_layers::autograd::AutogradError>(())
//! ```

use std::fmt;

use allmlp_autograd::tensor_core::TensorError;
use allmlp_autograd::{Result, Var};

use crate::module::{Ctx, Module, Visitor, join};

/// An ordered chain of named modules.
#[derive(Default)]
pub struct Sequential {
    children: Vec<(String, Box<dyn Module>)>,
}

impl Sequential {
    /// An empty chain (the identity).
    pub fn new() -> Sequential {
        Sequential::default()
    }

    /// Appends `m` named by its position (`"0"`, `"1"`, …), as `nn.Sequential.append`;
    /// Err if a custom child already took that name.
    pub fn push(&mut self, m: impl Module + 'static) -> Result<&mut Sequential> {
        let name = self.children.len().to_string();
        self.push_named(&name, m)
    }

    /// Appends `m` under `name` (non-empty, no `.`, not already used).
    pub fn push_named(&mut self, name: &str, m: impl Module + 'static) -> Result<&mut Sequential> {
        if name.is_empty() || name.contains('.') {
            return Err(TensorError::arg(
                "Sequential",
                format!("a child name must be non-empty and contain no '.', got {name:?}"),
            )
            .into());
        }
        if self.children.iter().any(|(n, _)| n == name) {
            return Err(TensorError::arg(
                "Sequential",
                format!("a child named {name:?} already exists"),
            )
            .into());
        }
        self.children.push((name.to_string(), Box::new(m)));
        Ok(self)
    }

    /// Number of children.
    pub fn len(&self) -> usize {
        self.children.len()
    }

    /// True when there are no children.
    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }

    /// The child names in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.children.iter().map(|(n, _)| n.as_str())
    }

    /// The child named `name`.
    pub fn get(&self, name: &str) -> Option<&dyn Module> {
        self.children
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, m)| m.as_ref())
    }
}

impl fmt::Debug for Sequential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sequential")
            .field("children", &self.names().collect::<Vec<_>>())
            .finish()
    }
}

impl Module for Sequential {
    fn forward(&self, x: &Var, ctx: &Ctx) -> Result<Var> {
        self.children
            .iter()
            .try_fold(x.clone(), |h, (_, m)| m.forward(&h, ctx))
    }

    fn visit(&self, prefix: &str, v: &mut dyn Visitor) {
        for (name, m) in &self.children {
            m.visit(&join(prefix, name), v);
        }
    }
}

/// Visits `items` as PyTorch's `nn.ModuleList` attribute `name`: item `i`'s
/// parameters are named `{prefix}.{name}.{i}.…` (e.g. `blocks.3.norm1.weight`).
pub fn visit_list<M: Module>(prefix: &str, name: &str, items: &[M], v: &mut dyn Visitor) {
    let list = join(prefix, name);
    for (i, m) in items.iter().enumerate() {
        m.visit(&join(&list, &i.to_string()), v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Gelu, Linear, named_parameters};
    use allmlp_autograd::gradcheck::{GradcheckOptions, gradcheck};
    use allmlp_autograd::tensor_core::Tensor;

    fn names(m: &dyn Module) -> Vec<String> {
        named_parameters(m).into_iter().map(|(n, _)| n).collect()
    }

    #[test]
    fn sequential_gradcheck_names_and_errors() {
        let x = Tensor::randn(&[3, 4], 0.0, 1.0, 1).unwrap();
        let (w1, b1) = (
            Tensor::randn(&[5, 4], 0.0, 0.5, 2).unwrap(),
            Tensor::randn(&[5], 0.0, 0.5, 3).unwrap(),
        );
        let w2 = Tensor::randn(&[2, 5], 0.0, 0.5, 4).unwrap();
        gradcheck(
            "Sequential",
            &[x.clone(), w1, b1, w2],
            |v| {
                let mut s = Sequential::new();
                s.push(Linear::from_vars(v[1].clone(), Some(v[2].clone())))?;
                s.push(Gelu::new())?;
                s.push_named("out", Linear::from_vars(v[3].clone(), None))?;
                s.forward(&v[0], &Ctx::eval())
            },
            GradcheckOptions::default(),
        )
        .unwrap();

        let mut s = Sequential::new();
        s.push(Linear::new(4, 4, true, 0).unwrap()).unwrap();
        s.push_named("act", Gelu::tanh()).unwrap();
        s.push(Linear::new(4, 4, false, 1).unwrap()).unwrap();
        assert_eq!(s.names().collect::<Vec<_>>(), ["0", "act", "2"]);
        assert_eq!(names(&s), ["0.weight", "0.bias", "2.weight"]);
        assert!(s.get("act").is_some() && s.get("1").is_none());
        assert_eq!(
            format!("{s:?}"),
            r#"Sequential { children: ["0", "act", "2"] }"#
        );
        for bad in ["", "a.b", "act"] {
            let e = s.push_named(bad, Gelu::new()).unwrap_err().to_string();
            assert!(e.contains("Sequential"), "{e}");
        }
        let mut t = Sequential::new();
        t.push_named("1", Gelu::new()).unwrap();
        assert!(
            t.push(Gelu::new())
                .unwrap_err()
                .to_string()
                .contains("\"1\"")
        );
        // Empty: identity.
        let xv = Var::constant(x);
        assert_eq!(
            Sequential::new()
                .forward(&xv, &Ctx::eval())
                .unwrap()
                .value(),
            xv.value()
        );
        // A shape error inside a child propagates.
        assert!(
            s.forward(&Var::constant(Tensor::ones(&[2, 3]).unwrap()), &Ctx::eval())
                .is_err()
        );
    }

    struct Parent {
        blocks: Vec<Box<dyn Module>>,
        head: Sequential,
    }

    impl Module for Parent {
        fn forward(&self, x: &Var, ctx: &Ctx) -> Result<Var> {
            let h = self
                .blocks
                .iter()
                .try_fold(x.clone(), |h, b| b.forward(&h, ctx))?;
            self.head.forward(&h, ctx)
        }
        fn visit(&self, prefix: &str, v: &mut dyn Visitor) {
            visit_list(prefix, "blocks", &self.blocks, v);
            self.head.visit(&join(prefix, "head"), v);
        }
    }

    #[test]
    fn visit_list_names_blocks_and_nests_under_a_prefix() {
        let mut head = Sequential::new();
        head.push_named("fc", Linear::new(3, 2, true, 9).unwrap())
            .unwrap();
        let p = Parent {
            blocks: vec![
                Box::new(Linear::new(3, 3, true, 0).unwrap()),
                Box::new(Gelu::new()),
                Box::new(Linear::new(3, 3, false, 1).unwrap()),
            ],
            head,
        };
        assert_eq!(
            names(&p),
            [
                "blocks.0.weight",
                "blocks.0.bias",
                "blocks.2.weight",
                "head.fc.weight",
                "head.fc.bias"
            ]
        );
        let mut outer = Sequential::new();
        outer.push_named("model", p).unwrap();
        assert_eq!(names(&outer)[0], "model.blocks.0.weight");
        let y = outer.forward(&Var::constant(Tensor::ones(&[2, 3]).unwrap()), &Ctx::eval());
        assert_eq!(y.unwrap().shape(), [2, 2]);
    }
}
