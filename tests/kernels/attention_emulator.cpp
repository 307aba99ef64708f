// Host emulation of the attention CUDA kernels (kernels/attention/flash_fwd.cu, flash_decode.cu),
// for tests on machines without a GPU.
//
// The kernel sources are compiled unchanged except for their device primitives (the sections
// guarded by WB_EMULATE), which this file supplies, written from the PTX ISA's definitions:
//   * every CUDA thread of a block is a cooperative fiber (ucontext); threads run until they
//     reach a barrier, so __syncthreads is a block barrier and each warp-collective operation
//     (shuffle, ldmatrix, mma.sync) is an exchange through per-warp slots between two warp
//     barriers. A collective that not all 32 lanes enter in the same kind, or a barrier nobody
//     can pass (a deadlock), fails the launch;
//   * mma.sync.m16n8k16 rebuilds the 16x16 A and 16x8 B tiles from all lanes' fragments with the
//     PTX fragment layouts (A: a0..a7 at row groupID (+8), column 2 * tid_in_group (+1, +8);
//     B: b0..b3 at k = 2 * tid_in_group (+1, +8), n = groupID; C: c0..c3 at row groupID (+8),
//     column 2 * tid_in_group (+1)) and multiplies in fp32;
//   * ldmatrix.x4 (.trans): lane 8i + r names row r of matrix i; lane t receives the 16-bit pair
//     (row t / 4, columns 2 (t % 4), +1) of each matrix, or with .trans (rows 2 (t % 4), +1,
//     column t / 4);
//   * cp.async copies are queued per thread and land only at cp.async.wait_group, so a kernel
//     that reads a stage it has not waited for reads stale data; shared memory starts filled with
//     0xFF bytes (NaN as fp16 / bf16, -NaN as fp32), so unwritten data poisons the result;
//   * ex2 / lg2 are exp2f / log2f; fp16 / bf16 conversions round to nearest even.
// Built by tests/kernels/test_attention_cuda.py as a shared library; extern "C" launchers run a
// whole grid, one block after another, and return 0, or an error code (see EMU_* below).

#include <ucontext.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <vector>

typedef unsigned short u16;
typedef unsigned int u32;
typedef long long i64;

#define __device__
#define __forceinline__ inline
#define __global__
#define __launch_bounds__(...)
#define __shared__ static

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
};

static dim3 threadIdx, blockIdx, gridDim, blockDim;

enum { EMU_OK = 0, EMU_DEADLOCK = 1, EMU_DIVERGENT = 2, EMU_BAD_LAUNCH = 3 };

namespace emu {

constexpr int MAX_THREADS = 1024;
constexpr size_t STACK_BYTES = 256 * 1024;
constexpr size_t SMEM_BYTES = 227 * 1024;

struct Barrier {
  int count = 0;
  unsigned gen = 0;
};

struct CopyOp {
  char* dst;
  const char* src;
  int bytes;
};

enum Kind { K_NONE, K_SHFL, K_LDM, K_LDMT, K_MMA_F16, K_MMA_BF16 };

struct WarpSlots {
  Barrier bar;
  int kind[32];
  u32 w[32][8];
  float f[32][4];
};

struct State {
  ucontext_t sched;
  std::vector<ucontext_t> ctx;
  std::vector<std::vector<char>> stacks;
  std::vector<char> done;
  std::vector<std::vector<std::vector<CopyOp>>> groups;  // per thread: committed groups
  std::vector<std::vector<CopyOp>> open;                 // per thread: uncommitted copies
  std::vector<WarpSlots> warps;
  Barrier block_bar;
  int threads = 0;
  int current = 0;
  unsigned long epoch = 0;  // bumps whenever a barrier opens or a thread ends
  int error = EMU_OK;
  std::function<void()> body;
};

static State S;
alignas(128) static unsigned char smem_bytes[SMEM_BYTES];

static void yield() { swapcontext(&S.ctx[S.current], &S.sched); }

static void wait(Barrier& b, int n) {
  const unsigned gen = b.gen;
  if (++b.count == n) {
    b.count = 0;
    ++b.gen;
    ++S.epoch;
    return;
  }
  while (b.gen == gen && S.error == EMU_OK) yield();
}

static void trampoline() {
  S.body();
  S.done[S.current] = 1;
  ++S.epoch;
  swapcontext(&S.ctx[S.current], &S.sched);
}

// Runs the whole grid; every block starts with fresh fibers and poisoned shared memory.
static int run(dim3 grid, int threads, const std::function<void()>& body) {
  if (threads < 32 || threads > MAX_THREADS || threads % 32) return EMU_BAD_LAUNCH;
  S.body = body;
  S.threads = threads;
  S.error = EMU_OK;
  gridDim = grid;
  blockDim = dim3{(unsigned)threads, 1, 1};
  S.ctx.assign(threads, ucontext_t{});
  S.stacks.assign(threads, std::vector<char>(STACK_BYTES));
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        blockIdx = dim3{bx, by, bz};
        std::memset(smem_bytes, 0xff, sizeof smem_bytes);
        S.done.assign(threads, 0);
        S.groups.assign(threads, {});
        S.open.assign(threads, {});
        S.warps.assign(threads / 32, WarpSlots{});
        S.block_bar = Barrier{};
        for (int t = 0; t < threads; ++t) {
          getcontext(&S.ctx[t]);
          S.ctx[t].uc_stack.ss_sp = S.stacks[t].data();
          S.ctx[t].uc_stack.ss_size = STACK_BYTES;
          S.ctx[t].uc_link = nullptr;
          makecontext(&S.ctx[t], trampoline, 0);
        }
        int live = threads;
        while (live > 0) {
          const unsigned long before = S.epoch;
          live = 0;
          for (int t = 0; t < threads; ++t) {
            if (S.done[t]) continue;
            S.current = t;
            threadIdx = dim3{(unsigned)t, 0, 0};
            swapcontext(&S.sched, &S.ctx[t]);
            if (!S.done[t]) ++live;
          }
          if (S.error != EMU_OK) return S.error;
          if (live > 0 && S.epoch == before) return EMU_DEADLOCK;
        }
      }
  return EMU_OK;
}

