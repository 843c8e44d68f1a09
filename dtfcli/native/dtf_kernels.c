/* CPU kernels of the DTF block: frame-wise aggregation (forward and backward, float32) and
 * the complex modulation (forward and backward, float32 and bfloat16).
 *
 * Frame-wise aggregation (FA) in one pass per row band.
 *
 * Same function as the tensor-operation path of dtfcli/models/aggregation.py (see its
 * docstring for the equations), which stays the reference and the fallback. That path makes
 * about 50 passes over the feature (k^2 correlations, each a product and a reduction, then
 * k^2 multiply-adds); this one reads each query row and its k key rows once for the
 * correlations and once more, from cache, for the aggregation.
 *
 * Layout: x (B, T, C, H, W) contiguous (frames-major, as the backbones carry features).
 * Work items are (clip, frame, row); item (b, t, h) computes
 *   corr[b, t, :, h, :]   query frame max(t - 1, 0), key frame t;
 *   for t >= 1 and aggregate: weights[b, t - 1, :, h, :] = softmax over the k^2 neighbours,
 *     y[b, t - 1, :, h, :] = x[b, t - 1, :, h, :] + sum_j weights_j * shifted key;
 *   for t == 0 and aggregate: y[b, T - 1, :, h, :] = x[b, T - 1, :, h, :] (the last frame
 *     has no next frame);
 * so every output element is written by exactly one item and items run in parallel.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define MIN(a, b) ((a) < (b) ? (a) : (b))

typedef struct {
    const float *x;
    float *y, *corr, *weights;
    int64_t T, C, H, W, band; /* band: rows per work item */
    int k, aggregate;
} fa_args;

/* The flat range [*start, *end) of band-local positions p (rows h0..h1 of a plane, row-major)
 * whose neighbour p + dy W + dx lies in the plane: rows with h + dy inside it, and never
 * reading outside the plane (positions cut at the ends have an invalid column anyway). */
static int64_t offset_range(const fa_args *p, int64_t h0, int64_t h1, int dy, int dx, int64_t *start, int64_t *end) {
    const int64_t W = p->W, HW = p->H * W, off = dy * W + dx;
    int64_t s = MAX(h0, -(int64_t)dy) * W, e = MIN(h1, p->H - dy) * W;
    s = MAX(s, -off);
    e = MIN(e, HW - off);
    *start = s - h0 * W;
    *end = e - h0 * W;
    return off;
}

/* Scratch per thread: acc, wts and zwts (k^2 x band W), masks (k x band W: 1 where column
 * w + dx is inside the plane). */
typedef struct {
    float *acc, *wts, *zwts, *mask;
} fa_scratch;

/* k = 3, the paper's window: positions of the band whose 9 neighbours all lie in the plane
 * (flat), [is, ie) with ie - is a multiple of 8, go through register-blocked loops: the 9
 * scores (or, in the aggregation, the 9 weights) of 8 positions stay in vector registers
 * while the channels stream past, instead of one pass over an accumulator row per neighbour
 * and channel. The other positions take the general loops. */
typedef float v8 __attribute__((vector_size(64)));

#define VL 16 /* floats per vector */

static inline v8 load8(const float *src) {
    v8 v;
    memcpy(&v, src, sizeof v);
    return v;
}

static inline void store8(float *dst, v8 v) { memcpy(dst, &v, sizeof v); }

static void interior3(int64_t base, int64_t n, int64_t W, int64_t HW, int64_t *is, int64_t *ie) {
    /* clamped to the band: a one-row band at the top of the plane has no interior at all */
    const int64_t lo = MIN(n, MAX(0, W + 1 - base)), hi = MIN(n, HW - W - 1 - base);
    *is = lo;
    *ie = hi > lo ? lo + (hi - lo) / VL * VL : lo;
}

