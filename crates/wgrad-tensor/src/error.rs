//! The one error type of the tensor crate. Every fallible public function returns
//! [`Result`]; panics are reserved for bugs inside wgrad itself.

use crate::DType;

/// Errors raised by devices, tensors and op launchers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No adapter matched, or the machine has none at all.
    #[error("no GPU adapter found{detail}.\n  Install a GPU driver (Vulkan, Metal or DX12), or the software adapter: `apt-get install mesa-vulkan-drivers` (Debian/Ubuntu).\n  WGRAD_ADAPTER selects an adapter by a substring of its name, WGPU_BACKEND by backend (vulkan, metal, dx12, gl).")]
    NoAdapter { detail: String },

    /// The adapter refused to create a device.
    #[error("could not open a device on adapter {adapter:?}: {reason}")]
    RequestDevice { adapter: String, reason: String },

    /// Operand shapes do not fit the op.
    #[error("{op}: {reason} (shapes {shapes:?})")]
    Shape {
        op: &'static str,
        reason: String,
        shapes: Vec<Vec<usize>>,
    },

    /// An operand has a dtype the op does not take.
    #[error("{op}: expected dtype {expected}, got {got:?} (convert with Tensor::cast)")]
    Dtype {
        op: &'static str,
        expected: String,
        got: DType,
    },

    /// Operands live on two different devices.
    #[error(
        "{op}: operands live on different devices ({a} and {b}); move them to one device first"
    )]
    DeviceMismatch {
        op: &'static str,
        a: String,
        b: String,
    },

    /// A tensor would exceed the largest buffer this adapter can create.
    #[error("{op}: tensor of {bytes} bytes exceeds the adapter's max_buffer_size of {limit} bytes; split the work into smaller tensors (e.g. a smaller batch or input size)")]
    TooLarge {
        op: &'static str,
        bytes: u64,
        limit: u64,
    },

    /// A kernel would bind more than one storage binding may hold, and its op does not split
    /// its work (see docs/large-tensors.md for the ops that do).
    #[error("{op}: a window of {bytes} bytes exceeds the binding limit of {limit} bytes (the adapter's max_storage_buffer_binding_size, or WGRAD_BINDING_LIMIT) and this op does not split its work across bindings; use a smaller batch or input size (docs/large-tensors.md lists the ops that split)")]
    Unsplit {
        op: &'static str,
        bytes: u64,
        limit: u64,
    },

    /// An argument outside its allowed range (an axis, a stride, a length...).
    #[error("{op}: {reason}")]
    InvalidArgument { op: &'static str, reason: String },

    /// The data handed in does not match the shape asked for.
    #[error("{op}: {len} elements given for shape {shape:?} ({expected} expected)")]
    DataLength {
        op: &'static str,
        len: usize,
        expected: usize,
        shape: Vec<usize>,
    },

    /// The adapter's memory (or the limit set with `Device::set_memory_limit`) cannot hold a
    /// new tensor, even after the pool gave back its cached buffers.
    #[error("{op}: out of GPU memory for a {dtype} tensor of shape {shape:?} ({bytes} bytes); {in_use} bytes are held by live tensors{limit}. Use a smaller batch or input size, or drop tensors you no longer need; the device stays usable", limit = match limit { Some(l) => format!(", the memory limit is {l} bytes"), None => String::new() })]
    OutOfMemory {
        op: &'static str,
        shape: Vec<usize>,
        dtype: DType,
        bytes: u64,
        in_use: u64,
        limit: Option<u64>,
    },

    /// The device is gone (driver reset, GPU removed, or `Device::destroy`): its tensors are lost.
    #[error("the GPU device was lost ({reason}); its tensors are gone: open a new Device, build the model again and load the last checkpoint")]
    DeviceLost { reason: String },

    /// The GPU reported an error (validation, failed map).
    #[error("GPU error: {0}")]
    Gpu(String),
}

/// Result with the tensor crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn shape(op: &'static str, reason: impl Into<String>, shapes: &[&[usize]]) -> Self {
        Error::Shape {
            op,
            reason: reason.into(),
            shapes: shapes.iter().map(|s| s.to_vec()).collect(),
        }
    }

    pub(crate) fn invalid(op: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            op,
            reason: reason.into(),
        }
    }
}
