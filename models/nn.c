// nn.c: fast float implementations of the ops declared in nn.h.
//
// Matrix products run on OpenBLAS cblas_sgemm. Everything else is single-threaded,
// allocation-free element-wise code written so that GCC vectorises it at -O2:
//
//  * Blocks of VL elements with a fixed-length inner loop. GCC 12 at -O2 uses the
//    "very cheap" vectoriser cost model, which refuses loops whose trip count is not known
//    to be a multiple of the vector length; a fixed VL-iteration inner loop is vectorised
//    (SSE to AVX-512). Each loop ends with a scalar tail over the remaining n % VL
//    elements that uses the same scalar formula, so an element's result never depends on
//    where the block boundaries fall.
//  * Reductions keep VL partial sums (no reassociation is needed; we build without
//    -ffast-math), combined at the end.
//  * Element-wise ops whose output may alias their input (gelu_forward, dropout_forward,
//    add_forward, and softmax_xent_forward, whose probs may alias logits) load each block
//    into a local array before computing, so out == inp is well defined. Other pointers
//    are declared restrict: their buffers must not overlap.
//  * exp: glibc's expf is an out-of-line call per element and is never vectorised without
//    -ffast-math, so the softmax and GELU loops use nn_expf below, an inline Cephes-style
//    polynomial: error below 1 ulp (8.2e-8 relative) for every float in [-87, 80], checked
//    exhaustively against double exp; 0 below -87 (and for -INFINITY); clamped above 80,
//    which only GELU's 1 / (1 + exp(-2u)) reaches, where the result is ~0 either way.
//    tanh goes through exp without cancellation: 0.5 * (1 + tanh(u)) = 1 / (1 + exp(-2u)).
//
// Attention masking: keys with mask == 0 get the score -INFINITY (the limit of "adds a
// large negative"), so their probability is exactly 0. A row whose keys are all padding
// gets probabilities all 0 (output 0, no NaN). Queries at padding positions attend normally.
#include "nn.h"

#include <assert.h>
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "rng.h"

#define VL 16

// ---------------------------------------------------------------------------------------
// scalar kernels (inlined into the vector blocks and the scalar tails)

#define NN_EXP_LO (-87.0f)  // below: result 0 (true value < 1.7e-38); -INFINITY gives 0
#define NN_EXP_HI 80.0f     // above: clamped to exp(80) = 5.5e34, so 1/(1+e) stays normal

// exp(x) = 2^n * exp(r), n = round(x / ln 2), |r| <= ln(2)/2; branch-free so it vectorises.
static inline float nn_expf(float x) {
    float keep = x < NN_EXP_LO ? 0.0f : 1.0f;
    x = x < NN_EXP_LO ? NN_EXP_LO : x;
    x = x > NN_EXP_HI ? NN_EXP_HI : x;
    // Adding 1.5*2^23 rounds x*log2(e) to an integer that lands in t's low mantissa bits.
    float t = x * 1.44269504088896341f + 12582912.0f;
    float n = t - 12582912.0f;
    // Cody-Waite: ln 2 = 0.693359375 - 2.12194440e-4 (first part exact in 9 bits)
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float q = 1.9875691500e-4f;
    q = q * r + 1.3981999507e-3f;
    q = q * r + 8.3334519073e-3f;
    q = q * r + 4.1665795894e-2f;
    q = q * r + 1.6666665459e-1f;
    q = q * r + 5.0000001201e-1f;
    float er = q * (r * r) + r + 1.0f;
    uint32_t tb;
    memcpy(&tb, &t, sizeof tb);
    uint32_t sb = (tb - 0x4B400000u + 127u) << 23;  // 2^n, n in [-126, 115]; NaN x gives NaN
    float s;
    memcpy(&s, &sb, sizeof s);
    return er * s * keep;
}

#define GELU_K 0.7978845608028654f  // sqrt(2/pi)
#define GELU_A 0.044715f

// gelu(x) = 0.5 x (1 + tanh(u)) = x * sig,  sig = 1/(1 + exp(-2u)),  u = K (x + A x^3)
static inline float gelu_f(float x) {
    float u = GELU_K * (x + GELU_A * x * x * x);
    return x / (1.0f + nn_expf(-2.0f * u));
}

// d gelu / dx = sig + x * 2 sig (1 - sig) u',  1 - sig = e * sig,  u' = K (1 + 3 A x^2)
static inline float gelu_grad_f(float x) {
    float u = GELU_K * (x + GELU_A * x * x * x);
    float e = nn_expf(-2.0f * u);
    float sig = 1.0f / (1.0f + e);
    float du = GELU_K * (1.0f + 3.0f * GELU_A * x * x);
    return sig + 2.0f * x * sig * (e * sig) * du;
}

