//! What `Sequential` and `Functional` share: Keras-style layer names, parameter counts,
//! the `summary()` table and the training-memory estimate.

use std::fmt::Write;

use crate::Param;

/// One line of a summary.
pub(crate) struct Row {
    /// `name (Kind) description`.
    pub label: String,
    pub shape: Vec<usize>,
    pub params: usize,
    /// Functional models: the layers this one reads.
    pub connected: Option<String>,
}

/// Keras's naming: the class name in snake case (`MaxPooling2D` → `max_pooling2d`), `_1`,
/// `_2`… for the `seen`-th repeat.
pub(crate) fn layer_name(kind: &str, seen: usize) -> String {
    let mut base = String::new();
    for (i, ch) in kind.chars().enumerate() {
        let prev_lower = i > 0 && kind.as_bytes()[i - 1].is_ascii_lowercase();
        if ch.is_ascii_uppercase() && prev_lower {
            base.push('_');
        }
        base.push(ch.to_ascii_lowercase());
    }
    if seen == 0 {
        base
    } else {
        format!("{base}_{seen}")
    }
}

/// (trainable, non-trainable) element counts.
pub(crate) fn param_counts(params: &[&Param]) -> (usize, usize) {
    let mut c = (0, 0);
    for p in params {
        if p.trainable() {
            c.0 += p.numel();
        } else {
            c.1 += p.numel();
        }
    }
    c
}

/// Bytes one training step holds at its peak, estimated: weights, their gradients and `slots`
/// optimizer slots per trainable weight; the input and every layer's output for the batch
/// (kept for backward); and, at the peak of backward, gradients the size of the two largest
/// activations.
pub(crate) fn training_memory(
    counts: (usize, usize),
    input: &[usize],
    outputs: &[&[usize]],
    batch: usize,
    slots: usize,
) -> u64 {
    let (tr, non) = counts;
    let weights = 4 * (tr + non) as u64 + 4 * tr as u64 * (1 + slots as u64);
    let bytes = |s: &[usize]| 4 * batch as u64 * s.iter().product::<usize>() as u64;
    let mut acts: Vec<u64> = outputs.iter().map(|s| bytes(s)).collect();
    let saved: u64 = acts.iter().sum::<u64>() + bytes(input);
    acts.sort_unstable_by(|a, b| b.cmp(a));
    weights + saved + acts.iter().take(2).sum::<u64>()
}

/// Keras's `summary()` table with an activation-memory column, the parameter totals and the
/// training-memory estimate for a batch of `batch`.
pub(crate) fn render(
    title: &str,
    batch: usize,
    rows: &[Row],
    counts: (usize, usize),
    (estimate, slots): (u64, usize),
) -> String {
    let connected = rows.iter().any(|r| r.connected.is_some());
    let width = if connected { 118 } else { 92 };
    let rule = "─".repeat(width);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Model: \"{title}\"  (batch {batch} for the memory columns)"
    );
    let _ = writeln!(s, "{rule}");
    let _ = write!(
        s,
        "{:<34}{:<24}{:>12}  {:>18}",
        "Layer (type)", "Output Shape", "Param #", "Activations"
    );
    if connected {
        s.push_str("  Connected to");
    }
    let _ = writeln!(s, "\n{rule}");
    let mut act_bytes = 0u64;
    for r in rows {
        let shape = format!(
            "(None, {})",
            r.shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let bytes = 4 * batch as u64 * r.shape.iter().product::<usize>() as u64;
        act_bytes += bytes;
        let _ = write!(
            s,
            "{:<34}{:<24}{:>12}  {:>18}",
            truncate(&r.label, 33),
            shape,
            group(r.params),
            human(bytes)
        );
        if let Some(c) = &r.connected {
            let _ = write!(s, "  {c}");
        }
        s.push('\n');
    }
    let _ = writeln!(s, "{rule}");
    let (tr, non) = counts;
    let line = |n: usize| format!("{} ({})", group(n), human(4 * n as u64));
    let _ = writeln!(s, "Total params: {}", line(tr + non));
    let _ = writeln!(s, "Trainable params: {}", line(tr));
    let _ = writeln!(s, "Non-trainable params: {}", line(non));
    let _ = writeln!(s, "Activations, batch {batch}: {}", human(act_bytes));
    let _ = writeln!(
        s,
        "Estimated training memory, batch {batch}: {} (weights, gradients, {slots} optimizer slot{}, saved activations and their gradients)",
        human(estimate),
        if slots == 1 { "" } else { "s" }
    );
    s
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

/// 1234567 → "1,234,567".
pub(crate) fn group(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Bytes in KiB/MiB/GiB.
pub(crate) fn human(b: u64) -> String {
    let f = b as f64;
    if f >= (1u64 << 30) as f64 {
        format!("{:.2} GiB", f / (1u64 << 30) as f64)
    } else if f >= (1 << 20) as f64 {
        format!("{:.2} MiB", f / (1 << 20) as f64)
    } else if f >= 1024.0 {
        format!("{:.1} KiB", f / 1024.0)
    } else {
        format!("{b} B")
    }
}

/// A layer's summary label: `name (Kind) description`.
pub(crate) fn label(name: &str, layer: &dyn crate::Layer) -> String {
    let d = layer.describe();
    if d.is_empty() {
        format!("{name} ({})", layer.kind())
    } else {
        format!("{name} ({}) {d}", layer.kind())
    }
}
