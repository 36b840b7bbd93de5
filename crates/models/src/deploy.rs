//! Train → deploy conversion (structural re-parameterization) of the RepMLP family.
//!
//! A trained RepMLP (v1) or RepMLPNet model is converted ONCE, with the pure tensor functions of
//! `allmlp-reparam`, into a new model in its deploy form (the trained model is untouched). All
//! folds use the eval-mode BatchNorm statistics (running mean/var), so the deploy model equals
//! the trained model **in eval mode** (docs/reparam.md, "Model-level conversion").
//!
//! | model | what is converted | what stays |
//! |---|---|---|
//! | RepMLP v1 block | `fc3_bn` and every `repconv{k}` (BN folded, padded to the largest `k`, conv → FC) into `fc3.weight` + `fc3.bias`; `avg.bn` into `fc1_fc2.fc1` | `fc1_fc2.fc2`, the pooling |
//! | RepMLP-ResNet, pure nets | every `ConvBN`/`ConvBNReLU` → conv with bias; RepMLP blocks as above | `linear`, the stem/ResNet convs stay convolutions |
//! | RepMLPNet | each block's `fc3_bn` + `repconv{1,3}` into `fc3.weight` + `fc3.bias` (the authors' `locality_injection`) | as the authors: `conv_embedding`, `embeds`, the FFN conv-BNs, `prebn1/2`, `head_norm` unfused |
//!
//! Entry points:
//! - typed: `to_deploy(&self) -> Result<Self>` on [`RepMlpResNet`](crate::RepMlpResNet),
//!   [`RepMlpPure`](crate::RepMlpPure), [`RepMlpNet`](crate::RepMlpNet) (and on their blocks
//!   and conv-BNs), for any configuration, registered or not;
//! - dynamic: the [`Deployable`] trait (the same, boxed), [`to_deploy`] for any `&dyn Model`
//!   built from the registry, [`create_deployable`] (train form, as a `Deployable`),
//!   [`create_deploy_model`] (deploy form, default-initialised, to load a deploy checkpoint
//!   into), and [`convert_checkpoint`] (state dict → state dict, for the CLI).
//!
//! ```
//! use allmlp_models::{ModelOptions, create_deployable, create_deploy_model, to_deploy};
//! use allmlp_models::layers::checkpoint::{load_state_dict, state_dict};
//! use allmlp_models::layers::state_dict::Strictness;
//! let trained = create_deployable("repmlp_tiny", &ModelOptions::default())?;
//! let deployed = trained.deploy()?;
//! assert!(deployed.is_deploy() && deployed.config()["deploy"] == true);
//! // The registry builds the same deploy structure directly (e.g. to load a deploy checkpoint).
//! let fresh = create_deploy_model("repmlp_tiny", &ModelOptions::default())?;
//! load_state_dict(fresh.as_ref(), state_dict(deployed.as_ref()), Strictness::Strict)?;
//! // Converting twice, or converting a model without branches, is an error naming the model.
//! let e = to_deploy(deployed.as_ref()).err().unwrap();
//! assert!(e.to_string().contains("repmlp_tiny") && e.to_string().contains("already"), "{e}");
//! let e = create_deployable("mixer_tiny", &ModelOptions::default()).err().unwrap();
//! assert!(e.to_string().contains("mixer_tiny"), "{e}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use allmlp_layers::checkpoint::{load_state_dict, state_dict};
use allmlp_layers::state_dict::{StateDict, Strictness};
use allmlp_layers::{BatchNorm1d, BatchNorm2d, Conv2d, Linear};
use allmlp_reparam::BnParams;
use serde_json::Value;

use crate::error::{ModelError, Result};
use crate::model::Model;
use crate::registry::{ModelOptions, entries};

