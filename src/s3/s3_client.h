// An S3 client for one bucket (path-style addressing: http[s]://HOST[:PORT]/BUCKET/KEY), on the
// project's libcurl client (src/http: TLS verified, or pinned) and our SigV4 signer. One Client
// is one kept-open connection and is not thread-safe; S3Backend keeps a pool.
//
// Errors: no answer, a reset, a timeout, HTTP 5xx, 408 and 429 are kUnavailable (worth a retry);
// 404 is kNotFound, 412 on a create-only PUT kAlreadyExists, 403 kPermissionDenied (with S3's
// code and message: AccessDenied, SignatureDoesNotMatch, InvalidAccessKeyId), a refused payload
// hash kCorruption; other answers kIOError with S3's code and message.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "base/result.h"
#include "http/http_client.h"
#include "s3/s3_url.h"
#include "s3/sigv4.h"

namespace vmbackup::s3 {

struct ObjectMeta {
  std::string key;  // relative to the bucket
  uint64_t size = 0;
  int64_t mtime = 0;         // Unix seconds
  std::string version_id;    // in a versioned bucket (every Object Lock bucket is); else ""
  int64_t locked_until = 0;  // Object Lock retention (HEAD only); 0: none
};

// S3 Object Lock: how an object is kept. Governance may be lifted by a user with the
// s3:BypassGovernanceRetention permission (vmbackup never asks to); compliance by nobody.
enum class LockMode { kGovernance, kCompliance };
std::string_view LockModeName(LockMode m);  // "GOVERNANCE", "COMPLIANCE"

class Client {
 public:
  static Result<std::unique_ptr<Client>> Create(const Location& where, const Credentials& keys,
                                                const http::TlsOptions& tls);

  // Object keys are relative to the bucket ("prefix/points/x"); "" is the bucket itself.
  // `create_only`: If-None-Match: * (kAlreadyExists when the key exists). `lock_until` > 0: the
  // object is locked (Object Lock) in `mode` until then (Unix seconds).
  Status Put(const std::string& key, std::span<const uint8_t> data, bool create_only,
             int64_t lock_until = 0, LockMode mode = LockMode::kGovernance);
  // PutObjectRetention on the current version: locked until `until` (S3 refuses to shorten a
  // lock, or to weaken compliance to governance).
  Status SetRetention(const std::string& key, int64_t until, LockMode mode);
  Result<std::vector<uint8_t>> Get(const std::string& key);
  // Exactly out.size() bytes at `offset`; kCorruption when the object is shorter.
  Status GetRange(const std::string& key, uint64_t offset, std::span<uint8_t> out);
  Result<ObjectMeta> Head(const std::string& key);
  // kNotFound when the key does not exist (S3 itself answers 204 either way: a HEAD first). In a
  // versioned bucket the current version itself is deleted (else S3 would only hide it behind
  // a delete marker and keep its bytes); a locked one is refused by S3 (kPermissionDenied).
  Status Delete(const std::string& key);
  // Every key under `prefix`, through every page (ListObjectsV2, continuation tokens).
  Result<std::vector<ObjectMeta>> List(const std::string& prefix);
  // Creates the bucket when it does not exist (a bucket of another owner: kPermissionDenied),
  // with Object Lock enabled when `object_lock`; an existing bucket without it is then refused.
  Status EnsureBucket(bool object_lock = false);
  // Whether the bucket has Object Lock enabled.
  Result<bool> BucketHasObjectLock();
  const Location& location() const { return where_; }

 private:
  Client(Location where, Credentials keys, std::unique_ptr<http::Client> http)
      : where_(std::move(where)), keys_(std::move(keys)), http_(std::move(http)) {}
  // The request with its SigV4 signature (no body attached).
  http::Request Signed(const std::string& method, const std::string& key,
                       const std::vector<std::pair<std::string, std::string>>& query,
                       std::map<std::string, std::string> headers,
                       std::span<const uint8_t> body) const;
  Result<http::Response> Send(const std::string& method, const std::string& key,
                              const std::vector<std::pair<std::string, std::string>>& query,
                              std::map<std::string, std::string> headers,
                              std::span<const uint8_t> body);
  Status HeadError(const http::Response& head, const std::string& key, const std::string& what);
  Location where_;
  Credentials keys_;
  std::unique_ptr<http::Client> http_;
};

// One page of a ListObjectsV2 answer; keys outside `prefix` are a protocol error.
struct ListPage {
  std::vector<ObjectMeta> objects;
  bool truncated = false;
  std::string next_token;
};
Result<ListPage> ParseListPage(const std::string& body, const std::string& prefix,
                               const std::string& what);

// The Status for an S3 error answer (`what`: "PUT s3:.../bucket/key").
Status ErrorOf(const http::Response& r, const std::string& what);

}  // namespace vmbackup::s3
