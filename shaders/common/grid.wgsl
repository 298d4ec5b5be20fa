// The linear index of a 1-D launch. Grids past the adapter's 65,535 workgroups per dimension
// fold into y, `row` workgroups per grid row (ops/mod.rs `launch_1d` picks it); `WG`, the
// invocations per workgroup, is the family's `Kernel::workgroup`, prepended to every variant
// so that the shader and its launcher divide by the same number.
fn grid_index(wg: vec3<u32>, li: u32, row: u32) -> u32 {
    return (wg.x + wg.y * row) * WG + li;
}
