// Level-3 BLAS operations: gemm, syrk and trsm on row-major matrices.
#include <optional>
#include <type_traits>

#include "dense.h"
#include "lapack.h"
#include "ops.h"

namespace pifa {

std::optional<MatrixArg> ReadOptionalMatrix(const Napi::CallbackInfo& info, size_t index,
                                            const std::string& name) {
  if (info[index].IsNull() || info[index].IsUndefined()) return std::nullopt;
  return ReadMatrix(info[index], name);
}

namespace {

CBLAS_TRANSPOSE Transpose(bool trans) { return trans ? CblasTrans : CblasNoTrans; }

template <typename T>
std::optional<DenseMatrix<T>> CopyOptional(const std::optional<MatrixArg>& arg) {
  if (!arg) return std::nullopt;
  return CopyMatrix<T>(*arg);
}

// ---- gemm: alpha * op(A) op(B) + beta * C --------------------------------

struct GemmParams {
  MatrixArg a;
  MatrixArg b;
  std::optional<MatrixArg> c;
  bool trans_a;
  bool trans_b;
  double alpha;
  double beta;
  lapack_int m;  // rows of op(A) and of the result
  lapack_int n;  // cols of op(B) and of the result
  lapack_int k;  // shared inner dimension
};

template <typename T>
class GemmJob : public Job {
 public:
  explicit GemmJob(const GemmParams& p)
      : Job("gemm"),
        a_(BorrowMatrix<T>(p.a)),
        b_(BorrowMatrix<T>(p.b)),
        c_(CopyOptional<T>(p.c)),
        trans_a_(p.trans_a),
        trans_b_(p.trans_b),
        alpha_(static_cast<T>(p.alpha)),
        beta_(static_cast<T>(p.beta)),
        m_(p.m),
        n_(p.n),
        k_(p.k) {}

  void Compute() override {
    RequireFinite(a_);
    RequireFinite(b_);
    if (c_) RequireFinite(*c_);

    // Without C the result starts at zero and beta is irrelevant.
    T beta = 0;
    if (c_) {
      out_ = std::move(c_->data);
      beta = beta_;
    } else {
      out_.assign(static_cast<size_t>(m_) * n_, T(0));  // [m, n]
    }
    if (m_ == 0 || n_ == 0) return;
    lapack::gemm(Transpose(trans_a_), Transpose(trans_b_), m_, n_, k_, alpha_, a_.data,
                 LeadingDimension(a_.cols), b_.data, LeadingDimension(b_.cols), beta,
                 out_.data(), LeadingDimension(n_));
  }

  Napi::Value Result(Napi::Env env) override { return ToJsMatrix(env, m_, n_, std::move(out_)); }

 private:
  // A and B are only read, so they are borrowed (see BorrowedMatrix); C is
  // overwritten by BLAS and therefore copied.
  BorrowedMatrix<T> a_;
  BorrowedMatrix<T> b_;
  std::optional<DenseMatrix<T>> c_;
  bool trans_a_;
  bool trans_b_;
  T alpha_;
  T beta_;
  lapack_int m_, n_, k_;
  std::vector<T> out_;
};

// ---- syrk: alpha * A A^T (or A^T A) + beta * C, both triangles -----------

struct SyrkParams {
  MatrixArg a;
  std::optional<MatrixArg> c;
  bool trans;
  double alpha;
  double beta;
  bool float64;  // compute and return float64 even for a float32 A
  lapack_int n;  // order of the result
  lapack_int k;  // summed dimension
};

// T is the element type of the arithmetic, C and the result; Input is A's.
// Input = float with T = double widens A on the worker thread.
template <typename T, typename Input = T>
class SyrkJob : public Job {
 public:
  explicit SyrkJob(const SyrkParams& p)
      : Job("syrk"),
        a_(BorrowMatrix<Input>(p.a)),
        c_(CopyOptional<T>(p.c)),
        trans_(p.trans),
        alpha_(static_cast<T>(p.alpha)),
        beta_(static_cast<T>(p.beta)),
        n_(p.n),
        k_(p.k) {}

