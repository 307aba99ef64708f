// Host emulation of kernels/ptx.cuh: every PTX primitive the hand-written kernels call, written
// from the PTX ISA's definitions, on the runtime of warp_emulator.h. An emulator
// (gemm_emulator.cpp, attention_emulator.cpp, qgemm_emulator.cpp) includes this header, then the
// kernel sources unchanged: this header defines WB_EMULATE, so their #include "ptx.cuh" (found
// through -I<kernels folder>) keeps only the part built from these primitives.
//
// Fragment layouts (groupID g = lane / 4, t = lane % 4; the lower k or column in the lower bits):
//   * ldmatrix.x4 (.trans): lane 8i + r names row r of matrix i (16-byte aligned); lane T receives
//     the 16-bit pair (row T / 4, columns 2 (T % 4), +1) of each matrix, or with .trans
//     (rows 2 (T % 4), +1, column T / 4);
//   * mma.sync.m16n8k16 (f16 / bf16, f32 accumulate): a0 (row g, k 2t, 2t+1), a1 (row g+8),
//     a2 (row g, k 8+2t..), a3 (row g+8, k 8+..); b0 (k 2t, 2t+1, col g), b1 (k 8+2t, ..);
//     c0 c1 (row g, cols 2t, 2t+1), c2 c3 (row g+8). Products of 16-bit floats are exact; each
//     accumulator's sum is taken in double and rounded to fp32 once;
//   * mma.sync.m16n8k32 (s8, s32 accumulate): a0 (row g, k 4t..4t+3), a1 (row g+8), a2 (row g,
//     k 16+4t..), a3 (row g+8, k 16+..); b0 (k 4t..4t+3, col g), b1 (k 16+4t..); c as above;
// ldmatrix and mma.sync are warp collectives (all 32 lanes, the same kind). cp.async copies land
// at cp.async.wait_group; every global load (cp.async source, ld.global.*) must be aligned to its
// size and, once the launcher registered buffers, lie inside one (EMU_OOB otherwise). Conversions
// and half2 arithmetic round to nearest even; dp4a is the sum of four signed byte products;
// ex2 / lg2 are exp2f / log2f; the split-K semaphore is plain memory (blocks run one after
// another).

#pragma once

#include "warp_emulator.h"

namespace emu {

static s8 byte_of(u32 word, int i) { return (s8)((word >> (8 * i)) & 0xffu); }

// One global load of BYTES into r (nothing, and EMU_OOB, when the check fails).
template <int BYTES>
static void load_global(void* r, const void* p) {
  if (check_read(p, BYTES, BYTES)) std::memcpy(r, p, BYTES);
}

// a op b per 16-bit half, rounded once to the halves' format.
static u32 halves(u32 a, u32 b, double (*op)(double, double), bool bf16) {
  u32 r = 0;
  for (int h = 0; h < 2; ++h) {
    const u16 x = half_of(a, h), y = half_of(b, h);
    const double v =
        bf16 ? op(bf16_to_f32(x), bf16_to_f32(y)) : op(f16_to_f32(x), f16_to_f32(y));
    r |= (u32)(bf16 ? f32_to_bf16((float)v) : f64_to_f16(v)) << (16 * h);
  }
  return r;
}

}  // namespace emu

// --- shared memory ------------------------------------------------------------------------------

template <class T>
static inline T* dynamic_smem() {
  return reinterpret_cast<T*>(emu::smem_bytes);
}

static inline u32 smem_addr(const void* p) {
  return (u32)(static_cast<const unsigned char*>(p) - emu::smem_bytes);
}

// --- cp.async -----------------------------------------------------------------------------------

template <int BYTES, bool PREFETCH_L2 = false>
static inline void cp_async(u32 dst, const void* src, int src_bytes) {
  static_assert(BYTES == 4 || BYTES == 8 || BYTES == 16, "cp.async copies 4, 8 or 16 bytes");
  emu::queue_copy(dst, src, BYTES, src_bytes);
}

static inline void cp_async_commit() { emu::commit_copies(); }

template <int N>
static inline void cp_async_wait() {
  emu::land_copies(N);
}

// --- ldmatrix and mma.sync ----------------------------------------------------------------------

static inline void ldmatrix_common(u32* r, u32 addr, bool trans) {
  emu::WarpSlots& w = emu::warp_of();
  const int lane = emu::lane_of();
  if (addr % 16 || addr + 16 > emu::SMEM_BYTES) emu::fail(EMU_BAD_LAUNCH);
  w.w[lane][0] = addr;
  emu::publish(trans ? emu::K_LDMT : emu::K_LDM);
  for (int i = 0; i < 4; ++i) {
    auto elem = [&](int row, int col) {
      u16 v;
      std::memcpy(&v, emu::smem_bytes + w.w[8 * i + row][0] + 2 * col, 2);
      return v;
    };
    const int row = trans ? 2 * (lane % 4) : lane / 4;
    const int col = trans ? lane / 4 : 2 * (lane % 4);
    const u16 lo = elem(row, col);
    const u16 hi = trans ? elem(row + 1, col) : elem(row, col + 1);
    r[i] = (u32)lo | ((u32)hi << 16);
  }
  emu::retire();
}

static inline void ldmatrix_x4(u32* r, u32 addr) { ldmatrix_common(r, addr, false); }
static inline void ldmatrix_x4_trans(u32* r, u32 addr) { ldmatrix_common(r, addr, true); }

// Publishes this lane's a (4 registers) and b (2) and enters the collective `kind`.
static inline emu::WarpSlots& mma_operands(const u32* a, const u32* b, int kind) {
  emu::WarpSlots& w = emu::warp_of();
  const int lane = emu::lane_of();
  for (int i = 0; i < 4; ++i) w.w[lane][i] = a[i];
  w.w[lane][4] = b[0];
  w.w[lane][5] = b[1];
  emu::publish(kind);
  return w;
}

