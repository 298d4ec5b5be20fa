//! Permute, transpose, slice and concat for f32, i32 and f16: all are copies, so results must be
//! bit-exact against host index arithmetic.

use crate::{numel, strides_of, unravel, up};
use half::f16;
use wgrad_tensor::{Element, Tensor};
use wgrad_testkit::Rng;

fn permute_ref<T: Copy>(x: &[T], shape: &[usize], perm: &[usize]) -> Vec<T> {
    let st = strides_of(shape);
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    (0..x.len())
        .map(|i| {
            let idx = unravel(i, &out_shape);
            x[perm
                .iter()
                .zip(&idx)
                .map(|(&p, &c)| c * st[p])
                .sum::<usize>()]
        })
        .collect()
}

fn slice_ref<T: Copy>(x: &[T], shape: &[usize], axis: usize, start: usize, end: usize) -> Vec<T> {
    x.iter()
        .enumerate()
        .filter(|(i, _)| (start..end).contains(&unravel(*i, shape)[axis]))
        .map(|(_, &v)| v)
        .collect()
}

fn concat_ref<T: Copy>(parts: &[(Vec<T>, Vec<usize>)], axis: usize) -> (Vec<T>, Vec<usize>) {
    let mut shape = parts[0].1.clone();
    shape[axis] = parts.iter().map(|p| p.1[axis]).sum();
    let out = (0..numel(&shape))
        .map(|i| {
            let mut idx = unravel(i, &shape);
            let mut which = 0;
            while idx[axis] >= parts[which].1[axis] {
                idx[axis] -= parts[which].1[axis];
                which += 1;
            }
            let (data, s) = &parts[which];
            let st = strides_of(s);
            data[idx.iter().zip(&st).map(|(c, s)| c * s).sum::<usize>()]
        })
        .collect();
    (out, shape)
}

/// Fisher-Yates on the test's own generator.
fn random_perm(rank: usize, rng: &mut Rng) -> Vec<usize> {
    let mut p: Vec<usize> = (0..rank).collect();
    for i in (1..rank).rev() {
        p.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
    }
    p
}

/// Host data of each dtype, compared through its bit pattern.
trait Sample: Element + std::fmt::Debug {
    fn sample(rng: &mut Rng) -> Self;
    fn bits(self) -> u32;
}
impl Sample for f32 {
    fn sample(rng: &mut Rng) -> Self {
        rng.uniform(-100.0, 100.0)
    }
    fn bits(self) -> u32 {
        self.to_bits()
    }
}
impl Sample for i32 {
    fn sample(rng: &mut Rng) -> Self {
        rng.next_u64() as i32
    }
    fn bits(self) -> u32 {
        self as u32
    }
}
impl Sample for f16 {
    fn sample(rng: &mut Rng) -> Self {
        f16::from_f32(rng.uniform(-1000.0, 1000.0))
    }
    fn bits(self) -> u32 {
        self.to_bits() as u32
    }
}

fn data<T: Sample>(n: usize, rng: &mut Rng) -> Vec<T> {
    (0..n).map(|_| T::sample(rng)).collect()
}

#[track_caller]
fn same_bits<T: Sample>(ctx: &str, t: &Tensor, want: &[T], shape: &[usize]) {
    assert_eq!(t.shape(), shape, "{ctx}");
    assert_eq!(t.dtype(), T::DTYPE, "{ctx}");
    let got: Vec<u32> = t.to_vec::<T>().unwrap().into_iter().map(T::bits).collect();
    let want: Vec<u32> = want.iter().map(|&v| v.bits()).collect();
    assert_eq!(got, want, "{ctx}");
}

const SHAPES: [&[usize]; 7] = [
    &[7],
    // Several 32×32 workgroups of the tiled transpose, each edge cut mid-tile.
    &[2, 37, 70],
    &[3, 5],
    &[2, 3, 5],
    &[3, 1, 4, 5],
    &[2, 3, 1, 5, 3],
    &[4, 2],
];

/// Permutations that reduce to a batched transpose once unit axes are dropped and adjacent
/// axes merged (the conv input-gradient filter reorder is the first), with tile edges.
const FIXED: &[(&[usize], &[usize])] = &[
    (&[3, 3, 40, 1, 33], &[3, 0, 1, 4, 2]),
    (&[1, 2, 35, 1, 31], &[3, 0, 4, 1, 2]),
    (&[2, 3, 4, 5], &[1, 0, 2, 3]),
    (&[2, 3, 4, 5], &[3, 1, 2, 0]),
    (&[1, 1, 1], &[2, 0, 1]),
];

