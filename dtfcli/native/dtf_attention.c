/* Swin's window attention, forward, float32: scores, relative position bias and shift mask,
 * softmax and the weighted sum of values in one pass per (window, head).
 *
 * Same function as torchvision's `shifted_window_attention` between its qkv and output
 * projections (dtfcli/models/swin.py keeps that as the reference, the fallback and the
 * training path). There, each window's 49-token attention is several batched matmuls of
 * 49 x 32 x 49 (far from the matmul peak), a bias add, a mask add and a softmax, each a pass
 * over the B x windows x heads x 49 x 49 scores, and five copies of the tokens (pad, roll,
 * window partition, its reverse and the roll back). Here a (window, head) pair's scores
 * stay in registers and L1 cache, and the window partition and cyclic shift are a table of
 * token positions: the kernel reads q, k and v from the qkv projection of the whole image
 * and writes each token's output where the output projection reads it.
 *
 * Layout: qkv (B, HW, 3, heads, d) contiguous (a linear layer's output on (B, H, W, C)
 * tokens, C = heads d); index (windows, L): the image position of each window token (with
 * the cyclic shift applied); addend (1 or windows, heads, L, LP): the term added to the
 * scores (relative position bias plus shift mask), transposed (key, query), each key's row
 * zero-padded to LP = L rounded up to 16 queries; out (B, HW, C). Each output row is
 * written by exactly one work item (index is a permutation), so items run in parallel.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

typedef float vf __attribute__((vector_size(64)));
typedef int32_t vi __attribute__((vector_size(64)));
#define NV 16      /* floats per vector */
#define ROWS 4     /* query rows per register block */
#define MAX_LV 4   /* tokens per window up to 64 */
#define MAX_DV 4   /* head width up to 64 */