/* acc[j * n + i] = sum over channels of q[i] * key[i + off_j], i in [is, ie) */
static void correlate3(const float *query, const float *key, int64_t C, int64_t HW, int64_t W, int64_t is,
                       int64_t ie, int64_t n, float *acc) {
    const int64_t off[9] = {-W - 1, -W, -W + 1, -1, 0, 1, W - 1, W, W + 1};
    for (int64_t i = is; i < ie; i += VL) {
        v8 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, a4 = {0}, a5 = {0}, a6 = {0}, a7 = {0}, a8 = {0};
        for (int64_t c = 0; c < C; c++) {
            const float *kc = key + c * HW + i;
            const v8 q = load8(query + c * HW + i);
            a0 += q * load8(kc + off[0]);
            a1 += q * load8(kc + off[1]);
            a2 += q * load8(kc + off[2]);
            a3 += q * load8(kc + off[3]);
            a4 += q * load8(kc + off[4]);
            a5 += q * load8(kc + off[5]);
            a6 += q * load8(kc + off[6]);
            a7 += q * load8(kc + off[7]);
            a8 += q * load8(kc + off[8]);
        }
        store8(acc + 0 * n + i, a0);
        store8(acc + 1 * n + i, a1);
        store8(acc + 2 * n + i, a2);
        store8(acc + 3 * n + i, a3);
        store8(acc + 4 * n + i, a4);
        store8(acc + 5 * n + i, a5);
        store8(acc + 6 * n + i, a6);
        store8(acc + 7 * n + i, a7);
        store8(acc + 8 * n + i, a8);
    }
}

/* y_c[i] = q_c[i] + sum_j w_j[i] key_c[i + off_j] for every channel, i in [is, ie) */
static void aggregate3(const float *query, const float *key, const float *w, float *y, int64_t C, int64_t HW,
                       int64_t W, int64_t is, int64_t ie, int64_t n) {
    const int64_t off[9] = {-W - 1, -W, -W + 1, -1, 0, 1, W - 1, W, W + 1};
    for (int64_t i = is; i < ie; i += VL) {
        const v8 w0 = load8(w + 0 * n + i), w1 = load8(w + 1 * n + i), w2 = load8(w + 2 * n + i);
        const v8 w3 = load8(w + 3 * n + i), w4 = load8(w + 4 * n + i), w5 = load8(w + 5 * n + i);
        const v8 w6 = load8(w + 6 * n + i), w7 = load8(w + 7 * n + i), w8 = load8(w + 8 * n + i);
        for (int64_t c = 0; c < C; c++) {
            const float *kc = key + c * HW + i;
            v8 v = load8(query + c * HW + i);
            v += w0 * load8(kc + off[0]) + w1 * load8(kc + off[1]) + w2 * load8(kc + off[2]);
            v += w3 * load8(kc + off[3]) + w4 * load8(kc + off[4]) + w5 * load8(kc + off[5]);
            v += w6 * load8(kc + off[6]) + w7 * load8(kc + off[7]) + w8 * load8(kc + off[8]);
            store8(y + c * HW + i, v);
        }
    }
}

