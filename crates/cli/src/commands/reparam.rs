//! `allmlp reparam`: converts a training checkpoint into the deploy (re-parameterized) one.
//!
//! The conversion itself is `allmlp_models::convert_checkpoint`; this module does the argument
//! handling and checks around it, behind [`Converter`] (so tests can stand in a converter).

use std::path::Path;

use allmlp_layers::checkpoint::state_dict;
use allmlp_layers::state_dict::{StateDict, Strictness};
use allmlp_models::{ModelOptions, create_model};

use super::{CliError, CliResult, ModelArgs, options_from_config, truncate_lines};
use crate::checkpoint::{check_finite, check_output_differs};

/// Train state dict, registry name, options → deploy state dict (error message on failure).
pub type Converter = fn(&StateDict, &str, &ModelOptions) -> Result<StateDict, String>;

/// The train → deploy conversion: `allmlp_models::convert_checkpoint`.
pub fn converter() -> Converter {
    |sd, name, opts| {
        allmlp_models::convert_checkpoint(sd.clone(), name, opts).map_err(|e| e.to_string())
    }
}

/// Reads `weights`, resolves and checks the model (its sizes from the checkpoint's `config`
/// metadata when that describes this model, overridden by `args`), converts with `convert`
/// and writes `output` (atomically). Nothing is written on any error, and `output` may not be
/// `weights` itself.
pub fn run(
    weights: &Path,
    output: &Path,
    (model, args): (Option<&str>, &ModelArgs),
    convert: Converter,
) -> CliResult<String> {
    check_output_differs(output, &[("--weights", weights)])?;
    let sd = StateDict::load(weights)?;
    let name = crate::checkpoint::model_name(&sd, model, weights)?;
    // The checkpoint's config describes its sizes only if it is a checkpoint of this model.
    let config: Option<serde_json::Value> = if sd.model() == Some(name.as_str()) {
        sd.config()?
    } else {
        None
    };
    if config
        .as_ref()
        .and_then(|c| c.get("deploy"))
        .and_then(|d| d.as_bool())
        == Some(true)
    {
        return Err(CliError(format!(
            "{}: already a deploy checkpoint (config says deploy: true); reparam takes a \
             training checkpoint",
            weights.display()
        )));
    }
    check_finite(&sd, weights)?;
    let opts = args.apply(
        options_from_config(config.as_ref())
            .map_err(|e| CliError(format!("{}: {e}", weights.display())))?,
    );
    // The checkpoint must be the training structure of `name` before anything is converted.
    let train = create_model(&name, &opts)?;
    let expected = state_dict(&*train).shapes();
    sd.clone()
        .match_expected(expected, Strictness::Strict)
        .map_err(|e| CliError(truncate_lines(&e.to_string(), 20)))?;
    let mut deploy = convert(&sd, &name, &opts).map_err(|e| CliError(format!("reparam: {e}")))?;
    if deploy.model().is_none() {
        deploy.set_model(name.clone());
    }
    // The training metadata (dataset, normalization, classes, epoch, metrics) still describes
    // the converted weights; the structure's own keys (`model`, `config`, `deploy`) do not.
    for (k, v) in &sd.metadata {
        if !deploy.metadata.contains_key(k) {
            deploy.set_metadata(k.clone(), v.clone());
        }
    }
    deploy.save(output)?;
    Ok(format!(
        "{name}: wrote the deploy checkpoint {} ({} tensors, {} values; training form had {})",
        output.display(),
        deploy.len(),
        deploy.num_elements(),
        sd.num_elements()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use allmlp_layers::autograd::tensor_core::Tensor;

    fn fake(sd: &StateDict, _: &str, _: &ModelOptions) -> Result<StateDict, String> {
        let mut out = StateDict::new();
        out.insert(
            "n",
            Tensor::full(&[1], sd.len() as f32).map_err(|e| e.to_string())?,
        );
        Ok(out)
    }

    /// The converter's result is written with the model name and the training metadata.
    #[test]
    fn a_converter_is_called_and_its_result_saved() {
        let dir = tempfile::tempdir().unwrap();
        let (w, o) = (
            dir.path().join("w.safetensors"),
            dir.path().join("o.safetensors"),
        );
        let m = create_model("mixer_tiny", &ModelOptions::default()).unwrap();
        let mut sd = state_dict(&*m);
        sd.set_model("mixer_tiny");
        sd.set_metadata("classes", "[\"a\"]");
        sd.save(&w).unwrap();
        let n = sd.len() as f32;
        run(&w, &o, (None, &ModelArgs::default()), fake).unwrap();
        let back = StateDict::load(&o).unwrap();
        assert_eq!(back.model(), Some("mixer_tiny"));
        assert_eq!(back.metadata_value("classes"), Some("[\"a\"]"));
        assert_eq!(back.get("n").unwrap().to_vec(), [n]);
    }
}
