// wattbench's PTX primitives: the one copy of the inline-PTX wrappers every hand-written kernel
// (kernels/*/*.cu) calls. Each source starts with #include "ptx.cuh"; this folder is on the
// include path of every build (wattbench.kernels.cuda_build: -I<this folder> for NVRTC through
// CuPy and for nvcc alike). Shipped as package data beside the sources.
//
// No other header is included: 16-bit floats are raw bit patterns (u16, two to a u32) converted
// only by PTX (cvt.rn.*), so NVRTC needs no path to cuda_fp16.h or cuda_bf16.h.
//
// Host emulation: the tests' emulators (tests/kernels/ptx_emulator.h) define WB_EMULATE and
// supply every primitive of the guarded section themselves, written from the PTX ISA's
// definitions; the kernels then run unchanged on the CPU. What follows the guarded section is
// built from the primitives and serves both.
//
// Architectures: cp.async, ldmatrix, mma.sync (m16n8k16 f16 / bf16, m16n8k32 s8), cvt to bf16 and
// fma.rn.bf16x2 need sm_80; mul / sub.f16x2 sm_53; dp4a sm_61. to16 alone has a path below sm_80
// (w8a8.cu's dp4a entries build for sm_75).

#ifndef WB_PTX_CUH
#define WB_PTX_CUH

typedef unsigned char u8;
typedef signed char s8;
typedef unsigned short u16;  // one fp16 or bf16 value, as its bit pattern
typedef unsigned int u32;
typedef long long i64;

#ifndef WB_EMULATE

// ---- shared memory ----------------------------------------------------------------------------

// The block's dynamic shared memory (128-byte aligned), viewed as T.
extern __shared__ __align__(128) unsigned char wb_dynamic_smem[];

template <class T>
__device__ __forceinline__ T* dynamic_smem() {
  return reinterpret_cast<T*>(wb_dynamic_smem);
}

// Shared-space byte address of a generic pointer into shared memory.
__device__ __forceinline__ u32 smem_addr(const void* p) {
  u32 r;
  asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(r) : "l"(p));
  return r;
}

// ---- cp.async: global -> shared copies, in commit groups --------------------------------------

// Copies BYTES (4, 8 or 16) from global src to shared byte address dst; bytes [src_bytes, BYTES)
// of the destination are zero-filled, so src_bytes = 0 writes zeros and reads nothing (src must
// still be a valid, aligned address). 16 bytes go through L2 only (.cg), 4 and 8 through L1
// (.ca). PREFETCH_L2: also fetch the rest of the 128-byte L2 line (.L2::128B).
template <int BYTES, bool PREFETCH_L2 = false>
__device__ __forceinline__ void cp_async(u32 dst, const void* src, int src_bytes) {
  static_assert(BYTES == 4 || BYTES == 8 || BYTES == 16, "cp.async copies 4, 8 or 16 bytes");
  static_assert(BYTES == 16 || !PREFETCH_L2, "the L2 prefetch hint is used with 16-byte copies");
  if constexpr (BYTES == 16 && PREFETCH_L2) {
    asm volatile("cp.async.cg.shared.global.L2::128B [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
                 "r"(src_bytes)
                 : "memory");
  } else if constexpr (BYTES == 16) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
                 "r"(src_bytes)
                 : "memory");
  } else {
    asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;\n" ::"r"(dst), "l"(src),
                 "n"(BYTES), "r"(src_bytes)
                 : "memory");
  }
}

// Closes this thread's open copies into one group.
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}

// Waits until at most N of this thread's committed groups are pending (N = 0: all landed). Other
// threads' copies are visible only after a barrier.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// ---- tensor cores: ldmatrix and mma.sync (warp collectives) ------------------------------------

// Four 8 x 8 matrices of 16-bit elements: lane 8i + r gives the 16-byte aligned shared address of
// row r of matrix i; register i of lane T receives elements (T / 4, 2 (T % 4) and + 1) of matrix i
// (.trans: rows 2 (T % 4) and + 1 of column T / 4), lower column (row) in the lower half.
__device__ __forceinline__ void ldmatrix_x4(u32* r, u32 addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr)
               : "memory");
}

