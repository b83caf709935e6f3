// Factorizations and solvers: potrf, geqrf + orgqr, geqp3, gesv and gelsd.
// Row-major inputs are handed to column-major LAPACK either as the transpose
// (for symmetric input) or after an explicit transposing copy.
#include <numeric>

#include "dense.h"
#include "lapack.h"
#include "ops.h"

namespace pifa {

namespace {

// Copies the upper trapezoid of column-major `[m, n]` (leading dimension m)
// into a row-major `[k, n]` R with zeros below the diagonal, k = min(m, n).
template <typename T>
std::vector<T> ExtractR(const std::vector<T>& column_major, lapack_int m, lapack_int n) {
  const size_t k = static_cast<size_t>(std::min(m, n));
  const size_t cols = static_cast<size_t>(n);
  std::vector<T> r(k * cols, T(0));  // [k, n]
  for (size_t i = 0; i < k; ++i) {
    for (size_t j = i; j < cols; ++j) {
      r[i * cols + j] = column_major[i + j * static_cast<size_t>(m)];
    }
  }
  return r;
}

// ---- cholesky: A = L L^T -------------------------------------------------

template <typename T>
class CholeskyJob : public Job {
 public:
  explicit CholeskyJob(const SingleParams& p) : Job("cholesky"), a_(CopyMatrix<T>(p.a)) {}

  void Compute() override {
    RequireFinite(a_);
    const lapack_int n = a_.rows;
    if (n == 0) return;

    // The row-major buffer is A^T = A in column-major order, and its
    // column-major upper triangle is the row-major lower one. potrf('U')
    // returns U with A = U^T U, which read row-major is L = U^T.
    const std::string routine = lapack::Name<T>("potrf");
    const lapack_int info = lapack::potrf('U', n, a_.data.data(), LeadingDimension(n));
    RequireValidArguments(info, routine);
    if (info > 0) {
      throw NativeFailure(ErrorCode::kNotPositiveDefinite,
                          a_.Describe() + " is not positive definite (leading minor " +
                              std::to_string(info) + " is not positive; LAPACK " + routine +
                              " info=" + std::to_string(info) + ")",
                          info);
    }
    const size_t order = static_cast<size_t>(n);
    for (size_t i = 0; i < order; ++i) {
      for (size_t j = i + 1; j < order; ++j) a_.data[i * order + j] = T(0);
    }
  }

  Napi::Value Result(Napi::Env env) override {
    return ToJsMatrix(env, a_.rows, a_.cols, std::move(a_.data));
  }

 private:
  DenseMatrix<T> a_;  // Overwritten with L.
};

// ---- qr: thin A = Q R ------------------------------------------------------

struct QrParams {
  MatrixArg a;
  bool want_q;  // false skips forming Q (orgqr)
};

template <typename T>
class QrJob : public Job {
 public:
  explicit QrJob(const QrParams& p) : Job("qr"), a_(CopyMatrix<T>(p.a)), want_q_(p.want_q) {}

  void Compute() override {
    RequireFinite(a_);
    const lapack_int m = a_.rows;
    const lapack_int n = a_.cols;
    const lapack_int k = std::min(m, n);
    if (k == 0) {
      q_.assign(static_cast<size_t>(m) * k, T(0));  // [m, 0]
      r_.assign(static_cast<size_t>(k) * n, T(0));  // [0, n]
      return;
    }

    std::vector<T> a = ToColumnMajor(a_);  // column-major [m, n]
    a_.data = std::vector<T>();
    const lapack_int lda = LeadingDimension(m);
    std::vector<T> tau(k);

    const std::string geqrf = lapack::Name<T>("geqrf");
    T query = 0;
    RequireValidArguments(lapack::geqrf(m, n, a.data(), lda, tau.data(), &query, -1), geqrf);
    std::vector<T> work(WorkspaceLength(query, geqrf));
    RequireValidArguments(lapack::geqrf(m, n, a.data(), lda, tau.data(), work.data(),
                                        static_cast<lapack_int>(work.size())),
                          geqrf);
    r_ = ExtractR(a, m, n);
    if (!want_q_) return;

    // orgqr overwrites the first k columns with Q.
    const std::string orgqr = lapack::Name<T>("orgqr");
    RequireValidArguments(lapack::orgqr(m, k, k, a.data(), lda, tau.data(), &query, -1), orgqr);
    work.assign(WorkspaceLength(query, orgqr), T(0));
    RequireValidArguments(lapack::orgqr(m, k, k, a.data(), lda, tau.data(), work.data(),
                                        static_cast<lapack_int>(work.size())),
                          orgqr);
    q_.resize(static_cast<size_t>(m) * k);  // [m, k]
    // The first k columns, column-major [m, k], transposed to row-major.
    for (size_t j = 0; j < static_cast<size_t>(k); ++j) {
      for (size_t i = 0; i < static_cast<size_t>(m); ++i) {
        q_[i * k + j] = a[i + j * static_cast<size_t>(m)];
      }
    }
  }

