//! Offline validation of every WGSL kernel variant with naga: no adapter needed.
//!
//! For each `(kernel, spec)` of `ops::all_variants()` the complete source is parsed,
//! validated, and every entry point the launchers use is translated to SPIR-V (Vulkan), MSL
//! (Metal), HLSL (DX12) and GLSL ES 3.10 (GL), so a shader that only one backend rejects fails
//! here rather than on a user's machine. Also checks that every file under `shaders/` is used.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::kernel::{Kernel, Spec};
use crate::ops::all_variants;
use naga::back::{glsl, hlsl, msl, spv};
use naga::valid::{Capabilities, ValidationFlags, Validator};

/// naga's default capabilities plus `SHADER_FLOAT16_IN_FLOAT32` (`pack2x16float` and
/// `unpack2x16float`, used by the f16 storage kernels): wgpu grants it wherever the adapter
/// reports `DownlevelFlags::SHADER_F16_IN_F32`, i.e. Metal, DX12, GL and Vulkan (Mesa's Vulkan
/// drivers only together with `SHADER_F16`, which lavapipe has).
fn capabilities() -> Capabilities {
    Capabilities::default() | Capabilities::SHADER_FLOAT16_IN_FLOAT32
}

/// Parses, validates and translates one variant; the error names the step and naga's message.
fn check_variant(kernel: &Kernel, spec: &Spec) -> Result<(), String> {
    let source = kernel.source_with(spec);
    let module = naga::front::wgsl::parse_str(&source)
        .map_err(|e| format!("WGSL parse:\n{}", e.emit_to_string(&source)))?;
    let info = Validator::new(ValidationFlags::all(), capabilities())
        .validate(&module)
        .map_err(|e| format!("validation:\n{}", e.emit_to_string(&source)))?;

    let spv_options = spv::Options::default();
    let msl_options = msl::Options {
        lang_version: (2, 1),
        ..Default::default()
    };
    let hlsl_options = hlsl::Options {
        shader_model: hlsl::ShaderModel::V6_0,
        ..Default::default()
    };
    let glsl_options = glsl::Options {
        version: glsl::Version::Embedded {
            version: 310,
            is_webgl: false,
        },
        ..Default::default()
    };

    for &entry in kernel.entries {
        let stage = module
            .entry_points
            .iter()
            .find(|ep| ep.name == entry)
            .map(|ep| ep.stage)
            .ok_or_else(|| format!("entry point `{entry}` not found in the module"))?;
        if stage != naga::ShaderStage::Compute {
            return Err(format!("entry point `{entry}` is {stage:?}, not compute"));
        }

        spv::write_vec(
            &module,
            &info,
            &spv_options,
            Some(&spv::PipelineOptions {
                shader_stage: stage,
                entry_point: entry.to_string(),
            }),
        )
        .map_err(|e| format!("SPIR-V `{entry}`: {e}"))?;

        msl::write_string(
            &module,
            &info,
            &msl_options,
            &msl::PipelineOptions {
                entry_point: Some((stage, entry.to_string())),
                ..Default::default()
            },
        )
        .map_err(|e| format!("MSL `{entry}`: {e}"))?;

        let hlsl_pipeline = hlsl::PipelineOptions {
            entry_point: Some((stage, entry.to_string())),
        };
        let mut out = String::new();
        hlsl::Writer::new(&mut out, &hlsl_options, &hlsl_pipeline)
            .write(&module, &info, None)
            .map_err(|e| format!("HLSL `{entry}`: {e}"))?;

        let glsl_pipeline = glsl::PipelineOptions {
            shader_stage: stage,
            entry_point: entry.to_string(),
            multiview: None,
        };
        let mut out = String::new();
        glsl::Writer::new(
            &mut out,
            &module,
            &info,
            &glsl_options,
            &glsl_pipeline,
            naga::proc::BoundsCheckPolicies::default(),
        )
        .and_then(|mut w| w.write())
        .map_err(|e| format!("GLSL ES 3.10 `{entry}`: {e}"))?;
    }
    Ok(())
}

#[test]
fn every_variant_validates_and_translates() {
    let variants = all_variants();
    assert!(!variants.is_empty(), "ops::all_variants() is empty");

    // Variants are independent: check them on every core, then report all failures at once.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = variants.len().div_ceil(threads);
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = variants
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .filter_map(|(kernel, spec)| {
                            check_variant(kernel, spec).err().map(|e| {
                                format!(
                                    "kernel `{}` ({}) with spec:\n{}{e}",
                                    kernel.name,
                                    kernel.file,
                                    spec.text()
                                )
                            })
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("checker thread panicked"))
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} of {} shader variants failed:\n\n{}",
        failures.len(),
        variants.len(),
        failures.join("\n\n")
    );
}

fn wgsl_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("readable directory entry").path();
        if path.is_dir() {
            wgsl_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[test]
fn every_shader_file_is_used() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shaders");
    let mut files = Vec::new();
    wgsl_files(&root, &mut files);
    assert!(!files.is_empty(), "no files under {}", root.display());

    let variants = all_variants();
    let mut kernels: Vec<&Kernel> = variants.iter().map(|(k, _)| *k).collect();
    kernels.sort_by_key(|k| k.name);
    kernels.dedup_by_key(|k| k.name);
    // Kernel files are named; helpers (a kernel's own and the prelude every variant starts
    // with) are embedded text, so they are matched by content in the sources compiled.
    let used_files: BTreeSet<&str> = kernels.iter().map(|k| k.file).collect();
    let compiled: Vec<String> = kernels
        .iter()
        .map(|k| k.source_with(&Default::default()))
        .collect();
    for k in &kernels {
        let on_disk = std::fs::read_to_string(root.join(k.file)).unwrap_or_default();
        assert!(
            on_disk == k.source,
            "kernel `{}`: `file` says {} but its source is not that file's text",
            k.name,
            k.file
        );
    }

    let unused: Vec<String> = files
        .iter()
        .filter_map(|path| {
            let rel = path
                .strip_prefix(&root)
                .expect("path under shaders/")
                .to_string_lossy()
                .replace('\\', "/");
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let used = used_files.contains(rel.as_str())
                || (!text.is_empty() && compiled.iter().any(|c| c.contains(&text)));
            (!used).then_some(rel)
        })
        .collect();
    assert!(
        unused.is_empty(),
        "files in shaders/ that no kernel in ops::all_variants() uses: {unused:?}"
    );
}