/// A model with a training form and a deploy form.
pub trait Deployable: Model {
    /// The deploy-form model computed once from this (trained) model's parameters and
    /// eval-mode BN statistics; `self` is untouched. An already-deployed model is a
    /// [`ModelError::InvalidConfig`] naming it.
    fn deploy(&self) -> Result<Box<dyn Model>>;
}

/// One registered model that has a deploy form: its name and a builder of either form.
pub(crate) struct DeployEntry {
    /// The registry name.
    pub(crate) name: &'static str,
    /// Builds the training form (`deploy = false`) or the deploy form (`true`).
    pub(crate) build: fn(&ModelOptions, bool) -> Result<Box<dyn Deployable>>,
}

fn deploy_entries() -> Vec<DeployEntry> {
    let mut v = crate::repmlp::deploy_entries();
    v.extend(crate::repmlpnet::deploy_entries());
    v
}

/// The error for converting a model that is already in deploy form.
pub(crate) fn already_deployed(model: &str) -> ModelError {
    ModelError::InvalidConfig {
        model: model.to_string(),
        msg: "already in deploy form (re-parameterized); there is nothing left to convert"
            .to_string(),
    }
}

fn entry(name: &str) -> Result<DeployEntry> {
    if let Some(e) = deploy_entries().into_iter().find(|e| e.name == name) {
        return Ok(e);
    }
    match entries().into_iter().find(|e| e.name == name) {
        Some(e) => Err(ModelError::InvalidConfig {
            model: name.to_string(),
            msg: format!(
                "has no deploy form ({:?} models have no BatchNorm or parallel branches to \
                 re-parameterize; only RepMLP and RepMLPNet models convert)",
                e.family
            ),
        }),
        None => Err(ModelError::UnknownModel {
            name: name.to_string(),
            known: deploy_entries()
                .iter()
                .map(|e| e.name)
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// The names of the registered models that have a deploy form.
pub fn deployable_names() -> Vec<&'static str> {
    deploy_entries().iter().map(|e| e.name).collect()
}

/// Builds the registered model `name` in its TRAINING form, as a [`Deployable`] (the same
/// model [`create_model`](crate::create_model) builds). A model with no deploy form (Mixer,
/// ResMLP) is a [`ModelError::InvalidConfig`] naming it.
pub fn create_deployable(name: &str, opts: &ModelOptions) -> Result<Box<dyn Deployable>> {
    (entry(name)?.build)(opts, false)
}

/// Builds the registered model `name` directly in its DEPLOY form (default-initialised
/// weights, `is_deploy() == true`, config `"deploy": true`), to load a deploy checkpoint into
/// (`load_state_dict(.., Strict)`). `create_model` always builds the training form.
pub fn create_deploy_model(name: &str, opts: &ModelOptions) -> Result<Box<dyn Model>> {
    let m: Box<dyn Model> = (entry(name)?.build)(opts, true)?;
    Ok(m)
}

/// The registry options that rebuild a model from its configuration JSON.
fn options_from_config(c: &Value) -> ModelOptions {
    let u = |k: &str| c.get(k).and_then(Value::as_u64).map(|v| v as usize);
    ModelOptions {
        img_size: u("img_size"),
        in_chans: u("in_chans"),
        num_classes: u("num_classes"),
        patch_size: u("patch_size"),
        gelu_tanh: c.get("gelu_tanh").and_then(Value::as_bool).unwrap_or(false),
        drop_rate: c.get("drop_rate").and_then(Value::as_f64).unwrap_or(0.0) as f32,
        ..ModelOptions::default()
    }
}

/// The deploy form of any registry-built RepMLP / RepMLPNet model.
///
/// `model` is identified by its name and configuration (it must be a registered name with
/// registry options, as `create_model` builds them); its weights are copied into a training
/// model of the concrete type and converted. For a model built from a custom configuration,
/// call the typed `to_deploy` of its type instead. Errors: an already-deployed model, a model
/// with nothing to convert (Mixer, ResMLP) and an unregistered configuration, each naming it.
pub fn to_deploy(model: &dyn Model) -> Result<Box<dyn Model>> {
    let name = model.name();
    if model.is_deploy() {
        return Err(already_deployed(name));
    }
    let e = entry(name)?;
    let config = model.config();
    let train = (e.build)(&options_from_config(&config), false)?;
    if train.config() != config {
        return Err(ModelError::InvalidConfig {
            model: name.to_string(),
            msg: format!(
                "the configuration {config} is not a registry configuration of `{name}`; \
                 convert it with the `to_deploy` method of its type"
            ),
        });
    }
    load_state_dict(train.as_ref(), state_dict(model), Strictness::Strict)?;
    train.deploy()
}

/// Converts a training checkpoint of the registered model `model_name` (built with `opts`)
/// into its deploy checkpoint.
///
/// The state dict is loaded STRICTLY into the training model, converted, and the deploy
/// model's state dict returned with metadata `deploy = "true"`, `model = model_name` and
/// `config` (the deploy configuration JSON). A checkpoint whose metadata already says deploy
/// (`deploy = "true"` or a config with `"deploy": true`) is an error, as is a model with
/// nothing to convert.
pub fn convert_checkpoint(
    train_sd: StateDict,
    model_name: &str,
    opts: &ModelOptions,
) -> Result<StateDict> {
    let meta_deploy = train_sd.metadata_value("deploy") == Some("true");
    let cfg_deploy = matches!(
        train_sd.config::<Value>(),
        Ok(Some(ref c)) if c.get("deploy") == Some(&Value::Bool(true))
    );
    if meta_deploy || cfg_deploy {
        return Err(ModelError::InvalidConfig {
            model: model_name.to_string(),
            msg: "the checkpoint is already a deploy checkpoint (its metadata says deploy); \
                  there is nothing left to convert"
                .to_string(),
        });
    }
    let train = create_deployable(model_name, opts)?;
    load_state_dict(train.as_ref(), train_sd, Strictness::Strict)?;
    let deploy = train.deploy()?;
    let mut sd = state_dict(deploy.as_ref());
    sd.set_metadata("deploy", "true");
    sd.set_model(model_name);
    sd.set_config(&deploy.config())?;
    Ok(sd)
}

// ------------------------------------------------------------- helpers for the families

/// The eval-mode parameters of a `BatchNorm2d`.
pub(crate) fn bn2d(bn: &BatchNorm2d) -> Result<BnParams> {
    Ok(BnParams::from_batch_norm2d(bn)?)
}

/// The eval-mode parameters of a `BatchNorm1d`.
pub(crate) fn bn1d(bn: &BatchNorm1d) -> Result<BnParams> {
    Ok(BnParams::from_batch_norm1d(bn)?)
}

/// An independent copy of a `Linear` (new parameters holding the same values).
pub(crate) fn copy_linear(l: &Linear) -> Result<Linear> {
    Ok(Linear::from_tensors(
        l.weight.value(),
        l.bias.as_ref().map(|b| b.value()),
    )?)
}

/// An independent copy of a `Conv2d`.
pub(crate) fn copy_conv2d(c: &Conv2d) -> Result<Conv2d> {
    Ok(Conv2d::from_tensors(
        c.weight.value(),
        c.bias.as_ref().map(|b| b.value()),
        c.params,
    )?)
}

/// An independent copy of a `BatchNorm2d`, statistics and `num_batches_tracked` included.
pub(crate) fn copy_bn2d(bn: &BatchNorm2d) -> Result<BatchNorm2d> {
    let out = BatchNorm2d::from_tensors(
        bn.weight.as_ref().map(|w| w.value()),
        bn.bias.as_ref().map(|b| b.value()),
        bn.running_mean.get(),
        bn.running_var.get(),
        bn.eps,
        bn.momentum,
    )?;
    out.num_batches_tracked.set(bn.num_batches_tracked.get());
    Ok(out)
}
