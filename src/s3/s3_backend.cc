#include "s3/s3_backend.h"

#include <chrono>
#include <ctime>

namespace vmbackup::s3 {

struct S3Backend::Lease {
  S3Backend* owner = nullptr;
  std::unique_ptr<Client> client;
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  Lease(S3Backend* o, std::unique_ptr<Client> c) : owner(o), client(std::move(c)) {}
  Lease(Lease&& other) noexcept
      : owner(other.owner), client(std::move(other.client)), start(other.start) {}
  ~Lease() {
    if (!client) return;
    ++owner->requests_;
    owner->wait_ns_ += uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                    std::chrono::steady_clock::now() - start)
                                    .count());
    owner->Give(std::move(client));
  }
  Client* operator->() { return client.get(); }
};

Result<S3Backend::Lease> S3Backend::Take() {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (!idle_.empty()) {
      auto c = std::move(idle_.back());
      idle_.pop_back();
      return Lease(this, std::move(c));
    }
  }
  VMBACKUP_ASSIGN_OR_RETURN(auto c, Client::Create(where_, keys_, tls_));
  return Lease(this, std::move(c));
}

void S3Backend::Give(std::unique_ptr<Client> c) {
  std::lock_guard<std::mutex> l(mu_);
  if (idle_.size() < 32) idle_.push_back(std::move(c));
}

Result<std::unique_ptr<S3Backend>> S3Backend::Open(const std::string& url, const Credentials& keys,
                                                   const http::TlsOptions& tls, bool create_bucket,
                                                   bool object_lock) {
  VMBACKUP_ASSIGN_OR_RETURN(Location where, ParseS3Url(url));
  std::unique_ptr<S3Backend> b(new S3Backend(where, keys, tls));
  VMBACKUP_ASSIGN_OR_RETURN(Lease c, b->Take());
  if (create_bucket) {
    VMBACKUP_RETURN_IF_ERROR(c->EnsureBucket(object_lock));
  } else {
    auto config = c->Head(b->Key({storage::ObjectType::kConfig, "config"}));
    if (!config) {
      if (config.error().code() == ErrorCode::kNotFound)
        return NoRepositoryError("no repository at " + url + " (vmbackup init makes one)");
      return config.error();
    }
  }
  return b;
}

std::string S3Backend::Key(const storage::ObjectRef& ref) const {
  return where_.prefix + std::string(storage::ObjectTypeName(ref.type)) + "/" + ref.name;
}

Status S3Backend::Save(const storage::ObjectRef& ref, std::span<const uint8_t> data) {
  VMBACKUP_RETURN_IF_ERROR(storage::ValidateObjectName(ref.name));
  VMBACKUP_ASSIGN_OR_RETURN(Lease c, Take());
  bytes_sent_ += data.size();
  Status s = lock_seconds_ > 0 && storage::IsLockable(ref)
                 ? c->Put(Key(ref), data, /*create_only=*/true, ::time(nullptr) + lock_seconds_,
                          lock_mode_)
                 : c->Put(Key(ref), data, /*create_only=*/true);
  if (s.ok()) ++objects_saved_;
  return s;
}

Result<std::vector<uint8_t>> S3Backend::Load(const storage::ObjectRef& ref) {
  VMBACKUP_RETURN_IF_ERROR(storage::ValidateObjectName(ref.name));
  VMBACKUP_ASSIGN_OR_RETURN(Lease c, Take());
  auto data = c->Get(Key(ref));
  if (data) bytes_received_ += data->size();
  return data;
}

Result<std::vector<uint8_t>> S3Backend::LoadRange(const storage::ObjectRef& ref, uint64_t offset,
                                                  uint64_t length) {
  // Packs are 16 MiB and a little more; a longer range comes from damaged metadata, and the
  // default checks it against the object's size before it allocates.
  if (length == 0 || length > (64u << 20)) return Backend::LoadRange(ref, offset, length);
  std::vector<uint8_t> data(length);
  VMBACKUP_RETURN_IF_ERROR(ReadRange(ref, offset, data));
  return data;
}

