//! Key remapping applied at load time: renames (prefix or regex with capture groups), drops,
//! and reshapes of matching keys, plus ready-made rule sets for known foreign checkpoints.
//!
//! Rules run in order on each key; a rule sees the name the previous rules produced. This is
//! the role of timm's `checkpoint_filter_fn`.

use std::fmt;

use indexmap::IndexMap;
use regex::Regex;

use super::StateDict;
use super::error::{Result, StateDictError};

/// One remapping rule. Build them with the [`Remap`] builder methods.
#[derive(Clone, Debug)]
pub enum RemapRule {
    /// Keys starting with `from` get `to` instead of that prefix.
    Prefix {
        /// The prefix to replace.
        from: String,
        /// Its replacement.
        to: String,
    },
    /// Every match of `pattern` in the key is replaced by `replacement`, which may refer to
    /// capture groups as `${1}` or `${name}` (the `regex` crate's syntax: write `${1}` rather
    /// than `$1` when a letter, digit or `_` follows).
    Regex {
        /// The pattern.
        pattern: Regex,
        /// The replacement template.
        replacement: String,
    },
    /// Keys matching `pattern` are reshaped to `shape`, where one entry may be `-1` (inferred
    /// from the element count, as in `torch.reshape`). The element count must not change.
    Reshape {
        /// Which keys.
        pattern: Regex,
        /// The target shape, `-1` for the inferred dimension.
        shape: Vec<isize>,
    },
    /// Keys matching `pattern` are dropped (e.g. a classifier head when fine-tuning).
    Drop {
        /// Which keys.
        pattern: Regex,
    },
}

/// An ordered list of [`RemapRule`]s, applied to every key of a state dict.
///
/// ```
/// use allmlp_layers::state_dict::Remap;
/// let r = Remap::new()
///     .prefix("module.", "")
///     .regex(r"^blocks\.(\d+)\.attn\.", "blocks.${1}.linear_tokens.")?
///     .reshape(r"\.alpha$", &[1, 1, -1])?;
/// assert_eq!(r.rename("module.blocks.3.attn.weight").as_deref(), Some("blocks.3.linear_tokens.weight"));
/// # Ok::<(), allmlp_layers::state_dict::StateDictError>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct Remap {
    rules: Vec<RemapRule>,
}

fn compile(pattern: &str) -> Result<Regex> {
    Regex::new(pattern).map_err(|e| StateDictError::InvalidPattern {
        pattern: pattern.to_string(),
        source: Box::new(e),
    })
}

impl Remap {
    /// No rules: keys and shapes pass through unchanged.
    pub fn new() -> Remap {
        Remap::default()
    }

    /// Adds a prefix rename: a key starting with `from` starts with `to` instead.
    pub fn prefix(mut self, from: impl Into<String>, to: impl Into<String>) -> Remap {
        self.rules.push(RemapRule::Prefix {
            from: from.into(),
            to: to.into(),
        });
        self
    }

    /// Adds a regex rename (all matches replaced; `${1}` refers to a capture group). Errors if
    /// the pattern does not compile.
    pub fn regex(mut self, pattern: &str, replacement: impl Into<String>) -> Result<Remap> {
        self.rules.push(RemapRule::Regex {
            pattern: compile(pattern)?,
            replacement: replacement.into(),
        });
        Ok(self)
    }

    /// Adds a reshape of the keys matching `pattern` to `shape` (one `-1` inferred). Errors if
    /// the pattern does not compile or the shape has more than one `-1` or an entry below -1.
    pub fn reshape(mut self, pattern: &str, shape: &[isize]) -> Result<Remap> {
        let bad = shape.iter().filter(|&&d| d == -1).count() > 1 || shape.iter().any(|&d| d < -1);
        if bad {
            return Err(StateDictError::Reshape {
                key: pattern.to_string(),
                target: fmt_target(shape),
                found: Vec::new(),
                reason: "a target shape may hold at most one -1 and no other negative entry".into(),
            });
        }
        self.rules.push(RemapRule::Reshape {
            pattern: compile(pattern)?,
            shape: shape.to_vec(),
        });
        Ok(self)
    }

    /// Adds a rule dropping the keys that match `pattern`.
    pub fn drop_matching(mut self, pattern: &str) -> Result<Remap> {
        self.rules.push(RemapRule::Drop {
            pattern: compile(pattern)?,
        });
        Ok(self)
    }

    /// Appends another rule set after this one.
    pub fn then(mut self, other: Remap) -> Remap {
        self.rules.extend(other.rules);
        self
    }

    /// The rules, in the order they run.
    pub fn rules(&self) -> &[RemapRule] {
        &self.rules
    }

    /// True when there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The name `key` gets after the rename and drop rules; `None` if a rule drops it.
    /// Reshape rules do not change names and are ignored here.
    pub fn rename(&self, key: &str) -> Option<String> {
        self.run(key, None)
            .expect("renaming alone cannot fail: only reshapes return errors")
    }

