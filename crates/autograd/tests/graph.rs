//! Graph behaviour: accumulation, freeing, no_grad, detach, error paths, and
//! that gradcheck catches a wrong backward.

use allmlp_autograd::gradcheck::{GradcheckOptions, gradcheck};
use allmlp_autograd::tensor_core::Tensor;
use allmlp_autograd::{AutogradError, Function, Result, Var, is_grad_enabled, no_grad};

fn t(v: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_vec(v.to_vec(), shape).unwrap()
}

#[test]
fn gradients_accumulate_over_every_use_and_across_backwards() {
    // y = sum(x ⊙ x + 3x) → dy/dx = 2x + 3
    let x = Var::parameter(t(&[1.0, -2.0, 0.5], &[3]));
    let y = x
        .mul(&x)
        .unwrap()
        .add(&x.mul_scalar(3.0))
        .unwrap()
        .sum(&[], false)
        .unwrap();
    y.backward().unwrap();
    assert_eq!(x.grad().unwrap().to_vec(), vec![5.0, -1.0, 4.0]);
    // A second, independent graph adds to the same leaf gradient.
    x.sum(&[], false).unwrap().backward().unwrap();
    assert_eq!(x.grad().unwrap().to_vec(), vec![6.0, 0.0, 5.0]);
    x.zero_grad();
    assert!(x.grad().is_none());
}

#[test]
fn second_backward_over_a_freed_graph_is_an_error() {
    let x = Var::parameter(t(&[1.0, 2.0], &[2]));
    let y = x.gelu().sum(&[], false).unwrap();
    y.backward().unwrap();
    let e = y.backward().unwrap_err();
    assert!(matches!(e, AutogradError::GraphFreed { op: "sum" }), "{e}");
    assert!(e.to_string().contains("already freed"));
}

#[test]
fn no_grad_records_nothing_and_nests() {
    let x = Var::parameter(t(&[1.0, 2.0], &[2]));
    let y = no_grad(|| {
        assert!(!is_grad_enabled());
        let inner = no_grad(|| x.relu());
        assert!(!is_grad_enabled());
        inner.mul(&x).unwrap()
    });
    assert!(is_grad_enabled());
    assert!(!y.requires_grad() && y.is_leaf());
    assert!(matches!(
        y.sum(&[], false).unwrap().backward(),
        Err(AutogradError::NoGradient)
    ));
    let d = x.detach();
    assert!(!d.requires_grad());
    assert_eq!(d.value(), x.value());
}

#[test]
fn backward_requires_scalar_or_matching_gradient() {
    let x = Var::parameter(t(&[1.0, 2.0], &[2]));
    let y = x.mul_scalar(2.0);
    assert!(matches!(y.backward(), Err(AutogradError::NotScalar { .. })));
    assert!(matches!(
        y.backward_with(Tensor::ones(&[3]).unwrap()),
        Err(AutogradError::BadGradient { .. })
    ));
    y.backward_with(t(&[1.0, 10.0], &[2])).unwrap();
    assert_eq!(x.grad().unwrap().to_vec(), vec![2.0, 20.0]);
    assert!(x.set_value(Tensor::zeros(&[3]).unwrap()).is_err());
}

/// A deliberately wrong op: claims d(2x)/dx = 1.
struct WrongDouble;

impl Function for WrongDouble {
    fn name(&self) -> &'static str {
        "wrong_double"
    }
    fn backward(&self, g: &Tensor, _needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(g.clone())])
    }
}

#[test]
fn gradcheck_rejects_a_wrong_backward() {
    let x = Tensor::randn(&[4], 0.0, 1.0, 1).unwrap();
    let e = gradcheck(
        "wrong_double",
        std::slice::from_ref(&x),
        |v| {
            Ok(Var::from_op(
                v[0].value().mul_scalar(2.0),
                &[&v[0]],
                WrongDouble,
            ))
        },
        GradcheckOptions::default(),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("wrong_double: input 0 element 0"),
        "{e}"
    );
    // And accepts the right one built from real ops.
    gradcheck(
        "double",
        &[x],
        |v| Ok(v[0].mul_scalar(2.0)),
        GradcheckOptions::default(),
    )
    .unwrap();
}

/// An op whose saved state reports when it is dropped.
struct Tracked {
    dropped: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.dropped
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Function for Tracked {
    fn name(&self) -> &'static str {
        "tracked"
    }
    fn backward(&self, g: &Tensor, _needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(g.clone())])
    }
}

#[test]
fn saved_state_is_released_by_backward_while_outputs_live() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dropped = std::sync::Arc::new(AtomicBool::new(false));
    let x = Var::parameter(t(&[1.0, 2.0], &[2]));
    let f = Tracked {
        dropped: dropped.clone(),
    };
    let y = Var::from_op(x.value(), &[&x], f);
    let loss = y.sum(&[], false).unwrap();
    assert!(
        !dropped.load(Ordering::SeqCst),
        "recorded state lives until backward"
    );
    loss.backward().unwrap();
    // `y` and `loss` are still alive, but the op's saved state is gone.
    assert!(
        dropped.load(Ordering::SeqCst),
        "backward released the saved state"
    );
    assert_eq!(y.shape(), vec![2]);
    // Under no_grad nothing is recorded: the state is dropped at once.
    let dropped2 = std::sync::Arc::new(AtomicBool::new(false));
    let _z = no_grad(|| {
        Var::from_op(
            x.value(),
            &[&x],
            Tracked {
                dropped: dropped2.clone(),
            },
        )
    });
    assert!(dropped2.load(Ordering::SeqCst));
}
