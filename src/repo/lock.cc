#include "repo/lock.h"

#include <signal.h>
#include <sys/random.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <ctime>
#include <nlohmann/json.hpp>
#include <random>
#include <stdexcept>

#include "base/process.h"
#include "base/strings.h"
#include "repo/crypto.h"
#include "repo/json_fields.h"

namespace vmbackup::repo {
namespace {

using nlohmann::json;

std::vector<uint8_t> Encode(const LockInfo& l) {
  std::string text = json{{"host", l.host},           {"pid", l.pid},         {"start", l.start},
                          {"exclusive", l.exclusive}, {"purpose", l.purpose}, {"time", l.time}}
                         .dump();
  return {text.begin(), text.end()};
}

// A lock's name need only be unique, not secret: the kernel's generator gives one at once,
// where OpenSSL's first use costs its loading and set-up (repo::CryptoWarmUp does those
// meanwhile, on its thread).
std::string UniqueName() {
  uint8_t b[16];
  if (::getrandom(b, sizeof b, 0) == ssize_t(sizeof b)) return ToHex(b);
  return ToHex(RandomBytes(sizeof b));
}

Status SaveNew(storage::Backend& backend, LockInfo& info) {
  info.name = UniqueName();
  info.time = int64_t(::time(nullptr));
  return backend.Save({storage::ObjectType::kLock, info.name}, Encode(info));
}

}  // namespace

Result<std::vector<LockInfo>> ListLocks(storage::Backend& backend) {
  VMBACKUP_ASSIGN_OR_RETURN(auto objects, backend.List(storage::ObjectType::kLock));
  std::vector<LockInfo> out;
  for (const auto& o : objects) {
    auto data = backend.Load({storage::ObjectType::kLock, o.name});
    if (!data && data.error().code() == ErrorCode::kNotFound) continue;  // released meanwhile
    LockInfo l;
    l.name = o.name;
    if (!data) {
      l.damage = data.error().message();
      out.push_back(l);
      continue;
    }
    json j = json::parse(data->begin(), data->end(), nullptr, false);
    try {
      if (!j.is_object()) throw std::runtime_error("not a JSON object");
      l.host = j.at("host").get<std::string>();
      l.pid = IntAt<int64_t>(j, "pid");
      l.start = IntOr<uint64_t>(j, "start", 0);
      l.exclusive = j.at("exclusive").get<bool>();
      l.purpose = j.value("purpose", "");
      l.time = IntAt<int64_t>(j, "time");
    } catch (const std::exception& e) {
      l = LockInfo();  // a damaged lock is stale: time 0
      l.name = o.name;
      l.damage = std::string("not a lock record (") + e.what() + ")";
    }
    out.push_back(l);
  }
  return out;
}

bool IsStale(const LockInfo& l, int64_t now) {
  if (now - l.time > kLockStaleSeconds) return true;
  return l.host == HostName() && !ProcessAlive(l.pid, l.start);
}

std::string DescribeLock(const LockInfo& l) {
  if (!l.damage.empty()) return "damaged lock object locks/" + l.name + ": " + l.damage;
  char when[32] = "?";
  time_t t = time_t(l.time);
  struct tm tm;
  if (gmtime_r(&t, &tm)) strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return StrFormat(
      "%s lock of %s (pid %lld on %s, refreshed %s)", l.exclusive ? "exclusive" : "shared",
      l.purpose.empty() ? "?" : l.purpose.c_str(), (long long)l.pid, l.host.c_str(), when);
}

Result<std::unique_ptr<RepoLock>> RepoLock::Acquire(storage::Backend& backend,
                                                    const LockOptions& options) {
  LockInfo mine;
  mine.host = HostName();
  mine.pid = ::getpid();
  mine.start = ProcessStart(mine.pid);
  mine.exclusive = options.exclusive;
  mine.purpose = options.purpose;
  std::unique_ptr<RepoLock> lock(new RepoLock(backend, mine));
  auto deadline = std::chrono::steady_clock::now() +
                  std::chrono::milliseconds(int64_t(options.wait_seconds * 1000));
  std::mt19937 jitter(std::random_device{}());
  for (;;) {
    VMBACKUP_RETURN_IF_ERROR(SaveNew(backend, lock->info_).WithContext("take a repository lock"));
    auto locks = ListLocks(backend);
    if (!locks) {
      backend.Delete({storage::ObjectType::kLock, lock->info_.name}).IgnoreError();  // best effort
      return locks.error().WithContext("take a repository lock");
    }
    const int64_t now = int64_t(::time(nullptr));
    std::optional<LockInfo> conflict;
    for (const LockInfo& other : *locks) {
      if (other.name == lock->info_.name) continue;
      if (IsStale(other, now)) {
        // Breaking a stale lock is safe: its process is gone or stopped refreshing long ago.
        if (backend.Delete({storage::ObjectType::kLock, other.name}).ok())
          lock->broken_.push_back(other);
        continue;
      }
      if (other.exclusive || options.exclusive) conflict = other;
    }
    if (!conflict) break;
    backend.Delete({storage::ObjectType::kLock, lock->info_.name}).IgnoreError();  // retried
    if (std::chrono::steady_clock::now() >= deadline) {
      return LockedError("the repository " + backend.location() +
                         " is in use: " + DescribeLock(*conflict));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100 + jitter() % 400));
  }
  lock->refresher_ = std::thread([l = lock.get()] { l->RefreshLoop(); });
  return lock;
}

void RepoLock::RefreshLoop() {
  std::unique_lock<std::mutex> l(mu_);
  while (!stop_cv_.wait_for(l, std::chrono::seconds(kLockRefreshSeconds), [&] { return stop_; })) {
    // A new object first, then the old one removed: the lock is never absent.
    LockInfo next = info_;
    if (SaveNew(backend_, next).ok()) {
      backend_.Delete({storage::ObjectType::kLock, info_.name}).IgnoreError();  // stale anyway
      info_ = next;
    }
  }
}

Status RepoLock::Release() {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (released_) return Status::Ok();
    released_ = true;
    stop_ = true;
  }
  stop_cv_.notify_all();
  if (refresher_.joinable()) refresher_.join();
  Status s = backend_.Delete({storage::ObjectType::kLock, info_.name});
  return s.code() == ErrorCode::kNotFound ? Status::Ok() : s;
}

RepoLock::~RepoLock() {
  Release().IgnoreError();  // a lock left behind is stale once this process is gone
}

}  // namespace vmbackup::repo
