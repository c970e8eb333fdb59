// Fused CPU kernels for the U-Net's slowest MindSpore ops (see ddpm/kernels/__init__.py).
//
// Each function follows MindSpore's AOT custom-op interface: params holds the inputs, then
// the outputs; shapes[i] has ndims[i] entries. Tensors are contiguous float32, NCHW.
// Work is split over planes or groups with OpenMP; vectors are 8 floats wide (GCC vector
// extensions), which fits W = 7, 14, 28 with little waste, except in the dense convolution's
// register tiles, which take 16 where the CPU has AVX-512.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include <omp.h>
#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

namespace {

typedef float v8 __attribute__((vector_size(32)));
typedef float v8u __attribute__((vector_size(32), aligned(4)));  // unaligned access
typedef int32_t v8i __attribute__((vector_size(32)));

inline v8 load(const float *p) { return *(const v8u *)p; }
inline void store(float *p, v8 v) { *(v8u *)p = v; }
inline v8 splat(float a) { return v8{a, a, a, a, a, a, a, a}; }
inline float hsum(v8 v) {
  float s = 0.f;
  for (int k = 0; k < 8; ++k) s += v[k];
  return s;
}

// Stores the first n (<= 8) lanes of v at p.
inline void store_n(float *p, v8 v, int n) {
  if (n == 8) {
    store(p, v);
  } else {
    float lanes[8];
    std::memcpy(lanes, &v, sizeof lanes);
    std::memcpy(p, lanes, n * sizeof(float));
  }
}

// The first n (<= 8) floats at p, the other lanes zero.
inline v8 load_n(const float *p, int n) {
  if (n == 8) return load(p);
  v8 v = splat(0.f);
  std::memcpy(&v, p, n * sizeof(float));
  return v;
}

// exp(x) for 8 lanes: 2^n * p(r), x = n ln2 + r, |r| <= ln2/2 (Cephes expf polynomial,
// about 2 ulp). Inputs below -87.3 flush to 0, as softmax after max-subtraction expects.
inline v8 vexp(v8 x) {
  const v8 lo = splat(-87.3f), hi = splat(88.3f);
  x = x < lo ? lo : x;
  x = x > hi ? hi : x;
  const v8 t = x * 1.44269504f;  // x / ln 2, rounded to the nearest integer n
  const v8 n = __builtin_convertvector(__builtin_convertvector(t + (t > 0 ? splat(0.5f) : splat(-0.5f)), v8i), v8);
  v8 r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  v8 p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.f;
  const v8i bits = (__builtin_convertvector(n, v8i) + 127) << 23;
  v8 scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return (x <= lo) ? splat(0.f) : p * scale;
}

// Sums over [0, n) of term(k) (8 lanes at k) and tail(k) (one element): float vectors within
// blocks of 1024 elements, blocks added in double, so long groups keep their precision.
template <class Term, class Tail>
double block_sum(size_t n, Term term, Tail tail) {
  double total = 0.0;
  size_t k = 0;
  for (; k + 8 <= n;) {
    v8 acc = splat(0.f);
    const size_t end = std::min(n / 8 * 8, k + 1024);
    for (; k < end; k += 8) acc += term(k);
    total += hsum(acc);
  }
  for (; k < n; ++k) total += tail(k);
  return total;
}

// A parameter's gradient from per-(b, c) partial sums part [B, C]: out[c] = sum_b part[b, c],
// or out[b, c] = part[b, c] for a parameter given per sample.
void reduce_batch(const std::vector<double> &part, int B, int C, bool per_sample, float *out) {
  if (per_sample) {
    for (size_t k = 0; k < part.size(); ++k) out[k] = (float)part[k];
    return;
  }
  for (int c = 0; c < C; ++c) {
    double sum = 0.0;
    for (int b = 0; b < B; ++b) sum += part[(size_t)b * C + c];
    out[c] = (float)sum;
  }
}

// ---- depthwise convolution: stride 1, odd kernel K, zero "same" padding K/2 -----------------
struct Plane {
  int H, W, K, P;
  int Wr;  // W rounded up to the vector width
  int Wp;  // padded row stride: Wr + 2P, plus one vector of slack for the last taps
  int Hp;
  Plane(int h, int w, int k)
      : H(h), W(w), K(k), P(k / 2), Wr((w + 7) / 8 * 8), Wp(Wr + 2 * (k / 2) + 8), Hp(h + 2 * (k / 2)) {}
  size_t padded() const { return (size_t)Hp * Wp; }
};

// Copies an H x W plane into a zeroed buffer of row stride ld, offset by (off, off).
void place(const float *src, float *dst, const Plane &g, int off, int ld) {
  for (int i = 0; i < g.H; ++i) std::memcpy(dst + (size_t)(i + off) * ld + off, src + (size_t)i * g.W, g.W * sizeof(float));
}

// y[i, j] = bias + sum_{p,q} w[p, q] * x[i + p - P, j + q - P] for one plane. `pad` starts
// zeroed; every plane writes the same interior, so its border stays zero.
void correlate_plane(const float *x, const float *w, float bias, float *y, const Plane &g, float *pad) {
  place(x, pad, g, g.P, g.Wp);
  for (int i = 0; i < g.H; ++i)
    for (int j0 = 0; j0 < g.W; j0 += 8) {
      v8 acc = splat(bias);
      for (int p = 0; p < g.K; ++p) {
        const float *row = pad + (size_t)(i + p) * g.Wp + j0;
        for (int q = 0; q < g.K; ++q) acc += w[p * g.K + q] * load(row + q);
      }
      store_n(y + (size_t)i * g.W + j0, acc, std::min(8, g.W - j0));
    }
}

// Every plane of x [B, C, H, W] with its channel's kernel w [C, 1, K, K] (flipped for dx), plus
// bias [C], or [B, C] per sample, when bias_dims > 0.
void correlate(const float *x, const float *w, const float *bias, int bias_dims, float *y, const int64_t *xs, int K,
               bool flip) {
  const int B = xs[0], C = xs[1];
  const Plane g(xs[2], xs[3], K);
  std::vector<float> flipped;
  if (flip) {
    flipped.assign(w, w + (size_t)C * K * K);
    for (int c = 0; c < C; ++c) std::reverse(flipped.begin() + c * K * K, flipped.begin() + (c + 1) * K * K);
    w = flipped.data();
  }
  const size_t plane = (size_t)g.H * g.W;
#pragma omp parallel
  {
    std::vector<float> pad(g.padded());
#pragma omp for schedule(static)
    for (int bc = 0; bc < B * C; ++bc) {
      const float b = bias_dims == 0 ? 0.f : bias[bias_dims == 2 ? bc : bc % C];
      correlate_plane(x + bc * plane, w + (size_t)(bc % C) * K * K, b, y + bc * plane, g, pad.data());
    }
  }
}

// dw[c, p, q] = sum_{b, i, j} dy[b, c, i, j] * x_pad[b, c, i + p, j + q] and, for the bias,
// dbias[b, c] = sum_{i, j} dy[b, c, i, j].
void depthwise_filter_grad(const float *x, const float *dy, float *dw, float *dbias, const int64_t *xs, int K) {
  const int B = xs[0], C = xs[1];
  const Plane g(xs[2], xs[3], K);
  const size_t plane = (size_t)g.H * g.W;
#pragma omp parallel
  {
    // Zeroed once: each plane rewrites the same interior, so the padding and the lanes past
    // W (which keep the tail out of the sum) stay zero.
    std::vector<float> xp(g.padded()), gp((size_t)g.H * g.Wr);
    std::vector<v8> acc(K);
    std::vector<double> sum(K * K);
#pragma omp for schedule(static)
    for (int c = 0; c < C; ++c) {
      std::fill(sum.begin(), sum.end(), 0.0);
      for (int b = 0; b < B; ++b) {
        const size_t off = ((size_t)b * C + c) * plane;
        place(x + off, xp.data(), g, g.P, g.Wp);
        for (int i = 0; i < g.H; ++i) std::memcpy(&gp[(size_t)i * g.Wr], dy + off + (size_t)i * g.W, g.W * sizeof(float));
        dbias[(size_t)b * C + c] = (float)block_sum(
            gp.size(), [&](size_t k) { return load(&gp[k]); }, [&](size_t k) { return gp[k]; });
        for (int p = 0; p < K; ++p) {
          std::fill(acc.begin(), acc.end(), splat(0.f));
          for (int i = 0; i < g.H; ++i)
            for (int j0 = 0; j0 < g.Wr; j0 += 8) {
              const v8 gv = load(&gp[(size_t)i * g.Wr + j0]);
              const float *row = &xp[(size_t)(i + p) * g.Wp + j0];
              for (int q = 0; q < K; ++q) acc[q] += gv * load(row + q);
            }
          for (int q = 0; q < K; ++q) sum[p * K + q] += hsum(acc[q]);
        }
      }
      for (int k = 0; k < K * K; ++k) dw[(size_t)c * K * K + k] = (float)sum[k];
    }
  }
}

// ---- GroupNorm (Wu & He 2018): y = (x - mu_g) / sqrt(var_g + eps) * gamma_c + beta_c --------
// gamma and beta are [C], or [B, C] for an affine per sample (a FiLM-modulated norm).
struct Groups {
  int B, C, G, HW;
  bool per_sample;
  size_t per_group() const { return (size_t)(C / G) * HW; }
  size_t affine(int b) const { return per_sample ? (size_t)b * C : 0; }  // offset into gamma, beta
};

// SiLU (Elfwing et al. 2018) over n floats in place: z sigma(z), sigma(z) = 1 / (1 + e^-z).
inline v8 vsigmoid(v8 z) { return 1.f / (1.f + vexp(-z)); }
void silu_inplace(float *z, size_t n) {
  for (size_t i = 0; i < n; i += 8) {
    const int m = (int)std::min<size_t>(8, n - i);
    const v8 v = load_n(z + i, m);
    store_n(z + i, v * vsigmoid(v), m);
  }
}

// With SILU, y = silu(GroupNorm(x)): the norm before the activation, as in a ResNet block.
template <bool SILU>
void group_norm(const float *x, const float *gamma, const float *beta, float eps, float *y, float *mean,
                float *rstd, const Groups &s) {
  const size_t n = s.per_group();
#pragma omp parallel for schedule(static)
  for (int bg = 0; bg < s.B * s.G; ++bg) {
    const float *xg = x + bg * n;
    const double sum = block_sum(n, [&](size_t k) { return load(xg + k); }, [&](size_t k) { return xg[k]; });
    const float mu = (float)(sum / n);
    const double sq = block_sum(  // two passes: no cancellation when |mean| >> std
        n, [&](size_t k) { const v8 d = load(xg + k) - mu; return d * d; },
        [&](size_t k) { return (xg[k] - mu) * (xg[k] - mu); });
    const float r = 1.f / std::sqrt((float)(sq / n) + eps);
    mean[bg] = mu;
    rstd[bg] = r;
    const size_t c0 = s.affine(bg / s.G) + (bg % s.G) * (s.C / s.G);
    for (int c = 0; c < s.C / s.G; ++c) {
      const float a = r * gamma[c0 + c], b = beta[c0 + c] - mu * a;
      const float *xc = xg + (size_t)c * s.HW;
      float *yc = y + bg * n + (size_t)c * s.HW;
      for (int k = 0; k < s.HW; ++k) yc[k] = xc[k] * a + b;
      if (SILU) silu_inplace(yc, s.HW);
    }
  }
}

// With xhat = (x - mu) r and g = dy * gamma, over each group:
//   dx = r (g - mean(g) - xhat mean(g xhat)),  dgamma_c = sum dy xhat,  dbeta_c = sum dy,
// the sums over (b, h, w), or over (h, w) only for a per-sample affine. With SILU, dy is first
// taken through the activation: dz = dy silu'(z) = dy s (1 + z (1 - s)), s = sigma(z), with
// z = xhat gamma + beta recomputed.
template <bool SILU>
void group_norm_grad(const float *x, const float *gamma, const float *beta, const float *dy, const float *mean,
                     const float *rstd, float *dx, float *dgamma, float *dbeta, const Groups &s) {
  const size_t n = s.per_group();
  const int cg = s.C / s.G;
  std::vector<double> dg((size_t)s.B * s.C), db((size_t)s.B * s.C);  // per (b, c)
#pragma omp parallel for schedule(static)
  for (int bg = 0; bg < s.B * s.G; ++bg) {
    const float mu = mean[bg], r = rstd[bg];
    const int b = bg / s.G, c0 = (bg % s.G) * cg;
    const float *gam = gamma + s.affine(b), *dyg = dy + bg * n;
    if (SILU) {  // dz goes into this group's dx, which the last loop overwrites element-wise
      float *dz = dx + bg * n;
      for (int c = 0; c < cg; ++c) {
        const float a = r * gam[c0 + c], sh = beta[s.affine(b) + c0 + c] - mu * a;
        const size_t o = (size_t)c * s.HW;
        for (int k = 0; k < s.HW; k += 8) {
          const int m = std::min(8, s.HW - k);
          const v8 z = load_n(x + bg * n + o + k, m) * a + sh, sg = vsigmoid(z);
          store_n(dz + o + k, load_n(dyg + o + k, m) * sg * (1.f + z * (1.f - sg)), m);
        }
      }
      dyg = dz;
    }
    double sum_g = 0.0, sum_gx = 0.0;
    for (int c = 0; c < cg; ++c) {
      const float *xc = x + bg * n + (size_t)c * s.HW, *dc = dyg + (size_t)c * s.HW;
      const double sdy = block_sum(s.HW, [&](size_t k) { return load(dc + k); }, [&](size_t k) { return dc[k]; });
      const double sdyx = block_sum(
          s.HW, [&](size_t k) { return load(dc + k) * ((load(xc + k) - mu) * r); },
          [&](size_t k) { return dc[k] * ((xc[k] - mu) * r); });
      db[(size_t)b * s.C + c0 + c] = sdy;
      dg[(size_t)b * s.C + c0 + c] = sdyx;
      sum_g += sdy * gam[c0 + c];
      sum_gx += sdyx * gam[c0 + c];
    }
    const float m_g = (float)(sum_g / n), m_gx = (float)(sum_gx / n);
    for (int c = 0; c < cg; ++c) {
      const float gm = gam[c0 + c];
      const float *xc = x + bg * n + (size_t)c * s.HW, *dc = dyg + (size_t)c * s.HW;
      float *out = dx + bg * n + (size_t)c * s.HW;
      for (int k = 0; k < s.HW; ++k) out[k] = r * (dc[k] * gm - m_g - (xc[k] - mu) * r * m_gx);
    }
  }
  reduce_batch(dg, s.B, s.C, s.per_sample, dgamma);
  reduce_batch(db, s.B, s.C, s.per_sample, dbeta);
}

// ---- softmax over the middle axis of a [O, L, I] view --------------------------------------
// I == 1 is the last axis; I > 1 runs over a non-last axis with the inner axis in the lanes.
void softmax_rows(const float *x, float *y, int L) {  // one contiguous row of L
  v8 m8 = splat(-INFINITY);
  int l = 0;
  for (; l + 8 <= L; l += 8) {
    const v8 v = load(x + l);
    m8 = v > m8 ? v : m8;
  }
  float m = -INFINITY;
  for (int k = 0; k < 8; ++k) m = std::max(m, m8[k]);
  for (; l < L; ++l) m = std::max(m, x[l]);
  v8 s8 = splat(0.f);
  for (l = 0; l + 8 <= L; l += 8) {
    const v8 e = vexp(load(x + l) - m);
    store(y + l, e);
    s8 += e;
  }
  float s = hsum(s8);
  for (; l < L; ++l) {
    const v8 e = vexp(splat(x[l] - m));
    y[l] = e[0];
    s += e[0];
  }
  const float inv = 1.f / s;
  for (l = 0; l < L; ++l) y[l] *= inv;
}

void softmax_strided(const float *x, float *y, int L, int I, float *m, float *s) {
  std::fill(m, m + I, -INFINITY);
  std::fill(s, s + I, 0.f);
  for (int l = 0; l < L; ++l)
    for (int i = 0; i < I; ++i) m[i] = std::max(m[i], x[(size_t)l * I + i]);
  for (int l = 0; l < L; ++l) {
    int i = 0;
    for (; i + 8 <= I; i += 8) {
      const v8 e = vexp(load(x + (size_t)l * I + i) - load(m + i));
      store(y + (size_t)l * I + i, e);
      store(s + i, load(s + i) + e);
    }
    for (; i < I; ++i) {
      const float e = vexp(splat(x[(size_t)l * I + i] - m[i]))[0];
      y[(size_t)l * I + i] = e;
      s[i] += e;
    }
  }
  for (int i = 0; i < I; ++i) s[i] = 1.f / s[i];
  for (int l = 0; l < L; ++l)
    for (int i = 0; i < I; ++i) y[(size_t)l * I + i] *= s[i];
}

// dx = y (dy - sum_l dy y) along one contiguous row of L.
void softmax_grad_row(const float *y, const float *dy, float *dx, int L) {
  const float dot = (float)block_sum(
      L, [&](size_t l) { return load(dy + l) * load(y + l); }, [&](size_t l) { return dy[l] * y[l]; });
  for (int l = 0; l < L; ++l) dx[l] = y[l] * (dy[l] - dot);
}

// dx = y (dy - sum_l dy y), per (o, i).
void softmax_grad(const float *y, const float *dy, float *dx, int O, int L, int I) {
#pragma omp parallel
  {
    std::vector<float> dot(I);
#pragma omp for schedule(static)
    for (int o = 0; o < O; ++o) {
      const size_t off = (size_t)o * L * I;
      if (I == 1) {
        softmax_grad_row(y + off, dy + off, dx + off, L);
        continue;
      }
      std::fill(dot.begin(), dot.end(), 0.f);
      for (int l = 0; l < L; ++l)
        for (int i = 0; i < I; ++i) dot[i] += dy[off + (size_t)l * I + i] * y[off + (size_t)l * I + i];
      for (int l = 0; l < L; ++l)
        for (int i = 0; i < I; ++i) {
          const size_t k = off + (size_t)l * I + i;
          dx[k] = y[k] * (dy[k] - dot[i]);
        }
    }
  }
}

// ---- GELU, exact (erf) form: y = x Phi(x), Phi(x) = (1 + erf(x / sqrt 2)) / 2 ---------------
// erf by Abramowitz & Stegun 7.1.26, |error| < 1.5e-7: erf(a) = 1 - p(t) exp(-a^2) for a >= 0,
// t = 1 / (1 + 0.3275911 a).
inline v8 verf(v8 x) {
  const v8 a = x < 0 ? -x : x;
  const v8 t = 1.f / (1.f + 0.3275911f * a);
  const v8 p = ((((1.061405429f * t - 1.453152027f) * t + 1.421413741f) * t - 0.284496736f) * t + 0.254829592f) * t;
  const v8 y = 1.f - p * vexp(-a * a);
  return x < 0 ? -y : y;
}

constexpr float kSqrtHalf = 0.70710678118654752f, kInvSqrt2Pi = 0.39894228040143268f;

// Applies f to each 8-lane block of n elements (the tail through a padded copy), in parallel
// from 16k elements: below that, waking the sleeping OpenMP threads (OMP_WAIT_POLICY=PASSIVE)
// costs more than the work.
template <class Block>
void elementwise(size_t n, Block f) {
  const size_t full = n / 8 * 8;
#pragma omp parallel for schedule(static) if (n >= 16384)
  for (size_t i = 0; i < full; i += 8) f(i, 8);
  if (full < n) f(full, n - full);
}

void gelu(const float *x, float *y, size_t n) {
  elementwise(n, [=](size_t i, int m) {
    const v8 v = load_n(x + i, m);
    store_n(y + i, 0.5f * v * (1.f + verf(v * kSqrtHalf)), m);
  });
}

// dx = dy (Phi(x) + x phi(x)), phi the standard normal density.
void gelu_grad(const float *x, const float *dy, float *dx, size_t n) {
  elementwise(n, [=](size_t i, int m) {
    const v8 v = load_n(x + i, m);
    const v8 cdf = 0.5f * (1.f + verf(v * kSqrtHalf)), pdf = kInvSqrt2Pi * vexp(-0.5f * v * v);
    store_n(dx + i, load_n(dy + i, m) * (cdf + v * pdf), m);
  });
}

// ---- LayerNorm over channels (the linear attention's output norm) ---------------------------
// For x [B, C, N], at each (b, n): y = (x - mu) r gain_c with mu, r = 1 / sqrt(var + eps) over
// C. The N positions of one b are the lanes; the C channels are strided by N.
void channel_norm(const float *x, const float *gain, float eps, float *y, float *mean, float *rstd, int B,
                  int C, int N) {
#pragma omp parallel for schedule(static)
  for (int b = 0; b < B; ++b)
    for (int n0 = 0; n0 < N; n0 += 8) {
      const int m = std::min(8, N - n0);
      const float *xb = x + (size_t)b * C * N + n0;
      float *yb = y + (size_t)b * C * N + n0;
      v8 mu = splat(0.f), var = splat(0.f);
      for (int c = 0; c < C; ++c) mu += load_n(xb + (size_t)c * N, m);
      mu = mu / (float)C;
      for (int c = 0; c < C; ++c) {  // two passes: no cancellation when |mean| >> std
        const v8 d = load_n(xb + (size_t)c * N, m) - mu;
        var += d * d;
      }
      v8 r;
      for (int k = 0; k < 8; ++k) r[k] = 1.f / std::sqrt(var[k] / C + eps);
      for (int c = 0; c < C; ++c) store_n(yb + (size_t)c * N, (load_n(xb + (size_t)c * N, m) - mu) * r * gain[c], m);
      store_n(mean + (size_t)b * N + n0, mu, m);
      store_n(rstd + (size_t)b * N + n0, r, m);
    }
}

// With xhat = (x - mu) r and g = dy gain, over the channels at each (b, n):
//   dx = r (g - mean_c(g) - xhat mean_c(g xhat)),  dgain_c = sum_{b,n} dy xhat.
void channel_norm_grad(const float *x, const float *gain, const float *dy, const float *mean, const float *rstd,
                       float *dx, float *dgain, int B, int C, int N) {
  std::vector<double> dg((size_t)B * C);  // per (b, c), summed over b below
#pragma omp parallel
  {
    std::vector<v8> acc(C);
#pragma omp for schedule(static)
    for (int b = 0; b < B; ++b) {
      std::fill(acc.begin(), acc.end(), splat(0.f));
      for (int n0 = 0; n0 < N; n0 += 8) {
        const int m = std::min(8, N - n0);  // lanes past N load dy = 0 and add nothing
        const size_t off = (size_t)b * C * N + n0;
        const v8 mu = load_n(mean + (size_t)b * N + n0, m), r = load_n(rstd + (size_t)b * N + n0, m);
        v8 sg = splat(0.f), sgx = splat(0.f);
        for (int c = 0; c < C; ++c) {
          const v8 d = load_n(dy + off + (size_t)c * N, m), xh = (load_n(x + off + (size_t)c * N, m) - mu) * r;
          sg += d * gain[c];
          sgx += d * gain[c] * xh;
          acc[c] += d * xh;
        }
        const v8 mg = sg / (float)C, mgx = sgx / (float)C;
        for (int c = 0; c < C; ++c) {
          const v8 d = load_n(dy + off + (size_t)c * N, m), xh = (load_n(x + off + (size_t)c * N, m) - mu) * r;
          store_n(dx + off + (size_t)c * N, r * (d * gain[c] - mg - xh * mgx), m);
        }
      }
      for (int c = 0; c < C; ++c) dg[(size_t)b * C + c] = hsum(acc[c]);
    }
  }
  reduce_batch(dg, B, C, false, dgain);
}

// dbias[c] = sum_{b, h, w} dy[b, c, h, w]: each plane in float blocks, planes added in double.
void bias_grad(const float *dy, float *db, int B, int C, size_t plane) {
  std::vector<double> part((size_t)B * C);
#pragma omp parallel for schedule(static)
  for (int bc = 0; bc < B * C; ++bc) {
    const float *p = dy + (size_t)bc * plane;
    part[bc] = block_sum(plane, [=](size_t k) { return load(p + k); }, [=](size_t k) { return (double)p[k]; });
  }
  reduce_batch(part, B, C, false, db);
}

// L-lane vectors, aligned and not (a type argument would lose the alignment attribute).
template <int L>
struct Lanes {
  typedef float V __attribute__((vector_size(4 * L)));
  typedef float VU __attribute__((vector_size(4 * L), aligned(4)));
};

// ---- Dense convolution: the weight gradient ---------------------------------------------------
// For stride 1, one group and zero padding P = K/2:
//   dw[co, ci, p, q] = sum_{b,h,w} dy[b, co, h, w] x[b, ci, h + p - P, w + q - P].
// x is copied once into a zero-padded "tall" image per channel of width Wp = W + 2P, image b's
// row h at row P + b (H + P) + h, so neighbouring images share their P zero rows; dy is copied
// onto the output positions u = (b (H + P) + h) Wp + w of the same grid, zero elsewhere. Tap
// (ci, p, q) then reads x at u + ci plane + p Wp + q. For kernels other than 3x3
// (conv_filter_grad), each dw entry is one dot product over u, computed in register blocks
// of 8 output channels x 3 taps, 8 positions per vector; 3x3 kernels run FilterGrad3x3.

// n zero floats starting at a 64-byte boundary: scratch for one kernel call. The buffers
// are kept per thread, a stack of them in the order a call takes them, and reused by the
// next call. Freed and allocated anew, a buffer of many MB (a batch of 1000) may come back
// from malloc as fresh pages, which fault in again on every call.
struct AlignedZeros {
  float *ptr;
  explicit AlignedZeros(size_t n) {
    if (depth == pool.size()) pool.emplace_back();
    std::vector<float> &raw = pool[depth++];
    if (raw.size() < n + 16) raw.resize(n + 16);
    ptr = reinterpret_cast<float *>((reinterpret_cast<uintptr_t>(raw.data()) + 63) & ~uintptr_t(63));
    std::memset(ptr, 0, n * sizeof(float));
  }
  ~AlignedZeros() { --depth; }
  AlignedZeros(const AlignedZeros &) = delete;
  AlignedZeros &operator=(const AlignedZeros &) = delete;
  float *data() { return ptr; }

