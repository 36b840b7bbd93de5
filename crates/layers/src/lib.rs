#![doc = include_str!("../README.md")]
pub use allmlp_autograd as autograd;

mod adaptive_avg_pool2d;
mod affine;
mod avg_pool2d;
mod batch_norm;
pub mod batch_parts;
pub mod checkpoint;
mod conv2d;
mod drop_path;
mod dropout;
mod gelu;
mod identity;
pub mod init;
mod layer_norm;
mod layer_scale;
mod linear;
mod max_pool2d;
mod mlp;
mod module;
mod patch_embed;
mod relu;
mod sequential;
mod sigmoid;
pub mod state_dict;

pub use adaptive_avg_pool2d::AdaptiveAvgPool2d;
pub use affine::Affine;
pub use avg_pool2d::AvgPool2d;
pub use batch_norm::{BatchNorm1d, BatchNorm2d};
pub use conv2d::Conv2d;
pub use drop_path::DropPath;
pub use dropout::Dropout;
pub use gelu::{Gelu, GeluApproximate};
pub use identity::Identity;
pub use layer_norm::LayerNorm;
pub use layer_scale::LayerScale;
pub use linear::Linear;
pub use max_pool2d::MaxPool2d;
pub use mlp::{Activation, Mlp};
pub use module::{
    Buffer, Ctx, Module, Visitor, infer, join, named_buffers, named_parameters, num_parameters,
    zero_grad,
};
pub use patch_embed::PatchEmbed;
pub use relu::Relu;
pub use sequential::{Sequential, visit_list};
pub use sigmoid::Sigmoid;
