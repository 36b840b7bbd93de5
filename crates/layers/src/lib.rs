#![doc = include_str!("../README.md")]
pub use allmlp_autograd as autograd;

pub mod init;
mod linear;
mod module;
pub mod state_dict;

pub use linear::Linear;
pub use module::{
    Buffer, Ctx, Module, Visitor, infer, join, named_buffers, named_parameters, num_parameters,
    zero_grad,
};
