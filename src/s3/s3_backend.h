// A repository's objects in an S3 bucket (docs/repository-format.md section 1): object T/N is
// the key PREFIX + "T/N". Write-once objects are created with If-None-Match: * (the server
// refuses to overwrite: kAlreadyExists), read whole or by range, listed page by page, deleted
// after a HEAD (S3 answers 204 for a missing key; the Backend contract wants kNotFound).
// Thread-safe: each call takes a connection from a pool (kept open between requests), so
// several requests are in flight when several threads call.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "s3/s3_client.h"
#include "storage/backend.h"

namespace vmbackup::s3 {

class S3Backend : public storage::Backend {
 public:
  // Connects to the bucket of `url` ("s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX]"). With
  // `create_bucket` a missing bucket is created (init); otherwise kNoRepository when it has no
  // config object.
  // With `object_lock` (init of a locked repository) the bucket must have Object Lock, and a
  // missing one is made with it.
  static Result<std::unique_ptr<S3Backend>> Open(const std::string& url, const Credentials& keys,
                                                 const http::TlsOptions& tls, bool create_bucket,
                                                 bool object_lock = false);

  Status Save(const storage::ObjectRef& ref, std::span<const uint8_t> data) override;
  Result<std::vector<uint8_t>> Load(const storage::ObjectRef& ref) override;
  // One ranged GET (no HEAD first: the server says when the object is shorter), unless the
  // length is more than any object of ours could hold.
  Result<std::vector<uint8_t>> LoadRange(const storage::ObjectRef& ref, uint64_t offset,
                                         uint64_t length) override;
  Status ReadRange(const storage::ObjectRef& ref, uint64_t offset, std::span<uint8_t> out) override;
  Result<storage::ObjectInfo> Stat(const storage::ObjectRef& ref) override;
  Result<std::vector<storage::ObjectInfo>> List(storage::ObjectType type) override;
  Status Delete(const storage::ObjectRef& ref) override;
  std::string location() const override { return where_.url; }
  // A request costs a round trip (a few ms even on a LAN): 1 MiB of unwanted data is cheaper.
  uint64_t CoalesceGap() const override { return 1 << 20; }
  int SavesInFlight() const override { return 4; }
  storage::TransferStats transfer_stats() const override;
  // Needs a bucket with Object Lock (kFailedPrecondition otherwise, checked here once).
  Status LockNewObjects(storage::LockMode mode, int64_t seconds) override;
  Result<int64_t> LockedUntil(const storage::ObjectRef& ref) override;
  Status ExtendLock(const storage::ObjectRef& ref, int64_t until) override;

 private:
  S3Backend(Location where, Credentials keys, http::TlsOptions tls)
      : where_(std::move(where)), keys_(std::move(keys)), tls_(std::move(tls)) {}
  std::string Key(const storage::ObjectRef& ref) const;
  // A connection for one call, returned to the pool when the holder goes; it counts the call
  // as a request and its time as time waiting for the store.
  struct Lease;
  Result<Lease> Take();
  void Give(std::unique_ptr<Client> c);

  Location where_;
  Credentials keys_;
  http::TlsOptions tls_;
  std::mutex mu_;
  std::vector<std::unique_ptr<Client>> idle_;
  // Object Lock of new objects: 0 seconds for none. Set once, before the backend is shared.
  LockMode lock_mode_ = LockMode::kGovernance;
  int64_t lock_seconds_ = 0;
  std::atomic<uint64_t> requests_{0}, objects_saved_{0}, bytes_sent_{0}, bytes_received_{0},
      wait_ns_{0};
};

}  // namespace vmbackup::s3
