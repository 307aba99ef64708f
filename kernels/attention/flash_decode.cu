// wattbench hand-written split-KV decode (flash-decoding) on CUDA cores.
//
//   q, o [B, HQ, 1, D]; k, v [B, HKV, L, D]: contiguous, fp16 or bf16, 16-byte aligned; HQ a
//   multiple of HKV (G = HQ / HKV query heads share a KV head); D = 64 or 128; any L >= 1.
//   Two kernels per dtype:
//   wb_decode_split_{fp16,bf16}_d{64,128}_g{1,2,4,8}
//     (const u16* q, const u16* k, const u16* v, float* o_part, float* lse_part, int L, int HQ,
//      int HKV, int chunk, float scale_log2)
//     grid (splits, HKV * ceil(G / GT), B), wbfd::THREADS (128) threads, no dynamic shared
//     memory. Block (s, hk * ceil(G / GT) + c, b) reads keys [s * chunk, min(L, (s + 1) * chunk))
//     of KV head hk once for query heads hk * G + c * GT + [0, GT) (those < G), and writes their
//     normalised partial outputs o_part [B, HQ, splits, D] and log2-domain log-sum-exps
//     lse_part [B, HQ, splits] (float32). splits = gridDim.x; every split holds >= 1 key.
//   wb_decode_combine_{fp16,bf16}
//     (const float* o_part, const float* lse_part, u16* o, float* lse, int splits, int D)
//     grid (B * HQ), D threads: o = sum_s 2^(lse_s - M) o_s / sum_s 2^(lse_s - M) with M the
//     largest lse_s; lse (natural log, float32 [B, HQ]) is written when not null.
//
// Decode reads each KV element once and does G multiply-adds with it per product: it is
// memory-bound, so the split kernel uses CUDA cores and 16-byte loads (ld.global.nc, 8 elements):
// D / 8 consecutive lanes share a key (D = 128: 16 lanes, two keys per warp and instruction:
// 512 contiguous bytes), each lane holding 8 of its D elements and GT query rows of q (scaled by
// scale_log2) in registers. A warp walks keys warp * KPW + i * KPB (KPB = keys per block step)
// with U steps of loads in flight; a key's scores are summed over its lanes by xor shuffles
// (uniform: every lane of a warp runs every step, keys past the split count as -inf), and one
// online-softmax rescale covers U keys. Lanes of a warp, then the 4 warps (through shared memory),
// merge their (max, sum, accumulator) triples at the end. Registers: q 8 * GT + accumulators
// 8 * GT + loads; GT = 8 takes U = 2 steps in flight, GT = 2 and 4 U = 4, GT = 1 U = 8. ptxas
// (nvcc 13.0, NVRTC 12.9 / 13.5): GT = 1 128 registers, 2: 110-117, 4: 128-156, 8: 209-221,
// combine 32; no spills on sm_80 and sm_90.
//
// Primitives (read-only 16-byte loads, cvt, ex2 / lg2): kernels/ptx.cuh; 16-bit values are raw
// bit patterns converted in registers or by PTX. The host emulator
// (tests/kernels/attention_emulator.cpp) supplies them on the CPU.

#include "ptx.cuh"

