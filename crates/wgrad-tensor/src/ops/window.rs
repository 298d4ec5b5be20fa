//! Sliding-window geometry shared by convolution, transposed convolution and pooling:
//! padding modes and the output-size rule (TensorFlow's, so Keras models map one to one).

use crate::{Error, Result};

/// How a window op pads its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Padding {
    /// No padding; windows that would leave the input are dropped.
    #[default]
    Valid,
    /// Output extent ceil(in / stride); the total padding is split with the odd pixel at the
    /// bottom/right (TensorFlow's rule).
    Same,
    /// Explicit pixels: top, bottom, left, right.
    Explicit {
        top: usize,
        bottom: usize,
        left: usize,
        right: usize,
    },
}

/// One spatial axis of a window op: output extent and padding before/after.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AxisGeometry {
    pub input: usize,
    pub output: usize,
    pub pad_before: usize,
    pub pad_after: usize,
}

/// Output extent and padding of one axis: `input` pixels, window `kernel` with `dilation`,
/// moved by `stride`, padded as `padding` says (`axis` 0 = height, 1 = width).
pub fn axis_geometry(
    op: &'static str,
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    padding: Padding,
    axis: usize,
) -> Result<AxisGeometry> {
    if kernel == 0 || stride == 0 || dilation == 0 {
        return Err(Error::invalid(
            op,
            format!(
                "kernel {kernel}, stride {stride} and dilation {dilation} must all be at least 1"
            ),
        ));
    }
    let span = (kernel - 1) * dilation + 1;
    let (before, after) = match padding {
        Padding::Valid => (0, 0),
        Padding::Same => {
            let out = input.div_ceil(stride);
            let total = ((out.max(1) - 1) * stride + span).saturating_sub(input);
            (total / 2, total - total / 2)
        }
        Padding::Explicit {
            top,
            bottom,
            left,
            right,
        } => {
            if axis == 0 {
                (top, bottom)
            } else {
                (left, right)
            }
        }
    };
    let padded = input + before + after;
    if padded < span {
        let name = if axis == 0 { "height" } else { "width" };
        return Err(Error::invalid(op, format!("window of {span} pixels (kernel {kernel}, dilation {dilation}) is larger than the padded {name} of {padded}: use Same padding, a smaller kernel or a larger input")));
    }
    Ok(AxisGeometry {
        input,
        output: (padded - span) / stride + 1,
        pad_before: before,
        pad_after: after,
    })
}

/// Both spatial axes of a window op on an NHWC tensor.
pub fn geometry_2d(
    op: &'static str,
    hw: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
    padding: Padding,
) -> Result<[AxisGeometry; 2]> {
    Ok([
        axis_geometry(op, hw[0], kernel[0], stride[0], dilation[0], padding, 0)?,
        axis_geometry(op, hw[1], kernel[1], stride[1], dilation[1], padding, 1)?,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_puts_the_odd_pixel_last() {
        // in 7, k 3, s 2: out 4, total pad (4-1)*2+3-7 = 2 -> 1/1; in 8: out 4, pad 1 -> 0/1.
        let g = axis_geometry("t", 7, 3, 2, 1, Padding::Same, 0).unwrap();
        assert_eq!((g.output, g.pad_before, g.pad_after), (4, 1, 1));
        let g = axis_geometry("t", 8, 3, 2, 1, Padding::Same, 0).unwrap();
        assert_eq!((g.output, g.pad_before, g.pad_after), (4, 0, 1));
        let g = axis_geometry("t", 9, 3, 1, 2, Padding::Same, 1).unwrap();
        assert_eq!((g.output, g.pad_before, g.pad_after), (9, 2, 2));
    }

    #[test]
    fn valid_and_explicit() {
        let g = axis_geometry("t", 12, 3, 3, 1, Padding::Valid, 0).unwrap();
        assert_eq!(g.output, 4);
        let p = Padding::Explicit {
            top: 1,
            bottom: 2,
            left: 0,
            right: 0,
        };
        assert_eq!(axis_geometry("t", 5, 3, 1, 1, p, 0).unwrap().output, 6);
        assert_eq!(axis_geometry("t", 5, 3, 1, 1, p, 1).unwrap().output, 3);
        assert!(axis_geometry("t", 2, 3, 1, 1, Padding::Valid, 0).is_err());
        assert!(axis_geometry("t", 5, 3, 0, 1, Padding::Valid, 0).is_err());
    }
}
