//! The seeds' filter demo: two hand-made 7×7 filters — a vertical line and a horizontal line —
//! applied with the low-level `conv2d` to two photos; each feature map is written as a PNG.
//!
//! ```text
//! cargo run --release --example filters              # writes target/filters/*.png
//! cargo run --release --example filters -- OUT_DIR
//! ```
//! The vertical filter keeps vertical edges (the columns of the temple, the flower's stem)
//! and blurs the rest; the horizontal one does the same for horizontal lines.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use wgrad::{Conv2dOptions, Device, Padding, Tensor};

const PHOTOS: [&str; 2] = ["china.jpg", "flower.jpg"];
const H: usize = 427;
const W: usize = 640;

fn main() -> ExitCode {
    let out = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/filters"));
    match run(&out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(out: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let dev = Device::new()?;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data");
    let mut pixels = Vec::new();
    for name in PHOTOS {
        pixels.extend(wgrad::data::folder::read_image(dir.join(name), [H, W])?);
    }
    let images = Tensor::from_slice(&dev, &pixels, &[2, H, W, 3])?;
    // HWIO (7, 7, 3, 2): filter 0 is a vertical line of ones, filter 1 a horizontal one,
    // summed over the three colour channels.
    let mut f = vec![0f32; 7 * 7 * 3 * 2];
    for i in 0..7 {
        for c in 0..3 {
            f[((i * 7 + 3) * 3 + c) * 2] = 1.0; // (row i, column 3) → vertical
            f[((3 * 7 + i) * 3 + c) * 2 + 1] = 1.0; // (row 3, column i) → horizontal
        }
    }
    let filters = Tensor::from_slice(&dev, &f, &[7, 7, 3, 2])?;
    let maps = images.conv2d(
        &filters,
        Conv2dOptions {
            padding: Padding::Same,
            ..Default::default()
        },
    )?;
    let v = maps.to_vec::<f32>()?;
    std::fs::create_dir_all(out)?;
    for (n, photo) in PHOTOS.iter().enumerate() {
        for (k, which) in ["vertical", "horizontal"].iter().enumerate() {
            let plane: Vec<f32> = (0..H * W).map(|p| v[(n * H * W + p) * 2 + k]).collect();
            let (lo, hi) = plane
                .iter()
                .fold((f32::MAX, f32::MIN), |(a, b), &x| (a.min(x), b.max(x)));
            let scale = if hi > lo { 255.0 / (hi - lo) } else { 0.0 };
            let gray: Vec<u8> = plane.iter().map(|&x| ((x - lo) * scale) as u8).collect();
            let path = out.join(format!("{}-{which}.png", photo.trim_end_matches(".jpg")));
            image::GrayImage::from_raw(W as u32, H as u32, gray)
                .ok_or("feature map size")?
                .save(&path)?;
            println!("{} ({which} line filter) -> {}", photo, path.display());
        }
    }
    Ok(())
}