namespace wbfd {

constexpr int WARPS = 4;
constexpr int THREADS = 32 * WARPS;
constexpr float LN2 = 0.6931471805599453f;

// 8 16-bit values (lowest address first) -> fp32
template <bool BF16>
__device__ __forceinline__ void unpack8(const u32* w, float* f) {
#pragma unroll
  for (int i = 0; i < 4; ++i) to_float2<BF16>(w[i], f[2 * i], f[2 * i + 1]);
}

template <bool BF16, int D, int GT>
__device__ __forceinline__ void decode_split(const u16* __restrict__ Q, const u16* __restrict__ K,
                                             const u16* __restrict__ V, float* __restrict__ OP,
                                             float* __restrict__ LP, int L, int HQ, int HKV,
                                             int chunk, float scale_log2) {
  static_assert(D == 64 || D == 128, "head dim 64 or 128");
  constexpr int TPK = D / 8;          // lanes per key
  constexpr int KPW = 32 / TPK;       // keys per warp step
  constexpr int KPB = KPW * WARPS;    // keys per block step
  constexpr int U = GT >= 8 ? 2 : (GT == 1 ? 8 : 4);  // block steps in flight per lane

  const int G = HQ / HKV;
  const int head_chunks = (G + GT - 1) / GT;
  const int split = blockIdx.x;
  const int splits = gridDim.x;
  const int hk = blockIdx.y / head_chunks;
  const int g0 = (blockIdx.y % head_chunks) * GT;
  const int b = blockIdx.z;
  const int ng = min(GT, G - g0);
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int dl = lane % TPK;  // this lane's 8 elements: d = 8 * dl .. 8 * dl + 7
  const int kl = lane / TPK;  // this lane's key within a warp step
  const int k_begin = split * chunk;
  const int k_end = min(L, k_begin + chunk);
  const i64 kv_off = ((i64)b * HKV + hk) * L * D + dl * 8;
  const i64 head0 = (i64)b * HQ + (i64)hk * G + g0;  // first query head (row of q / o)

  float q[GT][8];
#pragma unroll
  for (int g = 0; g < GT; ++g) {
    if (g < ng) {
      u32 raw[4];
      ld_nc4<true>(raw, Q + (head0 + g) * D + dl * 8);
      unpack8<BF16>(raw, q[g]);
#pragma unroll
      for (int e = 0; e < 8; ++e) q[g][e] *= scale_log2;
    } else {
#pragma unroll
      for (int e = 0; e < 8; ++e) q[g][e] = 0.0f;
    }
  }
  float acc[GT][8];
  float m[GT];
  float l[GT];
#pragma unroll
  for (int g = 0; g < GT; ++g) {
    m[g] = neg_inf();
    l[g] = 0.0f;
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[g][e] = 0.0f;
  }

  // warp-uniform loop: every lane runs every step (the shuffles need the whole warp)
  for (int base = k_begin + warp * KPW; base < k_end; base += KPB * U) {
    u32 kr[U][4], vr[U][4];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int key = base + kl + u * KPB;
      if (key < k_end) {
        ld_nc4<true>(kr[u], K + kv_off + (i64)key * D);
        ld_nc4<true>(vr[u], V + kv_off + (i64)key * D);
      } else {
#pragma unroll
        for (int i = 0; i < 4; ++i) kr[u][i] = vr[u][i] = 0u;
      }
    }
    float sc[U][GT];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      float kf[8];
      unpack8<BF16>(kr[u], kf);
      const bool ok = base + kl + u * KPB < k_end;
#pragma unroll
      for (int g = 0; g < GT; ++g) {
        float dot = 0.0f;
#pragma unroll
        for (int e = 0; e < 8; ++e) dot += q[g][e] * kf[e];
#pragma unroll
        for (int off = TPK / 2; off > 0; off >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, off);
        sc[u][g] = ok ? dot : neg_inf();
      }
    }
    float m_use[GT];
#pragma unroll
    for (int g = 0; g < GT; ++g) {
      float mx = m[g];
#pragma unroll
      for (int u = 0; u < U; ++u) mx = fmaxf(mx, sc[u][g]);
      m_use[g] = mx == neg_inf() ? 0.0f : mx;
      const float alpha = ex2(m[g] - m_use[g]);
      m[g] = mx;
      l[g] *= alpha;
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[g][e] *= alpha;
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      float vf[8];
      unpack8<BF16>(vr[u], vf);
#pragma unroll
      for (int g = 0; g < GT; ++g) {
        const float p = ex2(sc[u][g] - m_use[g]);
        l[g] += p;
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[g][e] += p * vf[e];
      }
    }
  }

  // merge the keys of a warp's lane groups (lanes with the same d share the xor partners)
#pragma unroll
  for (int off = TPK; off < 32; off <<= 1) {
#pragma unroll
    for (int g = 0; g < GT; ++g) {
      const float m_o = __shfl_xor_sync(0xffffffffu, m[g], off);
      const float l_o = __shfl_xor_sync(0xffffffffu, l[g], off);
      const float mx = fmaxf(m[g], m_o);
      const float mu = mx == neg_inf() ? 0.0f : mx;
      const float a = ex2(m[g] - mu);
      const float c = ex2(m_o - mu);
      l[g] = l[g] * a + l_o * c;
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        const float acc_o = __shfl_xor_sync(0xffffffffu, acc[g][e], off);
        acc[g][e] = acc[g][e] * a + acc_o * c;
      }
      m[g] = mx;
    }
  }

  // merge the warps through shared memory and write this split's partial results
  __shared__ float s_acc[WARPS][GT][D];
  __shared__ float s_m[WARPS][GT];
  __shared__ float s_l[WARPS][GT];
  if (kl == 0) {
#pragma unroll
    for (int g = 0; g < GT; ++g)
#pragma unroll
      for (int e = 0; e < 8; ++e) s_acc[warp][g][dl * 8 + e] = acc[g][e];
  }
  if (lane == 0) {
#pragma unroll
    for (int g = 0; g < GT; ++g) {
      s_m[warp][g] = m[g];
      s_l[warp][g] = l[g];
    }
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < ng * D; idx += THREADS) {
    const int g = idx / D;
    const int d = idx % D;
    float mx = neg_inf();
#pragma unroll
    for (int w = 0; w < WARPS; ++w) mx = fmaxf(mx, s_m[w][g]);
    const float mu = mx == neg_inf() ? 0.0f : mx;
    float sum = 0.0f;
    float a = 0.0f;
#pragma unroll
    for (int w = 0; w < WARPS; ++w) {
      const float c = ex2(s_m[w][g] - mu);
      sum += s_l[w][g] * c;
      a += s_acc[w][g][d] * c;
    }
    const i64 row = (head0 + g) * splits + split;
    OP[row * D + d] = sum > 0.0f ? a / sum : 0.0f;
    if (d == 0) LP[row] = sum > 0.0f ? mx + lg2(sum) : neg_inf();
  }
}