// ---------------------------------------------------------------------------------------
// vector helpers

static inline float vec_sum(const float *x, int n) {
    float acc[VL] = {0};
    int i = 0;
    for (; i + VL <= n; i += VL)
        for (int j = 0; j < VL; j++) acc[j] += x[i + j];
    float s = 0.0f;
    for (; i < n; i++) s += x[i];
    for (int j = 0; j < VL; j++) s += acc[j];
    return s;
}

static inline float vec_max(const float *x, int n) {
    float acc[VL];
    for (int j = 0; j < VL; j++) acc[j] = -INFINITY;
    int i = 0;
    for (; i + VL <= n; i += VL)
        for (int j = 0; j < VL; j++) acc[j] = x[i + j] > acc[j] ? x[i + j] : acc[j];
    float m = -INFINITY;
    for (; i < n; i++) m = x[i] > m ? x[i] : m;
    for (int j = 0; j < VL; j++) m = acc[j] > m ? acc[j] : m;
    return m;
}

// y (n) += x (n)
static inline void vec_acc(float *restrict y, const float *restrict x, int n) {
    int i = 0;
    for (; i + VL <= n; i += VL)
        for (int j = 0; j < VL; j++) y[i + j] += x[i + j];
    for (; i < n; i++) y[i] += x[i];
}

// out = inp * keep/(1-p) with the mask of (seed, offset + i); out may equal inp.
static void dropout_apply(float *out, const float *inp, size_t n, float p, uint64_t seed,
                          uint64_t offset) {
    const float scale = 1.0f / (1.0f - p);
    size_t i = 0;
    for (; i + VL <= n; i += VL) {
        float x[VL], y[VL];
        memcpy(x, inp + i, sizeof x);
        for (int j = 0; j < VL; j++) {
            float m = cx_rng_uniform(seed, offset + i + (size_t)j) < p ? 0.0f : scale;
            y[j] = x[j] * m;
        }
        memcpy(out + i, y, sizeof y);
    }
    for (; i < n; i++) {
        float m = cx_rng_uniform(seed, offset + i) < p ? 0.0f : scale;
        out[i] = inp[i] * m;
    }
}

// ---------------------------------------------------------------------------------------
// embedding

void nn_embedding_forward(float *out, const int32_t *ids, const float *wte, int N, int C) {
    for (int n = 0; n < N; n++) {
        assert(ids[n] >= 0);
        memcpy(out + (size_t)n * C, wte + (size_t)ids[n] * C, (size_t)C * sizeof(float));
    }
}

void nn_embedding_backward(float *dwte, const float *dout, const int32_t *ids, int N, int C) {
    if (!dwte) return;
    for (int n = 0; n < N; n++) {
        assert(ids[n] >= 0);
        vec_acc(dwte + (size_t)ids[n] * C, dout + (size_t)n * C, C);
    }
}

// ---------------------------------------------------------------------------------------
// linear

void nn_linear_forward(float *out, const float *inp, const float *weight, const float *bias,
                       int N, int C, int OC) {
    if (N <= 0 || OC <= 0) return;
    float beta = 0.0f;
    if (bias) {
        for (int n = 0; n < N; n++) memcpy(out + (size_t)n * OC, bias, (size_t)OC * sizeof(float));
        beta = 1.0f;
    }
    if (C <= 0) {  // empty product (BLAS rejects lda = 0)
        if (!bias) memset(out, 0, (size_t)N * OC * sizeof(float));
        return;
    }
    // out (N,OC) = inp (N,C) @ weight (OC,C)^T
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, C, 1.0f, inp, C, weight, C,
                beta, out, OC);
}

void nn_linear_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                        const float *inp, const float *weight, int N, int C, int OC) {
    if (N <= 0 || OC <= 0 || C <= 0) return;
    // dinp (N,C) += dout (N,OC) @ weight (OC,C)
    if (dinp)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, OC, 1.0f, dout, OC, weight,
                    C, 1.0f, dinp, C);
    // dweight (OC,C) += dout^T (OC,N) @ inp (N,C)
    if (dweight)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, N, 1.0f, dout, OC, inp, C,
                    1.0f, dweight, C);
    if (dbias)
        for (int n = 0; n < N; n++) vec_acc(dbias, dout + (size_t)n * OC, OC);
}

