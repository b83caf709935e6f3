#pragma once

#include <new>

#include "errors.h"
#include "job.h"

namespace pifa {

template <typename Prepare>
Napi::Value Guard(const Napi::CallbackInfo& info, const char* operation, Prepare prepare) {
  try {
    return WrapJob(info.Env(), prepare());
  } catch (const NativeFailure& failure) {
    throw ToJsError(info.Env(), operation, failure);
  } catch (const std::bad_alloc&) {
    throw ToJsError(info.Env(), operation, OutOfMemoryFailure());
  }
}

}  // namespace pifa