  Napi::Value Result(Napi::Env env) override {
    const lapack_int k = std::min(a_.rows, a_.cols);
    Napi::Object result = Napi::Object::New(env);
    if (want_q_) result.Set("q", ToJsMatrix(env, a_.rows, k, std::move(q_)));
    result.Set("r", ToJsMatrix(env, k, a_.cols, std::move(r_)));
    return result;
  }

 private:
  DenseMatrix<T> a_;
  bool want_q_;
  std::vector<T> q_;
  std::vector<T> r_;
};

// ---- qrPivoted: A P = Q R with column pivoting ----------------------------

template <typename T>
class QrPivotedJob : public Job {
 public:
  explicit QrPivotedJob(const SingleParams& p) : Job("qrPivoted"), a_(CopyMatrix<T>(p.a)) {}

  void Compute() override {
    RequireFinite(a_);
    const lapack_int m = a_.rows;
    const lapack_int n = a_.cols;
    const lapack_int k = std::min(m, n);
    pivots_.resize(static_cast<size_t>(n));
    if (k == 0) {
      std::iota(pivots_.begin(), pivots_.end(), 0);
      r_.assign(static_cast<size_t>(k) * n, T(0));  // [0, n] or [m, 0] with m = 0
      return;
    }

    std::vector<T> a = ToColumnMajor(a_);  // column-major [m, n]
    a_.data = std::vector<T>();
    const lapack_int lda = LeadingDimension(m);
    std::vector<lapack_int> jpvt(static_cast<size_t>(n), 0);  // 0: every column is free
    std::vector<T> tau(k);

    const std::string geqp3 = lapack::Name<T>("geqp3");
    T query = 0;
    RequireValidArguments(lapack::geqp3(m, n, a.data(), lda, jpvt.data(), tau.data(), &query, -1),
                          geqp3);
    std::vector<T> work(WorkspaceLength(query, geqp3));
    RequireValidArguments(lapack::geqp3(m, n, a.data(), lda, jpvt.data(), tau.data(), work.data(),
                                        static_cast<lapack_int>(work.size())),
                          geqp3);
    r_ = ExtractR(a, m, n);
    for (size_t j = 0; j < static_cast<size_t>(n); ++j) pivots_[j] = jpvt[j] - 1;  // 1-based
  }

  Napi::Value Result(Napi::Env env) override {
    const lapack_int k = std::min(a_.rows, a_.cols);
    Napi::Object result = Napi::Object::New(env);
    result.Set("r", ToJsMatrix(env, k, a_.cols, std::move(r_)));
    result.Set("pivots", ToTypedArray(env, std::move(pivots_)));
    return result;
  }

 private:
  DenseMatrix<T> a_;
  std::vector<T> r_;
  std::vector<int32_t> pivots_;
};

// ---- luSolve: A X = B by LU with partial pivoting --------------------------

template <typename T>
class LuSolveJob : public Job {
 public:
  explicit LuSolveJob(const PairParams& p)
      : Job("luSolve"), a_(CopyMatrix<T>(p.a)), b_(CopyMatrix<T>(p.b)) {}

  void Compute() override {
    RequireFinite(a_);
    RequireFinite(b_);
    const lapack_int n = a_.rows;
    const lapack_int nrhs = b_.cols;
    if (n == 0) return;

    std::vector<T> a = ToColumnMajor(a_);  // column-major [n, n]
    a_.data = std::vector<T>();
    std::vector<T> b = ToColumnMajor(b_);  // column-major [n, nrhs]
    std::vector<lapack_int> pivots(static_cast<size_t>(n));
    const std::string routine = lapack::Name<T>("gesv");
    const lapack_int info = lapack::gesv(n, nrhs, a.data(), LeadingDimension(n), pivots.data(),
                                         b.data(), LeadingDimension(n));
    RequireValidArguments(info, routine);
    if (info > 0) {
      throw NativeFailure(ErrorCode::kSingularMatrix,
                          a_.Describe() + " is singular (U(" + std::to_string(info - 1) + ", " +
                              std::to_string(info - 1) + ") of its LU factorization is exactly " +
                              "zero; LAPACK " + routine + " info=" + std::to_string(info) +
                              "); use leastSquares for rank-deficient systems",
                          info);
    }
    TransposeInto(b.data(), nrhs, n, b_.data.data());  // back to row-major [n, nrhs]
  }

  Napi::Value Result(Napi::Env env) override {
    return ToJsMatrix(env, b_.rows, b_.cols, std::move(b_.data));
  }

 private:
  DenseMatrix<T> a_;
  DenseMatrix<T> b_;  // Overwritten with X.
};

// ---- leastSquares: min ||A X - B||_F by SVD (gelsd) ------------------------

template <typename T>
class LeastSquaresJob : public Job {
 public:
  explicit LeastSquaresJob(const PairParams& p)
      : Job("leastSquares"), a_(CopyMatrix<T>(p.a)), b_(CopyMatrix<T>(p.b)) {}