// ---------------------------------------------------------------------------------------
// layernorm (biased variance, like torch)

void nn_layernorm_forward(float *restrict out, float *restrict mean, float *restrict rstd,
                          const float *restrict inp, const float *restrict weight,
                          const float *restrict bias, int N, int C, float eps) {
    for (int n = 0; n < N; n++) {
        const float *restrict x = inp + (size_t)n * C;
        float *restrict o = out + (size_t)n * C;
        const float m = vec_sum(x, C) / (float)C;
        float acc[VL] = {0};
        int i = 0;
        for (; i + VL <= C; i += VL)
            for (int j = 0; j < VL; j++) {
                float d = x[i + j] - m;
                acc[j] += d * d;
            }
        float var = 0.0f;
        for (; i < C; i++) var += (x[i] - m) * (x[i] - m);
        for (int j = 0; j < VL; j++) var += acc[j];
        const float rs = 1.0f / sqrtf(var / (float)C + eps);
        i = 0;
        for (; i + VL <= C; i += VL)
            for (int j = 0; j < VL; j++)
                o[i + j] = (x[i + j] - m) * rs * weight[i + j] + bias[i + j];
        for (; i < C; i++) o[i] = (x[i] - m) * rs * weight[i] + bias[i];
        mean[n] = m;
        rstd[n] = rs;
    }
}

void nn_layernorm_backward(float *restrict dinp, float *restrict dweight, float *restrict dbias,
                           const float *restrict dout, const float *restrict inp,
                           const float *restrict mean, const float *restrict rstd,
                           const float *restrict weight, int N, int C) {
    for (int n = 0; n < N; n++) {
        const float *restrict x = inp + (size_t)n * C;
        const float *restrict dy = dout + (size_t)n * C;
        const float m = mean[n], rs = rstd[n];
        if (dinp) {
            // dxhat = dy * w;  dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
            float a1[VL] = {0}, a2[VL] = {0};
            int i = 0;
            for (; i + VL <= C; i += VL)
                for (int j = 0; j < VL; j++) {
                    float xh = (x[i + j] - m) * rs;
                    float dxh = dy[i + j] * weight[i + j];
                    a1[j] += dxh;
                    a2[j] += dxh * xh;
                }
            float s1 = 0.0f, s2 = 0.0f;
            for (; i < C; i++) {
                float xh = (x[i] - m) * rs;
                float dxh = dy[i] * weight[i];
                s1 += dxh;
                s2 += dxh * xh;
            }
            for (int j = 0; j < VL; j++) {
                s1 += a1[j];
                s2 += a2[j];
            }
            const float mdxh = s1 / (float)C, mdxhxh = s2 / (float)C;
            float *restrict dx = dinp + (size_t)n * C;
            i = 0;
            for (; i + VL <= C; i += VL)
                for (int j = 0; j < VL; j++) {
                    float xh = (x[i + j] - m) * rs;
                    float dxh = dy[i + j] * weight[i + j];
                    dx[i + j] += (dxh - mdxh - xh * mdxhxh) * rs;
                }
            for (; i < C; i++) {
                float xh = (x[i] - m) * rs;
                float dxh = dy[i] * weight[i];
                dx[i] += (dxh - mdxh - xh * mdxhxh) * rs;
            }
        }
        if (dweight) {
            int i = 0;
            for (; i + VL <= C; i += VL)
                for (int j = 0; j < VL; j++) dweight[i + j] += (x[i + j] - m) * rs * dy[i + j];
            for (; i < C; i++) dweight[i] += (x[i] - m) * rs * dy[i];
        }
        if (dbias) vec_acc(dbias, dy, C);
    }
}

// ---------------------------------------------------------------------------------------
// GELU (tanh approximation)

void nn_gelu_forward(float *out, const float *inp, size_t n) {
    size_t i = 0;
    for (; i + VL <= n; i += VL) {
        float x[VL], y[VL];
        memcpy(x, inp + i, sizeof x);
        for (int j = 0; j < VL; j++) y[j] = gelu_f(x[j]);
        memcpy(out + i, y, sizeof y);
    }
    for (; i < n; i++) out[i] = gelu_f(inp[i]);
}

void nn_gelu_backward(float *restrict dinp, const float *restrict dout, const float *restrict inp,
                      size_t n) {
    if (!dinp) return;
    size_t i = 0;
    for (; i + VL <= n; i += VL)
        for (int j = 0; j < VL; j++) dinp[i + j] += dout[i + j] * gelu_grad_f(inp[i + j]);
    for (; i < n; i++) dinp[i] += dout[i] * gelu_grad_f(inp[i]);
}

