//! Replays what the fuzzer kept: every target's seeds (which must parse) and every input of
//! its corpus (`corpus/<target>/`, written by `cargo xtask fuzz`), each through the target's
//! checks. A parser change that panics, or accepts an input it should refuse in a malformed
//! way, fails here in seconds without AFL.

use std::path::PathBuf;

use wgrad_fuzz::{IMAGE_SIZE, TARGETS};

fn corpus(name: &str) -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(name);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (run `cargo xtask fuzz {name}`)", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn seeds_are_accepted() {
    for t in TARGETS {
        for (i, seed) in (t.seeds)().iter().enumerate() {
            assert!((t.run)(seed), "{}: seed {i} is refused", t.name);
        }
    }
}

#[test]
fn corpus_replays_through_every_target() {
    let start = std::time::Instant::now();
    let mut total = 0;
    for t in TARGETS {
        let files = corpus(t.name);
        let refused = files
            .iter()
            .filter(|f| !(t.run)(&std::fs::read(f).expect("corpus file")))
            .count();
        // The fuzzer keeps inputs that reach new code, mostly the ways a file is refused; the
        // seeds (replayed above, each accepted) hold the paths that accept one. (afl-cmin may
        // drop the seeds themselves: a mutated file with a valid checksum covers the same.)
        assert!(refused > 0, "{}: no corpus input is refused", t.name);
        assert!(
            files.len() >= 10,
            "{}: only {} corpus inputs",
            t.name,
            files.len()
        );
        total += files.len();
    }
    eprintln!("replayed {total} corpus inputs in {:.2?}", start.elapsed());
}

/// The seeds decode to what they were built from: the targets see the parsers' real output.
#[test]
fn seeds_decode_to_their_contents() {
    use std::path::Path;
    let o = Path::new("seed");
    let f = wgrad_fuzz::idx_file(wgrad_data::idx::IMAGES_MAGIC, &[3, 2, 4]);
    let (px, dims) = wgrad_data::idx::parse_images(&f, o).unwrap();
    assert_eq!(dims, [3, 2, 4]);
    assert_eq!(px, &f[16..]);

    let png = wgrad_fuzz::encoded(9, 7, image::ImageFormat::Png, false);
    let img = wgrad_data::folder::decode_image(&png, o, IMAGE_SIZE).unwrap();
    // 9×7 is already the target size: no resize, the pixel at (row 2, col 3) is (120, 100, 100)/255.
    let at = (2 * 9 + 3) * 3;
    assert_eq!(
        &img[at..at + 3],
        &[120.0 / 255.0, 100.0 / 255.0, 100.0 / 255.0]
    );

    let mask = wgrad_fuzz::mask_png(5, 6, &[1; 30], true);
    assert_eq!(
        wgrad_fuzz::mask_reader().decode_mask(&mask, o).unwrap(),
        vec![1; 30]
    );

    // PyTorch's [out, in] dense weight arrives transposed into wgrad's [in, out].
    let st_bytes = wgrad_fuzz::safetensors_file(&wgrad_fuzz::pytorch_names(), &[]);
    let st = safetensors::SafeTensors::deserialize(&st_bytes).unwrap();
    let wanted = wgrad_fuzz::model_weights();
    let v = wgrad_nn::import::import_values(&st, o, &wgrad_nn::Import::pytorch(), &wanted).unwrap();
    let dense = v.last().unwrap();
    // src[r * 4 + c] = 0.5 (r * 4 + c) lands at out[c * 2 + r].
    assert_eq!(dense[3 * 2 + 1], 0.5 * (4 + 3) as f32);
}
