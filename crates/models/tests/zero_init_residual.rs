//! `ModelOptions::zero_init_residual`: the last linear layer of every residual branch starts
//! at zero, so every block starts as the identity; the rest of the initialisation is timm's,
//! drawn from the same seed; gradients reach the zeroed layers; the RepMLP families refuse it.

use allmlp_models::layers::autograd::Var;
use allmlp_models::layers::autograd::tensor_core::Tensor;
use allmlp_models::layers::{Ctx, Module, named_parameters};
use allmlp_models::mixer::mixer_tiny;
use allmlp_models::resmlp::resmlp_tiny;
use allmlp_models::{
    IsotropicConfig, IsotropicNet, Mixer, Model, ModelOptions, ResMlp, create_model,
};

fn opts(zero: bool) -> ModelOptions {
    ModelOptions {
        img_size: Some(16),
        num_classes: Some(5),
        zero_init_residual: zero,
        seed: 3,
        ..ModelOptions::default()
    }
}

/// Branch outputs zero, every other parameter as timm's init draws it with the same seed.
#[test]
fn only_the_branch_outputs_change() {
    for (model, branch_outputs) in [
        ("mixer_tiny", &["mlp_tokens.fc2.", "mlp_channels.fc2."][..]),
        ("resmlp_tiny", &["linear_tokens.", "mlp_channels.fc2."]),
    ] {
        let plain = create_model(model, &opts(false)).unwrap();
        let zeroed = create_model(model, &opts(true)).unwrap();
        let (a, b) = (named_parameters(&*plain), named_parameters(&*zeroed));
        assert_eq!(a.len(), b.len());
        let mut n_zeroed = 0;
        for ((name, pa), (name_b, pb)) in a.iter().zip(&b) {
            assert_eq!(name, name_b);
            let is_output =
                name.starts_with("blocks.") && branch_outputs.iter().any(|o| name.contains(o));
            if is_output {
                n_zeroed += 1;
                assert!(
                    pb.value().to_vec().iter().all(|&v| v == 0.0),
                    "{model} {name}"
                );
                // timm's init already zeroes some of these biases, never the weights.
                let was_zero = pa.value().to_vec().iter().all(|&v| v == 0.0);
                assert!(!was_zero || name.ends_with("bias"), "{model} {name}");
            } else {
                assert_eq!(pa.value().to_vec(), pb.value().to_vec(), "{model} {name}");
            }
        }
        // Weight and bias of two branches in each of the 8 blocks.
        assert_eq!(n_zeroed, 8 * 2 * 2, "{model}");
    }
}

/// Each block of `net` passes its input through unchanged.
fn assert_blocks_are_the_identity<C: IsotropicConfig>(net: &IsotropicNet<C>, x: &Tensor) {
    let mut t = net
        .stem
        .forward(&Var::constant(x.clone()), &Ctx::eval())
        .unwrap();
    for b in &net.blocks {
        let y = b.forward(&t, &Ctx::eval()).unwrap();
        assert_eq!(y.value().to_vec(), t.value().to_vec(), "{}", net.name());
        t = y;
    }
}

/// Each block passes its input through unchanged; once the head is non-zero, a backward pass
/// gives the zeroed layers non-zero gradients, so training moves them.
#[test]
fn blocks_start_as_the_identity_and_still_learn() {
    let x = Tensor::randn(&[2, 1, 16, 16], 0.0, 1.0, 7).unwrap();
    let mixer = Mixer::new("mixer_tiny", &mixer_tiny().with_options(&opts(true)), 3).unwrap();
    mixer.zero_init_residual().unwrap();
    assert_blocks_are_the_identity(&mixer, &x);
    let resmlp = ResMlp::new("resmlp_tiny", &resmlp_tiny().with_options(&opts(true)), 3).unwrap();
    resmlp.zero_init_residual().unwrap();
    assert_blocks_are_the_identity(&resmlp, &x);

    // The head starts at zero too (timm): give it weights so the loss reaches the blocks.
    let head = &mixer.head.weight;
    head.set_value(Tensor::ones(&head.shape()).unwrap())
        .unwrap();
    let y = mixer.forward(&Var::constant(x), &Ctx::train(0)).unwrap();
    y.mul(&y)
        .unwrap()
        .sum(&[0, 1], false)
        .unwrap()
        .backward()
        .unwrap();
    for b in &mixer.blocks {
        for fc in [&b.mlp_tokens.fc2, &b.mlp_channels.fc2] {
            let g = fc.weight.grad().expect("a gradient");
            assert!(g.to_vec().iter().any(|&v| v != 0.0));
        }
    }
}

#[test]
fn the_repmlp_families_refuse_it() {
    for model in ["repmlp_tiny", "repmlpnet_t224"] {
        let e = create_model(model, &opts(true))
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("zero_init_residual"), "{model}: {e}");
    }
}