static void fa_item(const fa_args *p, int64_t b, int64_t t, int64_t h0, const fa_scratch *s) {
    const int64_t T = p->T, C = p->C, H = p->H, W = p->W, HW = H * W, frame = C * HW;
    const int k = p->k, r = k / 2;
    const int64_t k2 = (int64_t)k * k, h1 = MIN(H, h0 + p->band), n = (h1 - h0) * W, base = h0 * W;
    const float inv_c = 1.0f / (float)C;
    const float *clip = p->x + b * T * frame;
    const float *query = clip + (t > 0 ? t - 1 : 0) * frame + base; /* band-local */
    const float *key = clip + t * frame + base;
    float *restrict acc = s->acc;
    float *restrict wts = s->wts;
    float *restrict zwts = s->zwts;

    int64_t is = 0, ie = 0; /* the register-blocked range (k = 3), empty otherwise */
    if (k == 3) interior3(base, n, W, HW, &is, &ie);
    memset(acc, 0, (size_t)(k2 * n) * sizeof(float));
    if (ie > is) correlate3(query, key, C, HW, W, is, ie, n, acc);
    for (int64_t c = 0; c < C; c++) {
        const float *restrict q = query + c * HW;
        for (int a = 0; a < k; a++) {
            for (int bb = 0; bb < k; bb++) {
                int64_t ps, pe;
                const int64_t off = offset_range(p, h0, h1, a - r, bb - r, &ps, &pe);
                const float *restrict kc = key + c * HW + off;
                float *restrict out = acc + (a * k + bb) * n;
                for (int64_t i = ps; i < MIN(pe, is); i++) out[i] += q[i] * kc[i];
                for (int64_t i = MAX(ps, ie); i < pe; i++) out[i] += q[i] * kc[i];
            }
        }
    }
    /* A neighbour in another column of the plane (the flat index wrapped around a row
     * end) is padding: its score is 0 whatever was accumulated there. */
    for (int64_t j = 0; j < k2; j++) {
        const float *restrict m = s->mask + (j % k) * p->band * W;
        float *restrict dst = p->corr + ((b * T + t) * k2 + j) * HW + base;
        for (int64_t i = 0; i < n; i++) {
            acc[j * n + i] = m[i] != 0.0f ? acc[j * n + i] : 0.0f;
            dst[i] = acc[j * n + i] * inv_c;
        }
    }
    if (!p->aggregate) return;
    if (t == 0) { /* the last frame has no next frame: Y = F there */
        const int64_t last = (b * T + T - 1) * frame + base;
        for (int64_t c = 0; c < C; c++) memcpy(p->y + last + c * HW, p->x + last + c * HW, (size_t)n * sizeof(float));
        return;
    }
    /* softmax over the k^2 scores of each location (out-of-frame neighbours score 0) */
    for (int64_t i = 0; i < n; i++) {
        float mx = acc[i];
        for (int64_t j = 1; j < k2; j++) mx = MAX(mx, acc[j * n + i]);
        float sum = 0.0f;
        for (int64_t j = 0; j < k2; j++) {
            const float e = expf((acc[j * n + i] - mx) * inv_c);
            wts[j * n + i] = e;
            sum += e;
        }
        const float inv_s = 1.0f / sum;
        for (int64_t j = 0; j < k2; j++) wts[j * n + i] *= inv_s;
    }
    for (int64_t j = 0; j < k2; j++) { /* padding neighbours take part in the softmax but add nothing */
        const float *restrict m = s->mask + (j % k) * p->band * W;
        for (int64_t i = 0; i < n; i++) zwts[j * n + i] = m[i] != 0.0f ? wts[j * n + i] : 0.0f;
    }
    if (p->weights != NULL) {
        for (int64_t j = 0; j < k2; j++)
            memcpy(p->weights + ((b * (T - 1) + t - 1) * k2 + j) * HW + base, wts + j * n, (size_t)n * sizeof(float));
    }
    float *y = p->y + (b * T + t - 1) * frame + base;
    if (ie > is) aggregate3(query, key, zwts, y, C, HW, W, is, ie, n);
    for (int64_t c = 0; c < C; c++) {
        const float *restrict q = query + c * HW;
        float *restrict yc = y + c * HW;
        memcpy(yc, q, (size_t)is * sizeof(float));
        memcpy(yc + ie, q + ie, (size_t)(n - ie) * sizeof(float));
        for (int a = 0; a < k; a++) {
            for (int bb = 0; bb < k; bb++) {
                int64_t ps, pe;
                const int64_t off = offset_range(p, h0, h1, a - r, bb - r, &ps, &pe);
                const float *restrict kc = key + c * HW + off;
                const float *restrict wj = zwts + (a * k + bb) * n;
                for (int64_t i = ps; i < MIN(pe, is); i++) yc[i] += wj[i] * kc[i];
                for (int64_t i = MAX(ps, ie); i < pe; i++) yc[i] += wj[i] * kc[i];
            }
        }
        /* A zero weight times a wrapped-around value adds exactly 0, unless that value is inf
         * or NaN: then a column whose window leaves the plane is summed again over its
         * in-plane neighbours only. */
        for (int64_t h = h0; h < h1; h++)
            for (int64_t w = 0; w < W; w++) {
                if (w >= r && w < W - r) { /* interior columns are exact: skip to the right border */
                    w = W - r - 1;
                    continue;
                }
                const int64_t i = (h - h0) * W + w;
                if (isfinite(yc[i])) continue;
                float v = q[i];
                for (int a = 0; a < k; a++) {
                    const int64_t hh = h + a - r;
                    if (hh < 0 || hh >= H) continue;
                    for (int bb = 0; bb < k; bb++) {
                        const int64_t ww = w + bb - r;
                        if (ww >= 0 && ww < W) v += wts[(a * k + bb) * n + i] * key[c * HW + (hh - h0) * W + ww];
                    }
                }
                yc[i] = v;
            }
    }
}

/* x (B, T, C, H, W) float32 contiguous; y the same (unused when !aggregate); corr
 * (B, T, k^2, H, W); weights (B, T - 1, k^2, H, W) or NULL. Returns 0, or 1 when scratch
 * memory could not be allocated (the outputs are then incomplete). */
