//! Elementwise functions and activations: GELU (exact and tanh), ReLU,
//! sigmoid, tanh, exp, log, sqrt. Each saves the one tensor its derivative needs.

use allmlp_tensor_core::{Tensor, elementwise};

use crate::{Function, Result, Var};

#[derive(Clone, Copy)]
enum Kind {
    Gelu,
    GeluTanh,
    Relu,
    Sigmoid,
    Tanh,
    Exp,
    Log,
    Sqrt,
}

/// Saves the input (`x`) or the output (`y`), whichever the derivative is cheaper from.
struct Unary {
    kind: Kind,
    saved: Tensor,
}

impl Function for Unary {
    fn name(&self) -> &'static str {
        match self.kind {
            Kind::Gelu => "gelu",
            Kind::GeluTanh => "gelu_tanh",
            Kind::Relu => "relu",
            Kind::Sigmoid => "sigmoid",
            Kind::Tanh => "tanh",
            Kind::Exp => "exp",
            Kind::Log => "log",
            Kind::Sqrt => "sqrt",
        }
    }

    fn backward(&self, g: &Tensor, _needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let s = &self.saved;
        let dx = match self.kind {
            Kind::Gelu => elementwise::gelu_backward(s, g)?,
            Kind::GeluTanh => elementwise::gelu_tanh_backward(s, g)?,
            Kind::Relu => elementwise::relu_backward(s, g)?,
            Kind::Sigmoid => elementwise::sigmoid_backward(s, g)?,
            Kind::Tanh => elementwise::tanh_backward(s, g)?,
            Kind::Exp => g.mul(s)?, // saved y = eˣ
            Kind::Log => g.div(s)?, // saved x
            Kind::Sqrt => g.zip_with("sqrt_backward", s, |g, y| 0.5 * g / y)?, // saved y = √x
        };
        Ok(vec![Some(dx)])
    }
}

fn unary(v: &Var, kind: Kind) -> Var {
    let x = v.value();
    let y = match kind {
        Kind::Gelu => x.gelu(),
        Kind::GeluTanh => x.gelu_tanh(),
        Kind::Relu => x.relu(),
        Kind::Sigmoid => x.sigmoid(),
        Kind::Tanh => x.tanh(),
        Kind::Exp => x.exp(),
        Kind::Log => x.log(),
        Kind::Sqrt => x.sqrt(),
    };
    let saved = match kind {
        Kind::Gelu | Kind::GeluTanh | Kind::Relu | Kind::Log => x,
        Kind::Sigmoid | Kind::Tanh | Kind::Exp | Kind::Sqrt => y.clone(),
    };
    Var::from_op(y, &[v], Unary { kind, saved })
}

impl Var {
    /// Exact (erf) GELU.
    pub fn gelu(&self) -> Var {
        unary(self, Kind::Gelu)
    }

    /// Tanh-approximate GELU.
    pub fn gelu_tanh(&self) -> Var {
        unary(self, Kind::GeluTanh)
    }

    /// ReLU.
    pub fn relu(&self) -> Var {
        unary(self, Kind::Relu)
    }

    /// Logistic sigmoid.
    pub fn sigmoid(&self) -> Var {
        unary(self, Kind::Sigmoid)
    }

    /// Hyperbolic tangent.
    pub fn tanh(&self) -> Var {
        unary(self, Kind::Tanh)
    }

    /// `eˣ`.
    pub fn exp(&self) -> Var {
        unary(self, Kind::Exp)
    }

    /// Natural logarithm.
    pub fn log(&self) -> Var {
        unary(self, Kind::Log)
    }

    /// Square root.
    pub fn sqrt(&self) -> Var {
        unary(self, Kind::Sqrt)
    }
}

#[cfg(test)]
mod tests {
    use crate::Var;
    use crate::gradcheck::{GradcheckOptions, gradcheck};
    use allmlp_tensor_core::Tensor;

    #[test]
    fn unary_gradients() {
        // Keep ReLU inputs away from the kink, where finite differences are meaningless.
        let x = Tensor::randn(&[3, 7], 0.0, 1.5, 4)
            .unwrap()
            .transpose(0, 1)
            .unwrap();
        let away = x.map(|v| if v.abs() < 0.05 { v + 0.1 } else { v });
        let pos = x.map(|v| v.abs() + 0.5);
        let o = GradcheckOptions::default();
        type Case = (&'static str, Tensor, fn(&Var) -> Var);
        let cases: [Case; 8] = [
            ("gelu", x.clone(), Var::gelu),
            ("gelu_tanh", x.clone(), Var::gelu_tanh),
            ("relu", away, Var::relu),
            ("sigmoid", x.clone(), Var::sigmoid),
            ("tanh", x.clone(), Var::tanh),
            ("exp", x.clone(), Var::exp),
            ("log", pos.clone(), Var::log),
            ("sqrt", pos, Var::sqrt),
        ];
        for (name, input, f) in cases {
            gradcheck(name, &[input], |v| Ok(f(&v[0])), o).unwrap();
        }
    }
}
