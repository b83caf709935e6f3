// Typed failures raised by validation and by LAPACK info codes, and their
// conversion into JS errors that src/native/errors.ts turns into NativeError.
#pragma once

#include <napi.h>

#include <optional>
#include <stdexcept>
#include <string>

namespace pifa {

// Mirrors the NativeErrorCode union in src/native/errors.ts.
enum class ErrorCode {
  kInvalidShape,
  kInvalidArgument,
  kDTypeMismatch,
  kNonFinite,
  kNotPositiveDefinite,
  kSingularMatrix,
  kNoConvergence,
  kLapackError,
  kOutOfMemory,
};

const char* ErrorCodeName(ErrorCode code);

// Exception carrying an error code, a message without the operation prefix,
// and the LAPACK info value when one caused the failure.
class NativeFailure : public std::runtime_error {
 public:
  NativeFailure(ErrorCode code, const std::string& message, std::optional<int> info = {})
      : std::runtime_error(message), code_(code), info_(info) {}

  ErrorCode code() const { return code_; }
  std::optional<int> info() const { return info_; }

 private:
  ErrorCode code_;
  std::optional<int> info_;
};

NativeFailure OutOfMemoryFailure();

// Builds `Error("<operation>: <message>")` with `code`, `operation` and, when
// known, `info` properties.
Napi::Error ToJsError(Napi::Env env, const std::string& operation, const NativeFailure& failure);

}  // namespace pifa
