// LocalBackend: a repository in a local folder, one file per object:
//   DIR/<type>/<name>, and DIR/packs/<first two characters>/<name> for packs.
// Save (and an ObjectWriter's Commit) writes DIR/tmp/<unique>, fsyncs it, links it into place (a
// link fails on an existing name, so nothing is ever overwritten), removes the temporary name and
// fsyncs the folder (lock objects excepted: they need not outlive their process). A crash leaves at
// most a file in DIR/tmp, named after its writer (base/process.h); the next Open removes it once
// that process is gone, or when it is older than a day (other hosts).
#pragma once

#include <atomic>
#include <list>
#include <memory>
#include <mutex>

#include "storage/backend.h"

namespace vmbackup::storage {

class LocalBackend final : public Backend {
 public:
  // Creates DIR (which must be absent or empty) and its folders.
  static Result<std::unique_ptr<LocalBackend>> Create(const std::string& dir);
  // Undoes a Create whose repository could not be finished: removes the folders Create made
  // and what they hold, and DIR itself when `remove_folder`. Errors are ignored.
  static void RemoveNew(const std::string& dir, bool remove_folder);
  // Opens an existing repository folder. kNotFound when DIR has no repository folders.
  static Result<std::unique_ptr<LocalBackend>> Open(const std::string& dir);
  ~LocalBackend() override;

  Status Save(const ObjectRef& ref, std::span<const uint8_t> data) override;
  Result<std::vector<uint8_t>> Load(const ObjectRef& ref) override;
  Result<std::vector<uint8_t>> LoadRange(const ObjectRef& ref, uint64_t offset,
                                         uint64_t length) override;
  Status ReadRange(const ObjectRef& ref, uint64_t offset, std::span<uint8_t> out) override;
  void Prefetch(const ObjectRef& ref, uint64_t offset, uint64_t length) override;
  Result<ObjectInfo> Stat(const ObjectRef& ref) override;
  Result<std::vector<ObjectInfo>> List(ObjectType type) override;
  Status Delete(const ObjectRef& ref) override;
  // Writes DIR/tmp/<unique> as it is given (aligned pieces with O_DIRECT) and links it into
  // place on Commit, as Save does.
  bool WritesInPieces() const override { return true; }
  Result<std::unique_ptr<ObjectWriter>> NewWriter(ObjectType type) override;
  std::string location() const override { return dir_; }
  // The fsyncs and fdatasyncs so far: what makes objects durable, counted for tests.
  uint64_t syncs() const { return syncs_.load(); }

 private:
  class Writer;
  explicit LocalBackend(std::string dir) : dir_(std::move(dir)) {}
  Result<std::string> PathOf(const ObjectRef& ref) const;
  // A new name in DIR/tmp, tagged with this process (a crashed writer's file is found by it).
  std::string NewTmpPath();
  // Links the synced `tmp` to `path` (kAlreadyExists when it exists; `tmp` is kept then), and
  // makes the link durable.
  Status LinkIntoPlace(const std::string& tmp, const ObjectRef& ref, const std::string& path);
  Status SyncFolder(const std::string& path);
  bool SyncData(int fd);  // false with errno set
  // Objects never change once written, so ranges are read through a small cache of open
  // files (and their sizes) rather than an open and close per read.
  struct OpenFile {
    std::string path;
    int fd;
    uint64_t size;
  };
  // A duplicate of the cached descriptor (the caller closes it) and the file's size. The dup
  // is taken under the lock, so an eviction by another thread cannot close it under us.
  Result<std::pair<int, uint64_t>> Acquire(const std::string& path);
  void Forget(const std::string& path);

  std::string dir_;
  std::atomic<uint64_t> counter_{0};
  std::atomic<uint64_t> syncs_{0};
  std::mutex files_mu_;
  std::list<OpenFile> files_;  // most recently used first
};

}  // namespace vmbackup::storage
