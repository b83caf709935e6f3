#include "blas_runtime.h"

#include <cblas.h>
#include <dlfcn.h>
#include <limits.h>
#include <stdlib.h>

#include <atomic>
#include <string>

namespace pifa {

namespace {

std::atomic<int> requested_threads{0};  // 0 until JS sets a count.
int applied_threads = 0;                // Guarded by BlasMutex().

// The Fortran LAPACK and BLAS symbols that LAPACKE and CBLAS end up calling.
constexpr const char* kInspectedSymbols[] = {
    "sgemm_",  "dgemm_",  "cblas_sgemm", "ssyrk_",  "strsm_",  "spotrf_", "dpotrf_",
    "ssyevd_", "dsyevd_", "sgesdd_",     "dgesdd_", "sgeqrf_", "sorgqr_", "sgeqp3_",
    "dgeqp3_", "sgesv_",  "dgesv_",      "sgelsd_", "dgelsd_",
};

std::string LibraryPath(void* address) {
  Dl_info where;
  if (address == nullptr || dladdr(address, &where) == 0 || where.dli_fname == nullptr) {
    return "unresolved";
  }
  char resolved[PATH_MAX];
  // The Debian alternatives links hide which build is loaded; report the file.
  if (realpath(where.dli_fname, resolved) != nullptr) return resolved;
  return where.dli_fname;
}

}  // namespace

std::mutex& BlasMutex() {
  static std::mutex mutex;
  return mutex;
}

void RequestThreads(int count) {
  requested_threads.store(count);
  std::unique_lock<std::mutex> lock(BlasMutex(), std::try_to_lock);
  if (lock.owns_lock()) ApplyRequestedThreads();
}

int RequestedThreads() {
  const int requested = requested_threads.load();
  return requested > 0 ? requested : openblas_get_num_threads();
}

void ApplyRequestedThreads() {
  const int requested = requested_threads.load();
  if (requested > 0 && requested != applied_threads) {
    openblas_set_num_threads(requested);
    applied_threads = requested;
  }
}

Napi::Object BlasInfo(Napi::Env env) {
  Napi::Object info = Napi::Object::New(env);
  info.Set("config", Napi::String::New(env, openblas_get_config()));
  info.Set("corename", Napi::String::New(env, openblas_get_corename()));
  info.Set("threads", Napi::Number::New(env, openblas_get_num_threads()));

  // Look the symbols up in this addon's own dependency scope: that is the
  // scope the dynamic linker uses to bind liblapacke's calls, because Node
  // loads addons with RTLD_LOCAL.
  Napi::Object symbols = Napi::Object::New(env);
  Dl_info self;
  void* handle = nullptr;
  if (dladdr(reinterpret_cast<void*>(&BlasInfo), &self) != 0 && self.dli_fname != nullptr) {
    handle = dlopen(self.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
  }
  for (const char* symbol : kInspectedSymbols) {
    void* address = handle != nullptr ? dlsym(handle, symbol) : nullptr;
    symbols.Set(symbol, Napi::String::New(env, LibraryPath(address)));
  }
  if (handle != nullptr) dlclose(handle);
  info.Set("symbols", symbols);
  return info;
}

}  // namespace pifa