fn permutes<T: Sample>(seed: u64) {
    let mut rng = Rng::new(seed);
    for (shape, perm) in FIXED {
        let x = data::<T>(numel(shape), &mut rng);
        let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
        same_bits(
            &format!("permute {shape:?} by {perm:?}"),
            &up(&x, shape).permute(perm).unwrap(),
            &permute_ref(&x, shape, perm),
            &out_shape,
        );
    }
    for shape in SHAPES {
        let x = data::<T>(numel(shape), &mut rng);
        for _ in 0..4 {
            let perm = random_perm(shape.len(), &mut rng);
            let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
            let t = up(&x, shape).permute(&perm).unwrap();
            same_bits(
                &format!("permute {shape:?} by {perm:?}"),
                &t,
                &permute_ref(&x, shape, &perm),
                &out_shape,
            );
        }
        if shape.len() >= 2 {
            let r = shape.len();
            let mut perm: Vec<usize> = (0..r).collect();
            perm.swap(r - 2, r - 1);
            let want = permute_ref(&x, shape, &perm);
            let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
            same_bits("t()", &up(&x, shape).t().unwrap(), &want, &out_shape);
            same_bits(
                "transpose(-1, -2)",
                &up(&x, shape).transpose(-1, -2).unwrap(),
                &want,
                &out_shape,
            );
            let mut perm: Vec<usize> = (0..r).collect();
            perm.swap(0, r - 1);
            let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
            let t = up(&x, shape).transpose(0, r as isize - 1).unwrap();
            same_bits(
                "transpose(0, last)",
                &t,
                &permute_ref(&x, shape, &perm),
                &out_shape,
            );
        }
    }
}

fn slices<T: Sample>(seed: u64) {
    let mut rng = Rng::new(seed);
    for shape in [&[9usize][..], &[5, 6, 7], &[3, 1, 5, 3]] {
        let x = data::<T>(numel(shape), &mut rng);
        for axis in 0..shape.len() {
            let len = shape[axis];
            for (start, end) in [
                (0, len),
                (0, 1),
                (len / 2, len),
                (1.min(len), len),
                (len / 3, len / 3 + 1),
                (len, len),
            ] {
                let mut out_shape = shape.to_vec();
                out_shape[axis] = end - start;
                // Negative axes count from the end, as elsewhere.
                let ax = if axis.is_multiple_of(2) {
                    axis as isize
                } else {
                    axis as isize - shape.len() as isize
                };
                let t = up(&x, shape).slice(ax, start, end).unwrap();
                let want = slice_ref(&x, shape, axis, start, end);
                same_bits(
                    &format!("slice {shape:?} axis {axis} {start}..{end}"),
                    &t,
                    &want,
                    &out_shape,
                );
            }
        }
    }
}

fn concats<T: Sample>(seed: u64) {
    let mut rng = Rng::new(seed);
    for base in [&[5usize][..], &[3, 4], &[2, 3, 5], &[3, 1, 2, 3]] {
        for axis in 0..base.len() {
            let parts: Vec<(Vec<T>, Vec<usize>)> = [1usize, 3, 2]
                .iter()
                .map(|&e| {
                    let mut s = base.to_vec();
                    s[axis] = e;
                    (data::<T>(numel(&s), &mut rng), s)
                })
                .collect();
            let ts: Vec<Tensor> = parts.iter().map(|(d, s)| up(d, s)).collect();
            let refs: Vec<&Tensor> = ts.iter().collect();
            let (want, shape) = concat_ref(&parts, axis);
            let t = Tensor::concat(&refs, axis as isize).unwrap();
            same_bits(&format!("concat {base:?} along {axis}"), &t, &want, &shape);
            let t = Tensor::concat(&refs[..1], axis as isize - base.len() as isize).unwrap();
            same_bits("concat of one", &t, &parts[0].0, &parts[0].1);
        }
    }
}