int dtf_frame_aggregation_f32(const float *x, float *y, float *corr, float *weights, int64_t B, int64_t T,
                              int64_t C, int64_t H, int64_t W, int k, int aggregate, int num_threads) {
    /* Bands of about 256 positions keep the k^2 accumulator rows in L1 and give long
     * vector loops even for 7x7 planes; at least 4 items per thread where the shape allows. */
    int64_t band = MAX(1, MIN(H, 256 / MAX(W, 1)));
    const int64_t want = 4 * (int64_t)MAX(num_threads, 1);
    while (band > 1 && B * T * ((H + band - 1) / band) < want) band = (band + 1) / 2;
    const fa_args p = {x, y, corr, weights, T, C, H, W, band, k, aggregate};
    const int64_t bands = (H + band - 1) / band, items = B * T * bands, k2 = (int64_t)k * k, n = band * W;
    const int r = k / 2;
    int failed = 0;
#pragma omp parallel num_threads(num_threads) reduction(| : failed)
    {
        fa_scratch s = {malloc((size_t)(3 * k2 + k) * (size_t)n * sizeof(float)), NULL, NULL, NULL};
        const int ok = s.acc != NULL;
        failed |= !ok;
        if (ok) {
            s.wts = s.acc + k2 * n;
            s.zwts = s.wts + k2 * n;
            s.mask = s.zwts + k2 * n;
            for (int bb = 0; bb < k; bb++)
                for (int64_t i = 0; i < n; i++) {
                    const int64_t col = i % W + bb - r;
                    s.mask[bb * n + i] = (col >= 0 && col < W) ? 1.0f : 0.0f;
                }
        }
        /* every thread must reach the work-sharing loop; one without scratch skips its items */
#pragma omp for schedule(static)
        for (int64_t item = 0; item < items; item++) {
            if (ok) fa_item(&p, item / (bands * T), (item / bands) % T, (item % bands) * band, &s);
        }
        free(s.acc);
    }
    return failed;
}

/* ---------------------------------------------------------------------------------------
 * Backward. With g_y and g_corr the gradients of Y and corr, per clip and for the pair
 * (query frame t - 1, key frame t), t >= 1, at location p and neighbour j (offset d_j):
 *   g_w_j(p) = <g_y[t - 1](p), x[t](p + d_j)>                     (through the aggregation)
 *   s_j(p)   = (g_corr[t]_j(p) + w_j (g_w_j - sum_i w_i g_w_i)) / C (softmax backward)
 * and for frame 0's self-correlation s_j(p) = g_corr[0]_j(p) / C. Then
 *   g_x[t](q) = g_y[t](q)
 *     + sum_j w^t_j(q - d_j) g_y[t - 1](q - d_j) + s^t_j(q - d_j) x[t - 1](q - d_j)  (key of pair t)
 *     + sum_j s^{t+1}_j(q) x[t + 1](q + d_j)                                     (query of pair t + 1)
 * (frame 0: both roles with its own s^0 and x[0]). Phase 1 computes s and the weights with
 * padding neighbours zeroed (bands in parallel); phase 2 gathers g_x, every element written
 * by one item, so no two threads ever add into the same place.
 */
typedef struct {
    const float *x, *weights, *gy, *gc;
    float *gx, *s, *wz;
    int64_t T, C, H, W, band;
    int k, aggregate;
} fab_args;

