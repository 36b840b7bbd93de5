//! Layers whose public fields a caller filled with malformed parameters: every
//! size accessor answers and every forward returns an error, never a panic.

use allmlp_layers::autograd::Var;
use allmlp_layers::autograd::tensor_core::Tensor;
use allmlp_layers::*;

fn param(shape: &[usize]) -> Var {
    Var::parameter(Tensor::ones(shape).unwrap())
}

fn input(shape: &[usize]) -> Var {
    Var::constant(Tensor::ones(shape).unwrap())
}

/// Runs `forward` in evaluation and in training mode; both must be errors.
fn refuses(what: &str, layer: &dyn Module, x: &Var) {
    for ctx in [Ctx::eval(), Ctx::train(0)] {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| layer.forward(x, &ctx)));
        match r {
            Ok(Err(_)) => {}
            Ok(Ok(y)) => panic!("{what}: accepted, output {:?}", y.shape()),
            Err(_) => panic!("{what}: panicked instead of returning an error"),
        }
    }
}

#[test]
fn affine_and_layer_scale_with_malformed_parameters() {
    let x = input(&[2, 4, 5]);
    let aff = Affine {
        alpha: param(&[]),
        beta: param(&[5]),
    };
    assert_eq!(aff.dim(), 0);
    refuses("Affine alpha []", &aff, &x);
    let aff = Affine {
        alpha: param(&[1, 1, 5]),
        beta: param(&[1, 1, 3]),
    };
    refuses("Affine beta [1, 1, 3]", &aff, &x);
    // The authors' `[C]` shape is a valid alpha.
    let aff = Affine {
        alpha: param(&[5]),
        beta: param(&[5]),
    };
    assert_eq!(aff.dim(), 5);
    assert_eq!(aff.forward(&x, &Ctx::eval()).unwrap().shape(), [2, 4, 5]);

    let mut ls = LayerScale::new(5, 0.1).unwrap();
    ls.gamma = param(&[]);
    assert_eq!(ls.dim(), 0);
    refuses("LayerScale gamma []", &ls, &x);
    ls.gamma = param(&[4]);
    refuses("LayerScale gamma [4]", &ls, &x);
}

#[test]
fn linear_and_conv_with_malformed_weights() {
    let x = input(&[2, 4, 5]);
    let fc = Linear::from_vars(param(&[3]), None);
    assert_eq!(fc.features(), (0, 3));
    refuses("Linear weight [3]", &fc, &x);
    refuses(
        "Linear weight [3, 4]",
        &Linear::from_vars(param(&[3, 4]), None),
        &x,
    );
    let fc = Linear::from_vars(param(&[3, 5]), Some(param(&[2])));
    refuses("Linear bias [2]", &fc, &x);

    let x = input(&[2, 3, 6, 6]);
    let conv = || Conv2d::new(3, 4, (3, 3), Default::default(), true, 0).unwrap();
    let mut c = conv();
    c.weight = param(&[4, 3, 3]);
    assert_eq!((c.channels(), c.kernel_size()), ((3, 4), (3, 0)));
    refuses("Conv2d weight [4, 3, 3]", &c, &x);
    c.weight = param(&[]);
    assert_eq!((c.channels(), c.kernel_size()), ((0, 0), (0, 0)));
    refuses("Conv2d weight []", &c, &x);
    let mut c = conv();
    c.weight = param(&[4, 2, 3, 3]);
    refuses("Conv2d weight for 2 input channels", &c, &x);
    let mut c = conv();
    c.bias = Some(param(&[3]));
    refuses("Conv2d bias [3]", &c, &x);
    let mut c = conv();
    c.params.groups = 0;
    refuses("Conv2d groups 0", &c, &x);
    let mut c = conv();
    c.params.stride = (0, 0);
    refuses("Conv2d stride 0", &c, &x);

    let mut stem = PatchEmbed::new((8, 8), 4, 3, 6, 0).unwrap();
    stem.proj.weight = param(&[6, 3, 0, 0]);
    assert_eq!((stem.patch_size(), stem.grid_size()), (0, (0, 0)));
    refuses("PatchEmbed with a 0×0 kernel", &stem, &input(&[2, 3, 8, 8]));
}

#[test]
fn norms_with_malformed_parameters_or_buffers() {
    let x = input(&[2, 3, 6, 6]);
    let bn = BatchNorm2d::new(3).unwrap();
    bn.running_mean.set(Tensor::scalar(0.0));
    assert_eq!(bn.num_features(), 0);
    refuses("BatchNorm2d running_mean []", &bn, &x);
    let bn = BatchNorm2d::new(3).unwrap();
    bn.running_var.set(Tensor::ones(&[5]).unwrap());
    refuses("BatchNorm2d running_var [5]", &bn, &x);
    let bn = BatchNorm2d::new(3).unwrap();
    bn.num_batches_tracked.set(Tensor::ones(&[2, 2]).unwrap());
    match bn.forward(&x, &Ctx::train(0)) {
        Err(e) => assert!(e.to_string().contains("one element"), "{e}"),
        Ok(_) => panic!("num_batches_tracked [2, 2] accepted"),
    }
    let mut bn = BatchNorm2d::new(3).unwrap();
    bn.weight = Some(param(&[4]));
    refuses("BatchNorm2d weight [4]", &bn, &x);
    let mut bn = BatchNorm2d::new(3).unwrap();
    bn.eps = -1.0;
    refuses("BatchNorm2d eps -1", &bn, &x);

    let x = input(&[2, 4, 5]);
    let mut ln = LayerNorm::new(5, 1e-5, true).unwrap();
    ln.weight = Some(param(&[]));
    refuses("LayerNorm weight []", &ln, &x);
    ln.weight = Some(param(&[4]));
    refuses("LayerNorm weight [4]", &ln, &x);
}
