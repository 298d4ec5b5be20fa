//! The tensor: a pooled GPU buffer with a shape and a dtype.
//!
//! Tensors are immutable values. Cloning one, or reshaping it, shares the buffer; every op
//! writes a fresh buffer from the pool. Data is always dense and row-major, so kernels index
//! with plain strides; permutes and slices are copies done by kernels.

use std::sync::Arc;

use crate::device::{default_device, Device, View};
use crate::shape::{check_rank, numel};
use crate::{DType, Element, Error, Result};

pub(crate) struct Storage {
    buffer: Option<wgpu::Buffer>,
    pub(crate) device: Device,
}

impl Drop for Storage {
    fn drop(&mut self) {
        if let Some(b) = self.buffer.take() {
            self.device.inner.pool.put(b);
        }
    }
}

/// An n-dimensional array in GPU memory.
#[derive(Clone)]
pub struct Tensor {
    storage: Arc<Storage>,
    shape: Vec<usize>,
    dtype: DType,
    /// Where the elements start in the buffer, in bytes: 0, except for the windows that ops
    /// past the binding limit cut (see [`Tensor::window`]), always binding-aligned.
    offset: u64,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor({:?}, {})", self.shape, self.dtype)
    }
}

impl Tensor {
    /// A tensor whose contents are undefined, for op outputs.
    pub(crate) fn uninit(
        device: &Device,
        op: &'static str,
        shape: &[usize],
        dtype: DType,
    ) -> Result<Tensor> {
        check_rank(op, shape)?;
        let bytes = dtype.bytes_for(numel(shape)).max(16);
        let buffer = device.alloc(op, shape, dtype, bytes)?;
        Ok(Tensor {
            storage: Arc::new(Storage {
                buffer: Some(buffer),
                device: device.clone(),
            }),
            shape: shape.to_vec(),
            dtype,
            offset: 0,
        })
    }

    /// Copies `data` to `device` as a tensor of `shape`.
    pub fn from_slice<T: Element>(device: &Device, data: &[T], shape: &[usize]) -> Result<Tensor> {
        let n = numel(shape);
        if data.len() != n {
            return Err(Error::DataLength {
                op: "from_slice",
                len: data.len(),
                expected: n,
                shape: shape.to_vec(),
            });
        }
        let t = Tensor::uninit(device, "from_slice", shape, T::DTYPE)?;
        if n > 0 {
            device.upload(t.buffer(), bytemuck::cast_slice(data))?;
        }
        Ok(t)
    }

    /// [`Tensor::from_slice`] on the default device.
    pub fn new<T: Element>(data: &[T], shape: &[usize]) -> Result<Tensor> {
        Tensor::from_slice(&default_device()?, data, shape)
    }

    /// A scalar (rank 0) f32 tensor.
    pub fn scalar(device: &Device, v: f32) -> Result<Tensor> {
        Tensor::from_slice(device, &[v], &[])
    }

    /// Reads the tensor back to the host. Submits pending work and waits for it.
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>> {
        if T::DTYPE != self.dtype {
            return Err(Error::Dtype {
                op: "to_vec",
                expected: T::DTYPE.name().into(),
                got: self.dtype,
            });
        }
        self.device()
            .download::<T>(self.buffer(), self.offset, self.numel())
    }

    /// Reads an f32 tensor back, converting f16 storage on the host.
    pub fn to_f32_vec(&self) -> Result<Vec<f32>> {
        match self.dtype {
            DType::F16 => Ok(self
                .to_vec::<half::f16>()?
                .into_iter()
                .map(f32::from)
                .collect()),
            _ => self.to_vec::<f32>(),
        }
    }