static void fab_scores(const fab_args *p, int64_t b, int64_t t, int64_t h0, float *acc, const float *mask,
                       float *dot) {
    const int64_t T = p->T, C = p->C, H = p->H, W = p->W, HW = H * W, frame = C * HW;
    const int k = p->k, r = k / 2;
    const int64_t k2 = (int64_t)k * k, h1 = MIN(H, h0 + p->band), n = (h1 - h0) * W, base = h0 * W, ms = p->band * W;
    const float inv_c = 1.0f / (float)C;
    float *s = p->s + (b * T + t) * k2 * HW + base;
    const float *gc = p->gc != NULL ? p->gc + (b * T + t) * k2 * HW + base : NULL;
    const int through_aggregation = t > 0 && p->aggregate && p->gy != NULL;
    if (through_aggregation) {
        const float *query = p->gy + (b * T + t - 1) * frame + base;
        const float *key = p->x + (b * T + t) * frame + base;
        const fa_args geometry = {NULL, NULL, NULL, NULL, T, C, H, W, p->band, k, 0};
        int64_t is = 0, ie = 0;
        if (k == 3) interior3(base, n, W, HW, &is, &ie);
        memset(acc, 0, (size_t)(k2 * n) * sizeof(float));
        if (ie > is) correlate3(query, key, C, HW, W, is, ie, n, acc);
        for (int64_t c = 0; c < C; c++)
            for (int a = 0; a < k; a++)
                for (int bb = 0; bb < k; bb++) {
                    int64_t ps, pe;
                    const int64_t off = offset_range(&geometry, h0, h1, a - r, bb - r, &ps, &pe);
                    const float *restrict q = query + c * HW;
                    const float *restrict kc = key + c * HW + off;
                    float *restrict out = acc + (a * k + bb) * n;
                    for (int64_t i = ps; i < MIN(pe, is); i++) out[i] += q[i] * kc[i];
                    for (int64_t i = MAX(ps, ie); i < pe; i++) out[i] += q[i] * kc[i];
                }
        const float *w = p->weights + (b * (T - 1) + t - 1) * k2 * HW + base;
        float *wz = p->wz + (b * (T - 1) + t - 1) * k2 * HW + base;
        for (int64_t i = 0; i < n; i++) dot[i] = 0.0f;
        for (int64_t j = 0; j < k2; j++) {
            const float *restrict m = mask + (j % k) * ms;
            for (int64_t i = 0; i < n; i++) {
                if (m[i] == 0.0f) acc[j * n + i] = 0.0f; /* padding: g_w = 0 */
                dot[i] += w[j * HW + i] * acc[j * n + i];
            }
        }
        for (int64_t j = 0; j < k2; j++) {
            const float *restrict m = mask + (j % k) * ms;
            for (int64_t i = 0; i < n; i++) {
                const int valid = m[i] != 0.0f;
                const float g = (gc != NULL ? gc[j * HW + i] : 0.0f) + w[j * HW + i] * (acc[j * n + i] - dot[i]);
                s[j * HW + i] = valid ? g * inv_c : 0.0f;
                wz[j * HW + i] = valid ? w[j * HW + i] : 0.0f;
            }
        }
    } else {
        for (int64_t j = 0; j < k2; j++) {
            const float *restrict m = mask + (j % k) * ms;
            for (int64_t i = 0; i < n; i++) s[j * HW + i] = (gc != NULL && m[i] != 0.0f) ? gc[j * HW + i] * inv_c : 0.0f;
        }
    }
}

/* dst[i] += sum_j map_j[i + shift_j] * src[i + shift_j] over the i of the band whose
 * source lies in the plane; shift_j = -off_j ("gather from the query side", sign -1) or
 * map unshifted and src at i + off_j (sign +1). Positions are band-local. */
static void gather(const fab_args *p, int64_t h0, int64_t n, const float *map, const float *src, int sign,
                   float *restrict dst) {
    const int k = p->k, r = k / 2;
    const int64_t W = p->W, HW = p->H * W, base = h0 * W;
    for (int a = 0; a < k; a++)
        for (int bb = 0; bb < k; bb++) {
            const int64_t off = (int64_t)(a - r) * W + (bb - r), j = a * k + bb;
            /* the plane positions base + i with base + i - off (sign -1) or base + i + off
             * (sign +1) inside [0, HW) */
            const int64_t lo = sign < 0 ? off : -off;
            const int64_t ps = MAX(0, lo - base), pe = MIN(n, HW + lo - base);
            if (sign < 0) {
                const float *restrict m = map + j * HW - off;
                const float *restrict v = src - off;
                for (int64_t i = ps; i < pe; i++) dst[i] += m[i] * v[i];
            } else {
                const float *restrict m = map + j * HW;
                const float *restrict v = src + off;
                for (int64_t i = ps; i < pe; i++) dst[i] += m[i] * v[i];
            }
        }
}

/* The same sum at one location with explicit bounds (for columns next to a border). */
static float gather_at(const fab_args *p, int64_t h, int64_t w, const float *map, const float *src, int sign) {
    const int k = p->k, r = k / 2;
    const int64_t H = p->H, W = p->W, HW = H * W;
    float v = 0.0f;
    for (int a = 0; a < k; a++)
        for (int bb = 0; bb < k; bb++) {
            const int64_t hh = h + sign * (a - r), ww = w + sign * (bb - r);
            if (hh < 0 || hh >= H || ww < 0 || ww >= W) continue;
            const int64_t at = sign < 0 ? hh * W + ww : h * W + w; /* where the map is read */
            v += map[(a * k + bb) * HW + at] * src[hh * W + ww];
        }
    return v;
}

