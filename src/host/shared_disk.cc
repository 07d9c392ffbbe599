#include "host/shared_disk.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>

#include "base/checked_math.h"
#include "base/strings.h"
#include "host/lock_generation.h"
#include "io/posix_file.h"

namespace vmbackup::host {
namespace {

bool Same(const struct timespec& a, const struct timespec& b) {
  return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

}  // namespace

Result<DiskOpenMode> ParseDiskOpenMode(std::string_view t) {
  if (t == "read") return DiskOpenMode::kRead;
  if (t == "write") return DiskOpenMode::kWrite;
  if (t == "restore") return DiskOpenMode::kRestore;
  return InvalidArgumentError("open mode '" + std::string(t) + "' is not read, write or restore");
}

Result<std::unique_ptr<SharedDisk>> SharedDisk::Open(const std::string& vm_dir, size_t disk,
                                                     SnapshotSel snap, DiskOpenMode mode) {
  if (mode == DiskOpenMode::kWrite && snap) {
    return InvalidArgumentError("a snapshot's disk is writable only in restore mode");
  }
  if (mode == DiskOpenMode::kRestore && !snap) {
    return InvalidArgumentError("restore mode writes a snapshot's disk: name the snapshot");
  }
  std::unique_ptr<SharedDisk> d(new SharedDisk());
  d->dir_ = vm_dir;
  d->name_ = io::BaseName(vm_dir);
  d->disk_ = disk;
  d->snap_ = snap;
  d->mode_ = mode;
  std::string lock = io::JoinPath(vm_dir, ".vmhost.lock");
  if (!io::PathExists(io::JoinPath(vm_dir, d->name_ + ".vmx"))) {
    return NotFoundError("no VM '" + d->name_ + "' in " + io::DirName(vm_dir));
  }
  d->lock_fd_ = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (d->lock_fd_ < 0) return PosixError("open " + lock, errno);
  VMBACKUP_RETURN_IF_ERROR(d->Lock(false));
  d->Unlock();
  return d;
}

SharedDisk::~SharedDisk() {
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

Status SharedDisk::Lock(bool exclusive) {
  while (::flock(lock_fd_, exclusive ? LOCK_EX : LOCK_SH) != 0) {
    if (errno != EINTR) return PosixError("lock VM " + name_, errno);
  }
  // The generation unchanged since our last request: nothing changed the VM's files, and
  // re-reading them (a dozen system calls for each 64 KiB read) can be skipped.
  Result<uint64_t> generation = ReadLockGeneration(lock_fd_);
  Status s = generation.status();
  if (s.ok() && (!disk_handle_ || *generation != generation_)) s = Refresh();
  if (s.ok() && exclusive) {
    generation = RaiseLockGeneration(lock_fd_);  // other handles re-read after our writes
    s = generation.status();
  }
  if (!s.ok()) {
    Unlock();
    return s;
  }
  generation_ = *generation;
  return Status::Ok();
}

void SharedDisk::Unlock() { ::flock(lock_fd_, LOCK_UN); }

Status SharedDisk::Refresh() {
  // The VM's metadata is compared by content, not by mtime and inode: a snapshot created and
  // deleted between two requests can leave both looking the same (inode numbers are reused,
  // mtimes are coarse), and writes would then go into a delta that was merged and removed.
  // The .vmsd's lastUID only grows, so any snapshot operation changes its text.
  std::string vmx_path = io::JoinPath(dir_, name_ + ".vmx");
  std::string vmsd_path = io::JoinPath(dir_, name_ + ".vmsd");
  VMBACKUP_ASSIGN_OR_RETURN(std::string vmx_text, io::ReadSmallFile(vmx_path, 1 << 20));
  std::string vmsd_text;
  if (io::PathExists(vmsd_path)) {
    VMBACKUP_ASSIGN_OR_RETURN(vmsd_text, io::ReadSmallFile(vmsd_path, 1 << 20));
  }
  if (disk_handle_ && vmx_text == vmx_text_ && vmsd_text == vmsd_text_) {
    auto now = TopLayerState();
    bool same = now.size() == top_state_.size();
    for (size_t i = 0; same && i < now.size(); ++i) {
      same = now[i].first == top_state_[i].first && Same(now[i].second, top_state_[i].second);
    }
    if (same) return Status::Ok();
  }
  disk_handle_.reset();  // metadata or the layer changed: drop cached grain tables
  VMBACKUP_ASSIGN_OR_RETURN(Vmx vmx, Vmx::Parse(vmx_text));
  SnapshotDb vmsd;
  if (!vmsd_text.empty()) {
    VMBACKUP_ASSIGN_OR_RETURN(vmsd, SnapshotDb::Parse(vmsd_text));
  }
  if (mode_ == DiskOpenMode::kWrite && !vmx.powered_on()) {
    return FailedPreconditionError("VM " + name_ + " is powered off: the guest cannot write");
  }
  Result<std::string> layer = LayerFileFor(vmx, vmsd, name_, disk_, snap_);
  if (!layer) {
    return layer.error().WithContext(snap_ ? "the exported snapshot is gone"
                                           : "the exported disk is gone");
  }
  {
    vmdk::DiskOptions o;
    o.writable = mode_ != DiskOpenMode::kRead;
    o.preserve_cid = mode_ == DiskOpenMode::kRestore;  // the delta above stays valid until revert
    o.confine_to = io::DirName(dir_);                  // every file inside the datastore
    VMBACKUP_ASSIGN_OR_RETURN(auto h, vmdk::Disk::Open(io::JoinPath(dir_, *layer), o));
    if (size_ != 0 && h->size() != size_) {
      return NotSupportedError("the exported disk changed size");
    }
    size_ = h->size();
    ctk_.reset();
    if (mode_ == DiskOpenMode::kWrite && vmx.cbt_enabled()) {
      const std::string& ctk = h->layers()[0]->descriptor().change_track_path;
      if (ctk.empty()) return CorruptionError(*layer + ": CBT is on but the layer has no ctk file");
      VMBACKUP_RETURN_IF_ERROR(io::CheckInside(io::DirName(dir_), io::JoinPath(dir_, ctk)));
      VMBACKUP_ASSIGN_OR_RETURN(ctk_, ChangeTrackFile::Open(io::JoinPath(dir_, ctk), true));
    }
    disk_handle_ = std::move(h);
    layer_ = *layer;
  }
  top_state_ = TopLayerState();
  vmx_text_ = std::move(vmx_text);
  vmsd_text_ = std::move(vmsd_text);
  return Status::Ok();
}

std::vector<std::pair<uint64_t, struct timespec>> SharedDisk::TopLayerState() const {
  std::vector<std::pair<uint64_t, struct timespec>> out;
  if (!disk_handle_) return out;
  for (const auto& e : disk_handle_->layers()[0]->extents()) {
    struct stat st;
    if (!e.path.empty() && ::stat(e.path.c_str(), &st) == 0)
      out.emplace_back(uint64_t(st.st_size), st.st_mtim);
  }
  return out;
}

Status SharedDisk::Read(uint64_t offset, std::span<uint8_t> buf) {
  VMBACKUP_RETURN_IF_ERROR(Lock(false));
  Status s = disk_handle_->ReadAt(offset, buf);
  Unlock();
  return s;
}

Status SharedDisk::Write(uint64_t offset, std::span<const uint8_t> data) {
  if (mode_ == DiskOpenMode::kRead) return PermissionDeniedError("disk opened read-only");
  VMBACKUP_RETURN_IF_ERROR(Lock(true));
  Status s;
  if (!RangeWithin(offset, data.size(), size_)) {
    s = InvalidArgumentError("write past the end of the disk");
  } else if (ctk_) {
    s = ctk_->Record(offset, data.size());  // before the data: a crash can only over-report
  }
  if (s.ok()) s = disk_handle_->WriteAt(offset, data);
  top_state_ = TopLayerState();  // our own write is not news
  Unlock();
  return s;
}

Status SharedDisk::WriteZeroes(uint64_t offset, uint64_t length, bool may_trim) {
  if (mode_ == DiskOpenMode::kRead) return PermissionDeniedError("disk opened read-only");
  VMBACKUP_RETURN_IF_ERROR(Lock(true));
  Status s;
  if (!RangeWithin(offset, length, size_)) {
    s = InvalidArgumentError("zeroed range past the end of the disk");
  } else if (ctk_) {
    s = ctk_->Record(offset, length);
  }
  if (s.ok()) {
    s = may_trim ? disk_handle_->WriteZeroes(offset, length)
                 : disk_handle_->io::BlockWriter::WriteZeroes(offset, length);
  }
  top_state_ = TopLayerState();
  Unlock();
  return s;
}

Status SharedDisk::Flush() {
  if (mode_ == DiskOpenMode::kRead) return Status::Ok();
  VMBACKUP_RETURN_IF_ERROR(Lock(true));
  Status s = disk_handle_->Flush();
  top_state_ = TopLayerState();
  Unlock();
  return s;
}

Status SharedDisk::Map(uint64_t offset, uint64_t length, std::vector<vmdk::ChainRun>* runs) {
  VMBACKUP_RETURN_IF_ERROR(Lock(false));
  Status s = disk_handle_->MapChain(offset, length, runs);
  Unlock();
  return s;
}

}  // namespace vmbackup::host
