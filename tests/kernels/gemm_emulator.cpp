// Host emulation of the hand-written GEMM (kernels/matmul/gemm.cu) for tests on machines without
// a GPU (tests/kernels/test_gemm_emulated.py builds it as a shared library, with the tiling
// macros it tests, and -I<kernels folder> for the source's #include "ptx.cuh").
//
// The kernel source is compiled unchanged; its PTX primitives are ptx_emulator.h's, on the
// runtime of warp_emulator.h (fibers for threads, block / warp barriers, cp.async queues with
// zero-fill that land only at cp.async.wait_group, poisoned shared memory, global-read checks,
// error codes). The extern "C" launcher runs a whole grid, one block after another, and returns
// an EMU_* code.

#include "ptx_emulator.h"

#include WB_GEMM_SOURCE

// --- launcher (ctypes) --------------------------------------------------------------------------

typedef void (*GemmFn)(const u16*, const u16*, u16*, int, int, int);

extern "C" int emu_gemm(void* fn, unsigned blocks, const u16* a, const u16* b, u16* c, int m,
                        int n, int k) {
  GemmFn f = reinterpret_cast<GemmFn>(fn);
  return emu::run(dim3{blocks, 1, 1}, wb::THREADS, [=] { f(a, b, c, m, n, k); });
}

extern "C" int emu_gemm_threads() { return wb::THREADS; }
extern "C" int emu_gemm_smem_bytes() { return wb::SMEM_BYTES; }