static void fab_grad(const fab_args *p, int64_t b, int64_t t, int64_t h0) {
    const int64_t T = p->T, C = p->C, H = p->H, W = p->W, HW = H * W, frame = C * HW;
    const int k = p->k, r = k / 2;
    const int64_t k2 = (int64_t)k * k, h1 = MIN(H, h0 + p->band), n = (h1 - h0) * W, base = h0 * W;
    const float *s_t = p->s + (b * T + t) * k2 * HW + base;           /* band-local rows */
    const float *s_next = t + 1 < T ? p->s + (b * T + t + 1) * k2 * HW + base : NULL;
    const float *wz_t = (t > 0 && p->wz != NULL) ? p->wz + (b * (T - 1) + t - 1) * k2 * HW + base : NULL;
    for (int64_t c = 0; c < C; c++) {
        const int64_t plane = c * HW + base;
        float *restrict g = p->gx + (b * T + t) * frame + plane;
        const float *x_t = p->x + (b * T + t) * frame + plane;
        if (p->gy != NULL)
            memcpy(g, p->gy + (b * T + t) * frame + plane, (size_t)n * sizeof(float));
        else
            memset(g, 0, (size_t)n * sizeof(float));
        if (t > 0) {
            const float *x_prev = p->x + (b * T + t - 1) * frame + plane;
            if (wz_t != NULL) gather(p, h0, n, wz_t, p->gy + (b * T + t - 1) * frame + plane, -1, g);
            gather(p, h0, n, s_t, x_prev, -1, g);
        } else {
            gather(p, h0, n, s_t, x_t, -1, g);
            gather(p, h0, n, s_t, x_t, +1, g);
        }
        if (s_next != NULL) gather(p, h0, n, s_next, p->x + (b * T + t + 1) * frame + plane, +1, g);

        /* A zero map entry times a wrapped-around inf or NaN: recompute with bounds. */
        for (int64_t h = h0; h < h1; h++)
            for (int64_t w = 0; w < W; w++) {
                if (w >= r && w < W - r) {
                    w = W - r - 1;
                    continue;
                }
                const int64_t i = (h - h0) * W + w;
                if (isfinite(g[i])) continue;
                const int64_t at = c * HW; /* plane origin of channel c */
                float v = p->gy != NULL ? p->gy[(b * T + t) * frame + at + h * W + w] : 0.0f;
                const float *s_tp = p->s + (b * T + t) * k2 * HW;
                if (t > 0) {
                    if (wz_t != NULL)
                        v += gather_at(p, h, w, p->wz + (b * (T - 1) + t - 1) * k2 * HW,
                                       p->gy + (b * T + t - 1) * frame + at, -1);
                    v += gather_at(p, h, w, s_tp, p->x + (b * T + t - 1) * frame + at, -1);
                } else {
                    v += gather_at(p, h, w, s_tp, p->x + (b * T) * frame + at, -1);
                    v += gather_at(p, h, w, s_tp, p->x + (b * T) * frame + at, +1);
                }
                if (s_next != NULL)
                    v += gather_at(p, h, w, p->s + (b * T + t + 1) * k2 * HW, p->x + (b * T + t + 1) * frame + at, +1);
                g[i] = v;
            }
    }
}

/* x (B, T, C, H, W); weights (B, T - 1, k^2, H, W) (when aggregate and T > 1); gy like x
 * or NULL; gc (B, T, k^2, H, W) or NULL; gx like x (written); s (B, T, k^2, H, W) and wz
 * (B, T - 1, k^2, H, W) scratch (wz only used when aggregate, gy and T > 1). Returns 0, or 1
 * when scratch memory could not be allocated. */
