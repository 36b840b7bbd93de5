//! The subcommands, and what they share: the error type, model options and tables.

pub mod cost;
pub mod eval;
pub mod infer;
pub mod info;
pub mod known;
pub mod models;
pub mod predict;
pub mod reparam;
pub mod viz;

use std::fmt;

use allmlp_layers::state_dict::StateDictError;
use allmlp_models::{ModelError, ModelOptions};
use clap::Args;
use serde_json::Value;

/// A command's failure: the message `main` prints after `error: `.
#[derive(Debug)]
pub struct CliError(pub String);

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CliError {}

impl From<ModelError> for CliError {
    fn from(e: ModelError) -> Self {
        CliError(e.to_string())
    }
}

impl From<StateDictError> for CliError {
    fn from(e: StateDictError) -> Self {
        CliError(e.to_string())
    }
}

impl From<allmlp_layers::autograd::AutogradError> for CliError {
    fn from(e: allmlp_layers::autograd::AutogradError) -> Self {
        CliError(e.to_string())
    }
}

impl From<allmlp_layers::autograd::tensor_core::TensorError> for CliError {
    fn from(e: allmlp_layers::autograd::tensor_core::TensorError) -> Self {
        CliError(e.to_string())
    }
}

/// Result of a command.
pub type CliResult<T> = Result<T, CliError>;

/// Overrides of a registered model's input and output sizes.
#[derive(Args, Debug, Clone, Default)]
pub struct ModelArgs {
    /// Square input side in pixels (default: the model's own, e.g. 224 or 28). Mixer/ResMLP
    /// token-mixing weights and RepMLP FC weights depend on it.
    #[arg(long, value_name = "N")]
    pub img_size: Option<usize>,
    /// Input channels (default: the model's own, 3 for ImageNet models, 1 for *_tiny).
    #[arg(long, value_name = "C")]
    pub in_chans: Option<usize>,
    /// Number of classes, i.e. the width of the logits (default: the model's own).
    #[arg(long, value_name = "K")]
    pub num_classes: Option<usize>,
}

impl ModelArgs {
    /// The options these flags set on top of `base`.
    pub fn apply(&self, mut base: ModelOptions) -> ModelOptions {
        base.img_size = self.img_size.or(base.img_size);
        base.in_chans = self.in_chans.or(base.in_chans);
        base.num_classes = self.num_classes.or(base.num_classes);
        base
    }
}

/// The registry options a checkpoint's `config` metadata describes: the sizes
/// (`img_size`, `in_chans`, `num_classes`, `patch_size`) and `gelu_tanh`, where present.
/// Dropout rates are training-only and not carried over. A size that is not a whole number,
/// or a `gelu_tanh` that is not a boolean, is an error naming the key and its value (it would
/// otherwise silently become the model's default).
pub fn options_from_config(config: Option<&Value>) -> CliResult<ModelOptions> {
    let mut o = ModelOptions::default();
    let Some(c) = config else { return Ok(o) };
    let bad = |k: &str, v: &Value, what: &str| {
        CliError(format!(
            "metadata `config`: `{k}` is {v}, which is not {what}"
        ))
    };
    let num = |k: &str| match c.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| bad(k, v, "a whole number ≥ 0")),
    };
    o.img_size = num("img_size")?;
    o.in_chans = num("in_chans")?;
    o.num_classes = num("num_classes")?;
    o.patch_size = num("patch_size")?;
    o.gelu_tanh = match c.get("gelu_tanh") {
        None | Some(Value::Null) => false,
        Some(v) => v
            .as_bool()
            .ok_or_else(|| bad("gelu_tanh", v, "true or false"))?,
    };
    Ok(o)
}

/// Sets the kernels' thread count from `--threads` (nothing when not given); the error names
/// the flag.
pub fn set_threads(threads: Option<usize>) -> CliResult<()> {
    match threads {
        Some(t) => allmlp_tensor_core::threads::set_num_threads(t)
            .map_err(|e| CliError(format!("--threads {t}: {e}"))),
        None => Ok(()),
    }
}

/// Checks `name` is registered; the error lists every registered name.
pub fn check_registered(name: &str) -> CliResult<()> {
    let names = allmlp_models::model_names();
    if names.contains(&name) {
        Ok(())
    } else {
        Err(CliError(format!(
            "unknown model `{name}`; registered models: {} (see `allmlp models`)",
            names.join(", ")
        )))
    }
}

/// At most this many lines of a multi-line message (a strict-load report can list hundreds
/// of keys); the rest are summarised.
pub fn truncate_lines(msg: &str, max: usize) -> String {
    let lines: Vec<&str> = msg.lines().collect();
    if lines.len() <= max {
        return msg.to_string();
    }
    format!(
        "{}\n  … and {} more",
        lines[..max].join("\n"),
        lines.len() - max
    )
}

/// A table with right-aligned numeric columns (those named in `right`).
pub fn format_table(header: &[&str], rows: &[Vec<String>], right: &[bool]) -> String {
    let n = header.len();
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, cell) in r.iter().enumerate().take(n) {
            width[i] = width[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let pad = width[i] - cell.chars().count();
            if i > 0 {
                s.push_str("  ");
            }
            if right.get(i).copied().unwrap_or(false) {
                s.push_str(&" ".repeat(pad));
                s.push_str(cell);
            } else {
                s.push_str(cell);
                if i + 1 < n {
                    s.push_str(&" ".repeat(pad));
                }
            }
        }
        s
    };
    let mut out = line(header.to_vec());
    out.push('\n');
    let total: usize = width.iter().sum::<usize>() + 2 * (n - 1);
    out.push_str(&"-".repeat(total));
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

/// `n` with thousands separators: `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use allmlp_models::create_model;

    /// Every family's `config` gives back the options that rebuild the same input and output
    /// sizes; a malformed size or flag is an error naming the key and the value.
    #[test]
    fn options_come_back_from_every_familys_config() {
        for (name, img_size) in [
            ("mixer_tiny", Some(56)),
            ("resmlp_tiny", Some(56)),
            ("repmlp_tiny", Some(56)),
            ("repmlp_pure", Some(64)),
            ("repmlpnet_t224", None),
            ("repmlp_res50_light_224", None),
        ] {
            let sizes = ModelOptions {
                img_size,
                in_chans: Some(2),
                num_classes: Some(5),
                ..ModelOptions::default()
            };
            let m = create_model(name, &sizes).unwrap();
            let o = options_from_config(Some(&m.config())).unwrap();
            let again = create_model(name, &o).unwrap();
            assert_eq!(again.input_shape(), m.input_shape(), "{name}");
            assert_eq!(again.num_classes(), 5, "{name}");
        }
        for (key, value, what) in [
            ("img_size", serde_json::json!("28"), "a whole number"),
            ("num_classes", serde_json::json!(-5), "a whole number"),
            ("gelu_tanh", serde_json::json!("yes"), "true or false"),
        ] {
            let c = serde_json::json!({ key: value });
            let e = options_from_config(Some(&c)).unwrap_err().0;
            assert!(
                e.contains(&format!("`{key}` is {value}, which is not {what}")),
                "{e}"
            );
        }
    }

    #[test]
    fn tables_align_and_numbers_group() {
        let t = format_table(
            &["name", "n"],
            &[
                vec!["a".into(), "1".into()],
                vec!["bbb".into(), "22".into()],
            ],
            &[false, true],
        );
        assert_eq!(
            t,
            "name   n\n-------\na      1\nbbb   22\n".replace("-------", "--------")
        );
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(12), "12");
        let long = (0..30)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(truncate_lines(&long, 5).ends_with("… and 25 more"));
    }
}
