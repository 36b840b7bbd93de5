//! Matching a state dict against the `(name, shape)` list a model expects: strict loading lists
//! every problem at once; non-strict loading keeps what matches and reports the rest.

use std::fmt;

use allmlp_tensor_core::error::fmt_shape;
use indexmap::IndexMap;

use super::StateDict;
use super::error::{Result, StateDictError};

/// How to treat keys that do not match the model, like PyTorch's `strict=` argument.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Strictness {
    /// Any missing key, unexpected key or shape mismatch is an error listing all of them.
    #[default]
    Strict,
    /// Load what matches; missing, unexpected and mismatched keys go into the [`LoadReport`].
    NonStrict,
}

/// A key whose tensor has another shape than the model's parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShapeMismatch {
    /// The parameter name.
    pub name: String,
    /// The shape the model expects.
    pub expected: Vec<usize>,
    /// The shape found in the state dict.
    pub found: Vec<usize>,
}

/// What did not match when a state dict was loaded into a model's parameters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Parameters the model expects that the state dict lacks, with their expected shapes.
    pub missing: Vec<(String, Vec<usize>)>,
    /// Keys in the state dict that the model does not have, with their shapes.
    pub unexpected: Vec<(String, Vec<usize>)>,
    /// Keys present on both sides with different shapes.
    pub mismatched: Vec<ShapeMismatch>,
}

impl LoadReport {
    /// True when everything matched.
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.mismatched.is_empty()
    }
}

impl fmt::Display for LoadReport {
    /// One summary line, then one line per problem, e.g.
    /// `missing key `head.bias` (expected shape [10])`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_clean() {
            return write!(f, "no problems");
        }
        write!(
            f,
            "{} missing key(s), {} unexpected key(s), {} shape mismatch(es)",
            self.missing.len(),
            self.unexpected.len(),
            self.mismatched.len()
        )?;
        for (name, shape) in &self.missing {
            write!(
                f,
                "\n  missing key `{name}` (expected shape {})",
                fmt_shape(shape)
            )?;
        }
        for (name, shape) in &self.unexpected {
            write!(
                f,
                "\n  unexpected key `{name}` (shape {})",
                fmt_shape(shape)
            )?;
        }
        for m in &self.mismatched {
            write!(
                f,
                "\n  shape mismatch for `{}`: expected {}, found {}",
                m.name,
                fmt_shape(&m.expected),
                fmt_shape(&m.found)
            )?;
        }
        Ok(())
    }
}

/// The outcome of [`StateDict::match_expected`]: the tensors that matched, in the model's order,
/// and what did not (always clean in strict mode).
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The matching tensors, ordered as the model listed its parameters; metadata is kept.
    pub state_dict: StateDict,
    /// Missing, unexpected and mismatched keys (empty in strict mode, which errors instead).
    pub report: LoadReport,
}

impl StateDict {
    /// Matches this state dict against a model's expected `(name, shape)` list.
    ///
    /// Every expected name must be present with exactly the expected shape and no other key may
    /// be present; in [`Strictness::Strict`] mode any violation is a
    /// [`StateDictError::Incompatible`] that lists **all** of them (missing keys, unexpected
    /// keys, shape mismatches with expected and found shapes). In [`Strictness::NonStrict`] mode
    /// the matching tensors are returned with a [`LoadReport`] of the rest. An expected list
    /// that names a parameter twice is an error ([`StateDictError::DuplicateExpected`]).
    pub fn match_expected<I, N, S>(self, expected: I, strictness: Strictness) -> Result<Loaded>
    where
        I: IntoIterator<Item = (N, S)>,
        N: Into<String>,
        S: AsRef<[usize]>,
    {
        let mut want: IndexMap<String, Vec<usize>> = IndexMap::new();
        for (name, shape) in expected {
            let name = name.into();
            if want.contains_key(&name) {
                return Err(StateDictError::DuplicateExpected { key: name });
            }
            want.insert(name, shape.as_ref().to_vec());
        }
        let StateDict {
            mut tensors,
            metadata,
            source,
        } = self;
        let mut report = LoadReport::default();
        let mut matched = IndexMap::with_capacity(want.len());
        for (name, shape) in want {
            match tensors.shift_remove(&name) {
                None => report.missing.push((name, shape)),
                Some(t) if t.shape() != shape.as_slice() => report.mismatched.push(ShapeMismatch {
                    found: t.shape().to_vec(),
                    expected: shape,
                    name,
                }),
                Some(t) => {
                    matched.insert(name, t);
                }
            }
        }
        report.unexpected = tensors
            .into_iter()
            .map(|(k, t)| (k, t.shape().to_vec()))
            .collect();
        if strictness == Strictness::Strict && !report.is_clean() {
            return Err(StateDictError::Incompatible {
                path: source,
                report,
            });
        }
        Ok(Loaded {
            state_dict: StateDict {
                tensors: matched,
                metadata,
                source,
            },
            report,
        })
    }
}
