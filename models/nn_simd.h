// nn_simd.h: the exp-based element-wise kernels (GELU forward and backward, the softmax's
// exp and sum) in explicit vectors, for one instruction set per inclusion. nn.c includes
// it three times (models/nn.c: "Kernels and dispatch"):
//
//   NN_W    lanes per vector: 16 (AVX-512), 8 (AVX2), 4 (SSE2, the build's baseline)
//   NN_SUF  suffix of the generated names (avx512, avx2, sse2)
//   NN_TGT  the function attribute that enables the instruction set (empty for the baseline)
//
// GCC's vector extensions with a fixed width compile to native instructions under the
// matching target attribute (its auto-vectoriser does not: the branch-free selects of
// nn_expf stay branches in the GELU loops). Every lane does exactly the arithmetic of the
// scalar kernel in nn.c, in the same order, with no contraction (C11 mode: -ffp-contract=off),
// so all three variants and the scalar tails give bit-identical results.
//
// Sums keep VL = 16 partial sums whatever NN_W is (16 / NN_W vectors of accumulators),
// combined exactly as the scalar code combines them.

#define NN_CAT_(a, b) a##_##b
#define NN_CAT(a, b) NN_CAT_(a, b)
#define NN_FN(name) NN_CAT(name, NN_SUF)
#define NN_VF NN_CAT(nn_vf, NN_SUF)
#define NN_VI NN_CAT(nn_vi, NN_SUF)
#define NN_VU NN_CAT(nn_vu, NN_SUF)
#define NN_NACC (VL / NN_W)

typedef float NN_VF __attribute__((vector_size(NN_W * 4)));
typedef int32_t NN_VI __attribute__((vector_size(NN_W * 4)));
typedef uint32_t NN_VU __attribute__((vector_size(NN_W * 4)));

NN_TGT static inline NN_VF NN_FN(vload)(const float *p) {
    NN_VF v;
    memcpy(&v, p, sizeof v);
    return v;
}

NN_TGT static inline void NN_FN(vstore)(float *p, NN_VF v) { memcpy(p, &v, sizeof v); }

// m ? a : b, lane by lane (m: all ones or all zeros per lane)
NN_TGT static inline NN_VF NN_FN(vsel)(NN_VI m, NN_VF a, NN_VF b) {
    return (NN_VF)(((NN_VI)a & m) | ((NN_VI)b & ~m));
}

// nn_expf, lane by lane
NN_TGT static inline NN_VF NN_FN(vexp)(NN_VF x) {
    const NN_VF zero = {0}, one = zero + 1.0f;
    NN_VF keep = NN_FN(vsel)(x < NN_EXP_LO, zero, one);
    x = NN_FN(vsel)(x < NN_EXP_LO, zero + NN_EXP_LO, x);
    x = NN_FN(vsel)(x > NN_EXP_HI, zero + NN_EXP_HI, x);
    NN_VF t = x * 1.44269504088896341f + 12582912.0f;
    NN_VF n = t - 12582912.0f;
    NN_VF r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    NN_VF q = zero + 1.9875691500e-4f;
    q = q * r + 1.3981999507e-3f;
    q = q * r + 8.3334519073e-3f;
    q = q * r + 4.1665795894e-2f;
    q = q * r + 1.6666665459e-1f;
    q = q * r + 5.0000001201e-1f;
    NN_VF er = q * (r * r) + r + 1.0f;
    NN_VU sb = ((NN_VU)t - 0x4B400000u + 127u) << 23;
    return er * (NN_VF)sb * keep;
}

// out (n) = gelu(in); out may equal in
NN_TGT static void NN_FN(gelu_fwd)(float *out, const float *in, size_t n) {
    size_t i = 0;
    for (; i + NN_W <= n; i += NN_W) {
        NN_VF x = NN_FN(vload)(in + i);
        NN_VF u = GELU_K * (x + GELU_A * x * x * x);
        NN_FN(vstore)(out + i, x / (1.0f + NN_FN(vexp)(-2.0f * u)));
    }
    for (; i < n; i++) out[i] = gelu_f(in[i]);
}

// dinp (n) += dout * gelu'(inp)
NN_TGT static void NN_FN(gelu_bwd)(float *restrict dinp, const float *restrict dout,
                                   const float *restrict inp, size_t n) {
    size_t i = 0;
    for (; i + NN_W <= n; i += NN_W) {
        NN_VF x = NN_FN(vload)(inp + i);
        NN_VF u = GELU_K * (x + GELU_A * x * x * x);
        NN_VF e = NN_FN(vexp)(-2.0f * u);
        NN_VF sig = 1.0f / (1.0f + e);
        NN_VF du = GELU_K * (1.0f + 3.0f * GELU_A * x * x);
        NN_VF gr = sig + 2.0f * x * sig * (e * sig) * du;
        NN_FN(vstore)(dinp + i, NN_FN(vload)(dinp + i) + NN_FN(vload)(dout + i) * gr);
    }
    for (; i < n; i++) dinp[i] += dout[i] * gelu_grad_f(inp[i]);
}

