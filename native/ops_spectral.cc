// Spectral decompositions: symmetric eigendecomposition (syevd) and thin SVD
// (gesdd), both divide and conquer.
#include "dense.h"
#include "lapack.h"
#include "ops.h"

namespace pifa {

namespace {

// ---- eigh: A = V diag(w) V^T ---------------------------------------------

template <typename T>
class EighJob : public Job {
 public:
  explicit EighJob(const SingleParams& p) : Job("eigh"), a_(CopyMatrix<T>(p.a)) {}

  void Compute() override {
    RequireFinite(a_);
    const lapack_int n = a_.rows;
    values_.resize(static_cast<size_t>(n));
    if (n == 0) return;

    // The row-major buffer is A^T = A in column-major order; uplo 'U' reads
    // its column-major upper triangle, which is the row-major lower one.
    const std::string routine = lapack::Name<T>("syevd");
    const lapack_int lda = LeadingDimension(n);
    T query = 0;
    lapack_int iwork_query = 0;
    RequireValidArguments(lapack::syevd('V', 'U', n, a_.data.data(), lda, values_.data(), &query,
                                        -1, &iwork_query, -1),
                          routine);
    std::vector<T> work(WorkspaceLength(query, routine));
    std::vector<lapack_int> iwork(std::max<lapack_int>(1, iwork_query));
    const lapack_int info = lapack::syevd(
        'V', 'U', n, a_.data.data(), lda, values_.data(), work.data(),
        static_cast<lapack_int>(work.size()), iwork.data(), static_cast<lapack_int>(iwork.size()));
    RequireValidArguments(info, routine);
    if (info > 0) {
      throw NativeFailure(ErrorCode::kNoConvergence,
                          "eigendecomposition of " + a_.Describe() + " did not converge (LAPACK " +
                              routine + " info=" + std::to_string(info) + ")",
                          info);
    }
    // syevd stores eigenvectors as column-major columns, i.e. as rows of the
    // row-major buffer; transpose so they become columns.
    TransposeSquareInPlace(a_.data.data(), n);
  }

  Napi::Value Result(Napi::Env env) override {
    Napi::Object result = Napi::Object::New(env);
    result.Set("values", ToTypedArray(env, std::move(values_)));
    result.Set("vectors", ToJsMatrix(env, a_.rows, a_.cols, std::move(a_.data)));
    return result;
  }

 private:
  DenseMatrix<T> a_;  // Overwritten with the eigenvectors, [n, n].
  std::vector<T> values_;
};

// ---- svd: thin A = U diag(s) V^T -----------------------------------------

template <typename T>
class SvdJob : public Job {
 public:
  explicit SvdJob(const SingleParams& p) : Job("svd"), a_(CopyMatrix<T>(p.a)) {}

  void Compute() override {
    RequireFinite(a_);
    const lapack_int m = a_.rows;
    const lapack_int n = a_.cols;
    const lapack_int k = std::min(m, n);
    u_.resize(static_cast<size_t>(m) * k);   // [m, k]
    s_.resize(static_cast<size_t>(k));       // [k]
    vt_.resize(static_cast<size_t>(k) * n);  // [k, n]
    if (k == 0) return;

    // Column-major LAPACK reads the row-major buffer as A^T [n, m] and returns
    // A^T = V S U^T. Its U factor, column-major [n, k], is row-major V^T
    // [k, n]; its V^T factor, column-major [k, m], is row-major U [m, k].
    // So no transposes are needed.
    const std::string routine = lapack::Name<T>("gesdd");
    std::vector<lapack_int> iwork(8 * static_cast<size_t>(k));
    const lapack_int lda = LeadingDimension(n);
    T query = 0;
    RequireValidArguments(lapack::gesdd('S', n, m, a_.data.data(), lda, s_.data(), vt_.data(), lda,
                                        u_.data(), k, &query, -1, iwork.data()),
                          routine);
    std::vector<T> work(WorkspaceLength(query, routine));
    const lapack_int info = lapack::gesdd('S', n, m, a_.data.data(), lda, s_.data(), vt_.data(),
                                          lda, u_.data(), k, work.data(),
                                          static_cast<lapack_int>(work.size()), iwork.data());
    RequireValidArguments(info, routine);
    if (info > 0) {
      throw NativeFailure(ErrorCode::kNoConvergence,
                          "SVD of " + a_.Describe() + " did not converge (LAPACK " + routine +
                              " info=" + std::to_string(info) + ")",
                          info);
    }
  }

  Napi::Value Result(Napi::Env env) override {
    const lapack_int k = std::min(a_.rows, a_.cols);
    Napi::Object result = Napi::Object::New(env);
    result.Set("u", ToJsMatrix(env, a_.rows, k, std::move(u_)));
    result.Set("s", ToTypedArray(env, std::move(s_)));
    result.Set("vt", ToJsMatrix(env, k, a_.cols, std::move(vt_)));
    return result;
  }

 private:
  DenseMatrix<T> a_;  // Destroyed by gesdd.
  std::vector<T> u_;
  std::vector<T> s_;
  std::vector<T> vt_;
};

}  // namespace

Napi::Value PrepareEigh(const Napi::CallbackInfo& info) {
  return Guard(info, "eigh", [&] {
    SingleParams p{ReadMatrix(info[0], "A")};
    RequireSquare(p.a);
    return MakeJob<EighJob>(p.a.dtype, p);
  });
}

Napi::Value PrepareSvd(const Napi::CallbackInfo& info) {
  return Guard(info, "svd", [&] {
    SingleParams p{ReadMatrix(info[0], "A")};
    return MakeJob<SvdJob>(p.a.dtype, p);
  });
}

}  // namespace pifa