 private:
  static thread_local std::vector<std::vector<float>> pool;
  static thread_local size_t depth;
};
thread_local std::vector<std::vector<float>> AlignedZeros::pool;
thread_local size_t AlignedZeros::depth = 0;

// `reach`: how far past a position's start one read runs (8 for a vector read at each
// position u < U, a tile's columns for a read from a row's start), so the plane's slack
// covers the largest tap offset plus that.
// With `shared`, a row's P right-hand zeros are also the next row's left-hand ones (Wp =
// W + P), as neighbouring images share their zero rows: fewer positions, the same taps.
struct TallGrid {
  int B, H, W, P, Wp;
  size_t plane, U;  // floats per channel plane (with slack for over-reads); positions, padded
  TallGrid(int b, int h, int w, int k, int reach = 8, bool shared = false)
      : B(b), H(h), W(w), P(k / 2), Wp(w + (shared ? 1 : 2) * (k / 2)) {
    U = ((size_t)B * (H + P) * Wp + 7) / 8 * 8;
    plane = U + (size_t)2 * P * (Wp + 1) + reach;  // the last tap reads 2P rows and 2P columns on
  }
  size_t out_row(int b, int h) const { return (size_t)(b * (H + P) + h) * Wp; }
  // Where tap k = (c, p, q) of a K x K kernel reads, relative to an output position.
  size_t tap(int k) const {
    const int K = 2 * P + 1;
    return (size_t)(k / (K * K)) * plane + (k / K % K) * Wp + k % K;
  }
};

// Copies src [B, C, H, W] row by row to dst + c * stride + out_row(b, h) + offset.
void to_grid(const float *src, float *dst, int C, size_t stride, size_t offset, const TallGrid &g) {
#pragma omp for schedule(static)
  for (int c = 0; c < C; ++c)
    for (int b = 0; b < g.B; ++b)
      for (int h = 0; h < g.H; ++h)
        std::memcpy(dst + c * stride + g.out_row(b, h) + offset, src + (((size_t)b * C + c) * g.H + h) * g.W,
                    g.W * sizeof(float));
}

// Copies src [B, C, H, W] into zeroed dst as one zero-padded plane per channel, the layout
// that the taps (TallGrid::tap) read. Call it inside a parallel region (it is an omp for).
void to_padded_grid(const float *src, float *dst, int C, const TallGrid &g) {
  to_grid(src, dst, C, g.plane, (size_t)g.P * g.Wp + g.P, g);
}

void conv_filter_grad(const float *x, const float *dy, float *dw, int B, int Ci, int Co, int H, int W, int K) {
  constexpr int FI = 8, FJ = 3;   // register block: output channels x taps
  constexpr size_t CHUNK = 4096;  // positions per pass, so a block's rows stay in cache
  const TallGrid g(B, H, W, K);
  const int taps = Ci * K * K, co_pad = (Co + FI - 1) / FI * FI, kblocks = (taps + FJ - 1) / FJ;
  std::vector<size_t> off((size_t)kblocks * FJ, 0);  // where tap k's reads start
  for (int k = 0; k < taps; ++k) off[k] = g.tap(k);
  AlignedZeros xt((size_t)Ci * g.plane), d((size_t)co_pad * g.U);
#pragma omp parallel
  {
    to_padded_grid(x, xt.data(), Ci, g);
    to_grid(dy, d.data(), Co, g.U, 0, g);  // omp for: all threads wait here
    // Each thread owns a range of taps, so no partial sums need merging.
    const int nt = omp_get_num_threads(), t = omp_get_thread_num();
    const int kb0 = (size_t)kblocks * t / nt, kb1 = (size_t)kblocks * (t + 1) / nt;
    std::vector<float> acc((size_t)co_pad * (kb1 - kb0) * FJ, 0.f);
    for (size_t u0 = 0; u0 < g.U; u0 += CHUNK) {
      const size_t u1 = std::min(g.U, u0 + CHUNK);
      for (int co = 0; co < co_pad; co += FI)
        for (int kb = kb0; kb < kb1; ++kb) {
          v8 c[FI][FJ] = {};
          for (size_t u = u0; u < u1; u += 8) {
            v8 dv[FI];
            for (int i = 0; i < FI; ++i) dv[i] = *(const v8 *)(d.data() + (co + i) * g.U + u);  // aligned
            for (int j = 0; j < FJ; ++j) {
              const v8 xv = load(xt.data() + off[kb * FJ + j] + u);
              for (int i = 0; i < FI; ++i) c[i][j] += dv[i] * xv;
            }
          }
          for (int i = 0; i < FI; ++i)
            for (int j = 0; j < FJ; ++j) acc[((size_t)(co + i) * (kb1 - kb0) + kb - kb0) * FJ + j] += hsum(c[i][j]);
        }
    }
    for (int co = 0; co < Co; ++co)
      for (int k = kb0 * FJ; k < std::min(taps, kb1 * FJ); ++k)
        dw[(size_t)co * taps + k] = acc[(size_t)co * (kb1 - kb0) * FJ + k - kb0 * FJ];
  }
}

// The 3x3 dw's tasks, inside a parallel region: task(m, ci, b0, b1, out) sums input channel
// ci's 9 taps for the block m of CB output channels over images [b0, b1) into out[9][CB].
// Each result goes to dw [Co, Ci, 3, 3] or, where the images are split into parts, to that
// part's partial dw in `part` (parts x Co Ci 9 floats), the parts added at the end.
template <int CB, class Task>
void filter_grad_3x3_tasks(int B, int Ci, int Co, int parts, float *part, float *dw, Task task) {
  const int blocks = (Co + CB - 1) / CB, tasks = blocks * Ci, taps = Ci * 9;
  alignas(64) float out[9][CB];
#pragma omp for schedule(dynamic)
  for (int r = 0; r < parts * tasks; ++r) {
    const int s = r / tasks, m = r % tasks % blocks, ci = r % tasks / blocks;
    task(m, ci, B * s / parts, B * (s + 1) / parts, out);
    float *dst = parts == 1 ? dw : part + (size_t)s * Co * taps;
    for (int i = 0; i < std::min(CB, Co - m * CB); ++i)
      for (int j = 0; j < 9; ++j) dst[(size_t)(m * CB + i) * taps + ci * 9 + j] = out[j][i];
  }
  if (parts > 1) {
#pragma omp for schedule(static)
    for (size_t k = 0; k < (size_t)Co * taps; ++k) {
      float sum = 0.f;
      for (int s = 0; s < parts; ++s) sum += part[(size_t)s * Co * taps + k];
      dw[k] = sum;
    }
  }
}

// 3x3 kernels, with vectors along the output channels instead of the positions: dy is
// transposed to dyT [n, co] (n = (b, h, w), co padded to whole blocks of CV L channels), and
// a task accumulates the 9 taps of one input channel for one block of output channels over
// the real positions of a range of images, reading the taps as broadcasts from x's grid:
//   dw[co, ci, p, q] = sum_n dyT[n, co] xt[ci][out_row(b, h) + p Wp + q + w].
// No horizontal sums and no padding positions. Where there are few channels, the images are
// split into parts (a number set by the shapes only, so the sums' order does not depend on
// the thread count) whose partial dw are added at the end.
template <int CV, int L>
struct FilterGrad3x3 {
  typedef typename Lanes<L>::V V;
  static constexpr int CB = CV * L;  // output channels per block
  const TallGrid g;
  const int Ci, Co, blocks, cpad, parts;
  FilterGrad3x3(int B, int ci, int co, int H, int W)
      : g(B, H, W, 3, 3, true), Ci(ci), Co(co), blocks((co + CB - 1) / CB), cpad(blocks * CB),
        parts(std::max(1, std::min(B, 16 / (blocks * ci)))) {}

