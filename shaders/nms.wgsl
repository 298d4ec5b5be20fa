// Non-max suppression with TensorFlow's semantics (tf.image.non_max_suppression and, with
// soft_scale < 0, non_max_suppression_with_scores): boxes (y1, x1, y2, x2) in either corner
// order, candidates are the boxes scoring above the score threshold, taken by score with ties
// in index order; in hard NMS a box is dropped when its IoU with a kept box exceeds the IoU
// threshold, in soft-NMS every kept box decays the others' scores by exp(soft_scale · IoU²)
// (TF ignores the IoU threshold there).
//
// Hard NMS: `rank_partial` + `rank_scatter` sort by counting (a box's rank is the number of
// boxes ahead of it), exact and stable without a sort network; then blocks of the sorted boxes
// are checked in parallel against the boxes kept so far and among themselves (`block_check`)
// and resolved in order on one invocation (`block_select`).
//
// Soft-NMS rescales candidates and may re-queue them, so it runs on one invocation as TF's
// algorithm does: a candidate remembers how many boxes had been selected when it was last
// rescored, and is rescored against the newer ones only (newest first, so the f32 products
// round as TF's do) when it reaches the top of the queue again.
//
// Every sequential loop works within LOOP_BUDGET iterations per dispatch and keeps its state
// in storage, and the launcher dispatches it again until it is done. lavapipe (Mesa 22.3)
// ends an invocation's loops silently after 65,535 iterations in all, so an unbudgeted walk
// over a few hundred boxes already returned a truncated selection there.

const LOOP_BUDGET: u32 = 32768u;