// out (n) = exp(in - mx), returning their sum (VL partial sums, then the scalar tail's sum,
// then the partial sums in order); out may equal in
NN_TGT static float NN_FN(exp_sum)(float *out, const float *in, int n, float mx) {
    NN_VF acc[NN_NACC];
    for (int a = 0; a < NN_NACC; a++) acc[a] = (NN_VF){0};
    int i = 0;
    for (; i + VL <= n; i += VL)
        for (int a = 0; a < NN_NACC; a++) {
            NN_VF e = NN_FN(vexp)(NN_FN(vload)(in + i + a * NN_W) - mx);
            acc[a] += e;
            NN_FN(vstore)(out + i + a * NN_W, e);
        }
    float s = 0.0f;
    for (; i < n; i++) {
        float e = nn_expf(in[i] - mx);
        out[i] = e;
        s += e;
    }
    float lanes[VL];
    memcpy(lanes, acc, sizeof lanes);
    for (int j = 0; j < VL; j++) s += lanes[j];
    return s;
}

// ---------------------------------------------------------------------------------------
// Row kernels in VL-element blocks with a fixed-length inner loop (models/nn.c's header),
// which GCC vectorises at the width of the target it compiles them for: the same loops as
// the scalar formulas, element by element and partial sum by partial sum, so every variant
// gives the same bits.

// sum of x (n): VL partial sums, then the tail, then the partial sums in order
NN_TGT static inline float NN_FN(vsum)(const float *x, int n) {
    float acc[VL] = {0};
    int i = 0;
    for (; i + VL <= n; i += VL)
        for (int j = 0; j < VL; j++) acc[j] += x[i + j];
    float s = 0.0f;
    for (; i < n; i++) s += x[i];
    for (int j = 0; j < VL; j++) s += acc[j];
    return s;
}

NN_TGT static float NN_FN(vmax)(const float *x, int n) {
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
NN_TGT static void NN_FN(vacc)(float *restrict y, const float *restrict x, int n) {
    int i = 0;
    for (; i + VL <= n; i += VL)
        for (int j = 0; j < VL; j++) y[i + j] += x[i + j];
    for (; i < n; i++) y[i] += x[i];
}

// x (n) *= s
NN_TGT static void NN_FN(vscale)(float *x, int n, float s) {
    int i = 0;
    for (; i + VL <= n; i += VL)
        for (int j = 0; j < VL; j++) x[i + j] *= s;
    for (; i < n; i++) x[i] *= s;
}

// r (n) = a + b; r may equal a or b (each block is loaded before it is stored)
NN_TGT static void NN_FN(vadd)(float *r, const float *a, const float *b, int n) {
    int i = 0;
    for (; i + VL <= n; i += VL) {
        float xa[VL], xb[VL], z[VL];
        memcpy(xa, a + i, sizeof xa);
        memcpy(xb, b + i, sizeof xb);
        for (int j = 0; j < VL; j++) z[j] = xa[j] + xb[j];
        memcpy(r + i, z, sizeof z);
    }
    for (; i < n; i++) r[i] = a[i] + b[i];
}

// one LayerNorm row: o (C) = (x - mean) * rstd * weight + bias (biased variance)
NN_TGT static void NN_FN(ln_row)(float *restrict o, float *restrict mean, float *restrict rstd,
                                 const float *restrict x, const float *restrict weight,
                                 const float *restrict bias, int C, float eps) {
    const float m = NN_FN(vsum)(x, C) / (float)C;
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
        for (int j = 0; j < VL; j++) o[i + j] = (x[i + j] - m) * rs * weight[i + j] + bias[i + j];
    for (; i < C; i++) o[i] = (x[i] - m) * rs * weight[i] + bias[i];
    *mean = m;
    *rstd = rs;
}

// one LayerNorm row's input gradient: with dxhat = dy * w,
// dx (C) += rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
NN_TGT static void NN_FN(ln_bwd_row)(float *restrict dx, const float *restrict x,
                                     const float *restrict dy, const float *restrict weight,
                                     float m, float rs, int C) {
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

// one row's share of the LayerNorm parameter gradients over w columns:
// dw += xhat * dy (dw may be NULL), db += dy (db may be NULL)
NN_TGT static void NN_FN(ln_bwd_col)(float *restrict dw, float *restrict db,
                                     const float *restrict x, const float *restrict dy, float m,
                                     float rs, int w) {
    if (dw) {
        int i = 0;
        for (; i + VL <= w; i += VL)
            for (int j = 0; j < VL; j++) dw[i + j] += (x[i + j] - m) * rs * dy[i + j];
        for (; i < w; i++) dw[i] += (x[i] - m) * rs * dy[i];
    }
    if (db) NN_FN(vacc)(db, dy, w);
}

// In place: ds (T) holds dL/dP for one row of probabilities pr (T); becomes dL/dscores.
NN_TGT static void NN_FN(softmax_bwd_row)(float *restrict ds, const float *restrict pr, int T) {
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

#undef NN_NACC
#undef NN_VU
#undef NN_VI
#undef NN_VF
#undef NN_FN
#undef NN_CAT
#undef NN_CAT_
#undef NN_W
#undef NN_SUF
#undef NN_TGT