// ---------------------------------------------------------------------------------------
// dropout

void nn_dropout_forward(float *out, const float *inp, size_t n, float p, uint64_t seed,
                        uint64_t offset) {
    assert(p >= 0.0f && p < 1.0f);
    if (p == 0.0f) {
        if (out != inp) memmove(out, inp, n * sizeof(float));
        return;
    }
    dropout_apply(out, inp, n, p, seed, offset);
}

void nn_dropout_backward(float *restrict dinp, const float *restrict dout, size_t n, float p,
                         uint64_t seed, uint64_t offset) {
    assert(p >= 0.0f && p < 1.0f);
    if (!dinp) return;
    if (p == 0.0f) {
        size_t i = 0;
        for (; i + VL <= n; i += VL)
            for (int j = 0; j < VL; j++) dinp[i + j] += dout[i + j];
        for (; i < n; i++) dinp[i] += dout[i];
        return;
    }
    const float scale = 1.0f / (1.0f - p);
    size_t i = 0;
    for (; i + VL <= n; i += VL)
        for (int j = 0; j < VL; j++) {
            float m = cx_rng_uniform(seed, offset + i + (size_t)j) < p ? 0.0f : scale;
            dinp[i + j] += dout[i + j] * m;
        }
    for (; i < n; i++) {
        float m = cx_rng_uniform(seed, offset + i) < p ? 0.0f : scale;
        dinp[i] += dout[i] * m;
    }
}

// out (n) = exp(in - mx) / sum, returning the sum (the softmax of a row whose maximum is
// mx). out may equal in: blocks are copied in before they are written out.
static float exp_normalize(float *out, const float *in, int n, float mx) {
    float acc[VL] = {0};
    float s = 0.0f;
    int i = 0;
    for (; i + VL <= n; i += VL) {
        float xb[VL], eb[VL];
        memcpy(xb, in + i, sizeof xb);
        for (int j = 0; j < VL; j++) {
            eb[j] = nn_expf(xb[j] - mx);
            acc[j] += eb[j];
        }
        memcpy(out + i, eb, sizeof eb);
    }
    for (; i < n; i++) {
        float e = nn_expf(in[i] - mx);
        out[i] = e;
        s += e;
    }
    for (int j = 0; j < VL; j++) s += acc[j];
    const float inv = 1.0f / s;
    i = 0;
    for (; i + VL <= n; i += VL)
        for (int j = 0; j < VL; j++) out[i + j] *= inv;
    for (; i < n; i++) out[i] *= inv;
    return s;
}

// ---------------------------------------------------------------------------------------
// attention

// In place: row (T) of scaled scores -> softmax probabilities; mrow (T) or NULL.
static void softmax_row_masked(float *restrict row, const int32_t *restrict mrow, int T) {
    if (mrow) {
        int i = 0;
        for (; i + VL <= T; i += VL)
            for (int j = 0; j < VL; j++) row[i + j] = mrow[i + j] ? row[i + j] : -INFINITY;
        for (; i < T; i++) row[i] = mrow[i] ? row[i] : -INFINITY;
    }
    const float mx = vec_max(row, T);
    if (mx == -INFINITY) {  // every key is padding
        memset(row, 0, (size_t)T * sizeof(float));
        return;
    }
    exp_normalize(row, row, T, mx);
}

// In place: ds (T) holds dL/dP for one row of probabilities pr (T); becomes dL/dscores.
static void softmax_row_backward(float *restrict ds, const float *restrict pr, int T) {
    float acc[VL] = {0};
    float dot = 0.0f;
    int i = 0;
    for (; i + VL <= T; i += VL)
        for (int j = 0; j < VL; j++) acc[j] += pr[i + j] * ds[i + j];
    for (; i < T; i++) dot += pr[i] * ds[i];
    for (int j = 0; j < VL; j++) dot += acc[j];
    i = 0;
    for (; i + VL <= T; i += VL)
        for (int j = 0; j < VL; j++) ds[i + j] = pr[i + j] * (ds[i + j] - dot);
    for (; i < T; i++) ds[i] = pr[i] * (ds[i] - dot);
}

