/* Frame-wise aggregation (FA) of the DTF block in one pass per row, float32, CPU.
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

    memset(acc, 0, (size_t)(k2 * n) * sizeof(float));
    for (int64_t c = 0; c < C; c++) {
        const float *restrict q = query + c * HW;
        for (int a = 0; a < k; a++) {
            for (int bb = 0; bb < k; bb++) {
                int64_t ps, pe;
                const int64_t off = offset_range(p, h0, h1, a - r, bb - r, &ps, &pe);
                const float *restrict kc = key + c * HW + off;
                float *restrict out = acc + (a * k + bb) * n;
                for (int64_t i = ps; i < pe; i++) out[i] += q[i] * kc[i];
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
        for (int64_t j = 0; j < k2; j++) {
            wts[j * n + i] *= inv_s;
            /* padding neighbours take part in the softmax but add nothing */
            zwts[j * n + i] = s->mask[(j % k) * p->band * W + i] != 0.0f ? wts[j * n + i] : 0.0f;
        }
    }
    if (p->weights != NULL) {
        for (int64_t j = 0; j < k2; j++)
            memcpy(p->weights + ((b * (T - 1) + t - 1) * k2 + j) * HW + base, wts + j * n, (size_t)n * sizeof(float));
    }
    float *y = p->y + (b * T + t - 1) * frame + base;
    for (int64_t c = 0; c < C; c++) {
        const float *restrict q = query + c * HW;
        float *restrict yc = y + c * HW;
        memcpy(yc, q, (size_t)n * sizeof(float));
        for (int a = 0; a < k; a++) {
            for (int bb = 0; bb < k; bb++) {
                int64_t ps, pe;
                const int64_t off = offset_range(p, h0, h1, a - r, bb - r, &ps, &pe);
                const float *restrict kc = key + c * HW + off;
                const float *restrict wj = zwts + (a * k + bb) * n;
                for (int64_t i = ps; i < pe; i++) yc[i] += wj[i] * kc[i];
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
