// Precision-overloaded wrappers over CBLAS and the column-major LAPACKE
// `_work` routines, so each operation is written once as a template.
// The `_work` variants take caller-sized workspaces; see WorkspaceLength.
#pragma once

#include <cblas.h>
#include <lapacke.h>

#include <string>

namespace pifa::lapack {

template <typename T>
std::string Name(const char* routine) {
  return std::string(sizeof(T) == sizeof(float) ? "s" : "d") + routine;
}

inline void gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k, float alpha,
                 const float* a, int lda, const float* b, int ldb, float beta, float* c, int ldc) {
  cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
inline void gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k, double alpha,
                 const double* a, int lda, const double* b, int ldb, double beta, double* c,
                 int ldc) {
  cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

inline void syrk(CBLAS_UPLO uplo, CBLAS_TRANSPOSE trans, int n, int k, float alpha, const float* a,
                 int lda, float beta, float* c, int ldc) {
  cblas_ssyrk(CblasRowMajor, uplo, trans, n, k, alpha, a, lda, beta, c, ldc);
}
inline void syrk(CBLAS_UPLO uplo, CBLAS_TRANSPOSE trans, int n, int k, double alpha,
                 const double* a, int lda, double beta, double* c, int ldc) {
  cblas_dsyrk(CblasRowMajor, uplo, trans, n, k, alpha, a, lda, beta, c, ldc);
}

inline void trsm(CBLAS_SIDE side, CBLAS_UPLO uplo, CBLAS_TRANSPOSE trans, CBLAS_DIAG diag, int m,
                 int n, float alpha, const float* a, int lda, float* b, int ldb) {
  cblas_strsm(CblasRowMajor, side, uplo, trans, diag, m, n, alpha, a, lda, b, ldb);
}
inline void trsm(CBLAS_SIDE side, CBLAS_UPLO uplo, CBLAS_TRANSPOSE trans, CBLAS_DIAG diag, int m,
                 int n, double alpha, const double* a, int lda, double* b, int ldb) {
  cblas_dtrsm(CblasRowMajor, side, uplo, trans, diag, m, n, alpha, a, lda, b, ldb);
}

inline lapack_int potrf(char uplo, lapack_int n, float* a, lapack_int lda) {
  return LAPACKE_spotrf_work(LAPACK_COL_MAJOR, uplo, n, a, lda);
}
inline lapack_int potrf(char uplo, lapack_int n, double* a, lapack_int lda) {
  return LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, uplo, n, a, lda);
}

inline lapack_int syevd(char jobz, char uplo, lapack_int n, float* a, lapack_int lda, float* w,
                        float* work, lapack_int lwork, lapack_int* iwork, lapack_int liwork) {
  return LAPACKE_ssyevd_work(LAPACK_COL_MAJOR, jobz, uplo, n, a, lda, w, work, lwork, iwork,
                             liwork);
}
inline lapack_int syevd(char jobz, char uplo, lapack_int n, double* a, lapack_int lda, double* w,
                        double* work, lapack_int lwork, lapack_int* iwork, lapack_int liwork) {
  return LAPACKE_dsyevd_work(LAPACK_COL_MAJOR, jobz, uplo, n, a, lda, w, work, lwork, iwork,
                             liwork);
}

inline lapack_int gesdd(char jobz, lapack_int m, lapack_int n, float* a, lapack_int lda, float* s,
                        float* u, lapack_int ldu, float* vt, lapack_int ldvt, float* work,
                        lapack_int lwork, lapack_int* iwork) {
  return LAPACKE_sgesdd_work(LAPACK_COL_MAJOR, jobz, m, n, a, lda, s, u, ldu, vt, ldvt, work,
                             lwork, iwork);
}
inline lapack_int gesdd(char jobz, lapack_int m, lapack_int n, double* a, lapack_int lda,
                        double* s, double* u, lapack_int ldu, double* vt, lapack_int ldvt,
                        double* work, lapack_int lwork, lapack_int* iwork) {
  return LAPACKE_dgesdd_work(LAPACK_COL_MAJOR, jobz, m, n, a, lda, s, u, ldu, vt, ldvt, work,
                             lwork, iwork);
}

inline lapack_int geqrf(lapack_int m, lapack_int n, float* a, lapack_int lda, float* tau,
                        float* work, lapack_int lwork) {
  return LAPACKE_sgeqrf_work(LAPACK_COL_MAJOR, m, n, a, lda, tau, work, lwork);
}
inline lapack_int geqrf(lapack_int m, lapack_int n, double* a, lapack_int lda, double* tau,
                        double* work, lapack_int lwork) {
  return LAPACKE_dgeqrf_work(LAPACK_COL_MAJOR, m, n, a, lda, tau, work, lwork);
}

inline lapack_int orgqr(lapack_int m, lapack_int n, lapack_int k, float* a, lapack_int lda,
                        const float* tau, float* work, lapack_int lwork) {
  return LAPACKE_sorgqr_work(LAPACK_COL_MAJOR, m, n, k, a, lda, tau, work, lwork);
}
inline lapack_int orgqr(lapack_int m, lapack_int n, lapack_int k, double* a, lapack_int lda,
                        const double* tau, double* work, lapack_int lwork) {
  return LAPACKE_dorgqr_work(LAPACK_COL_MAJOR, m, n, k, a, lda, tau, work, lwork);
}

inline lapack_int geqp3(lapack_int m, lapack_int n, float* a, lapack_int lda, lapack_int* jpvt,
                        float* tau, float* work, lapack_int lwork) {
  return LAPACKE_sgeqp3_work(LAPACK_COL_MAJOR, m, n, a, lda, jpvt, tau, work, lwork);
}
inline lapack_int geqp3(lapack_int m, lapack_int n, double* a, lapack_int lda, lapack_int* jpvt,
                        double* tau, double* work, lapack_int lwork) {
  return LAPACKE_dgeqp3_work(LAPACK_COL_MAJOR, m, n, a, lda, jpvt, tau, work, lwork);
}

inline lapack_int gesv(lapack_int n, lapack_int nrhs, float* a, lapack_int lda, lapack_int* ipiv,
                       float* b, lapack_int ldb) {
  return LAPACKE_sgesv_work(LAPACK_COL_MAJOR, n, nrhs, a, lda, ipiv, b, ldb);
}
inline lapack_int gesv(lapack_int n, lapack_int nrhs, double* a, lapack_int lda, lapack_int* ipiv,
                       double* b, lapack_int ldb) {
  return LAPACKE_dgesv_work(LAPACK_COL_MAJOR, n, nrhs, a, lda, ipiv, b, ldb);
}

inline lapack_int gelsd(lapack_int m, lapack_int n, lapack_int nrhs, float* a, lapack_int lda,
                        float* b, lapack_int ldb, float* s, float rcond, lapack_int* rank,
                        float* work, lapack_int lwork, lapack_int* iwork) {
  return LAPACKE_sgelsd_work(LAPACK_COL_MAJOR, m, n, nrhs, a, lda, b, ldb, s, rcond, rank, work,
                             lwork, iwork);
}
inline lapack_int gelsd(lapack_int m, lapack_int n, lapack_int nrhs, double* a, lapack_int lda,
                        double* b, lapack_int ldb, double* s, double rcond, lapack_int* rank,
                        double* work, lapack_int lwork, lapack_int* iwork) {
  return LAPACKE_dgelsd_work(LAPACK_COL_MAJOR, m, n, nrhs, a, lda, b, ldb, s, rcond, rank, work,
                             lwork, iwork);
}

}  // namespace pifa::lapack
