//! (being written)
pub(crate) fn variants() -> Vec<(&'static crate::kernel::Kernel, crate::kernel::Spec)> { Vec::new() }