    /// The single value of a one-element f32 tensor.
    pub fn to_scalar(&self) -> Result<f32> {
        if self.numel() != 1 {
            return Err(Error::shape(
                "to_scalar",
                "tensor has more than one element",
                &[&self.shape],
            ));
        }
        Ok(self.to_f32_vec()?[0])
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn dims(&self) -> &[usize] {
        &self.shape
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    pub fn numel(&self) -> usize {
        numel(&self.shape)
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn device(&self) -> &Device {
        &self.storage.device
    }

    /// Bytes the tensor's elements occupy.
    pub fn size_in_bytes(&self) -> u64 {
        self.dtype.bytes_for(self.numel())
    }

    fn buffer(&self) -> &wgpu::Buffer {
        self.storage
            .buffer
            .as_ref()
            .expect("live tensor has a buffer")
    }

    /// The binding of this tensor's bytes: the whole buffer for a tensor that owns one and
    /// fits a binding (the common case, as before windows existed), else exactly its bytes.
    /// [`Device::dispatch`] refuses a binding past the limit.
    pub(crate) fn bind(&self) -> View<'_> {
        let buffer = self.buffer();
        let bytes = self.dtype.bytes_for(self.numel()).max(4);
        if self.offset == 0 && buffer.size() <= self.device().binding_limit() {
            View::whole(buffer)
        } else {
            View::whole(buffer).window(self.offset, bytes)
        }
    }

    /// True when one binding can hold this tensor.
    pub(crate) fn fits_binding(&self) -> bool {
        self.dtype.bytes_for(self.numel()) <= self.device().binding_limit()
    }

    /// A rank-1 window of `len` elements from element `start`, sharing this tensor's buffer:
    /// what ops past the binding limit run their kernels on, piece by piece. `start` must
    /// keep the window binding-aligned (see [`chunk_len`](crate::ops::chunk_len)).
    pub(crate) fn window(&self, start: usize, len: usize) -> Result<Tensor> {
        let offset = self.offset + self.dtype.bytes_for(start);
        let align = self.device().binding_alignment();
        if !offset.is_multiple_of(align) || start + len > self.numel() {
            return Err(Error::invalid(
                "window",
                format!(
                    "elements {start}..{} of {} cannot be a window (offset {offset} is not a multiple of {align})",
                    start + len,
                    self.numel()
                ),
            ));
        }
        Ok(Tensor {
            storage: self.storage.clone(),
            shape: vec![len],
            dtype: self.dtype,
            offset,
        })
    }

    /// Rows `r0..r1` of the first axis as a window (rank kept).
    pub(crate) fn rows(&self, r0: usize, r1: usize) -> Result<Tensor> {
        let row = numel(&self.shape[1..]);
        let mut shape = self.shape.clone();
        shape[0] = r1 - r0;
        self.window(r0 * row, (r1 - r0) * row)?.reshape(&shape)
    }

    /// True when both tensors share one buffer (a reshape or clone of the other).
    pub fn shares_buffer(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.storage, &other.storage) && self.offset == other.offset
    }

    /// The same data seen with another shape of equal element count (no copy). One extent may
    /// be `usize::MAX` to be inferred, as `-1` in NumPy.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        let n = self.numel();
        let mut shape = shape.to_vec();
        let unknown: Vec<usize> = (0..shape.len())
            .filter(|&i| shape[i] == usize::MAX)
            .collect();
        if unknown.len() > 1 {
            return Err(Error::invalid(
                "reshape",
                "at most one extent may be inferred",
            ));
        }
        if let [u] = unknown[..] {
            let known: usize = shape
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != u)
                .map(|(_, d)| *d)
                .product();
            if known == 0 || !n.is_multiple_of(known) {
                return Err(Error::shape(
                    "reshape",
                    format!("cannot infer an extent for {n} elements"),
                    &[&self.shape, &shape],
                ));
            }
            shape[u] = n / known;
        }
        if numel(&shape) != n {
            return Err(Error::shape(
                "reshape",
                format!("{n} elements cannot take the new shape: its extents must multiply to {n}"),
                &[&self.shape, &shape],
            ));
        }
        check_rank("reshape", &shape)?;
        Ok(Tensor {
            storage: self.storage.clone(),
            shape,
            dtype: self.dtype,
            offset: self.offset,
        })
    }

    /// Flattens to rank 1.
    pub fn flatten_all(&self) -> Result<Tensor> {
        self.reshape(&[self.numel()])
    }

    pub(crate) fn same_device(&self, op: &'static str, other: &Tensor) -> Result<()> {
        if self.device() != other.device() {
            return Err(Error::DeviceMismatch {
                op,
                a: self.device().describe(),
                b: other.device().describe(),
            });
        }
        Ok(())
    }

    pub(crate) fn expect_dtype(&self, op: &'static str, dtype: DType) -> Result<()> {
        if self.dtype != dtype {
            return Err(Error::Dtype {
                op,
                expected: dtype.name().into(),
                got: self.dtype,
            });
        }
        Ok(())
    }
}