void nn_attention_ex_forward(float *out, float *att, const float *q, const float *k,
                             const float *v, const int32_t *kmask, int B, int Tq, int Tk, int C,
                             int NH, int causal, float p, uint64_t seed, uint64_t offset,
                             float *scratch) {
    assert(NH > 0 && C % NH == 0);
    assert(p >= 0.0f && p < 1.0f);
    if (B <= 0 || Tq <= 0 || Tk <= 0) return;
    const int D = C / NH;
    const float scale = 1.0f / sqrtf((float)D);
    const size_t QK = (size_t)Tq * Tk;
    for (int b = 0; b < B; b++) {
        const int32_t *mrow = kmask ? kmask + (size_t)b * Tk : NULL;
        for (int h = 0; h < NH; h++) {
            const size_t bh = (size_t)b * NH + h;
            const size_t colq = (size_t)b * Tq * C + (size_t)h * D;
            const size_t colk = (size_t)b * Tk * C + (size_t)h * D;
            float *A = att + bh * QK;
            // A (Tq,Tk) = scale * q_h (Tq,D) @ k_h (Tk,D)^T, reading the head's columns in place
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Tq, Tk, D, scale, q + colq, C,
                        k + colk, C, 0.0f, A, Tk);
            for (int t = 0; t < Tq; t++) {
                float *row = A + (size_t)t * Tk;
                // keys [0, n) are visible to this query; the rest (causal) get probability 0
                int n = causal ? t + 1 + (Tk - Tq) : Tk;
                n = n < 0 ? 0 : (n > Tk ? Tk : n);
                if (n > 0) softmax_row_masked(row, mrow, n);
                if (n < Tk) memset(row + n, 0, (size_t)(Tk - n) * sizeof(float));
            }
            const float *P = A;
            if (p > 0.0f) {
                dropout_apply(scratch, A, QK, p, seed, offset + bh * QK);
                P = scratch;
            }
            // out_h (Tq,D) = P (Tq,Tk) @ v_h (Tk,D)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Tq, D, Tk, 1.0f, P, Tk,
                        v + colk, C, 0.0f, out + colq, C);
        }
    }
}

void nn_attention_ex_backward(float *dq, float *dk, float *dv, const float *dout,
                              const float *q, const float *k, const float *v, const float *att,
                              int B, int Tq, int Tk, int C, int NH, float p, uint64_t seed,
                              uint64_t offset, float *scratch) {
    // masked keys have P == 0, hence zero gradient: att carries the masks
    assert(NH > 0 && C % NH == 0);
    assert(p >= 0.0f && p < 1.0f);
    if (B <= 0 || Tq <= 0 || Tk <= 0) return;
    const int D = C / NH;
    const float scale = 1.0f / sqrtf((float)D);
    const size_t QK = (size_t)Tq * Tk;
    float *S = scratch;  // Tq*Tk floats, reused for every (b,h)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            const size_t bh = (size_t)b * NH + h;
            const size_t colq = (size_t)b * Tq * C + (size_t)h * D;
            const size_t colk = (size_t)b * Tk * C + (size_t)h * D;
            const float *P = att + bh * QK;
            if (dv) {
                // dv_h (Tk,D) += dropout(P)^T (Tk,Tq) @ dout_h (Tq,D)
                const float *Pd = P;
                if (p > 0.0f) {
                    dropout_apply(S, P, QK, p, seed, offset + bh * QK);
                    Pd = S;
                }
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Tk, D, Tq, 1.0f, Pd, Tk,
                            dout + colq, C, 1.0f, dv + colk, C);
            }
            if (!dq && !dk) continue;
            // S (Tq,Tk) = dout_h @ v_h^T: gradient w.r.t. the dropped probabilities
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Tq, Tk, D, 1.0f, dout + colq, C,
                        v + colk, C, 0.0f, S, Tk);
            if (p > 0.0f) dropout_apply(S, S, QK, p, seed, offset + bh * QK);
            // softmax backward, row by row: dS = P * (dP - sum(P * dP))
            for (int t = 0; t < Tq; t++)
                softmax_row_backward(S + (size_t)t * Tk, P + (size_t)t * Tk, Tk);
            // dq_h (Tq,D) += scale * dS @ k_h ; dk_h (Tk,D) += scale * dS^T @ q_h
            if (dq)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Tq, D, Tk, scale, S, Tk,
                            k + colk, C, 1.0f, dq + colq, C);
            if (dk)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Tk, D, Tq, scale, S, Tk,
                            q + colq, C, 1.0f, dk + colk, C);
        }
    }
}

void nn_attention_forward(float *out, float *att, const float *q, const float *k,
                          const float *v, const int32_t *mask, int B, int T, int C, int NH,
                          float p, uint64_t seed, uint64_t offset, float *scratch) {
    nn_attention_ex_forward(out, att, q, k, v, mask, B, T, T, C, NH, 0, p, seed, offset, scratch);
}

