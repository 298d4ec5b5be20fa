//! The tensor: a pooled GPU buffer with a shape and a dtype.
//!
//! Tensors are immutable values. Cloning one, or reshaping it, shares the buffer; every op
//! writes a fresh buffer from the pool. Data is always dense and row-major, so kernels index
//! with plain strides; permutes and slices are copies done by kernels.

use std::sync::Arc;

use crate::device::{default_device, Device};
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
        self.device().download::<T>(self.buffer(), self.numel())
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

    pub(crate) fn buffer(&self) -> &wgpu::Buffer {
        self.storage
            .buffer
            .as_ref()
            .expect("live tensor has a buffer")
    }

    /// True when both tensors share one buffer (a reshape or clone of the other).
    pub fn shares_buffer(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.storage, &other.storage)
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
