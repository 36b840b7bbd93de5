//! The `allmlp` command-line program.

fn main() {
    println!(
        "allmlp {}: the train/eval/predict/infer/reparam/info/viz commands land with the CLI issues.\n\
         Today: `cargo xtask bench gemm` measures the tensor core.",
        env!("CARGO_PKG_VERSION")
    );
}
