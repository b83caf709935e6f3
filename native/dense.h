// Dense helpers for the worker thread: layout changes between row-major and
// LAPACK's column-major storage, input checks, and workspace sizes.
#pragma once

#include <lapacke.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "errors.h"
#include "matrix_io.h"

namespace pifa {

// Leading dimension for BLAS and LAPACK, which reject 0 even for empty matrices.
inline lapack_int LeadingDimension(lapack_int extent) { return std::max<lapack_int>(1, extent); }

// Copies row-major `[rows, cols]` into `destination` as row-major `[cols, rows]`,
// which is the column-major layout of the same matrix with leading dimension
// `rows`.
template <typename T>
void TransposeInto(const T* source, lapack_int rows, lapack_int cols, T* destination) {
  constexpr lapack_int kBlock = 64;  // Keeps both access patterns within cache.
  for (lapack_int i0 = 0; i0 < rows; i0 += kBlock) {
    const lapack_int i1 = std::min(i0 + kBlock, rows);
    for (lapack_int j0 = 0; j0 < cols; j0 += kBlock) {
      const lapack_int j1 = std::min(j0 + kBlock, cols);
      for (lapack_int i = i0; i < i1; ++i) {
        for (lapack_int j = j0; j < j1; ++j) {
          destination[static_cast<size_t>(j) * rows + i] =
              source[static_cast<size_t>(i) * cols + j];
        }
      }
    }
  }
}

template <typename T>
std::vector<T> ToColumnMajor(const DenseMatrix<T>& matrix) {
  std::vector<T> result(matrix.data.size());
  TransposeInto(matrix.data.data(), matrix.rows, matrix.cols, result.data());
  return result;
}

template <typename T>
void TransposeSquareInPlace(T* a, lapack_int n) {
  for (lapack_int i = 0; i < n; ++i) {
    for (lapack_int j = i + 1; j < n; ++j) {
      std::swap(a[static_cast<size_t>(i) * n + j], a[static_cast<size_t>(j) * n + i]);
    }
  }
}

// Throws NON_FINITE naming the first NaN or infinite element, because LAPACK
// routines may loop, return garbage or report misleading errors on such input.
template <typename T>
void RequireFinite(const T* data, size_t length, lapack_int cols, const std::string& description) {
  for (size_t index = 0; index < length; ++index) {
    const T value = data[index];
    if (!std::isfinite(value)) {
      const size_t width = static_cast<size_t>(std::max<lapack_int>(1, cols));
      const char* kind = std::isnan(value) ? "NaN" : "Infinity";
      throw NativeFailure(ErrorCode::kNonFinite,
                          description + " contains " + kind + " at (" +
                              std::to_string(index / width) + ", " + std::to_string(index % width) +
                              "); remove or replace non-finite values before calling");
    }
  }
}

template <typename T>
void RequireFinite(const DenseMatrix<T>& matrix) {
  RequireFinite(matrix.data.data(), matrix.data.size(), matrix.cols, matrix.Describe());
}

template <typename T>
void RequireFinite(const BorrowedMatrix<T>& matrix) {
  RequireFinite(matrix.data, static_cast<size_t>(matrix.rows) * matrix.cols, matrix.cols,
                matrix.Describe());
}

// Converts a LAPACK workspace query result into a length, rounding UP.
// The query returns the size as a float. In single precision a size above
// 2^24 rounds to the nearest float, which may be below the integer LAPACK
// then requires, so a plain conversion fails (LAPACKE 3.11's own query does,
// e.g. for ssyevd at n = 4096). Stepping to the next float before ceil() fixes it.
template <typename T>
lapack_int WorkspaceLength(T queried, const std::string& routine) {
  const T rounded_up = std::nextafter(queried, std::numeric_limits<T>::infinity());
  const double length = std::ceil(static_cast<double>(rounded_up));
  if (!(length <= static_cast<double>(std::numeric_limits<lapack_int>::max()))) {
    throw NativeFailure(ErrorCode::kInvalidShape,
                        "LAPACK " + routine + " needs a workspace of " + std::to_string(length) +
                            " elements, more than its 32-bit size argument allows; use smaller "
                            "matrices");
  }
  return std::max<lapack_int>(1, static_cast<lapack_int>(length));
}

// Throws LAPACK_ERROR for an invalid-argument info (< 0), which means a bug in
// this addon rather than bad input, since inputs are validated beforehand.
inline void RequireValidArguments(lapack_int info, const std::string& routine) {
  if (info < 0) {
    throw NativeFailure(ErrorCode::kLapackError,
                        "LAPACK " + routine + " rejected argument " + std::to_string(-info) +
                            " (info=" + std::to_string(info) + ")",
                        info);
  }
}

}  // namespace pifa