  void Compute() override {
    RequireFinite(a_);
    if (c_) RequireFinite(*c_);

    T beta = 0;
    if (c_) {
      out_ = std::move(c_->data);
      beta = beta_;
    } else {
      out_.assign(static_cast<size_t>(n_) * n_, T(0));  // [n, n]
    }
    if (n_ == 0) return;

    // A widened copy exists only inside this call, so it is freed before the
    // promise settles, unlike a JS copy, which stays until the next garbage
    // collection (possibly after a long LAPACK call that follows).
    std::vector<T> widened;
    const T* a = nullptr;
    if constexpr (std::is_same_v<T, Input>) {
      a = a_.data;
    } else {
      widened.assign(a_.data, a_.data + static_cast<size_t>(a_.rows) * a_.cols);  // [rows, cols]
      a = widened.data();
    }
    lapack::syrk(CblasLower, Transpose(trans_), n_, k_, alpha_, a, LeadingDimension(a_.cols),
                 beta, out_.data(), LeadingDimension(n_));

    // syrk writes only the lower triangle; mirror it into the upper one.
    const size_t n = static_cast<size_t>(n_);
    for (size_t i = 0; i < n; ++i) {
      for (size_t j = i + 1; j < n; ++j) out_[i * n + j] = out_[j * n + i];
    }
  }

  Napi::Value Result(Napi::Env env) override { return ToJsMatrix(env, n_, n_, std::move(out_)); }

 private:
  // As in gemm, A is only read and therefore borrowed: a copy of a float64
  // [11008, 4096] weight would take 344 MiB. C is overwritten by BLAS and
  // therefore copied.
  BorrowedMatrix<Input> a_;
  std::optional<DenseMatrix<T>> c_;
  bool trans_;
  T alpha_;
  T beta_;
  lapack_int n_, k_;
  std::vector<T> out_;
};

template <typename T>
using SameTypeSyrkJob = SyrkJob<T, T>;

// ---- trsm: solve op(A) X = alpha B or X op(A) = alpha B ------------------

struct TrsmParams {
  MatrixArg a;
  MatrixArg b;
  bool left;
  bool lower;
  bool trans_a;
  bool unit_diagonal;
  double alpha;
};

template <typename T>
class TrsmJob : public Job {
 public:
  explicit TrsmJob(const TrsmParams& p)
      : Job("trsm"),
        a_(CopyMatrix<T>(p.a)),
        b_(CopyMatrix<T>(p.b)),
        left_(p.left),
        lower_(p.lower),
        trans_a_(p.trans_a),
        unit_diagonal_(p.unit_diagonal),
        alpha_(static_cast<T>(p.alpha)) {}

  void Compute() override {
    RequireFinite(a_);
    RequireFinite(b_);
    const size_t order = static_cast<size_t>(a_.rows);
    if (!unit_diagonal_) {
      // trsm divides by the diagonal without checking it, like LAPACK trtrs does.
      for (size_t i = 0; i < order; ++i) {
        if (a_.data[i * order + i] == T(0)) {
          throw NativeFailure(ErrorCode::kSingularMatrix,
                              "triangular " + a_.Describe() + " is singular (diagonal element (" +
                                  std::to_string(i) + ", " + std::to_string(i) + ") is zero)",
                              static_cast<int>(i + 1));
        }
      }
    }
    if (b_.rows == 0 || b_.cols == 0) return;
    lapack::trsm(left_ ? CblasLeft : CblasRight, lower_ ? CblasLower : CblasUpper,
                 Transpose(trans_a_), unit_diagonal_ ? CblasUnit : CblasNonUnit, b_.rows, b_.cols,
                 alpha_, a_.data.data(), LeadingDimension(a_.cols), b_.data.data(),
                 LeadingDimension(b_.cols));
  }

  Napi::Value Result(Napi::Env env) override {
    return ToJsMatrix(env, b_.rows, b_.cols, std::move(b_.data));
  }