// --- warp collectives: publish, wait for the warp, compute, wait again -----------------------

static WarpSlots& warp_of() { return S.warps[S.current / 32]; }
static int lane_of() { return S.current % 32; }

static void publish(Kind kind) {
  WarpSlots& w = warp_of();
  w.kind[lane_of()] = kind;
  wait(w.bar, 32);
  for (int l = 0; l < 32; ++l)
    if (w.kind[l] != kind) S.error = EMU_DIVERGENT;
}

static void retire() { wait(warp_of().bar, 32); }

static float f16_to_f32(u16 h) {
  _Float16 x;
  std::memcpy(&x, &h, 2);
  return (float)x;
}

static float bf16_to_f32(u16 h) {
  const u32 bits = (u32)h << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

static u16 f32_to_f16(float f) {
  const _Float16 x = (_Float16)f;  // round to nearest even
  u16 h;
  std::memcpy(&h, &x, 2);
  return h;
}

static u16 f32_to_bf16(float f) {
  u32 bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return (u16)((bits >> 16) | 0x40);  // quiet NaN
  bits += 0x7fffu + ((bits >> 16) & 1u);  // round to nearest even
  return (u16)(bits >> 16);
}

static u16 half_of(u32 word, int hi) { return (u16)(hi ? word >> 16 : word & 0xffffu); }

}  // namespace emu

// --- the primitives the kernels call ------------------------------------------------------------

static inline int min(int a, int b) { return a < b ? a : b; }

static inline float __int_as_float(int i) {
  float f;
  std::memcpy(&f, &i, 4);
  return f;
}

static inline void __syncthreads() { emu::wait(emu::S.block_bar, emu::S.threads); }

static inline float __shfl_xor_sync(unsigned mask, float v, int lane_mask) {
  if (mask != 0xffffffffu) emu::S.error = EMU_DIVERGENT;
  emu::WarpSlots& w = emu::warp_of();
  std::memcpy(&w.w[emu::lane_of()][0], &v, 4);
  emu::publish(emu::K_SHFL);
  float r;
  std::memcpy(&r, &w.w[emu::lane_of() ^ lane_mask][0], 4);
  emu::retire();
  return r;
}

static inline float ex2(float x) { return exp2f(x); }
static inline float lg2(float x) { return log2f(x); }

// flash_fwd.cu

static u16* const smem = reinterpret_cast<u16*>(emu::smem_bytes);

static inline u32 smem_addr(const void* p) {
  return (u32)(reinterpret_cast<const unsigned char*>(p) - emu::smem_bytes);
}

static inline void cp_async16(u32 dst, const void* src, int src_bytes) {
  if (dst % 16 || (uintptr_t)src % 16 || dst + 16 > emu::SMEM_BYTES) emu::S.error = EMU_BAD_LAUNCH;
  emu::S.open[emu::S.current].push_back(
      {reinterpret_cast<char*>(emu::smem_bytes + dst), static_cast<const char*>(src), src_bytes});
}

static inline void cp_async_commit() {
  auto& open = emu::S.open[emu::S.current];
  emu::S.groups[emu::S.current].push_back(open);
  open.clear();
}

static inline void cp_async_wait_n(size_t keep) {
  auto& groups = emu::S.groups[emu::S.current];
  while (groups.size() > keep) {
    for (const emu::CopyOp& op : groups.front()) {
      std::memset(op.dst, 0, 16);
      if (op.bytes > 0) std::memcpy(op.dst, op.src, op.bytes);
    }
    groups.erase(groups.begin());
  }
}

static inline void cp_async_wait_all() { cp_async_wait_n(0); }

