//! `allmlp infer`: logits for a batch of images, safetensors in and out.

use std::path::Path;

use allmlp_layers::autograd::tensor_core::Tensor;
use allmlp_layers::autograd::tensor_core::error::fmt_shape;
use allmlp_layers::infer;
use allmlp_layers::state_dict::StateDict;

use super::{CliError, CliResult, ModelArgs};
use crate::checkpoint::{LoadedModel, check_output_differs, load_model};

/// Name of the input tensor in the input file.
pub const INPUT_KEY: &str = "input";
/// Name of the output tensor in the output file.
pub const OUTPUT_KEY: &str = "logits";

/// Loads the model (name from `model` or the checkpoint's metadata, sizes from its `config`
/// metadata unless `args` overrides them), runs one eval forward without a tape on the
/// `input` tensor of `input` and writes `logits` to `output`.
pub fn run(
    model: Option<&str>,
    args: &ModelArgs,
    weights: &Path,
    input: &Path,
    output: &Path,
) -> CliResult<String> {
    check_output_differs(output, &[("--weights", weights), ("--input", input)])?;
    let LoadedModel { name, net, .. } = load_model(weights, model, args)?;

    let inputs = StateDict::load(input)?;
    let Some(x) = inputs.get(INPUT_KEY) else {
        let found: Vec<&str> = inputs.keys().collect();
        return Err(CliError(format!(
            "{}: no tensor `{INPUT_KEY}` (expected `{INPUT_KEY}` [N, C, H, W] f32; found: {})",
            input.display(),
            if found.is_empty() {
                "no tensors".to_string()
            } else {
                found.join(", ")
            }
        )));
    };
    let [c, h, w] = net.input_shape();
    let s = x.shape();
    if s.len() != 4 || s[0] == 0 || s[1..] != [c, h, w] {
        return Err(CliError(format!(
            "{}: tensor `{INPUT_KEY}` has shape {}; {name} expects [N, {c}, {h}, {w}] with N ≥ 1",
            input.display(),
            fmt_shape(s)
        )));
    }
    check_finite_input(x, input)?;
    let logits = infer(&*net, x)?;
    let mut out = StateDict::new();
    out.set_model(name.clone());
    out.insert(OUTPUT_KEY, logits.clone());
    out.save(output)?;
    Ok(format!(
        "{name}: wrote `{OUTPUT_KEY}` {} to {}",
        fmt_shape(logits.shape()),
        output.display()
    ))
}

/// An error naming the first NaN or infinity in `x` ([N, C, H, W]) by its position: the logits
/// of that image would be NaN, a result no caller can use (PyTorch would return them).
fn check_finite_input(x: &Tensor, file: &Path) -> CliResult<()> {
    let Some((i, v)) = x.first_non_finite() else {
        return Ok(());
    };
    let mut at = vec![0; x.shape().len()];
    let mut rest = i;
    for (a, &d) in at.iter_mut().zip(x.shape()).rev() {
        *a = rest % d;
        rest /= d;
    }
    Err(CliError(format!(
        "{}: tensor `{INPUT_KEY}` holds {v} at {}; the logits of image {} would not be numbers \
         (replace or drop it)",
        file.display(),
        fmt_shape(&at),
        at[0]
    )))
}