  // dyT [n, co] from dy [B, Co, H, W]; an omp for.
  void transpose(const float *dy, float *d) const {
    const int HW = g.H * g.W;
#pragma omp for schedule(static)
    for (int bc = 0; bc < g.B * Co; ++bc) {
      const float *src = dy + (size_t)bc * HW;
      float *dst = d + (size_t)(bc / Co) * HW * cpad + bc % Co;
      for (int i = 0; i < HW; ++i) dst[(size_t)i * cpad] = src[i];
    }
  }

  // out[j][0..CB) = sum over images [b0, b1) of tap j's dw for block m and channel ci.
  void task(const float *xt, const float *d, int m, int ci, int b0, int b1, float (*out)[CB]) const {
    const float *xc = xt + (size_t)ci * g.plane, *dn = d + (size_t)b0 * g.H * g.W * cpad + (size_t)m * CB;
    V c[9][CV] = {};
    for (int b = b0; b < b1; ++b)
      for (int h = 0; h < g.H; ++h) {
        const float *r0 = xc + g.out_row(b, h), *r1 = r0 + g.Wp, *r2 = r1 + g.Wp;
        for (int w = 0; w < g.W; ++w, dn += cpad) {
          V dv[CV];
          for (int v = 0; v < CV; ++v) dv[v] = *(const V *)(dn + v * L);  // aligned
          const float t[9] = {r0[w], r0[w + 1], r0[w + 2], r1[w], r1[w + 1], r1[w + 2], r2[w], r2[w + 1], r2[w + 2]};
#pragma GCC unroll 9
          for (int j = 0; j < 9; ++j)
            for (int v = 0; v < CV; ++v) c[j][v] += t[j] * dv[v];
        }
      }
    for (int j = 0; j < 9; ++j)
      for (int v = 0; v < CV; ++v) *(V *)(out[j] + v * L) = c[j][v];
  }

