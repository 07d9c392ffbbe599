// A Backend decorator that retries what may succeed when tried again: calls that fail with
// kUnavailable (a remote store's 5xx, 408, 429, a reset connection, a timeout) are repeated with
// exponential backoff and full jitter, up to `attempts` times in all. Nothing else is retried: a
// 4xx that means "wrong" (no permission, not found, a bad signature, already exists) is the
// answer. A Save retried after a lost answer may find its own object there (kAlreadyExists):
// then the stored object is read back, and only the same bytes count as saved.
#pragma once

#include <atomic>
#include <functional>
#include <memory>

#include "storage/backend.h"

namespace vmbackup::storage {

struct RetryPolicy {
  int attempts = 6;
  double first_delay_seconds = 0.2;
  double max_delay_seconds = 10;
};

// Runs `call` under the same rules, for work outside a Backend's calls (connecting to a store).
Status RetryUnavailable(const RetryPolicy& policy, const std::function<Status()>& call);

class RetryingBackend : public Backend {
 public:
  RetryingBackend(std::unique_ptr<Backend> inner, RetryPolicy policy = {})
      : inner_(std::move(inner)), policy_(policy) {}
  Status Save(const ObjectRef& ref, std::span<const uint8_t> data) override;
  Result<std::vector<uint8_t>> Load(const ObjectRef& ref) override;
  Result<std::vector<uint8_t>> LoadRange(const ObjectRef& ref, uint64_t offset,
                                         uint64_t length) override;
  Status ReadRange(const ObjectRef& ref, uint64_t offset, std::span<uint8_t> out) override;
  void Prefetch(const ObjectRef& ref, uint64_t offset, uint64_t length) override {
    inner_->Prefetch(ref, offset, length);
  }
  Result<ObjectInfo> Stat(const ObjectRef& ref) override;
  Result<std::vector<ObjectInfo>> List(ObjectType type) override;
  Status Delete(const ObjectRef& ref) override;
  std::string location() const override { return inner_->location(); }
  uint64_t CoalesceGap() const override { return inner_->CoalesceGap(); }
  int SavesInFlight() const override { return inner_->SavesInFlight(); }
  TransferStats transfer_stats() const override {
    TransferStats t = inner_->transfer_stats();
    t.retries += retries_;
    return t;
  }
  Status LockNewObjects(LockMode mode, int64_t seconds) override {
    return inner_->LockNewObjects(mode, seconds);
  }
  Result<int64_t> LockedUntil(const ObjectRef& ref) override;
  Status ExtendLock(const ObjectRef& ref, int64_t until) override;
  // How many calls were repeated (for reports and tests).
  uint64_t retries() const { return retries_; }

 private:
  // Runs `call` until it succeeds, fails with something other than kUnavailable, or the
  // attempts run out. `call` returns a Status or a Result.
  template <class Call>
  auto Retry(Call call) -> decltype(call());
  void Sleep(int attempt);
  std::unique_ptr<Backend> inner_;
  RetryPolicy policy_;
  std::atomic<uint64_t> retries_{0};
};

}  // namespace vmbackup::storage
