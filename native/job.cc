#include "job.h"

#include <mutex>
#include <new>
#include <optional>

#include "blas_runtime.h"
#include "errors.h"

namespace pifa {

namespace {

// Marks externals created by WrapJob, so `run` never casts a foreign external.
constexpr napi_type_tag kJobTag = {0x8f3b5a1c2d4e6f70ULL, 0x1a2b3c4d5e6f7081ULL};

struct JobSlot {
  std::unique_ptr<Job> job;  // Empty once `run` has taken the job.
};

class JobWorker : public Napi::AsyncWorker {
 public:
  JobWorker(Napi::Env env, std::unique_ptr<Job> job)
      : Napi::AsyncWorker(env, "pifa_native"),
        deferred_(Napi::Promise::Deferred::New(env)),
        job_(std::move(job)) {}

  Napi::Promise Promise() const { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      // One BLAS call at a time, each using the configured thread count.
      std::lock_guard<std::mutex> lock(BlasMutex());
      ApplyRequestedThreads();
      job_->Compute();
    } catch (const NativeFailure& failure) {
      failure_ = failure;
    } catch (const std::bad_alloc&) {
      failure_ = OutOfMemoryFailure();
    } catch (const std::exception& error) {
      failure_ = NativeFailure(ErrorCode::kLapackError,
                               std::string("unexpected native failure: ") + error.what());
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    if (failure_) {
      deferred_.Reject(ToJsError(env, job_->operation(), *failure_).Value());
      return;
    }
    try {
      deferred_.Resolve(job_->Result(env));
    } catch (const Napi::Error& error) {
      deferred_.Reject(error.Value());
    } catch (const std::bad_alloc&) {
      deferred_.Reject(ToJsError(env, job_->operation(), OutOfMemoryFailure()).Value());
    }
  }

  void OnError(const Napi::Error& error) override { deferred_.Reject(error.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::unique_ptr<Job> job_;
  std::optional<NativeFailure> failure_;
};

}  // namespace

Napi::Value WrapJob(Napi::Env env, std::unique_ptr<Job> job) {
  auto slot = std::make_unique<JobSlot>();
  slot->job = std::move(job);
  Napi::External<JobSlot> external = Napi::External<JobSlot>::New(
      env, slot.get(), [](Napi::Env, JobSlot* finalized) { delete finalized; });
  slot.release();  // The external's finalizer owns the slot now.
  external.TypeTag(&kJobTag);
  return external;
}

Napi::Value RunJob(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const bool is_job = info.Length() >= 1 && info[0].IsExternal() &&
                      info[0].As<Napi::External<JobSlot>>().CheckTypeTag(&kJobTag);
  if (!is_job) {
    throw Napi::TypeError::New(env, "run: expected a job returned by a pifa_native operation");
  }
  JobSlot* slot = info[0].As<Napi::External<JobSlot>>().Data();
  if (!slot->job) {
    throw Napi::Error::New(env, "run: this job was already started; prepare a new one");
  }
  auto* worker = new JobWorker(env, std::move(slot->job));
  Napi::Promise promise = worker->Promise();
  worker->Queue();  // The worker deletes itself after OnOK or OnError.
  return promise;
}

}  // namespace pifa