  void run(const float *x, const float *dy, float *dw) const {
    const int taps = Ci * 9;
    AlignedZeros xt((size_t)Ci * g.plane), d((size_t)g.B * g.H * g.W * cpad);
    AlignedZeros part(parts > 1 ? (size_t)parts * Co * taps : 0);
#pragma omp parallel
    {
      to_padded_grid(x, xt.data(), Ci, g);
      transpose(dy, d.data());
      filter_grad_3x3_tasks<CB>(g.B, Ci, Co, parts, part.data(), dw, [&](int m, int ci, int b0, int b1, auto out) {
        task(xt.data(), d.data(), m, ci, b0, b1, out);
      });
    }
  }
};

void conv_filter_grad_3x3(const float *x, const float *dy, float *dw, int B, int Ci, int Co, int H, int W) {
#ifdef __AVX512F__  // 32 registers: 18 accumulators
  if (Co > 16) return FilterGrad3x3<2, 16>(B, Ci, Co, H, W).run(x, dy, dw);
  return FilterGrad3x3<1, 16>(B, Ci, Co, H, W).run(x, dy, dw);
#else  // 16 registers: 9 accumulators
  return FilterGrad3x3<1, 8>(B, Ci, Co, H, W).run(x, dy, dw);
#endif
}

// ---- Dense convolution: the forward pass and the input gradient -------------------------------
// Both correlate a source s [B, S, H, W] with a kernel A [D, S, K, K] into d [B, D, H, W]:
//   forward:  s = x,  A = w,                                 d = y;
//   dx:       s = dy, A[ci, co, p, q] = w[co, ci, K-1-p, K-1-q], d = dx (flipped, transposed).
// s goes onto the tall grid as x does above, so output row (b, h) reads tap (c, p, q) at one
// offset from out_row(b, h): a GEMM, rows d, columns w, with its B operand read in place. A
// register tile holds MR output channels x NR columns of one row, accumulating over S K K taps.

// out[r, 0..NV L) = sum_k a[k, r] s[off[k] + 0..NV L), for MR rows.
template <int MR, int NV, int L>
inline void gemm_row_tile(int taps, const float *__restrict a, const float *__restrict s,
                          const size_t *__restrict off, float *__restrict out) {
  typedef typename Lanes<L>::V V;
  typedef typename Lanes<L>::VU VU;
  V c[MR][NV] = {};
  for (int k = 0; k < taps; ++k) {
    V b[NV];
    for (int v = 0; v < NV; ++v) b[v] = *(const VU *)(s + off[k] + v * L);
    const float *ak = a + (size_t)k * MR;
#pragma GCC unroll 32
    for (int r = 0; r < MR; ++r)
      for (int v = 0; v < NV; ++v) c[r][v] += ak[r] * b[v];
  }
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) *(VU *)(out + (r * NV + v) * L) = c[r][v];
}

