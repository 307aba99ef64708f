// Host emulation of the attention CUDA kernels (kernels/attention/flash_fwd.cu, flash_decode.cu),
// for tests on machines without a GPU (tests/kernels/test_attention_cuda.py builds it as a shared
// library, with -I<kernels folder> for the sources' #include "ptx.cuh").
//
// The kernel sources are compiled unchanged; their PTX primitives are ptx_emulator.h's, on the
// runtime of warp_emulator.h (fibers for threads, block / warp barriers, __shfl_xor_sync, cp.async
// queues, poisoned shared memory, number formats, error codes); global reads are checked against
// the buffers the test registers (emu_clear_buffers / emu_add_buffer). extern "C" launchers run a
// whole grid, one block after another, and return an EMU_* code.

#include "ptx_emulator.h"

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