    /// The new name and shape of a tensor `key` of shape `shape`: `Ok(None)` if it is dropped,
    /// an error if a reshape rule cannot apply.
    pub fn plan(&self, key: &str, shape: &[usize]) -> Result<Option<(String, Vec<usize>)>> {
        let mut s = shape.to_vec();
        Ok(self.run(key, Some(&mut s))?.map(|k| (k, s)))
    }

    /// Runs the rules on `key`, and the reshape rules on `shape` when it is given.
    fn run(&self, key: &str, mut shape: Option<&mut Vec<usize>>) -> Result<Option<String>> {
        let mut k = key.to_string();
        for rule in &self.rules {
            match rule {
                RemapRule::Prefix { from, to } => {
                    if let Some(rest) = k.strip_prefix(from.as_str()) {
                        k = format!("{to}{rest}");
                    }
                }
                RemapRule::Regex {
                    pattern,
                    replacement,
                } => {
                    k = pattern.replace_all(&k, replacement.as_str()).into_owned();
                }
                RemapRule::Drop { pattern } => {
                    if pattern.is_match(&k) {
                        return Ok(None);
                    }
                }
                RemapRule::Reshape {
                    pattern,
                    shape: target,
                } => {
                    if let Some(s) = shape.as_deref_mut()
                        && pattern.is_match(&k)
                    {
                        *s = resolve(&k, target, s)?;
                    }
                }
            }
        }
        Ok(Some(k))
    }

    /// Applies the rules to every tensor of `sd`, keeping order and metadata. Two keys renamed
    /// to the same name are a [`StateDictError::DuplicateKey`] naming both sources.
    pub fn apply(&self, sd: StateDict) -> Result<StateDict> {
        if self.is_empty() {
            return Ok(sd);
        }
        let StateDict {
            tensors,
            metadata,
            source,
        } = sd;
        let mut out = IndexMap::with_capacity(tensors.len());
        let mut origin: IndexMap<String, String> = IndexMap::new();
        for (key, t) in tensors {
            let Some((name, shape)) = self.plan(&key, t.shape())? else {
                continue;
            };
            if let Some(first) = origin.get(&name) {
                return Err(StateDictError::DuplicateKey {
                    key: name,
                    first: first.clone(),
                    second: key,
                });
            }
            let t = if shape.as_slice() == t.shape() {
                t
            } else {
                allmlp_tensor_core::Tensor::from_vec(t.into_vec(), &shape).map_err(|source| {
                    StateDictError::Tensor {
                        key: name.clone(),
                        source,
                    }
                })?
            };
            origin.insert(name.clone(), key);
            out.insert(name, t);
        }
        Ok(StateDict {
            tensors: out,
            metadata,
            source,
        })
    }
}

fn fmt_target(shape: &[isize]) -> String {
    format!("{shape:?}")
}

/// Resolves a target shape with at most one `-1` against a tensor of shape `found`.
fn resolve(key: &str, target: &[isize], found: &[usize]) -> Result<Vec<usize>> {
    let err = |reason: String| StateDictError::Reshape {
        key: key.to_string(),
        target: fmt_target(target),
        found: found.to_vec(),
        reason,
    };
    let numel =
        allmlp_tensor_core::error::checked_numel("remap", found).map_err(|e| err(e.to_string()))?;
    let known = target
        .iter()
        .filter(|&&d| d >= 0)
        .try_fold(1usize, |acc, &d| acc.checked_mul(d as usize))
        .ok_or_else(|| err("the target's element count overflows".into()))?;
    let infer = target.contains(&-1);
    let inferred = if infer {
        if known == 0 || !numel.is_multiple_of(known) {
            return Err(err(format!(
                "{numel} elements cannot be split into a product of {known} and an inferred size"
            )));
        }
        numel / known
    } else {
        if known != numel {
            return Err(err(format!(
                "the element counts differ ({numel} vs {known})"
            )));
        }
        0
    };
    Ok(target
        .iter()
        .map(|&d| if d == -1 { inferred } else { d as usize })
        .collect())
}

/// The rules timm's `checkpoint_filter_fn` applies to the ResMLP authors' checkpoints (the
/// deit repository's `resmlp_models.py` names), giving timm's names:
///
/// | authors' | timm |
/// |---|---|
/// | `patch_embed.` | `stem.` |
/// | `blocks.{i}.attn.` | `blocks.{i}.linear_tokens.` |
/// | `blocks.{i}.mlp.` | `blocks.{i}.mlp_channels.` |
/// | `blocks.{i}.gamma_1`, `gamma_2` | `blocks.{i}.ls1`, `ls2` |
/// | `*.alpha`, `*.beta` of shape `[C]` | reshaped to `[1, 1, C]` |
///
/// timm replaces these substrings anywhere in a key; the rules here match them as whole
/// dotted components, which gives the same result on ResMLP's names without touching a name
/// that merely contains one (e.g. `mlp_channels.`). Applied to a checkpoint that already has
/// timm's names they change nothing, so one loader accepts both.
pub fn resmlp_authors_to_timm() -> Remap {
    // The patterns are literals checked by the tests below, so compiling cannot fail.
    let build = || -> Result<Remap> {
        Remap::new()
            .prefix("patch_embed.", "stem.")
            .regex(r"(^|\.)attn\.", "${1}linear_tokens.")?
            .regex(r"(^|\.)mlp\.", "${1}mlp_channels.")?
            .regex(r"(^|\.)gamma_(\d+)$", "${1}ls${2}")?
            .reshape(r"(^|\.)(alpha|beta)$", &[1, 1, -1])
    };
    build().expect("the built-in ResMLP rules are valid")
}

