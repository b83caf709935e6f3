// Conversion between JS row-major matrices `{rows, cols, data}` and
// native-owned copies or borrowed views. Reading runs on the JS thread. The
// worker thread computes on the copies, so callers may change those arrays at
// any time, but not a borrowed array (see BorrowedMatrix).
#pragma once

#include <lapacke.h>
#include <napi.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "errors.h"

namespace pifa {

enum class DType { kFloat32, kFloat64 };

const char* DTypeName(DType dtype);

// Largest typed array Node 20 can create (v8::TypedArray::kMaxLength on 64-bit).
constexpr uint64_t kMaxTypedArrayLength = uint64_t{1} << 32;

// A validated JS matrix argument; valid only during the current JS call.
struct MatrixArg {
  std::string name;
  DType dtype;
  lapack_int rows;
  lapack_int cols;
  Napi::TypedArray array;
};

// Reads and validates `value` as a matrix named `name` ("A", "B", "C").
// Throws NativeFailure (INVALID_SHAPE) for anything that is not a matrix whose
// dimensions fit LAPACK's 32-bit integers and whose data length is rows * cols.
MatrixArg ReadMatrix(const Napi::Value& value, const std::string& name);

// Throws DTYPE_MISMATCH unless `other` has the element type of `first`.
void RequireSameDType(const MatrixArg& first, const MatrixArg& other);

// Throws INVALID_SHAPE unless the matrix is square.
void RequireSquare(const MatrixArg& matrix);

// Throws INVALID_SHAPE when a result `[rows, cols]` cannot be a typed array.
// NOTE: a smaller result can still exceed RAM. Under Linux overcommit the
// kernel may then kill the process instead of raising std::bad_alloc, which
// would become OUT_OF_MEMORY.
void RequireResultSize(uint64_t rows, uint64_t cols, const std::string& description);

// Reads an optional boolean, number or int argument with its default.
bool ReadBoolean(const Napi::Value& value, const std::string& name);
double ReadFiniteNumber(const Napi::Value& value, const std::string& name);

std::string Shape(uint64_t rows, uint64_t cols);

// Row-major native copy of a matrix argument.
template <typename T>
struct DenseMatrix {
  std::string name;
  lapack_int rows = 0;
  lapack_int cols = 0;
  std::vector<T> data;  // [rows, cols]

  std::string Describe() const { return "matrix " + name + " " + Shape(rows, cols); }
};

template <typename T>
DenseMatrix<T> CopyMatrix(const MatrixArg& arg) {
  DenseMatrix<T> copy;
  copy.name = arg.name;
  copy.rows = arg.rows;
  copy.cols = arg.cols;
  const size_t length = arg.array.ElementLength();
  copy.data.resize(length);
  if (length > 0) {
    const T* source = arg.array.As<Napi::TypedArrayOf<T>>().Data();
    std::memcpy(copy.data.data(), source, length * sizeof(T));
  }
  return copy;
}

// Read-only view of a JS matrix that the job keeps alive with a reference
// instead of copying it. gemm and syrk borrow their A (and gemm its B): they
// read multi-hundred-megabyte weights, where a copy costs more memory and
// time than it saves. Contract: callers must not write to or transfer the
// array until the returned promise settles. Writing only changes the result;
// the reference keeps the memory alive.
template <typename T>
struct BorrowedMatrix {
  std::string name;
  lapack_int rows = 0;
  lapack_int cols = 0;
  const T* data = nullptr;  // [rows, cols]
  Napi::Reference<Napi::TypedArray> keep;

  std::string Describe() const { return "matrix " + name + " " + Shape(rows, cols); }
};

template <typename T>
BorrowedMatrix<T> BorrowMatrix(const MatrixArg& arg) {
  BorrowedMatrix<T> view;
  view.name = arg.name;
  view.rows = arg.rows;
  view.cols = arg.cols;
  view.data = arg.array.As<Napi::TypedArrayOf<T>>().Data();
  view.keep = Napi::Persistent(arg.array);
  return view;
}

// Moves `data` into a typed array whose memory the JS garbage collector frees.
template <typename T>
Napi::Value ToTypedArray(Napi::Env env, std::vector<T>&& data) {
  const size_t length = data.size();
  if (length == 0) {
    return Napi::TypedArrayOf<T>::New(env, 0);
  }
  auto owned = std::make_unique<std::vector<T>>(std::move(data));
  Napi::ArrayBuffer buffer = Napi::ArrayBuffer::New(
      env, owned->data(), length * sizeof(T),
      [](Napi::Env, void*, std::vector<T>* storage) { delete storage; }, owned.get());
  owned.release();  // The ArrayBuffer finalizer owns the storage now.
  return Napi::TypedArrayOf<T>::New(env, length, buffer, 0);
}

template <typename T>
Napi::Object ToJsMatrix(Napi::Env env, lapack_int rows, lapack_int cols, std::vector<T>&& data) {
  Napi::Object matrix = Napi::Object::New(env);
  matrix.Set("rows", Napi::Number::New(env, rows));
  matrix.Set("cols", Napi::Number::New(env, cols));
  matrix.Set("data", ToTypedArray(env, std::move(data)));
  return matrix;
}

}  // namespace pifa
