//! RepMLP, paper v1 (Ding et al., arXiv 2105.01883; the authors' `repmlp.py`,
//! `repmlp_blocks.py`, `repmlp_resnet.py` up to commit 4b3e3474).
//!
//! - [`RepMlpBlock`]: the block (Global, Partition and Local Perceptrons), train and deploy forms
//!   in one type; FC3 is a batched GEMM over groups ([`GroupedFc`]).
//! - [`RepMlpResNet`]: `repmlp_res50_light_224`, `repmlp_res50_bottleneck_224`.
//! - [`RepMlpPure`]: our pure-MLP nets `repmlp_pure` (CIFAR) and `repmlp_tiny` (Fashion-MNIST).
//!
//! Names and parameter layouts are the authors', so their checkpoints load unchanged. The
//! conversion train → deploy (structural re-parameterization) is `to_deploy` on each model,
//! block and [`ConvBn`] (see [`crate::deploy`] and docs/reparam.md).

mod block;
mod conv_bn;
mod fc3;
mod pure;
mod resnet;

pub use block::{GlobalPerceptron, LocalBranch, RepMlpBlock, RepMlpBlockConfig, TrainBranches};
pub use conv_bn::{ConvBn, ConvSpec};
pub use fc3::GroupedFc;
pub use pure::{PureUnit, RepMlpPure, RepMlpPureConfig};
pub use resnet::{
    BaseBlock, BottleneckBlock, LightBlock, RepMlpResNet, RepMlpResNetConfig, ResBlock,
    ResNetBlockKind,
};

use allmlp_layers::autograd::AutogradError;
use allmlp_layers::autograd::tensor_core::error::fmt_shape;

use crate::error::ModelError;
use crate::registry::{Entry, EvalTransform, Family, ModelOptions};

/// The registry options a RepMLP model accepts (after [`Opts::check`]).
pub(crate) struct Opts {
    pub(crate) img_size: Option<usize>,
    pub(crate) in_chans: Option<usize>,
    pub(crate) num_classes: Option<usize>,
    pub(crate) drop_rate: f32,
}

impl Opts {
    /// Rejects options that have no meaning for these models (patches, GELU, drop-path,
    /// zero-initialised residual branches).
    pub(crate) fn check(model: &str, o: &ModelOptions) -> Result<Opts, ModelError> {
        let bad = |msg: &str| ModelError::InvalidConfig {
            model: model.to_string(),
            msg: msg.to_string(),
        };
        if o.patch_size.is_some() {
            return Err(bad(
                "RepMLP models have no patch_size (they take whole feature maps)",
            ));
        }
        if o.gelu_tanh {
            return Err(bad(
                "RepMLP models use ReLU, not GELU (gelu_tanh does not apply)",
            ));
        }
        if o.zero_init_residual {
            return Err(bad(
                "zero_init_residual applies to the Mixer and ResMLP families only",
            ));
        }
        if o.drop_path_rate != 0.0 {
            return Err(bad(&format!(
                "RepMLP models have no stochastic depth, got drop_path_rate {}",
                o.drop_path_rate
            )));
        }
        Ok(Opts {
            img_size: o.img_size,
            in_chans: o.in_chans,
            num_classes: o.num_classes,
            drop_rate: o.drop_rate,
        })
    }
}

