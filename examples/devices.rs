//! Lists the adapters wgpu finds and the one wgrad opens.
//!
//! ```text
//! cargo run --example devices            # every adapter, its limits and features
//! cargo run --example devices -- --check # only the chosen adapter; exit 2 if there is none,
//!                                        # 3 if it is a software adapter reached only through GL
//! ```
//! Exit status 3 lets `cargo xtask` install Mesa's Vulkan software driver where a fresh machine
//! has only Mesa's GL one: wgrad runs on GL, but lavapipe's Vulkan driver has SHADER_F16 and
//! subgroups, and wgrad prefers it for the same CPU.
//! `WGRAD_ADAPTER` (a substring of the adapter name) and `WGPU_BACKEND` (vulkan, metal, dx12,
//! gl) narrow the choice, as everywhere in wgrad.

use std::process::ExitCode;

use wgrad::wgpu::Features;
use wgrad::{Device, Error};

fn bytes(b: u64) -> String {
    for (unit, name) in [(1u64 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")] {
        if b >= unit {
            return if b.is_multiple_of(unit) {
                format!("{} {name}", b / unit)
            } else {
                format!("{:.1} {name}", b as f64 / unit as f64)
            };
        }
    }
    format!("{b} B")
}

fn main() -> ExitCode {
    let check = std::env::args().skip(1).any(|a| a == "--check");

    if !check {
        let adapters = Device::adapters();
        println!("{} adapter(s) found", adapters.len());
        for (i, a) in adapters.iter().enumerate() {
            let l = &a.limits;
            println!("\n[{i}] {}", a.name);
            println!("    backend      {:?}", a.backend);
            println!("    device type  {:?}", a.device_type);
            let driver = [a.driver.as_str(), a.driver_info.as_str()]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(", ");
            println!("    driver       {driver}");
            println!(
                "    limits       storage binding {}, buffer {}, workgroup storage {}",
                bytes(l.max_storage_buffer_binding_size),
                bytes(l.max_buffer_size),
                bytes(l.max_compute_workgroup_storage_size as u64),
            );
            println!(
                "                 {} invocations/workgroup, {} workgroups/dimension, {} storage buffers/stage",
                l.max_compute_invocations_per_workgroup,
                l.max_compute_workgroups_per_dimension,
                l.max_storage_buffers_per_shader_stage,
            );
            let has = |f: Features| if a.features.contains(f) { "yes" } else { "no" };
            println!(
                "    features     SHADER_F16 {}, SUBGROUP {}, TIMESTAMP_QUERY {}",
                has(Features::SHADER_F16),
                has(Features::SUBGROUP),
                has(Features::TIMESTAMP_QUERY),
            );
        }
        println!();
    }

    match Device::new() {
        Ok(dev) => {
            let info = dev.info();
            println!(
                "wgrad uses: {} ({:?}, {:?}), matmul strategy {:?}",
                info.name,
                info.backend,
                info.device_type,
                dev.strategy()
            );
            let software_gl = info.device_type == wgrad::wgpu::DeviceType::Cpu
                && info.backend == wgrad::wgpu::Backend::Gl;
            if check && software_gl {
                eprintln!(
                    "only a software adapter through GL was found; the Vulkan software driver \
                     (Debian/Ubuntu: mesa-vulkan-drivers) serves the same CPU with f16 and subgroups"
                );
                return ExitCode::from(3);
            }
            ExitCode::SUCCESS
        }
        Err(e @ Error::NoAdapter { .. }) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
