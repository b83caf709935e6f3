// A prepared linear-algebra call: inputs are validated and copied (or
// borrowed, see BorrowedMatrix) on the JS thread when the job is created, and
// the computation runs later on the libuv thread pool when JS passes the job
// to `run`.
#pragma once

#include <napi.h>

#include <memory>
#include <string>

namespace pifa {

class Job {
 public:
  explicit Job(std::string operation) : operation_(std::move(operation)) {}
  virtual ~Job() = default;

  const std::string& operation() const { return operation_; }

  // Runs on a pool thread while the BLAS lock is held; throws NativeFailure.
  virtual void Compute() = 0;
  // Runs on the JS thread after Compute succeeded and builds the result value.
  virtual Napi::Value Result(Napi::Env env) = 0;

 private:
  std::string operation_;
};

// Wraps a job into a type-tagged JS external that `run` accepts once.
Napi::Value WrapJob(Napi::Env env, std::unique_ptr<Job> job);

// `run(job)`: queues the job on the libuv thread pool and returns a Promise.
Napi::Value RunJob(const Napi::CallbackInfo& info);

// Calls `prepare` and rethrows a NativeFailure or std::bad_alloc as a JS error
// for `operation`.
template <typename Prepare>
Napi::Value Guard(const Napi::CallbackInfo& info, const char* operation, Prepare prepare);

}  // namespace pifa

#include "job_inl.h"
