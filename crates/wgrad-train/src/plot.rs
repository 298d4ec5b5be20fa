//! A PNG of the training curves (`History::save_plot`): loss on the left, accuracy on the
//! right, training and validation, one point per epoch. Rendered with plotters; the labels
//! use the DejaVu Sans font compiled into the binary, so no system font is needed.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;

use crate::History;
use wgrad_nn::{Error, Result};

static FONT: Once = Once::new();

fn register_font() {
    FONT.call_once(|| {
        // Fails only if the font bytes were malformed; the plot then lacks its labels.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

type Series = (&'static str, Vec<f32>, RGBColor);

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    series: &[Series],
    epochs: usize,
) -> std::result::Result<(), String> {
    let values: Vec<f32> = series
        .iter()
        .flat_map(|(_, v, _)| v.iter().copied())
        .collect();
    if values.is_empty() {
        return Ok(());
    }
    let lo = values.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let pad = ((hi - lo) * 0.08).max(1e-3);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(1f32..epochs.max(2) as f32, (lo - pad)..(hi + pad))
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .x_labels(epochs.clamp(2, 10))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| e.to_string())?;
    for (name, v, color) in series {
        if v.is_empty() {
            continue;
        }
        let pts: Vec<(f32, f32)> = v
            .iter()
            .enumerate()
            .map(|(i, &y)| (i as f32 + 1.0, y))
            .collect();
        let c = *color;
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, c.filled())))
            .map_err(|e| e.to_string())?;
    }
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())
}

impl History {
    /// Writes the loss and accuracy curves as a 1000×420 PNG at `path` (through a temporary
    /// file and a rename, like every file wgrad writes).
    pub fn save_plot(&self, path: impl AsRef<Path>, title: &str) -> Result<()> {
        let path = path.as_ref();
        register_font();
        let epochs = self.epochs.len();
        let tmp = path.with_file_name(format!(
            ".{}.tmp-{}.png",
            path.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default(),
            std::process::id()
        ));
        let render = || -> std::result::Result<(), String> {
            let root = BitMapBackend::new(&tmp, (1000, 420)).into_drawing_area();
            root.fill(&WHITE).map_err(|e| e.to_string())?;
            let root = root
                .titled(title, ("sans-serif", 24))
                .map_err(|e| e.to_string())?;
            let (left, right) = root.split_horizontally(500);
            let blue = RGBColor(31, 119, 180);
            let orange = RGBColor(255, 127, 14);
            panel(
                &left,
                "loss",
                &[
                    ("training", self.series("loss"), blue),
                    ("validation", self.series("val_loss"), orange),
                ],
                epochs,
            )?;
            panel(
                &right,
                "accuracy",
                &[
                    ("training", self.series("accuracy"), blue),
                    ("validation", self.series("val_accuracy"), orange),
                ],
                epochs,
            )?;
            root.present().map_err(|e| e.to_string())
        };
        if let Some(d) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(d).map_err(|source| Error::Io {
                path: d.to_path_buf(),
                source,
            })?;
        }
        let done = render().and_then(|()| std::fs::rename(&tmp, path).map_err(|e| e.to_string()));
        done.map_err(|reason| {
            let _ = std::fs::remove_file(&tmp);
            Error::Plot {
                path: path.to_path_buf(),
                reason,
            }
        })
    }
}