impl fmt::Display for RemapRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemapRule::Prefix { from, to } => write!(f, "prefix `{from}` -> `{to}`"),
            RemapRule::Regex {
                pattern,
                replacement,
            } => write!(f, "regex `{pattern}` -> `{replacement}`"),
            RemapRule::Reshape { pattern, shape } => {
                write!(f, "reshape `{pattern}` -> {}", fmt_target(shape))
            }
            RemapRule::Drop { pattern } => write!(f, "drop `{pattern}`"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_infers_and_checks_counts() {
        assert_eq!(resolve("k", &[1, 1, -1], &[5]).unwrap(), vec![1, 1, 5]);
        assert_eq!(resolve("k", &[2, 3], &[3, 2]).unwrap(), vec![2, 3]);
        assert_eq!(resolve("k", &[-1], &[]).unwrap(), vec![1]);
        let e = resolve("norm.alpha", &[4, -1], &[6])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("norm.alpha") && e.contains("[6]") && e.contains("[4, -1]"),
            "{e}"
        );
        let e = resolve("k", &[2, 2], &[5]).unwrap_err().to_string();
        assert!(e.contains("5 vs 4"), "{e}");
        assert!(resolve("k", &[0, -1], &[0]).is_err());
    }

    #[test]
    fn bad_rules_are_errors_not_panics() {
        let e = Remap::new().regex("(", "x").unwrap_err().to_string();
        assert!(e.contains("invalid regular expression `(`"), "{e}");
        assert!(Remap::new().reshape("a", &[-1, -1]).is_err());
        assert!(Remap::new().reshape("a", &[-2]).is_err());
        assert!(Remap::new().drop_matching("[").is_err());
    }

    #[test]
    fn rename_applies_rules_in_order() {
        let r = Remap::new()
            .prefix("module.", "")
            .regex(r"^layer(\d+)", "blocks.${1}")
            .unwrap()
            .drop_matching(r"^head\.")
            .unwrap();
        assert_eq!(r.rename("module.layer2.w").as_deref(), Some("blocks.2.w"));
        assert_eq!(r.rename("module.head.bias"), None);
        assert_eq!(r.rename("x.module.y").as_deref(), Some("x.module.y"));
        assert_eq!(r.rules().len(), 3);
        assert_eq!(r.rules()[0].to_string(), "prefix `module.` -> ``");
    }

    #[test]
    fn resmlp_rules_map_every_authors_name() {
        let r = resmlp_authors_to_timm();
        for (a, t) in [
            ("patch_embed.proj.weight", "stem.proj.weight"),
            ("blocks.0.attn.weight", "blocks.0.linear_tokens.weight"),
            ("blocks.11.attn.bias", "blocks.11.linear_tokens.bias"),
            (
                "blocks.3.mlp.fc1.weight",
                "blocks.3.mlp_channels.fc1.weight",
            ),
            ("blocks.3.mlp.fc2.bias", "blocks.3.mlp_channels.fc2.bias"),
            ("blocks.5.gamma_1", "blocks.5.ls1"),
            ("blocks.5.gamma_2", "blocks.5.ls2"),
            ("blocks.5.norm1.alpha", "blocks.5.norm1.alpha"),
            ("norm.beta", "norm.beta"),
            ("head.weight", "head.weight"),
            // timm names pass through unchanged.
            (
                "blocks.2.mlp_channels.fc1.weight",
                "blocks.2.mlp_channels.fc1.weight",
            ),
            (
                "blocks.2.linear_tokens.weight",
                "blocks.2.linear_tokens.weight",
            ),
            ("blocks.2.ls1", "blocks.2.ls1"),
            ("stem.proj.bias", "stem.proj.bias"),
        ] {
            assert_eq!(r.rename(a).as_deref(), Some(t), "{a}");
        }
        let plan = r.plan("blocks.0.norm2.beta", &[384]).unwrap().unwrap();
        assert_eq!(plan, ("blocks.0.norm2.beta".to_string(), vec![1, 1, 384]));
        let plan = r.plan("norm.alpha", &[1, 1, 8]).unwrap().unwrap();
        assert_eq!(plan.1, vec![1, 1, 8]);
        // Not an affine parameter: no reshape even though the name ends in "beta"-like text.
        let plan = r.plan("blocks.0.notbeta", &[4]).unwrap().unwrap();
        assert_eq!(plan.1, vec![4]);
    }
}