static inline void ldmatrix_common(u32* r, u32 addr, bool trans) {
  emu::WarpSlots& w = emu::warp_of();
  const int lane = emu::lane_of();
  w.w[lane][0] = addr;
  emu::publish(trans ? emu::K_LDMT : emu::K_LDM);
  for (int i = 0; i < 4; ++i) {
    auto elem = [&](int row, int col) {
      u16 v;
      std::memcpy(&v, emu::smem_bytes + w.w[8 * i + row][0] + 2 * col, 2);
      return v;
    };
    u16 lo, hi;
    if (!trans) {
      lo = elem(lane / 4, 2 * (lane % 4));
      hi = elem(lane / 4, 2 * (lane % 4) + 1);
    } else {
      lo = elem(2 * (lane % 4), lane / 4);
      hi = elem(2 * (lane % 4) + 1, lane / 4);
    }
    r[i] = (u32)lo | ((u32)hi << 16);
  }
  emu::retire();
}

static inline void ldmatrix_x4(u32* r, u32 addr) { ldmatrix_common(r, addr, false); }
static inline void ldmatrix_x4_trans(u32* r, u32 addr) { ldmatrix_common(r, addr, true); }

template <bool BF16>
static inline void mma16816(float* d, const u32* a, u32 b0, u32 b1) {
  emu::WarpSlots& w = emu::warp_of();
  const int lane = emu::lane_of();
  for (int i = 0; i < 4; ++i) w.w[lane][i] = a[i];
  w.w[lane][4] = b0;
  w.w[lane][5] = b1;
  emu::publish(BF16 ? emu::K_MMA_BF16 : emu::K_MMA_F16);
  auto cvt = [](u16 h) { return BF16 ? emu::bf16_to_f32(h) : emu::f16_to_f32(h); };
  auto A = [&](int row, int k) {  // A[row][k] of the 16x16 tile
    const int src = (row % 8) * 4 + (k % 8) / 2;
    const int reg = (row >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0);
    return cvt(emu::half_of(w.w[src][reg], k % 2));
  };
  auto B = [&](int k, int n) {  // B[k][n] of the 16x8 tile
    const int src = n * 4 + (k % 8) / 2;
    const int reg = 4 + (k >= 8 ? 1 : 0);
    return cvt(emu::half_of(w.w[src][reg], k % 2));
  };
  for (int e = 0; e < 4; ++e) {
    const int row = lane / 4 + (e >= 2 ? 8 : 0);
    const int col = (lane % 4) * 2 + (e & 1);
    float sum = d[e];
    for (int k = 0; k < 16; ++k) sum += A(row, k) * B(k, col);
    d[e] = sum;
  }
  emu::retire();
}

template <bool BF16>
static inline u32 pack2(float lo, float hi) {
  const u16 l = BF16 ? emu::f32_to_bf16(lo) : emu::f32_to_f16(lo);
  const u16 h = BF16 ? emu::f32_to_bf16(hi) : emu::f32_to_f16(hi);
  return (u32)l | ((u32)h << 16);
}

// flash_decode.cu

template <class T>
static inline void load16(T& r, const u16* p) {
  static_assert(sizeof(T) == 16, "16-byte loads");
  if ((uintptr_t)p % 16) emu::S.error = EMU_BAD_LAUNCH;
  std::memcpy(&r, p, 16);
}

static inline float h2f(u32 bits) { return emu::f16_to_f32((u16)(bits & 0xffffu)); }

template <bool BF16>
static inline u16 pack1(float x) {
  return BF16 ? emu::f32_to_bf16(x) : emu::f32_to_f16(x);
}

#define WB_EMULATE 1
#include WB_FLASH_FWD_SOURCE
#include WB_FLASH_DECODE_SOURCE

// --- launchers (ctypes) -------------------------------------------------------------------------

typedef void (*FwdFn)(const u16*, const u16*, const u16*, u16*, float*, int, int, int, float);
typedef void (*SplitFn)(const u16*, const u16*, const u16*, float*, float*, int, int, int, int,
                        float);
typedef void (*CombineFn)(const float*, const float*, u16*, float*, int, int);

extern "C" int emu_flash_fwd(void* fn, unsigned gx, unsigned gy, unsigned gz, int threads,
                             const u16* q, const u16* k, const u16* v, u16* o, float* lse, int n,
                             int hq, int hkv, float scale_log2) {
  FwdFn f = reinterpret_cast<FwdFn>(fn);
  return emu::run(dim3{gx, gy, gz}, threads,
                  [=] { f(q, k, v, o, lse, n, hq, hkv, scale_log2); });
}

extern "C" int emu_decode_split(void* fn, unsigned gx, unsigned gy, unsigned gz, int threads,
                                const u16* q, const u16* k, const u16* v, float* o_part,
                                float* lse_part, int l, int hq, int hkv, int chunk,
                                float scale_log2) {
  SplitFn f = reinterpret_cast<SplitFn>(fn);
  return emu::run(dim3{gx, gy, gz}, threads,
                  [=] { f(q, k, v, o_part, lse_part, l, hq, hkv, chunk, scale_log2); });
}

extern "C" int emu_decode_combine(void* fn, unsigned gx, unsigned gy, unsigned gz, int threads,
                                  const float* o_part, const float* lse_part, u16* o, float* lse,
                                  int splits, int d) {
  CombineFn f = reinterpret_cast<CombineFn>(fn);
  return emu::run(dim3{gx, gy, gz}, threads, [=] { f(o_part, lse_part, o, lse, splits, d); });
}
