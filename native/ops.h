// JS entry points. Each validates its arguments, copies the input matrices
// (gemm's A and B and syrk's A are borrowed instead, see BorrowedMatrix) and
// returns a job for `run`. The TS wrapper in src/native/index.ts fills in
// option defaults, so every positional argument here is required.
#pragma once

#include <napi.h>

#include <memory>
#include <optional>

#include "job.h"
#include "matrix_io.h"

namespace pifa {

// gemm(a, b, c | null, transA, transB, alpha, beta)
Napi::Value PrepareGemm(const Napi::CallbackInfo& info);
// syrk(a, c | null, trans, alpha, beta, float64)
Napi::Value PrepareSyrk(const Napi::CallbackInfo& info);
// trsm(a, b, left, lower, transA, unitDiagonal, alpha)
Napi::Value PrepareTrsm(const Napi::CallbackInfo& info);

// cholesky(a), qr(a, wantQ), qrPivoted(a), luSolve(a, b), leastSquares(a, b)
Napi::Value PrepareCholesky(const Napi::CallbackInfo& info);
Napi::Value PrepareQr(const Napi::CallbackInfo& info);
Napi::Value PrepareQrPivoted(const Napi::CallbackInfo& info);
Napi::Value PrepareLuSolve(const Napi::CallbackInfo& info);
Napi::Value PrepareLeastSquares(const Napi::CallbackInfo& info);

// eigh(a), svd(a)
Napi::Value PrepareEigh(const Napi::CallbackInfo& info);
Napi::Value PrepareSvd(const Napi::CallbackInfo& info);

// Inputs of the operations that take one or two matrices and no options.
struct SingleParams {
  MatrixArg a;
};

struct PairParams {
  MatrixArg a;
  MatrixArg b;
};

// Reads argument `index` as a matrix, or returns nothing for null/undefined.
std::optional<MatrixArg> ReadOptionalMatrix(const Napi::CallbackInfo& info, size_t index,
                                            const std::string& name);

// Builds `Job<float>` or `Job<double>` for the element type of the inputs.
template <template <typename> class JobType, typename Params>
std::unique_ptr<Job> MakeJob(DType dtype, const Params& params) {
  if (dtype == DType::kFloat64) return std::make_unique<JobType<double>>(params);
  return std::make_unique<JobType<float>>(params);
}

}  // namespace pifa
