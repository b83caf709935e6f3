#include "errors.h"

namespace pifa {

const char* ErrorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidShape:
      return "INVALID_SHAPE";
    case ErrorCode::kInvalidArgument:
      return "INVALID_ARGUMENT";
    case ErrorCode::kDTypeMismatch:
      return "DTYPE_MISMATCH";
    case ErrorCode::kNonFinite:
      return "NON_FINITE";
    case ErrorCode::kNotPositiveDefinite:
      return "NOT_POSITIVE_DEFINITE";
    case ErrorCode::kSingularMatrix:
      return "SINGULAR_MATRIX";
    case ErrorCode::kNoConvergence:
      return "NO_CONVERGENCE";
    case ErrorCode::kLapackError:
      return "LAPACK_ERROR";
    case ErrorCode::kOutOfMemory:
      return "OUT_OF_MEMORY";
  }
  return "LAPACK_ERROR";
}

NativeFailure OutOfMemoryFailure() {
  return NativeFailure(ErrorCode::kOutOfMemory,
                       "memory allocation failed; use smaller matrices or free memory");
}

Napi::Error ToJsError(Napi::Env env, const std::string& operation, const NativeFailure& failure) {
  Napi::Error error = Napi::Error::New(env, operation + ": " + failure.what());
  error.Set("code", Napi::String::New(env, ErrorCodeName(failure.code())));
  error.Set("operation", Napi::String::New(env, operation));
  if (failure.info()) error.Set("info", Napi::Number::New(env, *failure.info()));
  return error;
}

}  // namespace pifa