 private:
  DenseMatrix<T> a_;
  DenseMatrix<T> b_;  // Overwritten with the solution X.
  bool left_;
  bool lower_;
  bool trans_a_;
  bool unit_diagonal_;
  T alpha_;
};

}  // namespace

Napi::Value PrepareGemm(const Napi::CallbackInfo& info) {
  return Guard(info, "gemm", [&] {
    GemmParams p{ReadMatrix(info[0], "A"),
                 ReadMatrix(info[1], "B"),
                 ReadOptionalMatrix(info, 2, "C"),
                 ReadBoolean(info[3], "transA"),
                 ReadBoolean(info[4], "transB"),
                 ReadFiniteNumber(info[5], "alpha"),
                 ReadFiniteNumber(info[6], "beta"),
                 0,
                 0,
                 0};
    RequireSameDType(p.a, p.b);
    if (p.c) RequireSameDType(p.a, *p.c);

    p.m = p.trans_a ? p.a.cols : p.a.rows;
    p.k = p.trans_a ? p.a.rows : p.a.cols;
    const lapack_int k_b = p.trans_b ? p.b.cols : p.b.rows;
    p.n = p.trans_b ? p.b.rows : p.b.cols;
    if (p.k != k_b) {
      throw NativeFailure(ErrorCode::kInvalidShape,
                          "inner dimensions differ: op(A) is " + Shape(p.m, p.k) +
                              " but op(B) is " + Shape(k_b, p.n) + " (A is " +
                              Shape(p.a.rows, p.a.cols) + ", B is " + Shape(p.b.rows, p.b.cols) +
                              ")");
    }
    if (p.c && (p.c->rows != p.m || p.c->cols != p.n)) {
      throw NativeFailure(ErrorCode::kInvalidShape,
                          "matrix C is " + Shape(p.c->rows, p.c->cols) + " but op(A) op(B) is " +
                              Shape(p.m, p.n));
    }
    RequireResultSize(p.m, p.n, "result");
    return MakeJob<GemmJob>(p.a.dtype, p);
  });
}

Napi::Value PrepareSyrk(const Napi::CallbackInfo& info) {
  return Guard(info, "syrk", [&] {
    SyrkParams p{ReadMatrix(info[0], "A"),
                 ReadOptionalMatrix(info, 1, "C"),
                 ReadBoolean(info[2], "trans"),
                 ReadFiniteNumber(info[3], "alpha"),
                 ReadFiniteNumber(info[4], "beta"),
                 ReadBoolean(info[5], "float64"),
                 0,
                 0};
    const bool widen = p.float64 && p.a.dtype == DType::kFloat32;
    if (p.c && !widen) RequireSameDType(p.a, *p.c);
    if (p.c && widen && p.c->dtype != DType::kFloat64) {
      throw NativeFailure(ErrorCode::kDTypeMismatch,
                          "matrix C is float32 but the result is float64; convert C to float64");
    }
    p.n = p.trans ? p.a.cols : p.a.rows;
    p.k = p.trans ? p.a.rows : p.a.cols;
    if (p.c && (p.c->rows != p.n || p.c->cols != p.n)) {
      throw NativeFailure(ErrorCode::kInvalidShape,
                          "matrix C is " + Shape(p.c->rows, p.c->cols) + " but the result is " +
                              Shape(p.n, p.n));
    }
    RequireResultSize(p.n, p.n, "result");
    if (widen) return std::unique_ptr<Job>(std::make_unique<SyrkJob<double, float>>(p));
    return MakeJob<SameTypeSyrkJob>(p.a.dtype, p);
  });
}

Napi::Value PrepareTrsm(const Napi::CallbackInfo& info) {
  return Guard(info, "trsm", [&] {
    TrsmParams p{ReadMatrix(info[0], "A"),           ReadMatrix(info[1], "B"),
                 ReadBoolean(info[2], "left"),       ReadBoolean(info[3], "lower"),
                 ReadBoolean(info[4], "transA"),     ReadBoolean(info[5], "unitDiagonal"),
                 ReadFiniteNumber(info[6], "alpha")};
    RequireSameDType(p.a, p.b);
    if (p.a.rows != p.a.cols) {
      throw NativeFailure(ErrorCode::kInvalidShape,
                          "triangular matrix A " + Shape(p.a.rows, p.a.cols) + " must be square");
    }
    const lapack_int needed = p.left ? p.b.rows : p.b.cols;
    if (p.a.rows != needed) {
      throw NativeFailure(ErrorCode::kInvalidShape,
                          std::string("matrix A is ") + Shape(p.a.rows, p.a.cols) +
                              " but matrix B " + Shape(p.b.rows, p.b.cols) + " needs order " +
                              std::to_string(needed) + " for side '" +
                              (p.left ? "left" : "right") + "'");
    }
    return MakeJob<TrsmJob>(p.a.dtype, p);
  });
}

}  // namespace pifa
