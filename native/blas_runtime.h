// Process-wide OpenBLAS state: the lock that serializes BLAS calls, the
// requested thread count, and where the BLAS/LAPACK symbols were bound.
#pragma once

#include <napi.h>

#include <mutex>

namespace pifa {

// Held by a pool thread for the whole of one computation.
std::mutex& BlasMutex();

// Records the thread count for later calls; applies it at once when no
// computation is running. OpenBLAS may cap it at its build's MAX_THREADS.
void RequestThreads(int count);
int RequestedThreads();

// Applies a pending thread count; the caller holds BlasMutex(). Changing the
// count while another BLAS call runs is not safe in OpenBLAS 0.3.21.
void ApplyRequestedThreads();

// `{config, corename, threads, symbols}` where `symbols` maps each BLAS and
// LAPACK symbol this addon calls to the shared library it is bound to.
Napi::Object BlasInfo(Napi::Env env);

}  // namespace pifa
