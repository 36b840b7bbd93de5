//! Broadcasting arithmetic: `a + b`, `a − b`, `a ⊙ b`, `a / b`, and scalar forms.
//!
//! Backward sums each input's gradient over the dimensions it was broadcast
//! along (`Tensor::sum_to`).

use allmlp_tensor_core::Tensor;

use crate::{Function, Result, Var};

#[derive(Clone, Copy)]
enum Kind {
    Add,
    Sub,
    Mul,
    Div,
}

struct Binary {
    kind: Kind,
    a: Tensor,
    b: Tensor,
}

impl Function for Binary {
    fn name(&self) -> &'static str {
        match self.kind {
            Kind::Add => "add",
            Kind::Sub => "sub",
            Kind::Mul => "mul",
            Kind::Div => "div",
        }
    }

    fn backward(&self, g: &Tensor, needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let (a, b) = (&self.a, &self.b);
        let ga = if needs[0] {
            let full = match self.kind {
                Kind::Add | Kind::Sub => g.clone(),
                Kind::Mul => g.mul(b)?,
                Kind::Div => g.div(b)?,
            };
            Some(full.sum_to(a.shape())?)
        } else {
            None
        };
        let gb = if needs[1] {
            let full = match self.kind {
                Kind::Add => g.clone(),
                Kind::Sub => g.neg(),
                Kind::Mul => g.mul(a)?,
                // d(a/b)/db = −a/b², as torch evaluates it: −g·((a/b)/b), which stays finite
                // where b·b would overflow or underflow.
                Kind::Div => g.mul(&a.div(b)?.div(b)?)?.neg(),
            };
            Some(full.sum_to(b.shape())?)
        } else {
            None
        };
        Ok(vec![ga, gb])
    }
}

fn binary(kind: Kind, a: &Var, b: &Var) -> Result<Var> {
    let (av, bv) = (a.value(), b.value());
    let out = match kind {
        Kind::Add => av.add(&bv)?,
        Kind::Sub => av.sub(&bv)?,
        Kind::Mul => av.mul(&bv)?,
        Kind::Div => av.div(&bv)?,
    };
    // Only Mul/Div need the operands; Add/Sub keep them for their shapes (O(1) clones).
    Ok(Var::from_op(out, &[a, b], Binary { kind, a: av, b: bv }))
}

struct Affine {
    scale: f32,
}

impl Function for Affine {
    fn name(&self) -> &'static str {
        "scalar_affine"
    }

    fn backward(&self, g: &Tensor, _needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(if self.scale == 1.0 {
            g.clone()
        } else {
            g.mul_scalar(self.scale)
        })])
    }
}

impl Var {
    /// `self + other` with broadcasting.
    pub fn add(&self, other: &Var) -> Result<Var> {
        binary(Kind::Add, self, other)
    }

    /// `self − other` with broadcasting.
    pub fn sub(&self, other: &Var) -> Result<Var> {
        binary(Kind::Sub, self, other)
    }

    /// `self ⊙ other` with broadcasting.
    pub fn mul(&self, other: &Var) -> Result<Var> {
        binary(Kind::Mul, self, other)
    }

    /// `self / other` with broadcasting.
    pub fn div(&self, other: &Var) -> Result<Var> {
        binary(Kind::Div, self, other)
    }

    /// `scale · self + shift`.
    pub fn affine_scalar(&self, scale: f32, shift: f32) -> Var {
        let v = self.value().map(|x| scale * x + shift);
        Var::from_op(v, &[self], Affine { scale })
    }

    /// `s · self`.
    pub fn mul_scalar(&self, s: f32) -> Var {
        self.affine_scalar(s, 0.0)
    }

    /// `self + s`.
    pub fn add_scalar(&self, s: f32) -> Var {
        self.affine_scalar(1.0, s)
    }
}

#[cfg(test)]
mod tests {
    use crate::gradcheck::{GradcheckOptions, gradcheck};
    use allmlp_tensor_core::Tensor;

    #[test]
    fn broadcast_arithmetic_gradients() {
        // a: non-contiguous [4, 1, 3]; b: [2, 3] broadcast against it.
        let a = Tensor::randn(&[3, 4], 0.0, 1.0, 1)
            .unwrap()
            .transpose(0, 1)
            .unwrap()
            .unsqueeze(1)
            .unwrap();
        let b = Tensor::randn(&[2, 3], 0.0, 1.0, 2)
            .unwrap()
            .map(|x| x.abs() + 0.5);
        let opts = GradcheckOptions::default();
        gradcheck("add", &[a.clone(), b.clone()], |v| v[0].add(&v[1]), opts).unwrap();
        gradcheck("sub", &[a.clone(), b.clone()], |v| v[0].sub(&v[1]), opts).unwrap();
        gradcheck("mul", &[a.clone(), b.clone()], |v| v[0].mul(&v[1]), opts).unwrap();
        gradcheck("div", &[a.clone(), b.clone()], |v| v[0].div(&v[1]), opts).unwrap();
        gradcheck("affine", &[a], |v| Ok(v[0].affine_scalar(-1.5, 2.0)), opts).unwrap();
    }

    /// The divisor's gradient at magnitudes where `b·b` overflows (1e40) or underflows (1e-46)
    /// in f32: finite and equal to torch's `−g·((a/b)/b)`.
    #[test]
    fn division_gradient_stays_finite_at_extreme_divisors() {
        for (a, b, want) in [
            (1e20f32, 1e20f32, -1e-20f32),
            (3e19, 2e19, -7.5e-20),
            (1e-23, 1e-23, -1e23),
        ] {
            let av = crate::Var::parameter(Tensor::from_vec(vec![a], &[1]).unwrap());
            let bv = crate::Var::parameter(Tensor::from_vec(vec![b], &[1]).unwrap());
            av.div(&bv)
                .unwrap()
                .sum(&[0], false)
                .unwrap()
                .backward()
                .unwrap();
            let g = bv.grad().unwrap().to_vec()[0];
            assert!(
                ((g - want) / want).abs() < 1e-6,
                "a {a}, b {b}: {g} vs {want}"
            );
        }
    }
}