struct Params {
    n: u32,               // boxes
    row: u32,             // workgroups per grid row (the grid folds into y past 65,535)
    max_out: u32,
    per_class: u32,       // boxes of different classes never suppress each other
    iou_threshold: f32,
    score_threshold: f32, // candidates score strictly above it (-inf: every box)
    soft_scale: f32,      // soft-NMS: -0.5 / sigma; 0 for hard NMS
    j0: u32,              // rank_partial: the first box compared against; blocks: first position
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> boxes: array<vec4<f32>>;     // [n, 4]
@group(0) @binding(2) var<storage, read> scores: array<f32>;          // [n]
@group(0) @binding(3) var<storage, read> classes: array<u32>;         // [n] when per_class
@group(0) @binding(4) var<storage, read_write> order: array<u32>;     // sorted position -> box
@group(0) @binding(5) var<storage, read_write> mask: array<u32>;      // a block's rows and flags
// [count, done, box…]: the selection and whether the walk has finished.
@group(0) @binding(6) var<storage, read_write> out_index: array<u32>;
@group(0) @binding(7) var<storage, read_write> out_score: array<f32>; // [max_out]
// soft-NMS: [begin (n), queued (n)].
@group(0) @binding(8) var<storage, read_write> scratch_u: array<u32>;
@group(0) @binding(9) var<storage, read_write> scratch_f: array<f32>; // soft: current scores
@group(0) @binding(10) var<storage, read_write> rank: array<u32>;     // [n], zeros at first
@group(0) @binding(11) var<storage, read> scores4: array<vec4<f32>>;  // the scores again

// TF's IOU in f32, term for term: corners sorted, empty boxes overlap nothing.
fn iou(i: u32, j: u32) -> f32 {
    return iou_of(boxes[i], boxes[j]);
}

fn iou_of(a: vec4<f32>, b: vec4<f32>) -> f32 {
    let lo_a = min(a.xy, a.zw);
    let hi_a = max(a.xy, a.zw);
    let lo_b = min(b.xy, b.zw);
    let hi_b = max(b.xy, b.zw);
    let area_a = (hi_a.x - lo_a.x) * (hi_a.y - lo_a.y);
    let area_b = (hi_b.x - lo_b.x) * (hi_b.y - lo_b.y);
    if (area_a <= 0.0 || area_b <= 0.0) { return 0.0; }
    let lo = max(lo_a, lo_b);
    let hi = min(hi_a, hi_b);
    let inter = max(hi.x - lo.x, 0.0) * max(hi.y - lo.y, 0.0);
    return inter / (area_a + area_b - inter);
}

// The overlap that counts between boxes i and j: none across classes in per-class NMS.
fn overlap(i: u32, j: u32) -> f32 {
    if (p.per_class != 0u && classes[i] != classes[j]) { return 0.0; }
    return iou(i, j);
}

// rank[i] += #{j in [j0, j0 + LOOP_BUDGET) : s_j > s_i, or s_j == s_i and j < i}. The scores
// of j are read four at a time (scores4 is the same buffer) at addresses uniform across the
// lanes; j0 is a multiple of 4.
@compute @workgroup_size(WG)
fn rank_partial(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = grid_index(wg, li, p.row);
    if (i >= p.n) { return; }
    let s = vec4<f32>(scores[i]);
    let iv = vec4<u32>(i);
    let end = min(p.n, p.j0 + LOOP_BUDGET);
    var ahead = vec4<u32>(0u);
    for (var q = p.j0 / 4u; q < end / 4u; q++) {
        let t = scores4[q];
        let j = vec4<u32>(4u * q) + vec4<u32>(0u, 1u, 2u, 3u);
        ahead += select(vec4<u32>(0u), vec4<u32>(1u), t > s | (t == s & j < iv));
    }
    var tail = 0u;
    for (var j = max(p.j0, end / 4u * 4u); j < end; j++) {
        let t = scores[j];
        tail += select(0u, 1u, t > s.x || (t == s.x && j < i));
    }
    rank[i] += ahead.x + ahead.y + ahead.z + ahead.w + tail;
}

@compute @workgroup_size(WG)
fn rank_scatter(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = grid_index(wg, li, p.row);
    if (i >= p.n) { return; }
    order[rank[i]] = i;
}

// Hard NMS by blocks of BLOCK sorted positions, [j0, j0 + BLOCK). `block_check` gives each
// candidate of the block, in parallel, its flag (mask[BLOCK * BLOCK_WORDS + i]: 0 candidate,
// 1 past the end or not above the score threshold, 2 suppressed by a box already kept) and
// its row of the in-block mask (bit c of row i: the block's candidate c > i overlaps it too
// much). The kept boxes are read at addresses uniform across the SIMD lanes, so on CPU
// adapters each is one scalar read. Work: every candidate against the boxes kept before its
// block, plus BLOCK pairs each — not all N² pairs.
const BLOCK: u32 = 256u;
const BLOCK_WORDS: u32 = 8u;

@compute @workgroup_size(WG)
fn block_check(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = grid_index(wg, li, p.row);
    if (i >= BLOCK || out_index[1] != 0u) { return; }
    let r = p.j0 + i;
    var flag = 1u;
    var row = array<u32, 8>(0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u);
    if (r < p.n && scores[order[r]] > p.score_threshold) {
        flag = 0u;
        let box = order[r];
        let a = boxes[box];
        let ca = select(0u, classes[box], p.per_class != 0u);
        let count = out_index[0];
        for (var j = 0u; j < count; j++) {
            let k = out_index[2u + j];
            if ((p.per_class == 0u || classes[k] == ca) && iou_of(a, boxes[k]) > p.iou_threshold) {
                flag = 2u;
                break;
            }
        }
        if (flag == 0u) {
            for (var c = i + 1u; c < BLOCK && p.j0 + c < p.n; c++) {
                let other = order[p.j0 + c];
                if ((p.per_class == 0u || classes[other] == ca)
                    && iou_of(a, boxes[other]) > p.iou_threshold) {
                    row[c / 32u] |= 1u << (c % 32u);
                }
            }
        }
    }
    for (var w = 0u; w < BLOCK_WORDS; w++) { mask[i * BLOCK_WORDS + w] = row[w]; }
    mask[BLOCK * BLOCK_WORDS + i] = flag;
}

// The block's candidates in order: a candidate neither suppressed by an earlier kept box nor
// by one kept earlier in this block is kept, and its row removes the later ones it overlaps.
@compute @workgroup_size(1)
fn block_select() {
    if (out_index[1] != 0u) { return; }
    var count = out_index[0];
    var removed = array<u32, 8>(0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u);
    var done = p.j0 + BLOCK >= p.n;
    for (var i = 0u; i < BLOCK; i++) {
        let flag = mask[BLOCK * BLOCK_WORDS + i];
        // Sorted by score: past the end or the threshold, nothing later is a candidate.
        if (flag == 1u) { done = true; break; }
        if (flag == 2u || (removed[i / 32u] & (1u << (i % 32u))) != 0u) { continue; }
        let box = order[p.j0 + i];
        out_index[2u + count] = box;
        out_score[count] = scores[box];
        count++;
        if (count >= p.max_out) { done = true; break; }
        for (var w = i / 32u; w < BLOCK_WORDS; w++) {
            removed[w] |= mask[i * BLOCK_WORDS + w];
        }
    }
    out_index[0] = count;
    out_index[1] = select(0u, 1u, done);
}

// Queues every box scoring above the threshold; the selection starts empty.
@compute @workgroup_size(WG)
fn soft_init(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = grid_index(wg, li, p.row);
    if (i == 0u) {
        out_index[0] = 0u;
        out_index[1] = 0u;
    }
    if (i >= p.n) { return; }
    scratch_f[i] = scores[i];
    scratch_u[i] = 0u;
    scratch_u[p.n + i] = select(0u, 1u, scores[i] > p.score_threshold);
}

// TF's soft-NMS loop, resumed: scratch_f holds each candidate's current score, scratch_u[i]
// the number of boxes selected when candidate i was last rescored, scratch_u[n + i] 1 while
// i is queued.
@compute @workgroup_size(1)
fn soft_nms() {
    if (out_index[1] != 0u) { return; }
    var count = out_index[0];
    var budget = LOOP_BUDGET;
    var done = false;
    loop {
        if (count >= p.max_out) { done = true; break; }
        // One pop scans the queue and rescores against at most every selected box.
        if (budget < p.n + count + 2u) { break; }
        budget -= p.n + 1u;
        // The queue's top: the highest current score, the lowest index among equals.
        var best = p.n;
        for (var i = 0u; i < p.n; i++) {
            if (scratch_u[p.n + i] != 0u && (best == p.n || scratch_f[i] > scratch_f[best])) {
                best = i;
            }
        }
        if (best == p.n) { done = true; break; }
        scratch_u[p.n + best] = 0u;
        let original = scratch_f[best];
        var s = original;
        for (var j = i32(count) - 1; j >= i32(scratch_u[best]); j--) {
            budget -= 1u;
            let sim = overlap(best, out_index[2u + u32(j)]);
            s *= exp(p.soft_scale * sim * sim);
            if (s <= p.score_threshold) { break; }
        }
        scratch_u[best] = count;
        if (s == original) {
            out_index[2u + count] = best;
            out_score[count] = s;
            count++;
        } else if (s > p.score_threshold) {
            scratch_f[best] = s;
            scratch_u[p.n + best] = 1u;
        }
    }
    out_index[0] = count;
    out_index[1] = select(0u, 1u, done);
}