int dtf_frame_aggregation_backward_f32(const float *x, const float *weights, const float *gy, const float *gc,
                                       float *gx, float *s, float *wz, int64_t B, int64_t T, int64_t C, int64_t H,
                                       int64_t W, int k, int aggregate, int num_threads) {
    int64_t band = MAX(1, MIN(H, 256 / MAX(W, 1)));
    const int64_t want = 4 * (int64_t)MAX(num_threads, 1);
    while (band > 1 && B * T * ((H + band - 1) / band) < want) band = (band + 1) / 2;
    const int use_wz = aggregate && gy != NULL && T > 1;
    const fab_args p = {x, weights, gy, gc, gx, s, use_wz ? wz : NULL, T, C, H, W, band, k, aggregate};
    const int64_t bands = (H + band - 1) / band, items = B * T * bands, k2 = (int64_t)k * k, n = band * W;
    const int r = k / 2;
    int failed = 0;
#pragma omp parallel num_threads(num_threads) reduction(| : failed)
    {
        float *acc = malloc((size_t)(k2 + k + 1) * (size_t)n * sizeof(float));
        const int ok = acc != NULL;
        failed |= !ok;
        float *mask = ok ? acc + k2 * n : NULL, *dot = ok ? acc + (k2 + k) * n : NULL;
        if (ok)
            for (int bb = 0; bb < k; bb++)
                for (int64_t i = 0; i < n; i++) {
                    const int64_t col = i % W + bb - r;
                    mask[bb * n + i] = (col >= 0 && col < W) ? 1.0f : 0.0f;
                }
#pragma omp for schedule(static)
        for (int64_t item = 0; item < items; item++) {
            if (ok) fab_scores(&p, item / (bands * T), (item / bands) % T, (item % bands) * band, acc, mask, dot);
        }
        /* (the implicit barrier: every s and wz row is written before any gradient is gathered) */
#pragma omp for schedule(static)
        for (int64_t item = 0; item < items; item++) {
            if (ok) fab_grad(&p, item / (bands * T), (item / bands) % T, (item % bands) * band);
        }
        free(acc);
    }
    return failed;
}

/* ---------------------------------------------------------------------------------------
 * The DTF block's modulation S' = S * S_c (complex, per bin, channel and location) with the
 * G channels of a group sharing one filter. spec and out (B, M, 2, C/G, G, L), filt
 * (B, C/G, 2, M, L), real and imaginary parts as separate planes. One pass; the backward
 * pass also sums the filter's gradient over the group in the same pass.
 *
 * Two instances: float32 (_f32) and bfloat16 (_bf16, the block's dtype under CPU autocast).
 * The bfloat16 one reads and writes bfloat16 and computes in float32, rounding each result
 * once to nearest-even as PyTorch's conversion does (NaN becomes 0x7FC0), so it equals the
 * float32 kernel on the same values followed by `.to(torch.bfloat16)`, with half the bytes.
 */
typedef uint16_t bf16_t;

static inline float ld_f32(const float *p, int64_t i) { return p[i]; }
static inline void st_f32(float *p, int64_t i, float v) { p[i] = v; }
static inline float ld_bf16(const bf16_t *p, int64_t i) {
    const uint32_t u = (uint32_t)p[i] << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
static inline void st_bf16(bf16_t *p, int64_t i, float v) {
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    p[i] = (bf16_t)((u & 0x7fffffffu) > 0x7f800000u ? 0x7fc0u : rounded);
}

#define DTF_MODULATE(SUFFIX, T)                                                                          \
    int dtf_modulate_##SUFFIX(const T *spec, const T *filt, T *out, int64_t B, int64_t M, int64_t CG,    \
                              int64_t G, int64_t L, int num_threads) {                                   \
        const int64_t part = CG * G * L; /* distance from a real plane to its imaginary plane */         \
        _Pragma("omp parallel for collapse(3) schedule(static) num_threads(num_threads)")                \
        for (int64_t b = 0; b < B; b++)                                                                  \
            for (int64_t m = 0; m < M; m++)                                                              \
                for (int64_t cg = 0; cg < CG; cg++) {                                                    \
                    const T *restrict fr = filt + ((b * CG + cg) * 2 * M + m) * L;                       \
                    const T *restrict fi = fr + M * L;                                                   \
                    for (int64_t g = 0; g < G; g++) {                                                    \
                        const int64_t at = (b * M + m) * 2 * part + (cg * G + g) * L;                    \
                        const T *restrict sr = spec + at, *restrict si = spec + at + part;               \
                        T *restrict o_r = out + at, *restrict o_i = out + at + part;                     \
                        for (int64_t i = 0; i < L; i++) {                                                \
                            const float a = ld_##SUFFIX(sr, i), bb = ld_##SUFFIX(si, i);                 \
                            const float c = ld_##SUFFIX(fr, i), d = ld_##SUFFIX(fi, i);                  \
                            st_##SUFFIX(o_r, i, a * c - bb * d);                                         \
                            st_##SUFFIX(o_i, i, a * d + bb * c);                                         \
                        }                                                                                \
                    }                                                                                    \
                }                                                                                        \
        return 0;                                                                                        \
    }

