// Where a repository lives, as the user names it: a local folder, or an S3 bucket
// ("s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX]", docs/repository-format.md section 1). Everything
// that opens a repository by name (the commands, the nbdkit plugin behind exports) goes through
// here, so a new kind of store is added in one place.
#pragma once

#include <memory>
#include <string>

#include "base/result.h"
#include "storage/backend.h"

namespace vmbackup::location {

struct Options {
  std::string s3_ca_file;    // PEM bundle for an S3 server with a private CA (else the system's)
  bool object_lock = false;  // Create: the bucket must have (or is made with) Object Lock
};

// True for an S3 URL: the repository is not a folder of this machine.
bool IsRemote(const std::string& where);

// The backend of an existing repository. An S3 one retries transient failures
// (storage::RetryingBackend); its credentials come from the environment (s3/s3_url.h).
// kNoRepository when there is no repository there.
Result<std::unique_ptr<storage::Backend>> Open(const std::string& where, const Options& o);

// The backend for a new repository: an absent or empty folder (made), or a bucket and prefix
// that hold no repository (the bucket is made when missing). kAlreadyExists when one is there.
Result<std::unique_ptr<storage::Backend>> Create(const std::string& where, const Options& o);

// Undoes a Create whose repository could not be finished (errors ignored): a folder's
// sub-folders, and the folder itself when `remove_folder`; a bucket's config and key objects.
void RemoveNew(const std::string& where, const Options& o, bool remove_folder);

// `where` made absolute when it is a folder (for a daemon that works from "/"); URLs unchanged.
std::string Absolute(const std::string& where);

}  // namespace vmbackup::location
