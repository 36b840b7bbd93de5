//! New output buffers written once, without zero-filling them first.
//!
//! `vec![0.0; n]` is a serial `memset` of the whole output on the calling
//! thread (glibc's `calloc` must clear reused heap memory), which the other
//! threads wait for and which the op then overwrites anyway. Ops that write
//! every element of their output take the uninitialised buffer instead.

use std::mem::MaybeUninit;

/// A new vector of `len` floats written by `fill`, which is given the whole
/// uninitialised buffer.
///
/// # Safety
/// `fill` must write every one of the `len` slots (nothing checks it: a slot
/// left unwritten would be read as an `f32` later).
pub(crate) unsafe fn filled(len: usize, fill: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut out = Vec::with_capacity(len);
    fill(&mut out.spare_capacity_mut()[..len]);
    // SAFETY: `fill` wrote all `len` slots, as the caller promises.
    unsafe { out.set_len(len) };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filled_writes_every_slot() {
        // Freed NaNs in the allocator's free list must not show through.
        drop(vec![f32::NAN; 1 << 16]);
        // SAFETY: the loop writes every slot.
        let v = unsafe {
            filled(1 << 16, |o| {
                for (i, x) in o.iter_mut().enumerate() {
                    x.write(i as f32);
                }
            })
        };
        assert!(v.iter().enumerate().all(|(i, &x)| x == i as f32));
        // SAFETY: there are no slots.
        assert!(unsafe { filled(0, |o| assert!(o.is_empty())) }.is_empty());
    }
}