/* Gradients: grad_spec = grad * conj(filt) (per channel), grad_filt = sum over the group of
 * conj(spec) * grad, accumulated in float32. Shapes as dtf_modulate; either output may be
 * NULL. Returns 1 when the accumulator cannot be allocated. */
#define DTF_MODULATE_BACKWARD(SUFFIX, T)                                                                 \
    int dtf_modulate_backward_##SUFFIX(const T *spec, const T *filt, const T *grad, T *grad_spec,        \
                                       T *grad_filt, int64_t B, int64_t M, int64_t CG, int64_t G,        \
                                       int64_t L, int num_threads) {                                     \
        const int64_t part = CG * G * L;                                                                 \
        int failed = 0;                                                                                  \
        _Pragma("omp parallel num_threads(num_threads) reduction(| : failed)")                           \
        {                                                                                                \
            float *acc = grad_filt != NULL ? malloc((size_t)(2 * L) * sizeof(float)) : NULL;             \
            if (grad_filt != NULL && acc == NULL)                                                        \
                failed = 1;                                                                              \
            _Pragma("omp for collapse(3) schedule(static)")                                              \
            for (int64_t b = 0; b < B; b++)                                                              \
                for (int64_t m = 0; m < M; m++)                                                          \
                    for (int64_t cg = 0; cg < CG; cg++) {                                                \
                        if (grad_filt != NULL && acc == NULL)                                            \
                            continue;                                                                    \
                        const int64_t f_at = ((b * CG + cg) * 2 * M + m) * L;                            \
                        const T *restrict fr = filt + f_at, *restrict fi = filt + f_at + M * L;          \
                        float *restrict afr = acc, *restrict afi = acc != NULL ? acc + L : NULL;         \
                        if (acc != NULL)                                                                 \
                            memset(acc, 0, (size_t)(2 * L) * sizeof(float));                             \
                        for (int64_t g = 0; g < G; g++) {                                                \
                            const int64_t at = (b * M + m) * 2 * part + (cg * G + g) * L;                \
                            const T *restrict gr = grad + at, *restrict gi = grad + at + part;           \
                            if (grad_spec != NULL) {                                                     \
                                T *restrict dr = grad_spec + at, *restrict di = grad_spec + at + part;   \
                                for (int64_t i = 0; i < L; i++) {                                        \
                                    const float a = ld_##SUFFIX(gr, i), bb = ld_##SUFFIX(gi, i);         \
                                    const float c = ld_##SUFFIX(fr, i), d = ld_##SUFFIX(fi, i);          \
                                    st_##SUFFIX(dr, i, a * c + bb * d);                                  \
                                    st_##SUFFIX(di, i, bb * c - a * d);                                  \
                                }                                                                        \
                            }                                                                            \
                            if (acc != NULL) {                                                           \
                                const T *restrict sr = spec + at, *restrict si = spec + at + part;       \
                                for (int64_t i = 0; i < L; i++) {                                        \
                                    const float a = ld_##SUFFIX(gr, i), bb = ld_##SUFFIX(gi, i);         \
                                    const float c = ld_##SUFFIX(sr, i), d = ld_##SUFFIX(si, i);          \
                                    afr[i] += a * c + bb * d;                                            \
                                    afi[i] += bb * c - a * d;                                            \
                                }                                                                        \
                            }                                                                            \
                        }                                                                                \
                        if (acc != NULL)                                                                 \
                            for (int64_t i = 0; i < L; i++) {                                            \
                                st_##SUFFIX(grad_filt + f_at, i, afr[i]);                                \
                                st_##SUFFIX(grad_filt + f_at + M * L, i, afi[i]);                        \
                            }                                                                            \
                    }                                                                                    \
            free(acc);                                                                                   \
        }                                                                                                \
        return failed;                                                                                   \
    }

DTF_MODULATE(f32, float)
DTF_MODULATE(bf16, bf16_t)
DTF_MODULATE_BACKWARD(f32, float)
DTF_MODULATE_BACKWARD(bf16, bf16_t)