Status S3Backend::ReadRange(const storage::ObjectRef& ref, uint64_t offset,
                            std::span<uint8_t> out) {
  VMBACKUP_RETURN_IF_ERROR(storage::ValidateObjectName(ref.name));
  VMBACKUP_ASSIGN_OR_RETURN(Lease c, Take());
  Status s = c->GetRange(Key(ref), offset, out);
  if (s.ok()) bytes_received_ += out.size();
  return s;
}

Result<storage::ObjectInfo> S3Backend::Stat(const storage::ObjectRef& ref) {
  VMBACKUP_RETURN_IF_ERROR(storage::ValidateObjectName(ref.name));
  VMBACKUP_ASSIGN_OR_RETURN(Lease c, Take());
  VMBACKUP_ASSIGN_OR_RETURN(ObjectMeta m, c->Head(Key(ref)));
  return storage::ObjectInfo{ref.name, m.size, m.mtime};
}

Result<std::vector<storage::ObjectInfo>> S3Backend::List(storage::ObjectType type) {
  const std::string prefix = where_.prefix + std::string(storage::ObjectTypeName(type)) + "/";
  VMBACKUP_ASSIGN_OR_RETURN(Lease c, Take());
  VMBACKUP_ASSIGN_OR_RETURN(auto all, c->List(prefix));
  std::vector<storage::ObjectInfo> out;
  for (const auto& m : all) {
    const std::string name = m.key.substr(prefix.size());
    // Only objects this layout can name (no deeper keys, nothing another tool left).
    if (!storage::ValidateObjectName(name).ok()) continue;
    out.push_back({name, m.size, m.mtime});
  }
  return out;
}

Status S3Backend::Delete(const storage::ObjectRef& ref) {
  VMBACKUP_RETURN_IF_ERROR(storage::ValidateObjectName(ref.name));
  VMBACKUP_ASSIGN_OR_RETURN(Lease c, Take());
  return c->Delete(Key(ref));
}

Status S3Backend::LockNewObjects(storage::LockMode mode, int64_t seconds) {
  VMBACKUP_ASSIGN_OR_RETURN(Lease c, Take());
  VMBACKUP_ASSIGN_OR_RETURN(bool enabled, c->BucketHasObjectLock());
  if (!enabled) {
    return FailedPreconditionError("the repository wants Object Lock, but bucket " + where_.bucket +
                                   " at " + where_.endpoint + " has none");
  }
  lock_mode_ =
      mode == storage::LockMode::kCompliance ? LockMode::kCompliance : LockMode::kGovernance;
  lock_seconds_ = seconds;
  return Status::Ok();
}

Result<int64_t> S3Backend::LockedUntil(const storage::ObjectRef& ref) {
  VMBACKUP_RETURN_IF_ERROR(storage::ValidateObjectName(ref.name));
  VMBACKUP_ASSIGN_OR_RETURN(Lease c, Take());
  VMBACKUP_ASSIGN_OR_RETURN(ObjectMeta m, c->Head(Key(ref)));
  return m.locked_until;
}

Status S3Backend::ExtendLock(const storage::ObjectRef& ref, int64_t until) {
  VMBACKUP_RETURN_IF_ERROR(storage::ValidateObjectName(ref.name));
  if (lock_seconds_ == 0)
    return NotSupportedError(where_.url + ": the repository has no Object Lock");
  VMBACKUP_ASSIGN_OR_RETURN(Lease c, Take());
  return c->SetRetention(Key(ref), until, lock_mode_);
}

storage::TransferStats S3Backend::transfer_stats() const {
  storage::TransferStats t;
  t.requests = requests_;
  t.objects_saved = objects_saved_;
  t.bytes_sent = bytes_sent_;
  t.bytes_received = bytes_received_;
  t.wait_ns = wait_ns_;
  return t;
}

}  // namespace vmbackup::s3