__device__ __forceinline__ void ldmatrix_x4_trans(u32* r, u32 addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr)
               : "memory");
}

// d += a * b for one m16n8k16 tile: a, 4 registers of the row-major A fragment; b, 2 of the
// column-major B fragment; d, this thread's 4 fp32 accumulators. fp16 or bf16 inputs.
template <bool BF16>
__device__ __forceinline__ void mma16816(float* d, const u32* a, const u32* b) {
  if constexpr (BF16) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  } else {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
}

// d += a * b for one m16n8k32 s8 tile (row-major A, column-major B, s32 accumulators).
__device__ __forceinline__ void mma_s8(int* d, const u32* a, const u32* b) {
  asm("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 "
      "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// c + the sum of the four signed byte products of a and b.
__device__ __forceinline__ int dp4a(int a, int b, int c) {
  int d;
  asm("dp4a.s32.s32 %0, %1, %2, %3;\n" : "=r"(d) : "r"(a), "r"(b), "r"(c));
  return d;
}

// ---- number formats --------------------------------------------------------------------------

// The float whose bits are u (a reinterpretation the compiler sees through: constants fold).
__device__ __forceinline__ float bits_f32(u32 u) { return __int_as_float((int)u); }

// fp32 -> bf16 / fp16 bits, round to nearest even. Below sm_80 (no cvt to bf16) bf16 rounds in
// integer arithmetic: add 0x7FFF plus the lowest kept bit, keep the high half (NaN: a quiet NaN).
template <bool BF16>
__device__ __forceinline__ u16 to16(float x) {
  u16 r;
  if constexpr (BF16) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
    asm("cvt.rn.bf16.f32 %0, %1;\n" : "=h"(r) : "f"(x));
#else
    u32 u;
    asm("mov.b32 %0, %1;\n" : "=r"(u) : "f"(x));
    r = (u & 0x7FFFFFFFu) > 0x7F800000u ? (u16)0x7FC0 : (u16)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
#endif
  } else {
    asm("cvt.rn.f16.f32 %0, %1;\n" : "=h"(r) : "f"(x));
  }
  return r;
}

// Round-to-nearest-even fp32 pair -> two 16-bit values, lo in the low half (lower address).
template <bool BF16>
__device__ __forceinline__ u32 pack2(float lo, float hi) {
  u32 r;
  if constexpr (BF16) {
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
  } else {
    asm("cvt.rn.f16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
  }
  return r;
}

// Two packed 16-bit values (low half first) -> two floats, exactly.
template <bool BF16>
__device__ __forceinline__ void to_float2(u32 v, float& lo, float& hi) {
  if constexpr (BF16) {
    lo = bits_f32(v << 16);
    hi = bits_f32(v & 0xFFFF0000u);
  } else {
    asm("{ .reg .f16 l, h;\n mov.b32 {l, h}, %2;\n cvt.f32.f16 %0, l;\n cvt.f32.f16 %1, h; }\n"
        : "=f"(lo), "=f"(hi)
        : "r"(v));
  }
}

// fp16x2 / bf16x2 arithmetic, round to nearest even (bf16: fma only; sub / mul need sm_90).
__device__ __forceinline__ u32 sub_f16x2(u32 a, u32 b) {
  u32 r;
  asm("sub.f16x2 %0, %1, %2;\n" : "=r"(r) : "r"(a), "r"(b));
  return r;
}

__device__ __forceinline__ u32 mul_f16x2(u32 a, u32 b) {
  u32 r;
  asm("mul.f16x2 %0, %1, %2;\n" : "=r"(r) : "r"(a), "r"(b));
  return r;
}

__device__ __forceinline__ u32 fma_bf16x2(u32 a, u32 b, u32 c) {
  u32 r;
  asm("fma.rn.bf16x2 %0, %1, %2, %3;\n" : "=r"(r) : "r"(a), "r"(b), "r"(c));
  return r;
}

// 2^x and log2(x) (approximate, the SFU's): 2^-inf = +0.
__device__ __forceinline__ float ex2(float x) {
  float r;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(r) : "f"(x));
  return r;
}

__device__ __forceinline__ float lg2(float x) {
  float r;
  asm("lg2.approx.f32 %0, %1;\n" : "=f"(r) : "f"(x));
  return r;
}

// ---- global loads ------------------------------------------------------------------------------

// Streaming 16-byte load (ld.global.cs, evict first): data read once.
__device__ __forceinline__ void ld_stream4(u32* r, const void* p) {
  asm("ld.global.cs.v4.u32 {%0, %1, %2, %3}, [%4];\n"
      : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
      : "l"(p));
}

// Read-only 16-, 8- and 4-byte loads (ld.global.nc), aligned to their size. NO_L1: do not
// allocate the line in L1 (L1::no_allocate), for data no other thread of the block reads. ld_nc4
// keeps p's element type: a const void* parameter moved address arithmetic and cost
// flash_decode.cu's d64 / 2-head entries an 8-byte stack frame on sm_80 (nvcc 13.0, NVRTC 13.5).
template <bool NO_L1 = false, class T>
__device__ __forceinline__ void ld_nc4(u32* r, const T* p) {
  if constexpr (NO_L1) {
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "l"(p));
  } else {
    asm("ld.global.nc.v4.u32 {%0, %1, %2, %3}, [%4];\n"
        : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
        : "l"(p));
  }
}