/// `Ok` if `shape` is `[B ≥ 1, C, H, W]` with `[C, H, W] == want`, else
/// [`ModelError::BadInput`] naming `model` and saying what fixes the size (`why`).
pub(crate) fn check_image(
    model: &str,
    shape: &[usize],
    want: [usize; 3],
    why: &str,
) -> Result<(), ModelError> {
    if shape.len() == 4 && shape[0] > 0 && shape[1..] == want {
        return Ok(());
    }
    let [c, h, w] = want;
    Err(ModelError::BadInput {
        model: model.to_string(),
        expected: format!(
            "an image batch [B, {c}, {h}, {w}] ({why} fix the input size; another size needs \
             another model, e.g. img_size in ModelOptions)"
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

fn res50_light(o: &ModelOptions) -> Result<Box<dyn crate::Model>, ModelError> {
    let cfg = RepMlpResNetConfig::res50_224(ResNetBlockKind::Light);
    RepMlpResNet::build("repmlp_res50_light_224", cfg, o)
}

fn res50_bottleneck(o: &ModelOptions) -> Result<Box<dyn crate::Model>, ModelError> {
    let cfg = RepMlpResNetConfig::res50_224(ResNetBlockKind::Bottleneck);
    RepMlpResNet::build("repmlp_res50_bottleneck_224", cfg, o)
}

fn pure(o: &ModelOptions) -> Result<Box<dyn crate::Model>, ModelError> {
    RepMlpPure::build("repmlp_pure", RepMlpPureConfig::pure_cifar(), o)
}

fn tiny(o: &ModelOptions) -> Result<Box<dyn crate::Model>, ModelError> {
    RepMlpPure::build("repmlp_tiny", RepMlpPureConfig::tiny_fmnist(), o)
}

/// The RepMLP (v1) registry entries.
pub(crate) fn entries() -> Vec<Entry> {
    let e = |name, description, build, eval_transform| Entry {
        name,
        family: Family::RepMlp,
        description,
        eval_transform,
        build,
    };
    vec![
        e(
            "repmlp_res50_light_224",
            "RepMLP-Res50 Light (ImageNet 224; RepMLP in stride-1 blocks of stages 2-3, g=4)",
            res50_light,
            Some(EvalTransform::IMAGENET),
        ),
        e(
            "repmlp_res50_bottleneck_224",
            "RepMLP-Res50 Bottleneck (ImageNet 224; RepMLP in stride-1 blocks of stages 2-3, g=8)",
            res50_bottleneck,
            Some(EvalTransform::IMAGENET),
        ),
        e(
            "repmlp_pure",
            "pure-MLP RepMLP for CIFAR 3x32x32 (stages 16/32/64, 8x8 partitions, k=1,3,5,7)",
            pure,
            None,
        ),
        e(
            "repmlp_tiny",
            "small pure-MLP RepMLP for Fashion-MNIST 1x28x28 (16/32/64, 7x7 partitions, g=4)",
            tiny,
            None,
        ),
    ]
}

// ------------------------------------------------------------- deploy (train → deploy conversion)

impl crate::deploy::Deployable for RepMlpResNet {
    fn deploy(&self) -> Result<Box<dyn crate::Model>, ModelError> {
        Ok(Box::new(self.to_deploy()?))
    }
}

impl crate::deploy::Deployable for RepMlpPure {
    fn deploy(&self) -> Result<Box<dyn crate::Model>, ModelError> {
        Ok(Box::new(self.to_deploy()?))
    }
}

type Form = Result<Box<dyn crate::deploy::Deployable>, ModelError>;

fn resnet_form(name: &str, block: ResNetBlockKind, o: &ModelOptions, deploy: bool) -> Form {
    let mut cfg = RepMlpResNetConfig::res50_224(block);
    cfg.deploy = deploy;
    Ok(Box::new(RepMlpResNet::with_options(name, cfg, o)?))
}

fn pure_form(name: &str, mut cfg: RepMlpPureConfig, o: &ModelOptions, deploy: bool) -> Form {
    cfg.deploy = deploy;
    Ok(Box::new(RepMlpPure::with_options(name, cfg, o)?))
}

/// The RepMLP (v1) models with a deploy form: every registered one, built in either form.
pub(crate) fn deploy_entries() -> Vec<crate::deploy::DeployEntry> {
    use crate::deploy::DeployEntry;
    vec![
        DeployEntry {
            name: "repmlp_res50_light_224",
            build: |o, d| resnet_form("repmlp_res50_light_224", ResNetBlockKind::Light, o, d),
        },
        DeployEntry {
            name: "repmlp_res50_bottleneck_224",
            build: |o, d| {
                let k = ResNetBlockKind::Bottleneck;
                resnet_form("repmlp_res50_bottleneck_224", k, o, d)
            },
        },
        DeployEntry {
            name: "repmlp_pure",
            build: |o, d| pure_form("repmlp_pure", RepMlpPureConfig::pure_cifar(), o, d),
        },
        DeployEntry {
            name: "repmlp_tiny",
            build: |o, d| pure_form("repmlp_tiny", RepMlpPureConfig::tiny_fmnist(), o, d),
        },
    ]
}
