//! What one load costs a CPU adapter, by where it reads and how its address is formed.
//!
//! `cargo run --release -p wgrad-tensor --example load_costs`
//!
//! Each variant is one compute shader: 64-invocation workgroups whose invocations make 512
//! vec4 loads each into 8 running sums, and one store. Only the loads' binding kind (storage
//! buffer, uniform buffer, texture) and their addresses differ: divergent (a function of the
//! invocation), uniform across the workgroup, or constant offsets in straight-line code (no
//! loop). Printed: the best of 5 dispatches and nanoseconds per invocation-load per thread
//! (LP_NUM_THREADS, 2 by default here), so that lavapipe's per-lane load loop shows as a cost
//! per lane (docs/kernels.md, "What an access costs"). Raw wgpu, no wgrad code: the figures
//! are the adapter's, not the project's kernels'.

use std::time::Instant;
use wgpu::util::DeviceExt;

const GROUPS: u32 = 2048;
const LOADS: u32 = 512;

/// The shader's bindings: a storage buffer, a 64 KiB uniform buffer and an rgba32float
/// texture, all read by every variant (the output's last term) so that one layout serves.
const HEAD: &str = "@group(0) @binding(0) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(1) var<uniform> u: array<vec4<f32>, 4096>;
@group(0) @binding(2) var<storage, read_write> o: array<vec4<f32>>;
@group(0) @binding(3) var t: texture_2d<f32>;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
";

/// One load of `src` ("b", "u" or "t") at the index expression `idx`.
fn load(src: &str, idx: &str) -> String {
    match src {
        "t" => format!(
            "textureLoad(t, vec2<i32>(i32(({idx}) & 1023u), i32((({idx}) >> 10u) & 255u)), 0)"
        ),
        "u" => format!("u[({idx}) & 4095u]"),
        _ => format!("b[{idx}]"),
    }
}

/// LOADS loads in a loop of LOADS / 8 iterations, 8 per iteration, at `base + k * 8 + c`.
fn looped(src: &str, base: &str) -> String {
    let mut s = String::from(HEAD);
    for c in 0..8 {
        s += &format!("  var a{c} = vec4<f32>(0.0);\n");
    }
    s += &format!("  for (var k = 0u; k < {}u; k++) {{\n", LOADS / 8);
    for c in 0..8 {
        s += &format!(
            "    a{c} += {};\n",
            load(src, &format!("{base} + k * 8u + {c}u"))
        );
    }
    s + "  }\n" + &tail()
}

/// LOADS loads in straight-line code at `base + i` for constant i.
fn flat(src: &str, base: &str) -> String {
    let mut s = String::from(HEAD);
    for c in 0..8 {
        s += &format!("  var a{c} = vec4<f32>(0.0);\n");
    }
    for i in 0..LOADS {
        s += &format!(
            "  a{} += {};\n",
            i % 8,
            load(src, &format!("{base} + {i}u"))
        );
    }
    s + &tail()
}

fn tail() -> String {
    "  o[wg.x * 64u + li] = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7
      + (u[0] + b[0] + textureLoad(t, vec2<i32>(0, 0), 0)) * 0.0;
}
"
    .into()
}

fn main() {
    let inst = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let Some(adapter) = pollster::block_on(inst.request_adapter(&Default::default())).ok() else {
        eprintln!("load_costs: no adapter");
        std::process::exit(1);
    };
    let info = adapter.get_info();
    println!("{} ({:?}, {})", info.name, info.backend, info.driver_info);
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        required_limits: adapter.limits(),
        ..Default::default()
    }))
    .expect("device");
    let data: Vec<f32> = (0..(1 << 20)).map(|i| (i % 7) as f32 * 0.01).collect();
    let buffer = |usage, bytes: &[f32]| {
        device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: bytemuck::cast_slice(bytes),
            usage,
        })
    };
    let b = buffer(wgpu::BufferUsages::STORAGE, &data);
    let u = buffer(wgpu::BufferUsages::UNIFORM, &data[..16384]);
    let out = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: GROUPS as u64 * 64 * 16,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    let tex = device.create_texture_with_data(
        &queue,
        &wgpu::TextureDescriptor {
            label: None,
            size: wgpu::Extent3d {
                width: 1024,
                height: 256,
                depth_or_array_layers: 1,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: wgpu::TextureFormat::Rgba32Float,
            usage: wgpu::TextureUsages::TEXTURE_BINDING,
            view_formats: &[],
        },
        wgpu::util::TextureDataOrder::LayerMajor,
        bytemuck::cast_slice(&data),
    );
    let view = tex.create_view(&Default::default());
    let threads: f64 = std::env::var("LP_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2.0);
    let variants = [
        ("storage, divergent", looped("b", "li * 8u")),
        (
            "storage, workgroup-uniform",
            looped("b", "(wg.x & 1023u) * 8u"),
        ),
        ("uniform buffer, divergent", looped("u", "li * 8u")),
        (
            "uniform buffer, workgroup-uniform",
            looped("u", "(wg.x & 255u) * 8u"),
        ),
        ("texture, divergent", looped("t", "li * 8u")),
        ("storage, straight-line, divergent", flat("b", "li")),
        ("storage, straight-line, constant", flat("b", "0u")),
    ];
    println!(
        "{:<36} {:>10} {:>10} {:>14}",
        "loads", "compile s", "ms", "ns/load/thread"
    );
    for (name, src) in variants {
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(name),
            source: wgpu::ShaderSource::Wgsl(src.into()),
        });
        let pipe = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(name),
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        let group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipe.get_bind_group_layout(0),
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: b.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: u.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: out.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 3,
                    resource: wgpu::BindingResource::TextureView(&view),
                },
            ],
        });
        let run = || {
            let mut enc = device.create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                pass.set_pipeline(&pipe);
                pass.set_bind_group(0, &group, &[]);
                pass.dispatch_workgroups(GROUPS, 1, 1);
            }
            queue.submit([enc.finish()]);
            let _ = device.poll(wgpu::PollType::wait_indefinitely());
        };
        // lavapipe compiles a pipeline at its first dispatch.
        let t = Instant::now();
        run();
        let compile = t.elapsed().as_secs_f64();
        let best = (0..5)
            .map(|_| {
                let t = Instant::now();
                run();
                t.elapsed().as_secs_f64()
            })
            .fold(f64::MAX, f64::min);
        let loads = GROUPS as f64 * 64.0 * LOADS as f64;
        println!(
            "{name:<36} {compile:>10.2} {:>10.2} {:>14.2}",
            best * 1e3,
            best * 1e9 * threads / loads
        );
    }
}
