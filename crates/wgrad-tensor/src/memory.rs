//! The size-bucketed buffer pool.
//!
//! Training allocates the same activation sizes every step, so a dropped tensor's buffer goes back
//! to a free list keyed by its bucket and the next tensor of that bucket takes it, with no
//! `create_buffer` (and no first-touch page faults on CPU adapters). Buckets are a power of two
//! split in quarters, so at most 25 % of a buffer is slack.
//!
//! Reusing a buffer that a recorded but unsubmitted dispatch still reads is safe: commands run in
//! submission order and uploads flush the open encoder before writing (see `Device::upload`).
//!
//! Running out of memory is an error the caller can act on, not an abort: a new buffer is
//! created inside an out-of-memory error scope, and when the adapter refuses it (or it would
//! pass the memory limit a user set, see `Device::set_memory_limit`), the pool first gives its
//! cached buffers back and tries again, as PyTorch's caching allocator does, and only then
//! reports [`Exhausted`] with the byte counts.

use std::collections::HashMap;
use std::sync::Mutex;

/// Byte counts of the pool, as `Device::memory_stats` reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// Bytes held by live tensors (bucket sizes).
    pub in_use: u64,
    /// Highest `in_use` since the device opened or `reset_peak` was called.
    pub peak: u64,
    /// Bytes held in free lists, ready for reuse.
    pub cached: u64,
    /// Buffers created so far (a measure of how well the pool reuses).
    pub buffers_created: u64,
}

pub(crate) struct BufferPool {
    free: Mutex<HashMap<u64, Vec<wgpu::Buffer>>>,
    stats: Mutex<MemoryStats>,
    /// The adapter's largest buffer; buckets never round past it. (Bindings cover a tensor's
    /// own bytes, not its bucket, so the binding limit does not constrain buckets.)
    max_buffer: u64,
    /// Most bytes the pool may hold (live and cached); `None`: what the adapter gives.
    memory_limit: Mutex<Option<u64>>,
}

/// Why a buffer could not be had: the pool's counts when it gave up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Exhausted {
    /// The bucket asked for.
    pub size: u64,
    /// Bytes held by live tensors at that moment.
    pub in_use: u64,
    /// The memory limit set on the device, when that is what refused.
    pub limit: Option<u64>,
}

/// The bucket a request of `bytes` falls in.
pub(crate) fn bucket(bytes: u64, limit: u64) -> u64 {
    let bytes = bytes.max(256);
    let top = 1u64 << (63 - bytes.leading_zeros());
    let step = (top / 4).max(256);
    let b = bytes.div_ceil(step) * step;
    if b > limit && bytes <= limit {
        bytes.div_ceil(4) * 4
    } else {
        b
    }
}

impl BufferPool {
    pub(crate) fn new(max_buffer: u64) -> Self {
        Self {
            free: Mutex::new(HashMap::new()),
            stats: Mutex::new(MemoryStats::default()),
            max_buffer,
            memory_limit: Mutex::new(None),
        }
    }

    pub(crate) fn set_memory_limit(&self, limit: Option<u64>) {
        *self.memory_limit.lock().unwrap() = limit;
    }

    pub(crate) fn memory_limit(&self) -> Option<u64> {
        *self.memory_limit.lock().unwrap()
    }

    pub(crate) fn get(&self, device: &wgpu::Device, bytes: u64) -> Result<wgpu::Buffer, Exhausted> {
        let size = bucket(bytes, self.max_buffer);
        let reused = self.free.lock().unwrap().get_mut(&size).and_then(Vec::pop);
        if let Some(b) = reused {
            let mut st = self.stats.lock().unwrap();
            st.cached -= size;
            st.in_use += size;
            st.peak = st.peak.max(st.in_use);
            return Ok(b);
        }
        let limit = self.memory_limit();
        let fits = |st: &MemoryStats| limit.is_none_or(|l| st.in_use + st.cached + size <= l);
        if !fits(&self.stats()) {
            self.clear();
        }
        let mut buffer = None;
        for attempt in 0..2 {
            if !fits(&self.stats()) {
                break;
            }
            if attempt == 1 {
                self.clear();
            }
            if let Some(b) = create(device, size) {
                buffer = Some(b);
                break;
            }
        }
        let mut st = self.stats.lock().unwrap();
        let Some(buffer) = buffer else {
            return Err(Exhausted {
                size,
                in_use: st.in_use,
                limit: limit.filter(|l| st.in_use + size > *l),
            });
        };
        st.buffers_created += 1;
        st.in_use += size;
        st.peak = st.peak.max(st.in_use);
        Ok(buffer)
    }

    pub(crate) fn put(&self, buffer: wgpu::Buffer) {
        // A buffer freed while the pool is over its limit (lowered after allocation) goes.
        if let Some(l) = self.memory_limit() {
            let st = *self.stats.lock().unwrap();
            if st.in_use + st.cached > l {
                self.stats.lock().unwrap().in_use -= buffer.size();
                return;
            }
        }
        let size = buffer.size();
        {
            let mut st = self.stats.lock().unwrap();
            st.in_use -= size;
            st.cached += size;
        }
        self.free
            .lock()
            .unwrap()
            .entry(size)
            .or_default()
            .push(buffer);
    }

    pub(crate) fn stats(&self) -> MemoryStats {
        *self.stats.lock().unwrap()
    }

    pub(crate) fn reset_peak(&self) {
        let mut st = self.stats.lock().unwrap();
        st.peak = st.in_use;
    }

    /// Drops every cached buffer (wgpu frees each once no submitted work uses it).
    pub(crate) fn clear(&self) {
        self.free.lock().unwrap().clear();
        self.stats.lock().unwrap().cached = 0;
    }
}

/// A storage buffer of `size` bytes, or `None` when the adapter is out of memory for it.
fn create(device: &wgpu::Device, size: u64) -> Option<wgpu::Buffer> {
    let scope = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let buffer = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("wgrad tensor"),
        size,
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    // Native backends resolve the scope at once; no device poll is needed.
    match pollster::block_on(scope.pop()) {
        None => Some(buffer),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::bucket;

    #[test]
    fn buckets_waste_at_most_a_quarter() {
        let limit = 1 << 30;
        for bytes in [
            1u64,
            255,
            256,
            257,
            1000,
            4096,
            4097,
            100_000,
            3 << 20,
            (1 << 20) + 1,
        ] {
            let b = bucket(bytes, limit);
            assert!(b >= bytes, "{bytes} -> {b}");
            assert!(
                b <= 256 || (b as f64) <= bytes as f64 * 1.25 + 256.0,
                "{bytes} -> {b}"
            );
        }
        assert_eq!(bucket(1 << 20, limit), 1 << 20);
        assert_eq!(bucket((1 << 20) + 1, limit), (1 << 20) + (1 << 18));
    }

    #[test]
    fn buckets_never_pass_the_largest_buffer() {
        let limit = 128 << 20;
        for bytes in [limit - 4, limit - (1 << 20), limit] {
            let b = bucket(bytes, limit);
            assert!(b >= bytes && b <= limit, "{bytes} -> {b}");
        }
        // A limit that is not a bucket boundary: rounding up would pass it, so the exact size
        // (4-byte aligned) is used.
        let odd = 100 << 20;
        assert_eq!(bucket(99 << 20, odd), 99 << 20);
        assert_eq!(bucket((99 << 20) + 1, odd), (99 << 20) + 4);
    }
}
