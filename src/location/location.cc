#include "location/location.h"

#include <filesystem>

#include "s3/s3_backend.h"
#include "s3/s3_url.h"
#include "storage/block_cache_backend.h"
#include "storage/local_backend.h"
#include "storage/retrying_backend.h"

namespace vmbackup::location {
namespace {

// Connects, retrying what a store's hiccup makes fail (as the backend's calls are later).
Result<std::unique_ptr<s3::S3Backend>> OpenBucket(const std::string& url, const Options& o,
                                                  bool create_bucket) {
  if (o.object_lock && !create_bucket) return InvalidArgumentError("Object Lock is set at init");
  VMBACKUP_ASSIGN_OR_RETURN(s3::Credentials keys, s3::CredentialsFromEnvironment());
  http::TlsOptions tls;
  tls.ca_file = o.s3_ca_file;
  tls.trust_hint = "give the CA that signed it with --s3-ca-file FILE (PEM)";
  if (!tls.ca_file.empty()) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(tls.ca_file, ec))
      return InvalidArgumentError("--s3-ca-file " + tls.ca_file + ": not a readable file");
  }
  std::unique_ptr<s3::S3Backend> bucket;
  VMBACKUP_RETURN_IF_ERROR(storage::RetryUnavailable({}, [&]() -> Status {
    VMBACKUP_ASSIGN_OR_RETURN(bucket,
                              s3::S3Backend::Open(url, keys, tls, create_bucket, o.object_lock));
    return Status::Ok();
  }));
  return bucket;
}

// Options only an S3 repository takes, refused for a folder.
Status CheckFolderOptions(const std::string& where, const Options& o) {
  if (!o.s3_ca_file.empty())
    return InvalidArgumentError("--s3-ca-file is for S3 repositories; " + where + " is a folder");
  if (o.object_lock)
    return InvalidArgumentError("Object Lock needs an S3 repository; " + where + " is a folder");
  return Status::Ok();
}

}  // namespace

bool IsRemote(const std::string& where) { return s3::IsS3Url(where); }

Result<std::unique_ptr<storage::Backend>> Open(const std::string& where, const Options& o) {
  if (!IsRemote(where)) {
    VMBACKUP_RETURN_IF_ERROR(CheckFolderOptions(where, o));
    VMBACKUP_ASSIGN_OR_RETURN(auto local, storage::LocalBackend::Open(where));
    return std::unique_ptr<storage::Backend>(std::move(local));
  }
  VMBACKUP_ASSIGN_OR_RETURN(auto bucket, OpenBucket(where, o, /*create_bucket=*/false));
  // Packs are read by blocks (storage/block_cache_backend.h), each block retried on its own.
  return std::unique_ptr<storage::Backend>(std::make_unique<storage::BlockCacheBackend>(
      std::make_unique<storage::RetryingBackend>(std::move(bucket))));
}

Result<std::unique_ptr<storage::Backend>> Create(const std::string& where, const Options& o) {
  if (!IsRemote(where)) {
    VMBACKUP_RETURN_IF_ERROR(CheckFolderOptions(where, o));
    VMBACKUP_ASSIGN_OR_RETURN(auto local, storage::LocalBackend::Create(where));
    return std::unique_ptr<storage::Backend>(std::move(local));
  }
  VMBACKUP_ASSIGN_OR_RETURN(auto bucket, OpenBucket(where, o, /*create_bucket=*/true));
  auto b = std::make_unique<storage::RetryingBackend>(std::move(bucket));
  // A bucket (or prefix) with a repository's objects in it is taken, even without a config: a
  // half-deleted repository must not get a second config over its packs.
  for (storage::ObjectType t :
       {storage::ObjectType::kConfig, storage::ObjectType::kKey, storage::ObjectType::kPack,
        storage::ObjectType::kIndex, storage::ObjectType::kPoint}) {
    VMBACKUP_ASSIGN_OR_RETURN(auto objects, b->List(t));
    if (!objects.empty()) {
      return AlreadyExistsError(where + " already holds a repository's objects (" +
                                std::string(storage::ObjectTypeName(t)) + "/" + objects[0].name +
                                ")");
    }
  }
  return std::unique_ptr<storage::Backend>(std::move(b));
}

void RemoveNew(const std::string& where, const Options& given, bool remove_folder) {
  if (!IsRemote(where)) {
    storage::LocalBackend::RemoveNew(where, remove_folder);
    return;
  }
  // What a failed init wrote with a lock stays until its lock ends: S3 refuses, we go on.
  Options o = given;
  o.object_lock = false;
  auto b = OpenBucket(where, o, /*create_bucket=*/false);
  if (!b) {
    // No config: Init stopped before it, but it may have written a key.
    b = OpenBucket(where, o, /*create_bucket=*/true);
    if (!b) return;
  }
  for (storage::ObjectType t : {storage::ObjectType::kConfig, storage::ObjectType::kKey}) {
    auto objects = (*b)->List(t);
    if (!objects) continue;
    for (const auto& obj : *objects) (*b)->Delete({t, obj.name}).IgnoreError();
  }
}

std::string Absolute(const std::string& where) {
  if (where.empty() || IsRemote(where)) return where;
  return std::filesystem::absolute(where).lexically_normal().string();
}

}  // namespace vmbackup::location