struct DenseConv {
  int B, S, D, H, W, K;
  bool flipped;                 // A from w [S, D, K, K] flipped and transposed (dx), else A = w [D, S, K, K]
  const float *bias = nullptr;  // [D], added to the sums (the forward pass), or none
  float a_at(const float *w, int d, int k) const {
    if (!flipped) return w[(size_t)d * S * K * K + k];
    const int c = k / (K * K), p = k / K % K, q = k % K;
    return w[(((size_t)c * D + d) * K + K - 1 - p) * K + K - 1 - q];
  }
  // Adds bias[d0 + i] to tile[i rs + j cs] for rows i < rows (of channels below D), j < cols.
  void add_bias(float *tile, int d0, int rows, int cols, int rs, int cs) const {
    if (bias == nullptr) return;
    for (int i = 0; i < std::min(rows, D - d0); ++i)
      for (int j = 0; j < cols; ++j) tile[i * rs + j * cs] += bias[d0 + i];
  }
};

// What every tiling reads: the kernel A packed [block][k][MR] (zero past D; MR is the
// channel-tiles' CB), the source on its tall grid, and where each tap reads relative to an
// output position.
template <int MR>
struct Operands {
  const int taps;
  AlignedZeros a, st;
  std::vector<size_t> off;
  Operands(const DenseConv &v, const TallGrid &g)
      : taps(v.S * v.K * v.K), a((size_t)(v.D + MR - 1) / MR * taps * MR), st((size_t)v.S * g.plane), off(taps) {
    for (int k = 0; k < taps; ++k) off[k] = g.tap(k);
  }
  // Fills a and st: two omp fors, so call it inside a parallel region; all threads wait at
  // the end.
  void fill(const float *src, const float *w, const DenseConv &v, const TallGrid &g) {
#pragma omp for schedule(static)
    for (int d = 0; d < v.D; ++d)
      for (int k = 0; k < taps; ++k) a.data()[((size_t)(d / MR) * taps + k) * MR + d % MR] = v.a_at(w, d, k);
    to_padded_grid(src, st.data(), v.S, g);
  }
  const float *block(int m) const { return a.ptr + (size_t)m * taps * MR; }
};

template <int MR, int NV, int L>
void correlate_dense_mr(const float *src, const float *w, float *dst, const DenseConv &v) {
  constexpr int NR = NV * L;
  const int K = v.K, taps = v.S * K * K, blocks = (v.D + MR - 1) / MR, chunks = (v.W + NR - 1) / NR;
  const TallGrid g(v.B, v.H, v.W, K, chunks * NR);  // a row's tiles read chunks NR columns
  Operands<MR> ops(v, g);
#pragma omp parallel
  {
    ops.fill(src, w, v, g);
    alignas(64) float out[MR * NR];
#pragma omp for schedule(static)
    for (int r = 0; r < v.B * v.H * chunks; ++r) {
      const int b = r / (v.H * chunks), h = r / chunks % v.H, col = r % chunks * NR, n = std::min(NR, v.W - col);
      for (int m = 0; m < blocks; ++m) {
        gemm_row_tile<MR, NV, L>(taps, ops.block(m), ops.st.ptr + g.out_row(b, h) + col, ops.off.data(), out);
        v.add_bias(out, m * MR, MR, n, NR, 1);
        for (int i = 0; i < std::min(MR, v.D - m * MR); ++i)
          std::memcpy(dst + (((size_t)b * v.D + m * MR + i) * v.H + h) * v.W + col, out + i * NR, n * sizeof(float));
      }
    }
  }
}

// Small planes (below 14 wide with 16-lane vectors, 8 with 8-lane ones): a tile's NR
// columns are NR consecutive positions of a shared-column grid, across rows and images, so a
// 7 x 7 plane computes 49 of every 64 positions instead of 7 of 16. Tiles go to a
// position-major buffer y [D, U]; the outputs are then read out of it row by row, the
// padding positions dropped.
template <int MR, int NV, int L>
void correlate_flat_mr(const float *src, const float *w, float *dst, const DenseConv &v) {
  constexpr int NR = NV * L;
  const int K = v.K, taps = v.S * K * K, blocks = (v.D + MR - 1) / MR;
  const TallGrid g(v.B, v.H, v.W, K, NR, true);
  const int tiles = (g.U + NR - 1) / NR;
  const size_t ld = (size_t)tiles * NR;
  Operands<MR> ops(v, g);
  AlignedZeros y((size_t)blocks * MR * ld);
#pragma omp parallel
  {
    ops.fill(src, w, v, g);
    alignas(64) float out[MR * NR];
#pragma omp for schedule(static)
    for (int r = 0; r < tiles * blocks; ++r) {
      const int t = r / blocks, m = r % blocks;
      gemm_row_tile<MR, NV, L>(taps, ops.block(m), ops.st.ptr + (size_t)t * NR, ops.off.data(), out);
      v.add_bias(out, m * MR, MR, NR, NR, 1);
      for (int i = 0; i < MR; ++i)
        std::memcpy(y.data() + (m * MR + i) * ld + (size_t)t * NR, out + i * NR, NR * sizeof(float));
    }
#pragma omp for schedule(static)
    for (int bd = 0; bd < v.B * v.D; ++bd)
      for (int h = 0; h < v.H; ++h)
        std::memcpy(dst + ((size_t)bd * v.H + h) * v.W, y.data() + (bd % v.D) * ld + g.out_row(bd / v.D, h),
                    v.W * sizeof(float));
  }
}

// out[j, 0..CV L) = sum_k s[off[k] + j] a[k, 0..CV L), for MP consecutive positions j: the
// transpose of gemm_row_tile, with the source broadcast and the kernel's columns in vectors.
template <int MP, int CV, int L>
inline void gemm_channel_tile(int taps, const float *__restrict a, const float *__restrict s,
                              const size_t *__restrict off, float *__restrict out) {
  typedef typename Lanes<L>::V V;
  V c[MP][CV] = {};
  for (int k = 0; k < taps; ++k) {
    V av[CV];
    for (int v = 0; v < CV; ++v) av[v] = *(const V *)(a + ((size_t)k * CV + v) * L);  // aligned
    const float *sk = s + off[k];
#pragma GCC unroll 32
    for (int j = 0; j < MP; ++j)
      for (int v = 0; v < CV; ++v) c[j][v] += sk[j] * av[v];
  }
  for (int j = 0; j < MP; ++j)
    for (int v = 0; v < CV; ++v) *(V *)(out + (j * CV + v) * L) = c[j][v];
}

// Tiles of MP positions of one row x CV L output channels: no padding positions are computed
// where MP divides W (7 and 14), and the channels pad only to whole vectors. Each tile is
// written out transposed, a channel's MP outputs at a time.
template <int MP, int CV, int L>
void correlate_channels(const float *src, const float *w, float *dst, const DenseConv &v) {
  constexpr int CB = CV * L;
  const int taps = v.S * v.K * v.K, blocks = (v.D + CB - 1) / CB, segments = (v.W + MP - 1) / MP;
  const TallGrid g(v.B, v.H, v.W, v.K, segments * MP, true);
  Operands<CB> ops(v, g);
#pragma omp parallel
  {
    ops.fill(src, w, v, g);
    alignas(64) float out[MP * CB];
#pragma omp for schedule(static)
    for (int r = 0; r < v.B * v.H * segments * blocks; ++r) {
      const int m = r % blocks, t = r / blocks, col = t % segments * MP, h = t / segments % v.H,
                b = t / (segments * v.H), n = std::min(MP, v.W - col);
      gemm_channel_tile<MP, CV, L>(taps, ops.block(m), ops.st.ptr + g.out_row(b, h) + col, ops.off.data(), out);
      v.add_bias(out, m * CB, CB, MP, 1, CB);
      float *y = dst + (((size_t)b * v.D + m * CB) * v.H + h) * v.W + col;
      for (int i = 0; i < std::min(CB, v.D - m * CB); ++i)
        for (int j = 0; j < n; ++j) y[(size_t)i * v.H * v.W + j] = out[j * CB + i];
    }
  }
}

// A tile row of NV vectors of L lanes: two where W is wider than one vector, else one, with
// the tile twice as tall. The height is the one that pads D least (the taller on ties): D = 18
// takes 9, 36 takes 12.
template <bool Flat, int NV, int L, int... Heights>
void correlate_dense_nv(const float *src, const float *w, float *dst, const DenseConv &v) {
  constexpr int heights[] = {Heights...};
  int best = heights[0];
  for (int mr : heights)
    if ((v.D + mr - 1) / mr * mr < (v.D + best - 1) / best * best) best = mr;
  if constexpr (Flat)
    ((best == Heights ? correlate_flat_mr<Heights, NV, L>(src, w, dst, v) : void()), ...);
  else
    ((best == Heights ? correlate_dense_mr<Heights, NV, L>(src, w, dst, v) : void()), ...);
}

