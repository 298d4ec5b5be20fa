//! Element types a tensor can store.

/// Storage type of a tensor's elements.
///
/// Compute is f32; `F16` is a storage format (two halves packed per 32-bit word, converted with
/// `pack2x16float`/`unpack2x16float`, so it works on adapters without `SHADER_F16`, GL included).
/// `I32`/`U32` hold labels, indices and masks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F16,
    I32,
    U32,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F16 => 2,
            _ => 4,
        }
    }

    /// Bytes a buffer needs for `n` elements: f16 pairs share a word, so round up to 4.
    pub fn bytes_for(self, n: usize) -> u64 {
        ((n * self.size()) as u64).div_ceil(4) * 4
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::I32 => "i32",
            DType::U32 => "u32",
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A host element type that maps to a [`DType`].
pub trait Element: bytemuck::Pod + Copy + Send + Sync + 'static {
    const DTYPE: DType;
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;
}
impl Element for half::f16 {
    const DTYPE: DType = DType::F16;
}
impl Element for i32 {
    const DTYPE: DType = DType::I32;
}
impl Element for u32 {
    const DTYPE: DType = DType::U32;
}
