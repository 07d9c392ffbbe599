#include "storage/retrying_backend.h"

#include <algorithm>
#include <chrono>
#include <random>
#include <thread>

namespace vmbackup::storage {
namespace {

template <class T>
bool Retryable(const Result<T>& r) {
  return !r.ok() && r.error().code() == ErrorCode::kUnavailable;
}
bool Retryable(const Status& s) { return !s.ok() && s.code() == ErrorCode::kUnavailable; }

// Full jitter: a random wait up to the exponential bound, so clients that failed together do
// not come back together.
void SleepBeforeRetry(const RetryPolicy& policy, int attempt) {
  thread_local std::mt19937_64 rng(std::random_device{}());
  const double bound = std::min(policy.max_delay_seconds,
                                policy.first_delay_seconds * double(1ull << std::min(attempt, 20)));
  std::uniform_real_distribution<double> d(0, bound);
  std::this_thread::sleep_for(std::chrono::duration<double>(d(rng)));
}

}  // namespace

Status RetryUnavailable(const RetryPolicy& policy, const std::function<Status()>& call) {
  for (int attempt = 1;; ++attempt) {
    Status s = call();
    if (!Retryable(s) || attempt >= policy.attempts) return s;
    SleepBeforeRetry(policy, attempt - 1);
  }
}

void RetryingBackend::Sleep(int attempt) { SleepBeforeRetry(policy_, attempt); }

template <class Call>
auto RetryingBackend::Retry(Call call) -> decltype(call()) {
  for (int attempt = 1;; ++attempt) {
    auto r = call();
    if (!Retryable(r) || attempt >= policy_.attempts) return r;
    ++retries_;
    Sleep(attempt - 1);
  }
}

Status RetryingBackend::Save(const ObjectRef& ref, std::span<const uint8_t> data) {
  bool failed_before = false;
  for (int attempt = 1;; ++attempt) {
    Status s = inner_->Save(ref, data);
    if (s.code() == ErrorCode::kAlreadyExists && failed_before) {
      // Our earlier attempt may have stored it before its answer was lost.
      auto stored = Load(ref);
      if (stored && stored->size() == data.size() &&
          std::equal(stored->begin(), stored->end(), data.begin()))
        return Status::Ok();
      return s;
    }
    if (!Retryable(s) || attempt >= policy_.attempts) return s;
    failed_before = true;
    ++retries_;
    Sleep(attempt - 1);
  }
}

Result<std::vector<uint8_t>> RetryingBackend::Load(const ObjectRef& ref) {
  return Retry([&] { return inner_->Load(ref); });
}

Result<std::vector<uint8_t>> RetryingBackend::LoadRange(const ObjectRef& ref, uint64_t offset,
                                                        uint64_t length) {
  return Retry([&] { return inner_->LoadRange(ref, offset, length); });
}

Status RetryingBackend::ReadRange(const ObjectRef& ref, uint64_t offset, std::span<uint8_t> out) {
  return Retry([&] { return inner_->ReadRange(ref, offset, out); });
}

Result<int64_t> RetryingBackend::LockedUntil(const ObjectRef& ref) {
  return Retry([&] { return inner_->LockedUntil(ref); });
}

Status RetryingBackend::ExtendLock(const ObjectRef& ref, int64_t until) {
  return Retry([&] { return inner_->ExtendLock(ref, until); });
}

Result<ObjectInfo> RetryingBackend::Stat(const ObjectRef& ref) {
  return Retry([&] { return inner_->Stat(ref); });
}

Result<std::vector<ObjectInfo>> RetryingBackend::List(ObjectType type) {
  return Retry([&] { return inner_->List(type); });
}

Status RetryingBackend::Delete(const ObjectRef& ref) {
  bool failed_before = false;
  for (int attempt = 1;; ++attempt) {
    Status s = inner_->Delete(ref);
    // A delete whose answer was lost finds nothing the second time: it is done.
    if (s.code() == ErrorCode::kNotFound && failed_before) return Status::Ok();
    if (!Retryable(s) || attempt >= policy_.attempts) return s;
    failed_before = true;
    ++retries_;
    Sleep(attempt - 1);
  }
}

}  // namespace vmbackup::storage
