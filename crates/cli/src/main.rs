//! The `allmlp` command-line program.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

mod negative_values;

use allmlp::commands::{self, CliResult, ModelArgs};

/// allmlp: MLP-Mixer, ResMLP, RepMLP and RepMLPNet image classifiers in Rust.
#[derive(Parser, Debug)]
#[command(name = "allmlp", version, long_about = None, arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train a model on an image dataset (Fashion-MNIST by default), evaluating after each
    /// epoch; writes metrics.csv, curves.png and checkpoints to --out DIR. With no flags it
    /// trains mixer_tiny on Fashion-MNIST with the default recipe.
    Train(Box<allmlp::train::TrainArgs>),
    /// List every registered model: family, parameters (M), GMACs and GFLOPs per image.
    Models,
    /// Per-layer table of a model: output shapes, parameters, MACs, and totals.
    Info {
        /// Registered model name (see `allmlp models`).
        #[arg(long, value_name = "NAME")]
        model: String,
        #[command(flatten)]
        sizes: ModelArgs,
    },
    /// Run a model on a batch of images: reads tensor `input` [N, C, H, W] from the input file
    /// (f32; other float and integer dtypes are converted to f32, not normalised; NaN and
    /// infinite values are refused) and writes
    /// tensor `logits` [N, classes] to the output file (safetensors).
    Infer {
        /// Registered model name; may be omitted when the weights carry `model` metadata (then
        /// their `config` metadata sets the sizes too).
        #[arg(long, value_name = "NAME")]
        model: Option<String>,
        /// Checkpoint (safetensors state dict) whose keys and shapes must match the model
        /// exactly.
        #[arg(long, value_name = "W.safetensors")]
        weights: PathBuf,
        /// Safetensors file holding the tensor `input` [N, C, H, W].
        #[arg(long, value_name = "X.safetensors")]
        input: PathBuf,
        /// Where to write the tensor `logits` [N, classes] (written atomically).
        #[arg(long, value_name = "Y.safetensors")]
        output: PathBuf,
        /// Worker threads (default: ALLMLP_NUM_THREADS, else every core).
        #[arg(long, value_name = "T")]
        threads: Option<usize>,
        #[command(flatten)]
        sizes: ModelArgs,
    },
    /// Convert a training checkpoint into its deploy (structurally re-parameterized) form
    /// (RepMLP, RepMLPNet): BN folded, the Local and Partition Perceptrons merged into the FC.
    Reparam {
        /// Training checkpoint (safetensors) to convert.
        #[arg(long, value_name = "train.safetensors")]
        weights: PathBuf,
        /// Where to write the deploy checkpoint (written atomically).
        #[arg(long, value_name = "deploy.safetensors")]
        output: PathBuf,
        /// Registered model name; may be omitted when the weights carry `model` metadata (then
        /// their `config` metadata sets the sizes too).
        #[arg(long, value_name = "NAME")]
        model: Option<String>,
        #[command(flatten)]
        sizes: ModelArgs,
    },
    /// Evaluate a trained checkpoint on a dataset's test split: accuracy, loss, per-class
    /// accuracy and the confusion matrix (text; PNG with --plot).
    Eval(commands::eval::EvalArgs),
    /// Classify PNG/JPEG images with a trained checkpoint: the top-K classes of each with
    /// their probabilities.
    Predict(commands::predict::PredictArgs),
    /// Draw the token-mixing weights of an MLP-Mixer or ResMLP checkpoint as a grid of
    /// patch-grid heat maps (MLP-Mixer paper Fig. 10, ResMLP Fig. 29).
    Viz(commands::viz::VizArgs),
}

impl Command {
    /// The `--threads` flag, for the commands that take one.
    fn threads(&self) -> Option<usize> {
        match self {
            Command::Train(args) => args.threads,
            Command::Infer { threads, .. } => *threads,
            Command::Eval(args) => args.threads,
            Command::Predict(args) => args.threads,
            Command::Models | Command::Info { .. } | Command::Reparam { .. } | Command::Viz(_) => {
                None
            }
        }
    }
}

fn run(cli: Cli) -> CliResult<String> {
    match cli.command {
        Command::Train(args) => allmlp::train::run(&args),
        Command::Models => commands::models::run(),
        Command::Info { model, sizes } => commands::info::run(&model, &sizes),
        Command::Infer {
            model,
            weights,
            input,
            output,
            threads,
            sizes,
        } => commands::set_threads(threads).and_then(|()| {
            commands::infer::run(model.as_deref(), &sizes, &weights, &input, &output)
        }),
        Command::Reparam {
            weights,
            output,
            model,
            sizes,
        } => commands::reparam::run(
            &weights,
            &output,
            (model.as_deref(), &sizes),
            commands::reparam::converter(),
        ),
        Command::Eval(args) => commands::eval::run(&args),
        Command::Predict(args) => commands::predict::run(&args),
        Command::Viz(args) => commands::viz::run(&args),
    }
}

fn main() -> ExitCode {
    // Reuse freed tensor buffers instead of faulting fresh pages in every op (docs/perf.md).
    allmlp::tensor_core::allocator::keep_freed_memory();
    let args =
        negative_values::join_negative_values(&Cli::command(), std::env::args_os().collect());
    let cli = Cli::parse_from(args);
    // A malformed ALLMLP_NUM_THREADS would silently mean "every core"; `--threads` overrides
    // the variable, so it is only checked when no flag was given.
    if cli.command.threads().is_none()
        && let Err(e) = allmlp::tensor_core::threads::threads_from_env()
    {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    match run(cli) {
        Ok(text) => {
            print!("{text}");
            if !text.ends_with('\n') {
                println!();
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