__device__ __forceinline__ void ld_nc2(u32* r, const void* p) {
  asm("ld.global.nc.v2.u32 {%0, %1}, [%2];\n" : "=r"(r[0]), "=r"(r[1]) : "l"(p));
}

__device__ __forceinline__ u32 ld_nc1(const void* p) {
  u32 r;
  asm("ld.global.nc.u32 %0, [%1];\n" : "=r"(r) : "l"(p));
  return r;
}

// An fp32 load from L2, bypassing L1 (ld.global.cg): sees other blocks' fenced writes.
__device__ __forceinline__ float ld_cg(const float* p) {
  float r;
  asm volatile("ld.global.cg.f32 %0, [%1];\n" : "=f"(r) : "l"(p));
  return r;
}

// ---- inter-block signalling (a split-K semaphore) ----------------------------------------------

// A gpu-scope acq_rel fence; an acq_rel counter increment returning the old value; a relaxed
// store of 0.
__device__ __forceinline__ void fence_gpu() { asm volatile("fence.acq_rel.gpu;\n" ::: "memory"); }

__device__ __forceinline__ u32 atomic_inc_gpu(u32* p) {
  u32 prev;
  asm volatile("atom.acq_rel.gpu.global.add.u32 %0, [%1], 1;\n" : "=r"(prev) : "l"(p) : "memory");
  return prev;
}

__device__ __forceinline__ void st_relaxed_zero(u32* p) {
  asm volatile("st.global.relaxed.gpu.u32 [%0], 0;\n" ::"l"(p) : "memory");
}

#endif  // WB_EMULATE

// ---- built from the primitives (device and emulator alike) -------------------------------------

__device__ __forceinline__ float neg_inf() { return bits_f32(0xff800000u); }

// The output tile (first row m0, first column n0) of block `pid` of a 1-D grid over an M x N
// output in BM x BN tiles, in grouped order: GROUP_M tile rows are walked column by column, so
// blocks resident together share their A rows and B columns in L2.
template <int BM, int BN, int GROUP_M>
__device__ __forceinline__ void grouped_tile(int pid, int M, int N, int& m0, int& n0) {
  const int grid_m = (M + BM - 1) / BM, grid_n = (N + BN - 1) / BN;
  const int per_group = GROUP_M * grid_n;
  const int first_m = (pid / per_group) * GROUP_M;
  const int group_rows = min(grid_m - first_m, GROUP_M);
  m0 = (first_m + (pid % per_group) % group_rows) * BM;
  n0 = ((pid % per_group) / group_rows) * BN;
}

#endif  // WB_PTX_CUH