static inline vf vload(const float *p) {
    vf v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void vstore(float *p, vf v) { memcpy(p, &v, sizeof v); }

/* exp(x) for x <= 0 (scores minus their row maximum), to a few ulp; 0 below -87.33 where
 * float32 leaves the normal range. Range reduction x = k ln2 + r, |r| <= ln2 / 2 (ln2 in two
 * parts), then 1 + r + r^2 P(r) with Cephes' single-precision coefficients. */
static inline vf vexp_nonpositive(vf x) {
    const vi keep = x >= -87.33654f;
    x = (vf)(((vi)x & keep) | ((vi)((vf){0} - 87.33654f) & ~keep));
    vf k = (x * 1.44269504088896341f + 12582912.f) - 12582912.f; /* round to nearest */
    vf r = x - k * 0.693359375f;
    r = r - k * -2.12194440e-4f;
    vf p = (vf){0} + 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    const vi scale = (__builtin_convertvector(k, vi) + 127) << 23;
    return (vf)((vi)(p * (vf)scale) & keep);
}

typedef struct {
    const float *qkv, *addend;
    const int64_t *index;
    float *out;
    int64_t HW, windows, L, C, d, heads, addend_windows;
    float scale;
} wa_args;

#define KEYS 4 /* keys per register block of the scores */

/* One (image, window, head), with the queries in vector lanes (LV vectors: up to 16 LV
 * queries) so that the softmax over keys is elementwise across rows, never across lanes:
 *   qt[c][i]  = q_i[c] scale                       (the one transposition)
 *   st[j][i]  = sum_c k_j[c] qt[c][i] + addend[j][i]   (scores, transposed)
 *   st[j][i]  = exp(st[j][i] - max_j st[j][i]),  sum[i] = sum_j st[j][i]
 *   out_i     = (sum_j st[j][i] v_j) / sum[i]      (rows of d = 16 DV floats)
 * Returns nonzero if a score was not finite (the caller then takes the tensor path, whose
 * softmax defines what inf and NaN give). */
static inline __attribute__((always_inline)) int attend(const wa_args *a, int64_t n, int64_t w, int64_t h,
                                                        const int LV, const int DV) {
    const int64_t L = a->L, C = a->C, d = a->d, LP = (int64_t)LV * NV, row = 3 * C;
    const int64_t *idx = a->index + w * L;
    const float *base = a->qkv + n * a->HW * row + h * d;
    const float *add = a->addend + ((a->addend_windows > 1 ? w : 0) * a->heads + h) * L * LP;
    float *outb = a->out + n * a->HW * C + h * d;
    float qt[MAX_DV * NV * MAX_LV * NV];
    float st[(MAX_LV * NV + KEYS) * MAX_LV * NV]; /* rows up to L rounded up to KEYS */
    float inv[MAX_LV * NV];
    vf bad = {0};

    for (int64_t i = 0; i < L; i++) {
        const float *q = base + idx[i] * row;
        for (int64_t c = 0; c < d; c++) qt[c * LP + i] = q[c] * a->scale; /* as torchvision: (q scale) k^T */
    }
    for (int64_t c = 0; c < d; c++)
        for (int64_t i = L; i < LP; i++) qt[c * LP + i] = 0.f;

    vf mx[MAX_LV];
    for (int v = 0; v < LV; v++) mx[v] = (vf){0} - INFINITY;
    for (int64_t j0 = 0; j0 < L; j0 += KEYS) {
        const float *k[KEYS];
        for (int r = 0; r < KEYS; r++) k[r] = base + idx[j0 + r < L ? j0 + r : L - 1] * row + C; /* tail: repeat */
        vf acc[KEYS][MAX_LV];
        for (int r = 0; r < KEYS; r++)
            for (int v = 0; v < LV; v++) acc[r][v] = (vf){0};
        for (int64_t c = 0; c < d; c++) {
            vf qv[MAX_LV];
            for (int v = 0; v < LV; v++) qv[v] = vload(qt + c * LP + v * NV);
            for (int r = 0; r < KEYS; r++)
                for (int v = 0; v < LV; v++) acc[r][v] += k[r][c] * qv[v];
        }
        const int keys = (int)(L - j0 < KEYS ? L - j0 : KEYS);
        for (int r = 0; r < keys; r++)
            for (int v = 0; v < LV; v++) {
                const vf s = acc[r][v] + vload(add + (j0 + r) * LP + v * NV);
                vstore(st + (j0 + r) * LP + v * NV, s);
                bad += s - s; /* 0 unless inf or NaN */
                const vi gt = s > mx[v];
                mx[v] = (vf)(((vi)s & gt) | ((vi)mx[v] & ~gt));
            }
    }
    vf sum[MAX_LV];
    for (int v = 0; v < LV; v++) sum[v] = (vf){0};
    for (int64_t j = 0; j < L; j++)
        for (int v = 0; v < LV; v++) {
            const vf e = vexp_nonpositive(vload(st + j * LP + v * NV) - mx[v]);
            vstore(st + j * LP + v * NV, e);
            sum[v] += e;
        }
    for (int v = 0; v < LV; v++) vstore(inv + v * NV, 1.f / sum[v]);

    for (int64_t i0 = 0; i0 < L; i0 += ROWS) {
        vf o[ROWS][MAX_DV];
        for (int r = 0; r < ROWS; r++)
            for (int u = 0; u < DV; u++) o[r][u] = (vf){0};
        for (int64_t j = 0; j < L; j++) {
            const float *vrow = base + idx[j] * row + 2 * C;
            const float *p = st + j * LP + i0; /* lanes past L hold finite values: read, not stored */
            vf vv[MAX_DV];
            for (int u = 0; u < DV; u++) vv[u] = vload(vrow + u * NV);
            for (int r = 0; r < ROWS; r++)
                for (int u = 0; u < DV; u++) o[r][u] += p[r] * vv[u];
        }
        const int rows = (int)(L - i0 < ROWS ? L - i0 : ROWS);
        for (int r = 0; r < rows; r++) {
            float *dst = outb + idx[i0 + r] * C;
            for (int u = 0; u < DV; u++) vstore(dst + u * NV, o[r][u] * inv[i0 + r]);
        }
    }
    for (int i = 0; i < NV; i++)
        if (bad[i] != 0.f) return 1;
    return 0;
}

#define ATTEND(LV, DV) \
    case (LV) * 16 + (DV): failed |= attend(&a, n, w, h, LV, DV); break;

/* Sizes: B images of HW tokens, `windows` windows of L tokens each, C channels; ints: heads,
 * whether the addend differs per window (shifted windows), threads. Returns 0, 1 when a score
 * was not finite, 2 for sizes it does not take (L > 64, head width not 16, 32 or 64). */
int dtf_window_attention_f32(const float *qkv, const float *addend, const int64_t *index, float *out,
                             int64_t B, int64_t HW, int64_t windows, int64_t L, int64_t C, int heads,
                             int per_window_addend, int num_threads) {
    const int64_t d = C / heads, LV = (L + NV - 1) / NV, DV = d / NV;
    if (L < 1 || LV > MAX_LV || d * heads != C || d % NV || DV > MAX_DV || DV == 3) return 2;
    wa_args a = {qkv, addend, index, out, HW, windows, L, C, d, heads, per_window_addend ? windows : 1,
                 (float)(1.0 / sqrt((double)d))};
    const int64_t items = B * windows * heads;
    const int shape = (int)(LV * 16 + DV);
    int failed = 0;
#pragma omp parallel for schedule(static) num_threads(num_threads) reduction(| : failed)
    for (int64_t item = 0; item < items; item++) {
        const int64_t h = item % heads, w = (item / heads) % windows, n = item / (heads * windows);
        switch (shape) {
            ATTEND(1, 1) ATTEND(1, 2) ATTEND(1, 4)
            ATTEND(2, 1) ATTEND(2, 2) ATTEND(2, 4)
            ATTEND(3, 1) ATTEND(3, 2) ATTEND(3, 4)
            ATTEND(4, 1) ATTEND(4, 2) ATTEND(4, 4)
            default: failed |= 2;
        }
    }
    return failed;
}