template <bool BF16>
static inline void mma16816(float* d, const u32* a, const u32* b) {
  emu::WarpSlots& w = mma_operands(a, b, BF16 ? emu::K_MMA_BF16 : emu::K_MMA_F16);
  const int lane = emu::lane_of();
  auto cvt = [](u16 h) { return BF16 ? emu::bf16_to_f32(h) : emu::f16_to_f32(h); };
  auto A = [&](int row, int k) {  // A[row][k] of the 16 x 16 tile
    const int src = (row % 8) * 4 + (k % 8) / 2;
    const int reg = (row >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0);
    return cvt(emu::half_of(w.w[src][reg], k % 2));
  };
  auto B = [&](int k, int n) {  // B[k][n] of the 16 x 8 tile
    const int src = n * 4 + (k % 8) / 2;
    return cvt(emu::half_of(w.w[src][4 + (k >= 8 ? 1 : 0)], k % 2));
  };
  for (int e = 0; e < 4; ++e) {
    const int row = lane / 4 + (e >= 2 ? 8 : 0);
    const int col = (lane % 4) * 2 + (e & 1);
    double sum = d[e];
    for (int k = 0; k < 16; ++k) sum += (double)A(row, k) * B(k, col);
    d[e] = (float)sum;
  }
  emu::retire();
}

static inline void mma_s8(int* d, const u32* a, const u32* b) {
  emu::WarpSlots& w = mma_operands(a, b, emu::K_MMA_S8);
  const int lane = emu::lane_of();
  auto A = [&](int row, int k) {  // A[row][k] of the 16 x 32 tile
    const int src = (row % 8) * 4 + (k % 16) / 4;
    const int reg = (row >= 8 ? 1 : 0) + (k >= 16 ? 2 : 0);
    return (int)emu::byte_of(w.w[src][reg], k % 4);
  };
  auto B = [&](int k, int n) {  // B[k][n] of the 32 x 8 tile
    const int src = n * 4 + (k % 16) / 4;
    return (int)emu::byte_of(w.w[src][4 + (k >= 16 ? 1 : 0)], k % 4);
  };
  for (int e = 0; e < 4; ++e) {
    const int row = lane / 4 + (e >= 2 ? 8 : 0);
    const int col = (lane % 4) * 2 + (e & 1);
    i64 sum = d[e];
    for (int k = 0; k < 32; ++k) sum += A(row, k) * B(k, col);
    d[e] = (int)sum;
  }
  emu::retire();
}

static inline int dp4a(int a, int b, int c) {
  i64 sum = c;
  for (int i = 0; i < 4; ++i) sum += emu::byte_of((u32)a, i) * emu::byte_of((u32)b, i);
  return (int)sum;
}

// --- number formats -----------------------------------------------------------------------------

static inline float bits_f32(u32 u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

template <bool BF16>
static inline u16 to16(float x) {
  return BF16 ? emu::f32_to_bf16(x) : emu::f64_to_f16(x);
}

template <bool BF16>
static inline u32 pack2(float lo, float hi) {
  return (u32)to16<BF16>(lo) | ((u32)to16<BF16>(hi) << 16);
}

template <bool BF16>
static inline void to_float2(u32 v, float& lo, float& hi) {
  lo = BF16 ? emu::bf16_to_f32((u16)v) : emu::f16_to_f32((u16)v);
  hi = BF16 ? emu::bf16_to_f32((u16)(v >> 16)) : emu::f16_to_f32((u16)(v >> 16));
}

static inline u32 sub_f16x2(u32 a, u32 b) {
  return emu::halves(a, b, [](double x, double y) { return x - y; }, false);
}

static inline u32 mul_f16x2(u32 a, u32 b) {
  return emu::halves(a, b, [](double x, double y) { return x * y; }, false);
}

// a * b + c per bf16 half, rounded once (exact in double for the kernels' operands: small
// integers and one 8-bit-mantissa scale).
static inline u32 fma_bf16x2(u32 a, u32 b, u32 c) {
  u32 r = 0;
  for (int h = 0; h < 2; ++h) {
    const double v = (double)emu::bf16_to_f32(emu::half_of(a, h)) *
                         emu::bf16_to_f32(emu::half_of(b, h)) +
                     emu::bf16_to_f32(emu::half_of(c, h));
    r |= (u32)emu::f32_to_bf16((float)v) << (16 * h);
  }
  return r;
}

static inline float ex2(float x) { return exp2f(x); }
static inline float lg2(float x) { return log2f(x); }

// --- global loads -------------------------------------------------------------------------------

static inline void ld_stream4(u32* r, const void* p) { emu::load_global<16>(r, p); }

template <bool NO_L1 = false, class T>
static inline void ld_nc4(u32* r, const T* p) {
  emu::load_global<16>(r, p);
}

static inline void ld_nc2(u32* r, const void* p) { emu::load_global<8>(r, p); }

static inline u32 ld_nc1(const void* p) {
  u32 r = 0;
  emu::load_global<4>(&r, p);
  return r;
}

static inline float ld_cg(const float* p) {
  float r = 0.0f;
  emu::load_global<4>(&r, p);
  return r;
}

// --- inter-block signalling ---------------------------------------------------------------------

static inline void fence_gpu() {}

static inline u32 atomic_inc_gpu(u32* p) { return emu::check_read(p, 4, 4) ? (*p)++ : 0; }

static inline void st_relaxed_zero(u32* p) { *p = 0; }

#define WB_EMULATE 1