#[test]
fn permute_f32() {
    permutes::<f32>(51);
}
#[test]
fn permute_i32() {
    permutes::<i32>(52);
}
#[test]
fn permute_f16() {
    permutes::<f16>(53);
}
#[test]
fn slice_f32() {
    slices::<f32>(54);
}
#[test]
fn slice_i32() {
    slices::<i32>(55);
}
#[test]
fn slice_f16() {
    slices::<f16>(56);
}
#[test]
fn concat_f32() {
    concats::<f32>(57);
}
#[test]
fn concat_i32() {
    concats::<i32>(58);
}
#[test]
fn concat_f16() {
    concats::<f16>(59);
}

#[test]
fn permute_of_rank_zero_and_identity() {
    let t = up(&[4.25f32], &[]).permute(&[]).unwrap();
    assert_eq!(t.to_vec::<f32>().unwrap(), [4.25]);
    let x: Vec<f32> = (0..15).map(|i| i as f32).collect();
    let t = up(&x, &[3, 5]).permute(&[0, 1]).unwrap();
    assert_eq!(t.to_vec::<f32>().unwrap(), x);
}

#[test]
fn concat_with_an_empty_piece() {
    let a = up(&[1.0f32, 2.0, 3.0, 4.0], &[2, 2]);
    let e = wgrad_testkit::device();
    let e = Tensor::zeros(&e, &[2, 0], wgrad_tensor::DType::F32).unwrap();
    let t = Tensor::concat(&[&e, &a, &e], 1).unwrap();
    assert_eq!(t.shape(), &[2, 2]);
    assert_eq!(t.to_vec::<f32>().unwrap(), [1.0, 2.0, 3.0, 4.0]);
}

/// Zero padding against a CPU loop, including rows longer than one copy run (8) and empty
/// amounts; wrong arity and f16 are typed errors.
fn pads<T: Sample>(seed: u64) {
    let mut rng = Rng::new(seed);
    let cases: &[(&[usize], &[usize], &[usize])] = &[
        (&[3, 19], &[1, 2], &[0, 5]),
        (&[1, 1, 3, 5], &[2, 0, 0, 0], &[0, 1, 0, 0]),
        (&[2, 3, 2], &[0, 0, 0], &[0, 0, 0]),
        (&[7], &[3], &[9]),
    ];
    for &(shape, before, after) in cases {
        let x = data::<T>(numel(shape), &mut rng);
        let out: Vec<usize> = (0..shape.len())
            .map(|i| before[i] + shape[i] + after[i])
            .collect();
        let os = strides_of(&out);
        // Bit patterns: zero is 0 for f32 and i32 alike.
        let mut want = vec![0u32; numel(&out)];
        for (i, v) in x.iter().enumerate() {
            let mut rem = i;
            let mut at = 0;
            for d in (0..shape.len()).rev() {
                at += (rem % shape[d] + before[d]) * os[d];
                rem /= shape[d];
            }
            want[at] = v.bits();
        }
        let t = up(&x, shape).pad(before, after).unwrap();
        assert_eq!(t.shape(), &out[..]);
        let got: Vec<u32> = t
            .to_vec::<T>()
            .unwrap()
            .into_iter()
            .map(|v| v.bits())
            .collect();
        assert_eq!(got, want, "pad {shape:?} {before:?} {after:?}");
    }
    assert!(up(&data::<T>(4, &mut rng), &[2, 2])
        .pad(&[1], &[1])
        .is_err());
}

#[test]
fn pad_f32() {
    pads::<f32>(60);
}
#[test]
fn pad_i32() {
    pads::<i32>(61);
}
#[test]
fn pad_f16_goes_through_f32() {
    // Two halves share a word, so the pad runs on f32 values and stores f16 again.
    let v: Vec<f16> = [1.5f32, -2.0, 3.25, 4.0, 0.5, 6.0]
        .iter()
        .map(|&x| f16::from_f32(x))
        .collect();
    let y = up(&v, &[2, 3]).pad(&[1, 0], &[0, 1]).unwrap();
    assert_eq!(
        (y.shape(), y.dtype()),
        (&[3, 4][..], wgrad_tensor::DType::F16)
    );
    let got: Vec<f32> = y
        .to_vec::<f16>()
        .unwrap()
        .iter()
        .map(|h| h.to_f32())
        .collect();
    let want = [0.0, 0.0, 0.0, 0.0, 1.5, -2.0, 3.25, 0.0, 4.0, 0.5, 6.0, 0.0];
    assert_eq!(got, want);
}