void correlate_dense(const float *src, const float *w, float *dst, const DenseConv &v) {
#ifdef __AVX512F__  // 32 registers
  // 7 and 14 wide, a whole row per tile (28 accumulators at most), one or two blocks of channels.
  if (v.W == 7 && v.D > 32) return correlate_channels<7, 4, 16>(src, w, dst, v);
  if (v.W == 7 && v.D > 16) return correlate_channels<7, 2, 16>(src, w, dst, v);
  if (v.W == 14 && v.D > 16) return correlate_channels<14, 2, 16>(src, w, dst, v);
  if (v.W < 14) return correlate_dense_nv<true, 2, 16, 14, 12, 9, 7>(src, w, dst, v);
  if (v.W > 16) return correlate_dense_nv<false, 2, 16, 14, 12, 9, 7>(src, w, dst, v);
  return correlate_dense_nv<false, 1, 16, 28, 24, 18, 14>(src, w, dst, v);
#else  // 16 registers
  if (v.W < 8) return correlate_dense_nv<true, 2, 8, 6, 5, 4>(src, w, dst, v);
  if (v.W > 8) return correlate_dense_nv<false, 2, 8, 6, 5, 4>(src, w, dst, v);
  return correlate_dense_nv<false, 1, 8, 12, 10, 8>(src, w, dst, v);
#endif
}

// ---- bf16 products for the dense convolutions -------------------------------------------------
// With AVX512-BF16, the forward pass, dx and the 3x3 dw can multiply in bfloat16 (8-bit
// mantissa, inputs rounded to nearest even) and add in float32: vdpbf16ps does 32 products a
// lane pair at a time, twice the float32 FMA's rate on this kind of CPU. The operands are
// packed as pairs, two bf16 in each 32-bit lane, along the sum's index: input channels for
// the correlation (a channel-pair grid), positions along a row for dw.
#ifdef __AVX512BF16__
constexpr bool kHasBf16 = true;

// n floats to bf16, rounded to nearest even (vcvtneps2bf16: subnormal inputs become zero).
inline void to_bf16(const float *src, uint16_t *dst, int n) {
  for (int i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? 0xffff : (__mmask16)((1u << (n - i)) - 1);
    const __m256bh r = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, src + i));
    _mm256_mask_storeu_epi16(dst + i, m, (__m256i)r);
  }
}

// dst[i] = (bf16(lo[i]), bf16(hi[i])) for i < n: two channels' rows as lane pairs; hi null
// pairs with zeros.
inline void to_bf16_pairs(const float *lo, const float *hi, uint32_t *dst, int n) {
  for (int i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? 0xffff : (__mmask16)((1u << (n - i)) - 1);
    const __m512i l = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, lo + i)));
    __m512i pair = l;
    if (hi != nullptr) {
      const __m512i h = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, hi + i)));
      pair = _mm512_or_si512(l, _mm512_slli_epi32(h, 16));
    }
    _mm512_mask_storeu_epi32(dst + i, m, pair);
  }
}

// A bf16 pair in each 32-bit lane: (lo, hi) from two floats, rounded as to_bf16 rounds.
inline uint32_t bf16_pair(float lo, float hi) {
  const __m128i r = (__m128i)_mm_cvtneps_pbh(_mm_setr_ps(lo, hi, 0.f, 0.f));
  return (uint32_t)_mm_cvtsi128_si32(r);  // bf16 lanes 0 and 1: lo | hi << 16
}

// out[j, 0..CV 16) = sum_k2 dot(s2[off[k2] + j], a2[k2, 0..CV 16)): gemm_channel_tile with
// each 32-bit lane a pair of taps (channels 2c and 2c + 1 at one offset).
template <int MP, int CV>
inline void gemm_channel_tile_bf16(int pairs, const uint32_t *__restrict a, const uint32_t *__restrict s,
                                   const size_t *__restrict off, float *__restrict out) {
  __m512 c[MP][CV];
  for (int j = 0; j < MP; ++j)
    for (int v = 0; v < CV; ++v) c[j][v] = _mm512_setzero_ps();
  for (int k = 0; k < pairs; ++k) {
    __m512bh av[CV];
    for (int v = 0; v < CV; ++v) av[v] = (__m512bh)_mm512_load_si512(a + ((size_t)k * CV + v) * 16);
    const uint32_t *sk = s + off[k];
#pragma GCC unroll 32
    for (int j = 0; j < MP; ++j) {
      const __m512bh b = (__m512bh)_mm512_set1_epi32((int)sk[j]);
      for (int v = 0; v < CV; ++v) c[j][v] = _mm512_dpbf16_ps(c[j][v], b, av[v]);
    }
  }
  for (int j = 0; j < MP; ++j)
    for (int v = 0; v < CV; ++v) _mm512_store_ps(out + (j * CV + v) * 16, c[j][v]);
}

// correlate_channels in bf16: the kernel packed [block][pair k2 = (c/2, p, q)][CB] and the
// source on a grid of channel pairs, plane c/2 holding channels c and c + 1 (a zero channel
// past an odd S).
template <int MP, int CV>
void correlate_channels_bf16(const float *src, const float *w, float *dst, const DenseConv &v) {
  constexpr int CB = CV * 16;
  const int K = v.K, KK = K * K, S2 = (v.S + 1) / 2, pairs = S2 * KK;
  const int blocks = (v.D + CB - 1) / CB, segments = (v.W + MP - 1) / MP;
  const TallGrid g(v.B, v.H, v.W, K, segments * MP, true);
  std::vector<size_t> off(pairs);
  for (int k = 0; k < pairs; ++k) off[k] = g.tap(k);  // plane c/2, row p, column q
  AlignedZeros a_raw((size_t)blocks * pairs * CB), s_raw((size_t)S2 * g.plane);
  uint32_t *a = reinterpret_cast<uint32_t *>(a_raw.data()), *s = reinterpret_cast<uint32_t *>(s_raw.data());
#pragma omp parallel
  {
#pragma omp for schedule(static)
    for (int d = 0; d < v.D; ++d)
      for (int k = 0; k < pairs; ++k) {
        const int c = 2 * (k / KK), pq = k % KK;
        const float lo = v.a_at(w, d, c * KK + pq), hi = c + 1 < v.S ? v.a_at(w, d, (c + 1) * KK + pq) : 0.f;
        a[((size_t)(d / CB) * pairs + k) * CB + d % CB] = bf16_pair(lo, hi);
      }
#pragma omp for schedule(static)
    for (int c2 = 0; c2 < S2; ++c2)
      for (int b = 0; b < v.B; ++b)
        for (int h = 0; h < v.H; ++h) {
          const float *lo = src + (((size_t)b * v.S + 2 * c2) * v.H + h) * v.W;
          const float *hi = 2 * c2 + 1 < v.S ? lo + (size_t)v.H * v.W : nullptr;
          to_bf16_pairs(lo, hi, s + (size_t)c2 * g.plane + g.out_row(b, h) + (size_t)g.P * g.Wp + g.P, v.W);
        }
    alignas(64) float out[MP * CB];
#pragma omp for schedule(static)
    for (int r = 0; r < v.B * v.H * segments * blocks; ++r) {
      const int m = r % blocks, t = r / blocks, col = t % segments * MP, h = t / segments % v.H,
                b = t / (segments * v.H), n = std::min(MP, v.W - col);
      gemm_channel_tile_bf16<MP, CV>(pairs, a + (size_t)m * pairs * CB, s + g.out_row(b, h) + col, off.data(), out);
      v.add_bias(out, m * CB, CB, MP, 1, CB);
      float *y = dst + (((size_t)b * v.D + m * CB) * v.H + h) * v.W + col;
      for (int i = 0; i < std::min(CB, v.D - m * CB); ++i)
        for (int j = 0; j < n; ++j) y[(size_t)i * v.H * v.W + j] = out[j * CB + i];
    }
  }
}

// Whether correlate_dense_bf16 takes these shapes: more than 16 output channels (a block of
// 32 pads at most half of one), rows 7, 14 or 28 wide (whole tiles of 7 or 14 positions).
bool bf16_correlates(const DenseConv &v) { return v.D > 16 && (v.W == 7 || v.W == 14 || v.W == 28); }

void correlate_dense_bf16(const float *src, const float *w, float *dst, const DenseConv &v) {
  if (v.W == 7 && v.D > 32) return correlate_channels_bf16<7, 4>(src, w, dst, v);
  if (v.W == 7) return correlate_channels_bf16<7, 2>(src, w, dst, v);
  return correlate_channels_bf16<14, 2>(src, w, dst, v);
}

// FilterGrad3x3 in bf16: the sum over positions n runs over pairs of neighbours (w, w + 1) in
// a row (a zero dy past an odd W). dyT2 [n/2, co] holds dy's pair for each output channel;
// x's pair for a tap is one 32-bit read at the tap's position on a bf16 grid of x.
constexpr int kBf16MaxW = 64;  // the widest plane FilterGrad3x3Bf16 takes

template <int CV>
struct FilterGrad3x3Bf16 {
  static constexpr int CB = CV * 16;
  const TallGrid g;
  const int Ci, Co, W2, blocks, cpad, parts;
  FilterGrad3x3Bf16(int B, int ci, int co, int H, int W)
      : g(B, H, W, 3, 4, true), Ci(ci), Co(co), W2((W + 1) / 2), blocks((co + CB - 1) / CB), cpad(blocks * CB),
        parts(std::max(1, std::min(B, 16 / (blocks * ci)))) {}

  void pack(const float *x, const float *dy, uint16_t *xt, uint32_t *d) const {
    const int H = g.H, W = g.W;
#pragma omp for schedule(static)
    for (int c = 0; c < Ci; ++c)
      for (int b = 0; b < g.B; ++b)
        for (int h = 0; h < H; ++h)
          to_bf16(x + (((size_t)b * Ci + c) * H + h) * W,
                  xt + (size_t)c * g.plane + g.out_row(b, h) + (size_t)g.P * g.Wp + g.P, W);
#pragma omp for schedule(static)
    for (int bc = 0; bc < g.B * Co; ++bc) {
      const int b = bc / Co, co = bc % Co;
      alignas(64) uint16_t row[kBf16MaxW + 1] = {};  // a row of dy in bf16, a zero past an odd W
      for (int h = 0; h < H; ++h) {
        to_bf16(dy + ((size_t)bc * H + h) * W, row, W);
        uint32_t *dst = d + ((size_t)(b * H + h) * W2) * cpad + co;
        for (int i = 0; i < W2; ++i) std::memcpy(dst + (size_t)i * cpad, row + 2 * i, 4);
      }
    }
  }

