// pifa_native: BLAS/LAPACK operations for pifa-service on the libuv thread
// pool. The typed wrapper is src/native/index.ts.
#include <napi.h>

#include <cmath>
#include <limits>

#include "blas_runtime.h"
#include "job.h"
#include "ops.h"

namespace pifa {

namespace {

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const double count = info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : NAN;
  if (!(count >= 1 && count <= std::numeric_limits<int>::max()) || std::floor(count) != count) {
    throw Napi::RangeError::New(env, "setThreads: thread count must be an integer >= 1, got " +
                                         info[0].ToString().Utf8Value());
  }
  RequestThreads(static_cast<int>(count));
  return env.Undefined();
}

Napi::Value GetThreads(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), RequestedThreads());
}

Napi::Value GetBlasInfo(const Napi::CallbackInfo& info) { return BlasInfo(info.Env()); }

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("gemm", Napi::Function::New(env, PrepareGemm, "gemm"));
  exports.Set("syrk", Napi::Function::New(env, PrepareSyrk, "syrk"));
  exports.Set("trsm", Napi::Function::New(env, PrepareTrsm, "trsm"));
  exports.Set("cholesky", Napi::Function::New(env, PrepareCholesky, "cholesky"));
  exports.Set("eigh", Napi::Function::New(env, PrepareEigh, "eigh"));
  exports.Set("svd", Napi::Function::New(env, PrepareSvd, "svd"));
  exports.Set("qr", Napi::Function::New(env, PrepareQr, "qr"));
  exports.Set("qrPivoted", Napi::Function::New(env, PrepareQrPivoted, "qrPivoted"));
  exports.Set("luSolve", Napi::Function::New(env, PrepareLuSolve, "luSolve"));
  exports.Set("leastSquares", Napi::Function::New(env, PrepareLeastSquares, "leastSquares"));
  exports.Set("run", Napi::Function::New(env, RunJob, "run"));
  exports.Set("setThreads", Napi::Function::New(env, SetThreads, "setThreads"));
  exports.Set("getThreads", Napi::Function::New(env, GetThreads, "getThreads"));
  exports.Set("blasInfo", Napi::Function::New(env, GetBlasInfo, "blasInfo"));
  return exports;
}

}  // namespace

}  // namespace pifa

// NODE_API_MODULE pastes the name into an identifier, so it cannot be qualified.
static Napi::Object InitPifaNative(Napi::Env env, Napi::Object exports) {
  return pifa::Init(env, exports);
}

NODE_API_MODULE(pifa_native, InitPifaNative)