void nn_attention_backward(float *dq, float *dk, float *dv, const float *dout,
                           const float *q, const float *k, const float *v, const float *att,
                           const int32_t *mask, int B, int T, int C, int NH, float p,
                           uint64_t seed, uint64_t offset, float *scratch) {
    (void)mask;  // padding keys have P == 0, hence zero gradient: att carries the mask
    nn_attention_ex_backward(dq, dk, dv, dout, q, k, v, att, B, T, T, C, NH, p, seed, offset,
                             scratch);
}

// ---------------------------------------------------------------------------------------
// softmax cross-entropy

double nn_softmax_xent_forward(float *probs, const float *logits, const int32_t *targets,
                               int N, int V) {
    double loss = 0.0;
    for (int n = 0; n < N; n++) {
        const float *x = logits + (size_t)n * V;
        float *pr = probs + (size_t)n * V;  // may equal x
        const int32_t tg = targets[n];
        assert(tg < V);
        const float xt = tg >= 0 ? x[tg] : 0.0f;  // read before pr overwrites it
        const float mx = vec_max(x, V);
        const float s = exp_normalize(pr, x, V, mx);
        if (tg >= 0) loss += (double)mx + log((double)s) - (double)xt;
    }
    return loss;
}

void nn_softmax_xent_backward(float *restrict dlogits, const float *restrict probs,
                              const int32_t *restrict targets, int N, int V, float scale) {
    if (!dlogits) return;
    for (int n = 0; n < N; n++) {
        const int32_t tg = targets[n];
        if (tg < 0) continue;
        assert(tg < V);
        float *restrict d = dlogits + (size_t)n * V;
        const float *restrict pr = probs + (size_t)n * V;
        int i = 0;
        for (; i + VL <= V; i += VL)
            for (int j = 0; j < VL; j++) d[i + j] += scale * pr[i + j];
        for (; i < V; i++) d[i] += scale * pr[i];
        d[tg] -= scale;
    }
}

double nn_softmax_xent_smooth_forward(float *probs, const float *logits, const int32_t *targets,
                                      int N, int V, float eps) {
    double loss = 0.0;
    for (int n = 0; n < N; n++) {
        const float *x = logits + (size_t)n * V;
        float *pr = probs + (size_t)n * V;  // may equal x
        const int32_t tg = targets[n];
        assert(tg < V);
        double xt = 0.0, xsum = 0.0;  // read before pr overwrites them
        if (tg >= 0) {
            xt = x[tg];
            for (int i = 0; i < V; i++) xsum += x[i];
        }
        const float mx = vec_max(x, V);
        const float s = exp_normalize(pr, x, V, mx);
        if (tg >= 0) {
            // -log p[v] = lse - x[v];  mean over v of -log p[v] = lse - mean(x)
            const double lse = (double)mx + log((double)s);
            loss += (1.0 - (double)eps) * (lse - xt) + (double)eps * (lse - xsum / V);
        }
    }
    return loss;
}

void nn_softmax_xent_smooth_backward(float *restrict dlogits, const float *restrict probs,
                                     const int32_t *restrict targets, int N, int V, float eps,
                                     float scale) {
    if (!dlogits) return;
    const float u = scale * eps / (float)V;  // the uniform part of the smoothed target
    for (int n = 0; n < N; n++) {
        const int32_t tg = targets[n];
        if (tg < 0) continue;
        assert(tg < V);
        float *restrict d = dlogits + (size_t)n * V;
        const float *restrict pr = probs + (size_t)n * V;
        int i = 0;
        for (; i + VL <= V; i += VL)
            for (int j = 0; j < VL; j++) d[i + j] += scale * pr[i + j] - u;
        for (; i < V; i++) d[i] += scale * pr[i] - u;
        d[tg] -= scale * (1.0f - eps);
    }
}

// ---------------------------------------------------------------------------------------
// residual add

void nn_add_forward(float *out, const float *a, const float *b, size_t n) {
    size_t i = 0;
    for (; i + VL <= n; i += VL) {
        float x[VL], y[VL], z[VL];
        memcpy(x, a + i, sizeof x);
        memcpy(y, b + i, sizeof y);
        for (int j = 0; j < VL; j++) z[j] = x[j] + y[j];
        memcpy(out + i, z, sizeof z);
    }
    for (; i < n; i++) out[i] = a[i] + b[i];
}