  void task(const uint16_t *xt, const uint32_t *d, int m, int ci, int b0, int b1, float (*out)[CB]) const {
    const uint16_t *xc = xt + (size_t)ci * g.plane;
    const uint32_t *dn = d + (size_t)b0 * g.H * W2 * cpad + (size_t)m * CB;
    __m512 c[9][CV];
    for (int j = 0; j < 9; ++j)
      for (int v = 0; v < CV; ++v) c[j][v] = _mm512_setzero_ps();
    for (int b = b0; b < b1; ++b)
      for (int h = 0; h < g.H; ++h) {
        const uint16_t *r[3] = {xc + g.out_row(b, h), xc + g.out_row(b, h) + g.Wp, xc + g.out_row(b, h) + 2 * g.Wp};
        for (int w = 0; w < 2 * W2; w += 2, dn += cpad) {
          __m512bh dv[CV];
          for (int v = 0; v < CV; ++v) dv[v] = (__m512bh)_mm512_load_si512(dn + v * 16);
#pragma GCC unroll 9
          for (int j = 0; j < 9; ++j) {
            uint32_t t;
            std::memcpy(&t, r[j / 3] + w + j % 3, 4);  // x at (w, w + 1) of tap j
            const __m512bh tv = (__m512bh)_mm512_set1_epi32((int)t);
            for (int v = 0; v < CV; ++v) c[j][v] = _mm512_dpbf16_ps(c[j][v], tv, dv[v]);
          }
        }
      }
    for (int j = 0; j < 9; ++j)
      for (int v = 0; v < CV; ++v) _mm512_store_ps(out[j] + v * 16, c[j][v]);
  }

  void run(const float *x, const float *dy, float *dw) const {
    const int taps = Ci * 9;
    // Halves of float buffers hold the bf16 grid; the pairs take a float's 32 bits each.
    AlignedZeros xt_raw(((size_t)Ci * g.plane + 1) / 2 + 1), d_raw((size_t)g.B * g.H * W2 * cpad);
    AlignedZeros part(parts > 1 ? (size_t)parts * Co * taps : 0);
    uint16_t *xt = reinterpret_cast<uint16_t *>(xt_raw.data());
    uint32_t *d = reinterpret_cast<uint32_t *>(d_raw.data());
#pragma omp parallel
    {
      pack(x, dy, xt, d);
      filter_grad_3x3_tasks<CB>(g.B, Ci, Co, parts, part.data(), dw, [&](int m, int ci, int b0, int b1, auto out) {
        task(xt, d, m, ci, b0, b1, out);
      });
    }
  }
};

void conv_filter_grad_3x3_bf16(const float *x, const float *dy, float *dw, int B, int Ci, int Co, int H, int W) {
  if (W > kBf16MaxW) return conv_filter_grad_3x3(x, dy, dw, B, Ci, Co, H, W);
  if (Co > 16) return FilterGrad3x3Bf16<2>(B, Ci, Co, H, W).run(x, dy, dw);
  return FilterGrad3x3Bf16<1>(B, Ci, Co, H, W).run(x, dy, dw);
}
#else
constexpr bool kHasBf16 = false;
bool bf16_correlates(const DenseConv &) { return false; }
void correlate_dense_bf16(const float *, const float *, float *, const DenseConv &) {}
void conv_filter_grad_3x3_bf16(const float *, const float *, float *, int, int, int, int, int) {}
#endif

// ---- One optimiser step over every parameter -------------------------------------------------
// Global-norm clipping, Adam (Kingma & Ba 2015, Alg. 1, in the form of MindSpore's Adam op:
// lr_t = lr sqrt(1 - beta2^t) / (1 - beta1^t), theta -= lr_t m / (sqrt(v) + eps)) and the EMA
// theta_ema <- d theta_ema + (1 - d) theta, in one pass over the parameters instead of about
// nine graph ops per parameter.
struct Slice {  // a piece of one parameter and its optimiser state
  float *p, *m, *v, *ema;
  const float *g;
  size_t n;
};

struct AdamStep {
  float beta1, beta2, eps, scale, lr_t, decay;  // scale: the clipping factor for the gradient
};

double square_sum(const std::vector<Slice> &slices) {
  double total = 0.0;
#pragma omp parallel for schedule(dynamic, 4) reduction(+ : total)
  for (size_t i = 0; i < slices.size(); ++i) {
    const float *g = slices[i].g;
    total += block_sum(
        slices[i].n, [=](size_t k) { return load(g + k) * load(g + k); },
        [=](size_t k) { return (double)g[k] * g[k]; });
  }
  return total;
}

void adam_ema(const std::vector<Slice> &slices, const AdamStep a) {
  const float c1 = 1.f - a.beta1, c2 = 1.f - a.beta2, d = a.decay, cd = 1.f - d;
  const float scale = a.scale, lr_t = a.lr_t, eps = a.eps;
#pragma omp parallel for schedule(dynamic, 4)
  for (size_t i = 0; i < slices.size(); ++i) {
    const Slice &s = slices[i];
    float *__restrict p = s.p, *__restrict m = s.m, *__restrict v = s.v, *__restrict e = s.ema;
    const float *__restrict g = s.g;
    for (size_t k = 0; k < s.n; ++k) {
      const float gk = g[k] * scale;
      m[k] += (gk - m[k]) * c1;
      v[k] += (gk * gk - v[k]) * c2;
      p[k] -= lr_t * m[k] / (std::sqrt(v[k]) + eps);
      e[k] = e[k] * d + p[k] * cd;
    }
  }
}

// The product of shape[0..ndim).
size_t elements(int ndim, const int64_t *shape) {
  size_t n = 1;
  for (int d = 0; d < ndim; ++d) n *= shape[d];
  return n;
}

}  // namespace

// ---- the AOT entry points ---------------------------------------------------------------------
#define AOT_ARGS int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *stream, void *extra
#define F(i) static_cast<float *>(params[i])

// (x [B,C,H,W], w [C,1,K,K], bias [C] or [B,C]) -> y
extern "C" int DepthwiseConv(AOT_ARGS) {
  correlate(F(0), F(1), F(2), ndims[2], F(3), shapes[0], shapes[1][2], false);
  return 0;
}

// (dy [B,C,H,W], w [C,1,K,K]) -> dx: correlation with the flipped kernel.
extern "C" int DepthwiseConvInputGrad(AOT_ARGS) {
  correlate(F(0), F(1), nullptr, 0, F(2), shapes[0], shapes[1][2], true);
  return 0;
}

// (x, dy, w) -> (dw, dbias [B, C]); w gives only the kernel shape.
extern "C" int DepthwiseConvFilterGrad(AOT_ARGS) {
  depthwise_filter_grad(F(0), F(1), F(3), F(4), shapes[0], shapes[2][2]);
  return 0;
}

// (x [B,C,...], gamma and beta [C] or [B,C], spec [G] = eps) -> (y, mean [B,G], rstd [B,G])
extern "C" int GroupNorm(AOT_ARGS) {
  const int hw = elements(ndims[0] - 2, shapes[0] + 2);
  const Groups s{(int)shapes[0][0], (int)shapes[0][1], (int)shapes[3][0], hw, ndims[1] == 2};
  group_norm<false>(F(0), F(1), F(2), F(3)[0], F(4), F(5), F(6), s);
  return 0;
}

// The same, then SiLU: y = silu(GroupNorm(x)).
extern "C" int GroupNormSiLU(AOT_ARGS) {
  const int hw = elements(ndims[0] - 2, shapes[0] + 2);
  const Groups s{(int)shapes[0][0], (int)shapes[0][1], (int)shapes[3][0], hw, ndims[1] == 2};
  group_norm<true>(F(0), F(1), F(2), F(3)[0], F(4), F(5), F(6), s);
  return 0;
}

// (x, gamma, dy, mean, rstd) -> (dx, dgamma, dbeta)
extern "C" int GroupNormGrad(AOT_ARGS) {
  const int hw = elements(ndims[0] - 2, shapes[0] + 2);
  const Groups s{(int)shapes[0][0], (int)shapes[0][1], (int)shapes[3][1], hw, ndims[1] == 2};
  group_norm_grad<false>(F(0), F(1), nullptr, F(2), F(3), F(4), F(5), F(6), F(7), s);
  return 0;
}

// (x, gamma, beta, dy, mean, rstd) -> (dx, dgamma, dbeta), through the SiLU.
extern "C" int GroupNormSiLUGrad(AOT_ARGS) {
  const int hw = elements(ndims[0] - 2, shapes[0] + 2);
  const Groups s{(int)shapes[0][0], (int)shapes[0][1], (int)shapes[4][1], hw, ndims[1] == 2};
  group_norm_grad<true>(F(0), F(1), F(2), F(3), F(4), F(5), F(6), F(7), F(8), s);
  return 0;
}

// (x [O, L, I]) -> softmax over L
extern "C" int Softmax(AOT_ARGS) {
  const int O = shapes[0][0], L = shapes[0][1], I = shapes[0][2];
  const float *x = F(0);
  float *y = F(1);
#pragma omp parallel
  {
    std::vector<float> m(I), s(I);
#pragma omp for schedule(static)
    for (int o = 0; o < O; ++o) {
      const size_t off = (size_t)o * L * I;
      if (I == 1) softmax_rows(x + off, y + off, L);
      else softmax_strided(x + off, y + off, L, I, m.data(), s.data());
    }
  }
  return 0;
}