template <bool BF16>
__device__ __forceinline__ void decode_combine(const float* __restrict__ OP,
                                               const float* __restrict__ LP, u16* __restrict__ O,
                                               float* __restrict__ LSE, int splits, int D) {
  const i64 bh = blockIdx.x;
  const int d = threadIdx.x;
  const float* lp = LP + bh * splits;
  float mx = neg_inf();
  for (int s = 0; s < splits; ++s) mx = fmaxf(mx, lp[s]);
  const float mu = mx == neg_inf() ? 0.0f : mx;
  float sum = 0.0f;
  float a = 0.0f;
  for (int s = 0; s < splits; ++s) {
    const float w = ex2(lp[s] - mu);
    sum += w;
    a += w * OP[(bh * splits + s) * D + d];
  }
  O[bh * D + d] = to16<BF16>(a / sum);
  if (LSE != nullptr && d == 0) LSE[bh] = (mx + lg2(sum)) * LN2;
}

}  // namespace wbfd

#define WB_DECODE_SPLIT(name, bf16, d, gt)                                                     \
  extern "C" __global__ void __launch_bounds__(wbfd::THREADS)                                 \
      name(const u16* __restrict__ q, const u16* __restrict__ k, const u16* __restrict__ v,    \
           float* __restrict__ o_part, float* __restrict__ lse_part, int l, int hq, int hkv,   \
           int chunk, float scale_log2) {                                                     \
    wbfd::decode_split<bf16, d, gt>(q, k, v, o_part, lse_part, l, hq, hkv, chunk, scale_log2); \
  }

#define WB_DECODE_COMBINE(name, bf16)                                                         \
  extern "C" __global__ void __launch_bounds__(128)                                          \
      name(const float* __restrict__ o_part, const float* __restrict__ lse_part,              \
           u16* __restrict__ o, float* __restrict__ lse, int splits, int d) {                \
    wbfd::decode_combine<bf16>(o_part, lse_part, o, lse, splits, d);                         \
  }

WB_DECODE_SPLIT(wb_decode_split_fp16_d64_g1, false, 64, 1)
WB_DECODE_SPLIT(wb_decode_split_fp16_d64_g2, false, 64, 2)
WB_DECODE_SPLIT(wb_decode_split_fp16_d64_g4, false, 64, 4)
WB_DECODE_SPLIT(wb_decode_split_fp16_d64_g8, false, 64, 8)
WB_DECODE_SPLIT(wb_decode_split_fp16_d128_g1, false, 128, 1)
WB_DECODE_SPLIT(wb_decode_split_fp16_d128_g2, false, 128, 2)
WB_DECODE_SPLIT(wb_decode_split_fp16_d128_g4, false, 128, 4)
WB_DECODE_SPLIT(wb_decode_split_fp16_d128_g8, false, 128, 8)
WB_DECODE_SPLIT(wb_decode_split_bf16_d64_g1, true, 64, 1)
WB_DECODE_SPLIT(wb_decode_split_bf16_d64_g2, true, 64, 2)
WB_DECODE_SPLIT(wb_decode_split_bf16_d64_g4, true, 64, 4)
WB_DECODE_SPLIT(wb_decode_split_bf16_d64_g8, true, 64, 8)
WB_DECODE_SPLIT(wb_decode_split_bf16_d128_g1, true, 128, 1)
WB_DECODE_SPLIT(wb_decode_split_bf16_d128_g2, true, 128, 2)
WB_DECODE_SPLIT(wb_decode_split_bf16_d128_g4, true, 128, 4)
WB_DECODE_SPLIT(wb_decode_split_bf16_d128_g8, true, 128, 8)
WB_DECODE_COMBINE(wb_decode_combine_fp16, false)
WB_DECODE_COMBINE(wb_decode_combine_bf16, true)
