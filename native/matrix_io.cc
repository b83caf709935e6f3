#include "matrix_io.h"

#include <cmath>
#include <limits>

namespace pifa {

namespace {

constexpr double kMaxDimension = std::numeric_limits<lapack_int>::max();

lapack_int ReadDimension(const Napi::Object& object, const char* key, const std::string& name) {
  Napi::Value value = object.Get(key);
  if (!value.IsNumber()) {
    throw NativeFailure(ErrorCode::kInvalidShape,
                        "matrix " + name + " has no numeric '" + key + "' property");
  }
  const double number = value.As<Napi::Number>().DoubleValue();
  if (!(number >= 0 && number <= kMaxDimension) || std::floor(number) != number) {
    throw NativeFailure(ErrorCode::kInvalidShape,
                        "matrix " + name + " has " + key + " = " + value.ToString().Utf8Value() +
                            "; dimensions must be integers in [0, 2147483647] (LAPACK uses "
                            "32-bit integers)");
  }
  return static_cast<lapack_int>(number);
}

}  // namespace

const char* DTypeName(DType dtype) { return dtype == DType::kFloat64 ? "float64" : "float32"; }

std::string Shape(uint64_t rows, uint64_t cols) {
  return "[" + std::to_string(rows) + ", " + std::to_string(cols) + "]";
}

MatrixArg ReadMatrix(const Napi::Value& value, const std::string& name) {
  if (!value.IsObject()) {
    throw NativeFailure(ErrorCode::kInvalidShape,
                        "matrix " + name + " must be an object {rows, cols, data}");
  }
  Napi::Object object = value.As<Napi::Object>();
  const lapack_int rows = ReadDimension(object, "rows", name);
  const lapack_int cols = ReadDimension(object, "cols", name);

  Napi::Value data = object.Get("data");
  if (!data.IsTypedArray()) {
    throw NativeFailure(ErrorCode::kInvalidShape,
                        "matrix " + name + " data must be a Float32Array or Float64Array");
  }
  Napi::TypedArray array = data.As<Napi::TypedArray>();
  DType dtype;
  switch (array.TypedArrayType()) {
    case napi_float32_array:
      dtype = DType::kFloat32;
      break;
    case napi_float64_array:
      dtype = DType::kFloat64;
      break;
    default:
      throw NativeFailure(ErrorCode::kInvalidShape,
                          "matrix " + name + " data must be a Float32Array or Float64Array");
  }

  // Both dimensions are below 2^31, so the product cannot overflow 64 bits.
  const uint64_t expected = static_cast<uint64_t>(rows) * static_cast<uint64_t>(cols);
  if (array.ElementLength() != expected) {
    throw NativeFailure(ErrorCode::kInvalidShape,
                        "matrix " + name + " " + Shape(rows, cols) + " needs " +
                            std::to_string(expected) + " elements but its data has " +
                            std::to_string(array.ElementLength()));
  }
  return MatrixArg{name, dtype, rows, cols, array};
}

void RequireSameDType(const MatrixArg& first, const MatrixArg& other) {
  if (first.dtype != other.dtype) {
    throw NativeFailure(ErrorCode::kDTypeMismatch,
                        "matrix " + first.name + " is " + DTypeName(first.dtype) + " but matrix " +
                            other.name + " is " + DTypeName(other.dtype) +
                            "; convert both to the same element type");
  }
}

void RequireSquare(const MatrixArg& matrix) {
  if (matrix.rows != matrix.cols) {
    throw NativeFailure(ErrorCode::kInvalidShape, "matrix " + matrix.name + " " +
                                                      Shape(matrix.rows, matrix.cols) +
                                                      " must be square");
  }
}

void RequireResultSize(uint64_t rows, uint64_t cols, const std::string& description) {
  // Dimensions are below 2^31 each, so the product fits in 64 bits.
  if (rows * cols > kMaxTypedArrayLength) {
    throw NativeFailure(ErrorCode::kInvalidShape,
                        description + " " + Shape(rows, cols) + " would have " +
                            std::to_string(rows * cols) +
                            " elements, more than a typed array can hold (4294967296)");
  }
}

bool ReadBoolean(const Napi::Value& value, const std::string& name) {
  if (!value.IsBoolean()) {
    throw NativeFailure(ErrorCode::kInvalidArgument, name + " must be a boolean");
  }
  return value.As<Napi::Boolean>().Value();
}

double ReadFiniteNumber(const Napi::Value& value, const std::string& name) {
  if (!value.IsNumber()) {
    throw NativeFailure(ErrorCode::kInvalidArgument, name + " must be a number");
  }
  const double number = value.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(number)) {
    throw NativeFailure(ErrorCode::kNonFinite,
                        name + " is " + value.ToString().Utf8Value() + "; it must be finite");
  }
  return number;
}

}  // namespace pifa