// (y, dy) -> dx, both [O, L, I]
extern "C" int SoftmaxGrad(AOT_ARGS) {
  softmax_grad(F(0), F(1), F(2), shapes[0][0], shapes[0][1], shapes[0][2]);
  return 0;
}

// (x) -> GELU(x), any shape
extern "C" int Gelu(AOT_ARGS) {
  gelu(F(0), F(1), elements(ndims[0], shapes[0]));
  return 0;
}

// (x, dy) -> dx
extern "C" int GeluGrad(AOT_ARGS) {
  gelu_grad(F(0), F(1), F(2), elements(ndims[0], shapes[0]));
  return 0;
}

// (x [B, C, ...], gain [C], spec [1] = eps) -> (y, mean [B, N], rstd [B, N]), N = prod(...)
extern "C" int ChannelNorm(AOT_ARGS) {
  const int B = shapes[0][0], C = shapes[0][1], N = elements(ndims[0] - 2, shapes[0] + 2);
  channel_norm(F(0), F(1), F(2)[0], F(3), F(4), F(5), B, C, N);
  return 0;
}

// (x, gain, dy, mean, rstd) -> (dx, dgain)
extern "C" int ChannelNormGrad(AOT_ARGS) {
  const int B = shapes[0][0], C = shapes[0][1], N = elements(ndims[0] - 2, shapes[0] + 2);
  channel_norm_grad(F(0), F(1), F(2), F(3), F(4), F(5), F(6), B, C, N);
  return 0;
}

// (x [B,Ci,H,W], dy [B,Co,H,W], w [Co,Ci,K,K]) -> (dw, dbias [Co]); w gives only the kernel shape.
static int conv_filter_grad_op(AOT_ARGS, bool bf16) {
  const int64_t *xs = shapes[0], *ws = shapes[2];
  if (ws[2] == 3 && bf16 && kHasBf16)
    conv_filter_grad_3x3_bf16(F(0), F(1), F(3), xs[0], xs[1], ws[0], xs[2], xs[3]);
  else if (ws[2] == 3)
    conv_filter_grad_3x3(F(0), F(1), F(3), xs[0], xs[1], ws[0], xs[2], xs[3]);
  else
    conv_filter_grad(F(0), F(1), F(3), xs[0], xs[1], ws[0], xs[2], xs[3], ws[2]);
  bias_grad(F(1), F(4), xs[0], ws[0], (size_t)xs[2] * xs[3]);
  return 0;
}

// The correlation in bf16 where asked for, the CPU has it and the shapes suit it.
static void correlate_op(const float *src, const float *w, float *dst, const DenseConv &v, bool bf16) {
  if (bf16 && kHasBf16 && bf16_correlates(v)) return correlate_dense_bf16(src, w, dst, v);
  correlate_dense(src, w, dst, v);
}

static int conv_op(AOT_ARGS, bool bf16) {
  const int64_t *xs = shapes[0], *ws = shapes[1];
  const DenseConv v{int(xs[0]), int(xs[1]), int(ws[0]), int(xs[2]), int(xs[3]), int(ws[2]), false, F(2)};
  correlate_op(F(0), F(1), F(3), v, bf16);
  return 0;
}

static int conv_input_grad_op(AOT_ARGS, bool bf16) {
  const int64_t *ds = shapes[0], *ws = shapes[1];
  const DenseConv v{int(ds[0]), int(ds[1]), int(ws[1]), int(ds[2]), int(ds[3]), int(ws[2]), true};
  correlate_op(F(0), F(1), F(2), v, bf16);
  return 0;
}

#define AOT_PASS nparam, params, ndims, shapes, dtypes, stream, extra

// (x [B,Ci,H,W], dy [B,Co,H,W], w [Co,Ci,K,K]) -> (dw, dbias [Co]); w gives only the kernel shape.
extern "C" int ConvFilterGrad(AOT_ARGS) { return conv_filter_grad_op(AOT_PASS, false); }

// (x [B,Ci,H,W], w [Co,Ci,K,K], bias [Co]) -> y [B,Co,H,W], stride 1, zero padding K/2.
extern "C" int Conv(AOT_ARGS) { return conv_op(AOT_PASS, false); }

// (dy [B,Co,H,W], w [Co,Ci,K,K]) -> dx [B,Ci,H,W]
extern "C" int ConvInputGrad(AOT_ARGS) { return conv_input_grad_op(AOT_PASS, false); }

// The same three with bf16 products (kHasBf16 and the shapes permitting; float32 otherwise).
extern "C" int ConvFilterGradBf16(AOT_ARGS) { return conv_filter_grad_op(AOT_PASS, true); }
extern "C" int ConvBf16(AOT_ARGS) { return conv_op(AOT_PASS, true); }
extern "C" int ConvInputGradBf16(AOT_ARGS) { return conv_input_grad_op(AOT_PASS, true); }

// 1 where the library multiplies in bf16 (the CPU has AVX512-BF16), else 0.
extern "C" int HasBf16() { return kHasBf16 ? 1 : 0; }

// (hyper [5] = beta1, beta2, eps, clip, skip_nonfinite; lr table [S]; step int32 [1];
//  beta1^t []; beta2^t []; ema decay []; loss sum []; then n each of params, m, v, ema and
//  grads) -> global gradient norm []. Updates the step, the beta powers, params, m, v and ema
// in place: the op's signature declares them written. Clips when clip > 0; with
// skip_nonfinite, a NaN/inf norm or loss leaves every state untouched.
extern "C" int AdamEma(AOT_ARGS) {
  constexpr int head = 7;
  const int n = (nparam - head - 1) / 5;
  const float *hyper = F(0), *lrs = F(1);
  int32_t *step = static_cast<int32_t *>(params[2]);
  std::vector<Slice> slices;
  constexpr size_t piece = 1 << 15;
  for (int i = 0; i < n; ++i) {
    const int k = head + i;
    const size_t size = elements(ndims[k], shapes[k]);
    for (size_t o = 0; o < size; o += piece)
      slices.push_back({F(k) + o, F(k + n) + o, F(k + 2 * n) + o, F(k + 3 * n) + o, F(k + 4 * n) + o,
                        std::min(piece, size - o)});
  }
  const float norm = std::sqrt(square_sum(slices)), loss = F(6)[0];
  F(nparam - 1)[0] = norm;
  if (hyper[4] != 0.f && !(std::isfinite(norm) && std::isfinite(loss))) return 0;
  AdamStep a{hyper[0], hyper[1], hyper[2], 1.f, 0.f, F(5)[0]};
  if (hyper[3] > 0.f) a.scale = std::min(1.f, hyper[3] / (norm + 1e-6f));
  const float lr = lrs[std::clamp<int64_t>(step[0], 0, shapes[1][0] - 1)];
  const float b1t = F(3)[0] *= a.beta1, b2t = F(4)[0] *= a.beta2;
  step[0] += 1;
  a.lr_t = lr * std::sqrt(1.f - b2t) / (1.f - b1t);
  adam_ema(slices, a);
  return 0;
}

// ---- the machine's fp32 peak, for the benchmark -------------------------------------------
// Every thread runs kChains independent FMA chains in registers for `iterations` rounds, so
// no memory traffic or dependency stalls bound it: the rate is cores x FMA units x vector
// width x 2 flops x clock, the ceiling no kernel here can pass. Returns GFLOP/s over all
// OpenMP threads, timed with omp_get_wtime; it reports the vector width and threads used,
// and the chains' sum (which keeps the compiler from dropping the loop).
namespace {
constexpr int kChains = 12;  // > FMA latency (4) x FMA units (2): the pipes never wait

#if defined(__AVX512F__)
using Vec = __m512;
constexpr int kWidth = 16;
inline Vec vset(float v) { return _mm512_set1_ps(v); }
inline Vec vfma(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
inline float vfirst(Vec a) { return _mm512_cvtss_f32(a); }
#elif defined(__AVX2__) && defined(__FMA__)
using Vec = __m256;
constexpr int kWidth = 8;
inline Vec vset(float v) { return _mm256_set1_ps(v); }
inline Vec vfma(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
inline float vfirst(Vec a) { return _mm256_cvtss_f32(a); }
#else
using Vec = float;
constexpr int kWidth = 1;
inline Vec vset(float v) { return v; }
inline Vec vfma(Vec a, Vec b, Vec c) { return std::fma(a, b, c); }
inline float vfirst(Vec a) { return a; }
#endif

float fma_chains(int64_t iterations, float seed) {
  Vec acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = vset(seed + c);
  const Vec scale = vset(0.999999f), shift = vset(1e-7f);  // stays finite and normal
  for (int64_t i = 0; i < iterations; ++i) {
    for (int c = 0; c < kChains; ++c) acc[c] = vfma(acc[c], scale, shift);
  }
  float sum = 0.0f;
  for (int c = 0; c < kChains; ++c) sum += vfirst(acc[c]);
  return sum;  // returned so that the loop is not optimised away
}
}  // namespace

extern "C" double FmaPeakGflops(int64_t iterations, int* vector_floats, int* threads,
                                float* checksum) {
  float sink = 0.0f;
  int used = 1;
  const double start = omp_get_wtime();
#pragma omp parallel reduction(+ : sink)
  {
#pragma omp single
    used = omp_get_num_threads();
    sink += fma_chains(iterations, 1.0f + omp_get_thread_num());
  }
  const double seconds = omp_get_wtime() - start;
  *vector_floats = kWidth;
  *threads = used;
  *checksum = sink;
  const double flops = 2.0 * kChains * kWidth * static_cast<double>(iterations) * used;
  return flops / seconds / 1e9;
}
