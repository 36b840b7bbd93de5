#![doc = include_str!("../README.md")]
pub use allmlp_autograd as autograd;

mod affine;
mod batch_norm;
mod conv2d;
pub mod init;
mod layer_norm;
mod layer_scale;
mod linear;
mod module;
mod patch_embed;
pub mod state_dict;

pub use affine::Affine;
pub use batch_norm::{BatchNorm1d, BatchNorm2d};
pub use conv2d::Conv2d;
pub use layer_norm::LayerNorm;
pub use layer_scale::LayerScale;
pub use linear::Linear;
pub use module::{
    Buffer, Ctx, Module, Visitor, infer, join, named_buffers, named_parameters, num_parameters,
    zero_grad,
};
pub use patch_embed::PatchEmbed;
