//! `allmlp viz`: token-mixing weights drawn as a grid of patch-grid heat maps, as in the
//! MLP-Mixer paper (Fig. 10: rows of the first token-mixing FC) and ResMLP (Fig. 29: rows of
//! the token linear layer).

use std::path::PathBuf;

use allmlp_layers::checkpoint::state_dict;
use allmlp_models::{Family, Model, entry};
use clap::Args;
use serde_json::Value;

use super::{CliError, CliResult};
use crate::checkpoint::{LoadedModel, load_model};
use crate::plot::canvas::check_png_path;
use crate::plot::{GridLayout, WeightBlock, plot_weight_grid};

/// Blocks drawn when `--blocks` is not given (fewer when the model has fewer).
pub const DEFAULT_BLOCKS: usize = 4;

/// The flags of `allmlp viz`.
#[derive(Args, Debug, Clone)]
pub struct VizArgs {
    /// Checkpoint of an MLP-Mixer or ResMLP model (safetensors with `model` and `config`
    /// metadata); its `img_size` and `patch_size` give the patch grid.
    #[arg(long, value_name = "W.safetensors")]
    pub weights: PathBuf,
    /// Registered model name; needed only when the weights carry no `model` metadata (e.g.
    /// converted from PyTorch).
    #[arg(long, value_name = "NAME")]
    pub model: Option<String>,
    /// PNG file to write (atomically).
    #[arg(long, value_name = "FILE.png")]
    pub out: PathBuf,
    /// How many blocks to draw, from the first (default: 4, or all when the model has
    /// fewer; capped at the model's depth).
    #[arg(long, value_name = "N")]
    pub blocks: Option<usize>,
}

/// The weight matrix drawn for each block of a family, with `{}` for the block index.
fn key_pattern(family: Family) -> Option<&'static str> {
    match family {
        Family::Mixer => Some("blocks.{}.mlp_tokens.fc1.weight"),
        Family::ResMlp => Some("blocks.{}.linear_tokens.weight"),
        Family::RepMlp | Family::RepMlpNet => None,
    }
}

/// The token-mixing weights of the first `blocks` blocks of `net` (registered as `name`): each
/// block's matrix `[U, S]` as `U` units of `S = gh · gw` weights, and the patch grid
/// `[gh, gw]` = `img_size / patch_size` from the model's configuration. Errors: a family
/// without token-mixing matrices (RepMLP, RepMLPNet), or weights that disagree with the grid.
pub fn token_mixing_blocks(
    name: &str,
    net: &dyn Model,
    blocks: usize,
) -> CliResult<([usize; 2], Vec<WeightBlock>)> {
    let family = entry(name)?.family;
    let pattern = key_pattern(family).ok_or_else(|| {
        CliError(format!(
            "viz draws the token-mixing weights of MLP-Mixer (mixer_*: \
             blocks.N.mlp_tokens.fc1.weight) and ResMLP (resmlp_*: blocks.N.linear_tokens.weight) \
             models; `{name}` is a {family:?} model, which has no token-mixing matrix over patches"
        ))
    })?;
    let config = net.config();
    let num = |k: &str| {
        config
            .get(k)
            .and_then(Value::as_u64)
            .map(|v| v as usize)
            .filter(|&v| v > 0)
            .ok_or_else(|| CliError(format!("{name}: the configuration has no positive `{k}`")))
    };
    let (img, patch) = (num("img_size")?, num("patch_size")?);
    let g = img / patch;
    let grid = [g, g];
    let sd = state_dict(net);
    let mut out = Vec::new();
    for b in 0..blocks {
        let key = pattern.replace("{}", &b.to_string());
        let Some(t) = sd.get(&key) else { break };
        let shape = t.shape();
        if shape.len() != 2 || shape[1] != g * g {
            return Err(CliError(format!(
                "{name}: `{key}` has shape {shape:?}, expected [units, {}] for the {g}×{g} patch \
                 grid of img_size {img} / patch_size {patch}",
                g * g
            )));
        }
        let v = t.to_vec();
        out.push(WeightBlock {
            label: format!("block {b}: {key} {shape:?}"),
            units: v.chunks(shape[1]).map(<[f32]>::to_vec).collect(),
        });
    }
    if out.is_empty() {
        return Err(CliError(format!(
            "{name}: no `{}` weights found",
            pattern.replace("{}", "0")
        )));
    }
    Ok((grid, out))
}

/// `viz`: loads the checkpoint and draws its token-mixing weights to `--out`.
pub fn run(args: &VizArgs) -> CliResult<String> {
    let want = args.blocks.unwrap_or(DEFAULT_BLOCKS);
    if want == 0 {
        return Err(CliError("--blocks must be at least 1".into()));
    }
    check_png_path(&args.out)?;
    let LoadedModel { name, net, .. } =
        load_model(&args.weights, args.model.as_deref(), &Default::default())?;
    let (grid, blocks) = token_mixing_blocks(&name, &*net, want)?;
    let title = format!(
        "{name}: token-mixing weights, {} block{} ({}×{} patches)",
        blocks.len(),
        if blocks.len() == 1 { "" } else { "s" },
        grid[0],
        grid[1]
    );
    let GridLayout { width, height, .. } = plot_weight_grid(&args.out, &title, grid, &blocks)?;
    let capped = if blocks.len() < want && args.blocks.is_some() {
        format!(" (the model has only {})", blocks.len())
    } else {
        String::new()
    };
    Ok(format!(
        "{name}: drew {} block(s){capped} of {} units each on the {}×{} patch grid to {} \
         ({width}×{height} px)",
        blocks.len(),
        blocks[0].units.len(),
        grid[0],
        grid[1],
        args.out.display()
    ))
}
