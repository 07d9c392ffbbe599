// SharedDisk: one disk of a VM held open for a long time (an NBD export) while other vmhost
// commands run. Each request takes the VM lock (shared to read, exclusive to write), notices
// when the .vmx or .vmsd changed (a snapshot was taken, deleted or reverted) and follows the
// disk to its new files, so a guest keeps writing through an export while backups snapshot it.
// It looks at those files only when the lock's generation says someone held it exclusively.
// Not thread-safe: serialize requests.
#pragma once

#include <sys/stat.h>

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "format/vmdk/disk.h"
#include "host/change_tracking.h"
#include "host/vm.h"

namespace vmbackup::host {

enum class DiskOpenMode {
  kRead,     // read-only: the current state or a snapshot
  kWrite,    // the current state, as the guest: needs the VM powered on; CBT records writes
  kRestore,  // a snapshot's own layer, writable (SYSTEM.md 2.2: restore writes it, then reverts)
};
Result<DiskOpenMode> ParseDiskOpenMode(std::string_view text);  // "read", "write", "restore"

class SharedDisk {
 public:
  static Result<std::unique_ptr<SharedDisk>> Open(const std::string& vm_dir, size_t disk,
                                                  SnapshotSel snap, DiskOpenMode mode);
  ~SharedDisk();

  uint64_t size() const { return size_; }
  bool writable() const { return mode_ != DiskOpenMode::kRead; }
  const std::string& layer() const { return layer_; }

  Status Read(uint64_t offset, std::span<uint8_t> buf);
  Status Write(uint64_t offset, std::span<const uint8_t> data);
  // Zeros; with `may_trim` the range may be deallocated (vmdk::Disk::WriteZeroes), else zeros
  // are written.
  Status WriteZeroes(uint64_t offset, uint64_t length, bool may_trim);
  Status Flush();
  // The allocation map, for NBD block status.
  Status Map(uint64_t offset, uint64_t length, std::vector<vmdk::ChainRun>* runs);

 private:
  SharedDisk() = default;
  // Takes the lock and reopens the disk when the VM's metadata changed.
  Status Lock(bool exclusive);
  void Unlock();
  Status Refresh();
  // Size and mtime of the top layer's files: another writer (vmhost disk write) changes them.
  std::vector<std::pair<uint64_t, struct timespec>> TopLayerState() const;

  std::string dir_, name_;
  size_t disk_ = 0;
  SnapshotSel snap_;
  DiskOpenMode mode_ = DiskOpenMode::kRead;
  int lock_fd_ = -1;
  uint64_t generation_ = 0;  // the lock's generation (lock_generation.h) at our last request
  std::string vmx_text_, vmsd_text_;  // the metadata the open handle was made from
  std::string layer_;
  uint64_t size_ = 0;
  std::unique_ptr<vmdk::Disk> disk_handle_;
  std::unique_ptr<ChangeTrackFile> ctk_;
  std::vector<std::pair<uint64_t, struct timespec>> top_state_;
};

}  // namespace vmbackup::host