  void Compute() override {
    RequireFinite(a_);
    RequireFinite(b_);
    const lapack_int m = a_.rows;
    const lapack_int n = a_.cols;
    const lapack_int nrhs = b_.cols;
    x_.assign(static_cast<size_t>(n) * nrhs, T(0));  // [n, nrhs]
    // With no rows or no columns the minimum-norm solution is zero.
    if (m == 0 || n == 0 || nrhs == 0) return;

    std::vector<T> a = ToColumnMajor(a_);  // column-major [m, n]
    a_.data = std::vector<T>();
    // B and X share one column-major buffer with max(m, n) rows.
    const lapack_int ldb = std::max(m, n);
    std::vector<T> b(static_cast<size_t>(ldb) * nrhs, T(0));  // column-major [ldb, nrhs]
    for (size_t i = 0; i < static_cast<size_t>(m); ++i) {
      for (size_t j = 0; j < static_cast<size_t>(nrhs); ++j) {
        b[i + j * static_cast<size_t>(ldb)] = b_.data[i * nrhs + j];
      }
    }
    b_.data = std::vector<T>();

    std::vector<T> singular_values(std::min(m, n));
    const T rcond = -1;  // Treat singular values below machine precision as zero.
    lapack_int rank = 0;
    const std::string routine = lapack::Name<T>("gelsd");
    T query = 0;
    lapack_int iwork_query = 0;
    RequireValidArguments(lapack::gelsd(m, n, nrhs, a.data(), LeadingDimension(m), b.data(), ldb,
                                        singular_values.data(), rcond, &rank, &query, -1,
                                        &iwork_query),
                          routine);
    std::vector<T> work(WorkspaceLength(query, routine));
    std::vector<lapack_int> iwork(std::max<lapack_int>(1, iwork_query));
    const lapack_int info = lapack::gelsd(m, n, nrhs, a.data(), LeadingDimension(m), b.data(), ldb,
                                          singular_values.data(), rcond, &rank, work.data(),
                                          static_cast<lapack_int>(work.size()), iwork.data());
    RequireValidArguments(info, routine);
    if (info > 0) {
      throw NativeFailure(ErrorCode::kNoConvergence,
                          "SVD of " + a_.Describe() + " did not converge (" + std::to_string(info) +
                              " off-diagonal elements did not reach zero; LAPACK " + routine +
                              " info=" + std::to_string(info) + ")",
                          info);
    }
    for (size_t i = 0; i < static_cast<size_t>(n); ++i) {
      for (size_t j = 0; j < static_cast<size_t>(nrhs); ++j) {
        x_[i * nrhs + j] = b[i + j * static_cast<size_t>(ldb)];
      }
    }
  }

  Napi::Value Result(Napi::Env env) override {
    return ToJsMatrix(env, a_.cols, b_.cols, std::move(x_));
  }

 private:
  DenseMatrix<T> a_;
  DenseMatrix<T> b_;
  std::vector<T> x_;
};

}  // namespace

Napi::Value PrepareCholesky(const Napi::CallbackInfo& info) {
  return Guard(info, "cholesky", [&] {
    SingleParams p{ReadMatrix(info[0], "A")};
    RequireSquare(p.a);
    return MakeJob<CholeskyJob>(p.a.dtype, p);
  });
}

Napi::Value PrepareQr(const Napi::CallbackInfo& info) {
  return Guard(info, "qr", [&] {
    QrParams p{ReadMatrix(info[0], "A"), ReadBoolean(info[1], "wantQ")};
    return MakeJob<QrJob>(p.a.dtype, p);
  });
}

Napi::Value PrepareQrPivoted(const Napi::CallbackInfo& info) {
  return Guard(info, "qrPivoted", [&] {
    SingleParams p{ReadMatrix(info[0], "A")};
    return MakeJob<QrPivotedJob>(p.a.dtype, p);
  });
}

Napi::Value PrepareLuSolve(const Napi::CallbackInfo& info) {
  return Guard(info, "luSolve", [&] {
    PairParams p{ReadMatrix(info[0], "A"), ReadMatrix(info[1], "B")};
    RequireSameDType(p.a, p.b);
    RequireSquare(p.a);
    if (p.b.rows != p.a.rows) {
      throw NativeFailure(ErrorCode::kInvalidShape,
                          "matrix B " + Shape(p.b.rows, p.b.cols) + " must have " +
                              std::to_string(p.a.rows) + " rows to match matrix A " +
                              Shape(p.a.rows, p.a.cols));
    }
    return MakeJob<LuSolveJob>(p.a.dtype, p);
  });
}

Napi::Value PrepareLeastSquares(const Napi::CallbackInfo& info) {
  return Guard(info, "leastSquares", [&] {
    PairParams p{ReadMatrix(info[0], "A"), ReadMatrix(info[1], "B")};
    RequireSameDType(p.a, p.b);
    if (p.b.rows != p.a.rows) {
      throw NativeFailure(ErrorCode::kInvalidShape,
                          "matrix B " + Shape(p.b.rows, p.b.cols) + " must have " +
                              std::to_string(p.a.rows) + " rows to match matrix A " +
                              Shape(p.a.rows, p.a.cols));
    }
    RequireResultSize(p.a.cols, p.b.cols, "solution X");
    return MakeJob<LeastSquaresJob>(p.a.dtype, p);
  });
}

}  // namespace pifa
