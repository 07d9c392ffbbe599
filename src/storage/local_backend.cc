#include "storage/local_backend.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <memory>
#include <random>

#include "base/checked_math.h"
#include "base/process.h"
#include "base/strings.h"

namespace vmbackup::storage {
namespace {

constexpr ObjectType kAllTypes[] = {ObjectType::kConfig, ObjectType::kKey,  ObjectType::kPack,
                                    ObjectType::kIndex,  ObjectType::kTree, ObjectType::kPoint,
                                    ObjectType::kLock,   ObjectType::kMark, ObjectType::kForgotten,
                                    ObjectType::kDamage, ObjectType::kTest};

std::string Join(const std::string& a, std::string_view b) { return a + "/" + std::string(b); }
std::string FolderOf(const std::string& path) { return path.substr(0, path.rfind('/')); }

Status MakeDir(const std::string& path) {
  if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST)
    return PosixError("create " + path, errno);
  return Status::Ok();
}

// Lock objects are not synced: a lock matters only while its process lives, and a machine that
// crashes ends the process too (a lock left empty by the crash reads as damaged, so stale).
// Their two syncs were a third of taking the lock (9.6 ms at the start of every command).
bool Durable(ObjectType type) { return type != ObjectType::kLock; }

Status SyncDir(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return PosixError("open " + path, errno);
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return PosixError("fsync " + path, err);
  return Status::Ok();
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

Status RangeError(const std::string& path, uint64_t offset, uint64_t length, uint64_t size) {
  return CorruptionError(StrFormat("%s: %llu bytes at %llu asked, the file has %llu", path.c_str(),
                                   (unsigned long long)length, (unsigned long long)offset,
                                   (unsigned long long)size));
}

Status ReadAll(int fd, uint64_t offset, std::span<uint8_t> buf, const std::string& path) {
  size_t done = 0;
  while (done < buf.size()) {
    ssize_t n = ::pread(fd, buf.data() + done, buf.size() - done, off_t(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return PosixError("read " + path, errno);
    }
    if (n == 0) return CorruptionError(path + ": shorter than expected");
    done += size_t(n);
  }
  return Status::Ok();
}

// Large objects (packs) are written around the page cache with O_DIRECT: a pack is written once
// and read rarely, and filling the page cache costs far more than the disk write (buffered
// writes here ran at a fifth of the disk's direct speed: every page cache page is fresh memory,
// which is slow to get on a VM). Memory on a page boundary (packs are built so) is written as it
// is, other memory through a reused aligned buffer; an unaligned tail goes through the page
// cache. Small pieces are not worth the switch.
constexpr size_t kDirectMin = 1 << 20, kBounceSize = 4 << 20;

Result<std::vector<std::string>> ListDir(const std::string& path) {
  DIR* d = ::opendir(path.c_str());
  if (!d) {
    if (errno == ENOENT) return std::vector<std::string>{};
    return PosixError("list " + path, errno);
  }
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  ::closedir(d);
  return names;
}

}  // namespace

Result<std::unique_ptr<LocalBackend>> LocalBackend::Create(const std::string& dir) {
  VMBACKUP_RETURN_IF_ERROR(MakeDir(dir));
  VMBACKUP_ASSIGN_OR_RETURN(auto existing, ListDir(dir));
  if (!existing.empty()) return AlreadyExistsError(dir + " is not empty");
  VMBACKUP_RETURN_IF_ERROR(MakeDir(Join(dir, "tmp")));
  for (ObjectType t : kAllTypes) VMBACKUP_RETURN_IF_ERROR(MakeDir(Join(dir, ObjectTypeName(t))));
  VMBACKUP_RETURN_IF_ERROR(SyncDir(dir));
  return std::unique_ptr<LocalBackend>(new LocalBackend(dir));
}

void LocalBackend::RemoveNew(const std::string& dir, bool remove_folder) {
  std::error_code ignored;
  std::filesystem::remove_all(Join(dir, "tmp"), ignored);
  for (ObjectType t : kAllTypes) std::filesystem::remove_all(Join(dir, ObjectTypeName(t)), ignored);
  if (remove_folder) ::rmdir(dir.c_str());
}

Result<std::unique_ptr<LocalBackend>> LocalBackend::Open(const std::string& dir) {
  struct stat st;
  for (std::string_view sub : {std::string_view("tmp"), ObjectTypeName(ObjectType::kConfig),
                               ObjectTypeName(ObjectType::kPack)}) {
    if (::stat(Join(dir, sub).c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      return NoRepositoryError(dir + " is not a repository (no " + std::string(sub) + " folder)");
    }
  }
  // Folders of object types newer than the repository (a read-only one is read as it is).
  for (ObjectType t : kAllTypes) {
    const std::string sub = Join(dir, ObjectTypeName(t));
    if (::stat(sub.c_str(), &st) != 0) MakeDir(sub).IgnoreError();  // Save reports it if needed
  }
  // Temporary files of writers that died: their owner (this host) is gone, or they are older
  // than a day (another host's, on a shared folder).
  auto tmp = ListDir(Join(dir, "tmp"));
  for (const std::string& n : tmp ? *tmp : std::vector<std::string>{}) {
    std::string p = Join(Join(dir, "tmp"), n);
    if (::stat(p.c_str(), &st) != 0) continue;
    if (st.st_mtime < ::time(nullptr) - 86400 || !FileTagOwnerAlive(n)) ::unlink(p.c_str());
  }
  return std::unique_ptr<LocalBackend>(new LocalBackend(dir));
}

Result<std::string> LocalBackend::PathOf(const ObjectRef& ref) const {
  VMBACKUP_RETURN_IF_ERROR(ValidateObjectName(ref.name));
  std::string folder = Join(dir_, ObjectTypeName(ref.type));
  if (ref.type == ObjectType::kPack) {
    // Packs are many: two characters of the name spread them over 256 folders (for hex ids).
    folder = Join(folder, ref.name.substr(0, std::min<size_t>(2, ref.name.size())));
  }
  return Join(folder, ref.name);
}

std::string LocalBackend::NewTmpPath() {
  return Join(Join(dir_, "tmp"),
              OwnerFileTag() + StrFormat("-%llu-%08x", (unsigned long long)counter_.fetch_add(1),
                                         uint32_t(std::random_device()())));
}

Status LocalBackend::LinkIntoPlace(const std::string& tmp, const ObjectRef& ref,
                                   const std::string& path) {
  // link() refuses an existing target: write-once without a check-then-write race.
  if (::link(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    if (err == EEXIST) {
      return AlreadyExistsError(std::string(ObjectTypeName(ref.type)) + "/" + ref.name +
                                " already exists");
    }
    return PosixError("link " + path, err);
  }
  ::unlink(tmp.c_str());
  return Durable(ref.type) ? SyncFolder(FolderOf(path)) : Status::Ok();
}

Status LocalBackend::SyncFolder(const std::string& path) {
  syncs_.fetch_add(1);
  return SyncDir(path);
}

bool LocalBackend::SyncData(int fd) {
  syncs_.fetch_add(1);
  return ::fdatasync(fd) == 0;
}

Status LocalBackend::Save(const ObjectRef& ref, std::span<const uint8_t> data) {
  VMBACKUP_RETURN_IF_ERROR(PathOf(ref).status());  // a bad name before any byte is written
  VMBACKUP_ASSIGN_OR_RETURN(std::unique_ptr<ObjectWriter> w, NewWriter(ref.type));
  VMBACKUP_RETURN_IF_ERROR(w->Append(data));
  return w->Commit(ref.name);  // the writer removes its file on any error
}

// A new object in a temporary file (Save's too): large pieces go to the disk with O_DIRECT as
// they come (the pack's memory is reused at once, and the page cache is not filled: see
// kDirectMin), anything else through the page cache; Commit syncs it and links it into place.
class LocalBackend::Writer final : public ObjectWriter {
 public:
  Writer(LocalBackend& backend, ObjectType type, std::string tmp, int fd)
      : backend_(backend), type_(type), tmp_(std::move(tmp)), fd_(fd) {}
  ~Writer() override {
    if (fd_ >= 0) ::close(fd_);
    if (!tmp_.empty()) ::unlink(tmp_.c_str());
  }

  Status Append(std::span<const uint8_t> bytes) override {
    if (fd_ < 0) return FailedPreconditionError("append to " + tmp_ + " after its commit");
    const size_t direct = direct_allowed_ && offset_ % kAlign == 0 && bytes.size() >= kDirectMin
                              ? bytes.size() / kAlign * kAlign
                              : 0;
    VMBACKUP_ASSIGN_OR_RETURN(size_t done, AppendDirect(bytes.first(direct)));
    return AppendBuffered(bytes.subspan(done));
  }

  Status Commit(const std::string& name) override {
    if (fd_ < 0) return FailedPreconditionError("commit of " + tmp_ + " twice");
    const ObjectRef ref{type_, name};
    auto path = backend_.PathOf(ref);
    Status s = path ? Status::Ok() : path.error();
    if (s.ok() && type_ == ObjectType::kPack) s = MakeDir(FolderOf(*path));
    if (s.ok() && Durable(type_) && !backend_.SyncData(fd_)) s = PosixError("fsync " + tmp_, errno);
    ::close(fd_);
    fd_ = -1;
    if (s.ok()) s = backend_.LinkIntoPlace(tmp_, ref, *path);
    if (s.ok()) {
      tmp_.clear();  // linked, and the temporary name removed
    } else if (s.code() == ErrorCode::kAlreadyExists) {
      path_ = *path;  // kept for SameAsExisting and ReplaceExisting
    }
    return s;
  }

  Result<bool> SameAsExisting() override {
    VMBACKUP_RETURN_IF_ERROR(RequireExisting());
    Fd a(::open(tmp_.c_str(), O_RDONLY | O_CLOEXEC)),
        b(::open(path_.c_str(), O_RDONLY | O_CLOEXEC));
    if (a.get() < 0) return PosixError("open " + tmp_, errno);
    if (b.get() < 0) return PosixError("open " + path_, errno);
    struct stat sa, sb;
    if (::fstat(a.get(), &sa) != 0) return PosixError("stat " + tmp_, errno);
    if (::fstat(b.get(), &sb) != 0) return PosixError("stat " + path_, errno);
    if (sa.st_size != sb.st_size) return false;
    std::vector<uint8_t> x(1 << 20), y(1 << 20);
    for (uint64_t off = 0; off < uint64_t(sa.st_size); off += x.size()) {
      const size_t n = size_t(std::min<uint64_t>(x.size(), uint64_t(sa.st_size) - off));
      VMBACKUP_RETURN_IF_ERROR(ReadAll(a.get(), off, {x.data(), n}, tmp_));
      VMBACKUP_RETURN_IF_ERROR(ReadAll(b.get(), off, {y.data(), n}, path_));
      if (std::memcmp(x.data(), y.data(), n) != 0) return false;
    }
    return true;
  }

  Status ReplaceExisting() override {
    VMBACKUP_RETURN_IF_ERROR(RequireExisting());
    // rename() swaps the file in at once: readers see the old copy or the new one.
    if (::rename(tmp_.c_str(), path_.c_str()) != 0) return PosixError("rename " + tmp_, errno);
    tmp_.clear();
    backend_.Forget(path_);  // its cached descriptor is the replaced file's
    return backend_.SyncFolder(FolderOf(path_));
  }

 private:
  // Writes what it can of `bytes` (whole kAlign blocks at an aligned offset) with O_DIRECT;
  // returns how much. Stops early, having written nothing, when the file system refuses direct
  // I/O (then never tried again), and after a short write (the disk filling up: the buffered
  // write of the rest says why).
  Result<size_t> AppendDirect(std::span<const uint8_t> bytes) {
    if (bytes.empty()) return size_t(0);
    const bool in_place = reinterpret_cast<uintptr_t>(bytes.data()) % kAlign == 0;
    thread_local std::unique_ptr<uint8_t, decltype(&std::free)> bounce(nullptr, &std::free);
    if (!in_place && !bounce)
      bounce.reset(static_cast<uint8_t*>(std::aligned_alloc(kAlign, kBounceSize)));
    if (!in_place && !bounce) return size_t(0);  // no memory for it: buffered
    VMBACKUP_RETURN_IF_ERROR(SetDirect(true));
    size_t done = 0;
    while (direct_ && done < bytes.size()) {
      const size_t n = in_place ? bytes.size() - done : std::min(kBounceSize, bytes.size() - done);
      if (!in_place) std::memcpy(bounce.get(), bytes.data() + done, n);
      ssize_t w = ::pwrite(fd_, in_place ? bytes.data() + done : bounce.get(), n, off_t(offset_));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0 && errno == EINVAL && done == 0) {  // no direct I/O here after all
        direct_allowed_ = false;
        break;
      }
      if (w < 0) return PosixError("write " + tmp_, errno);  // ENOSPC: "No space left on device"
      done += size_t(w);
      offset_ += uint64_t(w);
      if (size_t(w) != n) break;
    }
    return done;
  }
  // Writes `bytes` through the page cache (direct I/O is switched off only for this, so that
  // a run of aligned pieces keeps it on).
  Status AppendBuffered(std::span<const uint8_t> bytes) {
    if (!bytes.empty()) VMBACKUP_RETURN_IF_ERROR(SetDirect(false));
    for (size_t done = 0; done < bytes.size();) {
      ssize_t n = ::pwrite(fd_, bytes.data() + done, bytes.size() - done, off_t(offset_));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return PosixError("write " + tmp_, errno);  // ENOSPC: "No space left on device"
      if (n == 0) return PosixError("write " + tmp_, ENOSPC);
      done += size_t(n);
      offset_ += uint64_t(n);
    }
    return Status::Ok();
  }
  Status SetDirect(bool on) {
    if (on == direct_) return Status::Ok();
    const int flags = ::fcntl(fd_, F_GETFL);
    if (flags >= 0 && ::fcntl(fd_, F_SETFL, on ? flags | O_DIRECT : flags & ~O_DIRECT) == 0) {
      direct_ = on;
    } else if (on) {
      direct_allowed_ = false;  // the file system refuses it: buffered writes
    } else {
      return PosixError("fcntl " + tmp_, errno);
    }
    return Status::Ok();
  }
  Status RequireExisting() const {
    if (path_.empty() || tmp_.empty())
      return FailedPreconditionError(tmp_ + ": no commit found an existing object");
    return Status::Ok();
  }

  LocalBackend& backend_;
  const ObjectType type_;
  std::string tmp_, path_;  // tmp_ empty once it is linked or renamed into place
  int fd_;
  uint64_t offset_ = 0;
  bool direct_ = false, direct_allowed_ = true;
};

Result<std::unique_ptr<ObjectWriter>> LocalBackend::NewWriter(ObjectType type) {
  const std::string tmp = NewTmpPath();
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return PosixError("create " + tmp, errno);
  return std::unique_ptr<ObjectWriter>(new Writer(*this, type, tmp, fd));
}

Result<std::vector<uint8_t>> LocalBackend::Load(const ObjectRef& ref) {
  VMBACKUP_ASSIGN_OR_RETURN(std::string path, PathOf(ref));
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return PosixError("open " + path, errno);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return PosixError("stat " + path, errno);
  std::vector<uint8_t> data(size_t(st.st_size));
  VMBACKUP_RETURN_IF_ERROR(ReadAll(fd.get(), 0, data, path));
  return data;
}

LocalBackend::~LocalBackend() {
  for (const OpenFile& f : files_) ::close(f.fd);
}

Result<std::pair<int, uint64_t>> LocalBackend::Acquire(const std::string& path) {
  std::lock_guard<std::mutex> l(files_mu_);
  auto dup_front = [&]() -> Result<std::pair<int, uint64_t>> {
    int fd = ::dup(files_.front().fd);
    if (fd < 0) return PosixError("dup " + path, errno);
    return std::pair<int, uint64_t>{fd, files_.front().size};
  };
  for (auto it = files_.begin(); it != files_.end(); ++it) {
    if (it->path == path) {
      files_.splice(files_.begin(), files_, it);
      return dup_front();
    }
  }
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return PosixError("open " + path, errno);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    Status s = PosixError("stat " + path, errno);
    ::close(fd);
    return s;
  }
  files_.push_front({path, fd, uint64_t(st.st_size)});
  constexpr size_t kMaxOpen = 64;
  if (files_.size() > kMaxOpen) {
    ::close(files_.back().fd);  // readers hold their own duplicates
    files_.pop_back();
  }
  return dup_front();
}

void LocalBackend::Forget(const std::string& path) {
  std::lock_guard<std::mutex> l(files_mu_);
  for (auto it = files_.begin(); it != files_.end(); ++it) {
    if (it->path == path) {
      ::close(it->fd);
      files_.erase(it);
      return;
    }
  }
}

Result<std::vector<uint8_t>> LocalBackend::LoadRange(const ObjectRef& ref, uint64_t offset,
                                                     uint64_t length) {
  // Sized from the open-file cache (no stat per read) before allocating.
  VMBACKUP_ASSIGN_OR_RETURN(std::string path, PathOf(ref));
  VMBACKUP_ASSIGN_OR_RETURN(auto file, Acquire(path));
  ::close(file.first);
  if (!RangeWithin(offset, length, file.second))
    return RangeError(path, offset, length, file.second);
  std::vector<uint8_t> data(length);
  VMBACKUP_RETURN_IF_ERROR(ReadRange(ref, offset, data));
  return data;
}

Status LocalBackend::ReadRange(const ObjectRef& ref, uint64_t offset, std::span<uint8_t> out) {
  VMBACKUP_ASSIGN_OR_RETURN(std::string path, PathOf(ref));
  VMBACKUP_ASSIGN_OR_RETURN(auto file, Acquire(path));
  auto [fd, size] = file;
  Fd guard(fd);
  if (!RangeWithin(offset, out.size(), size)) return RangeError(path, offset, out.size(), size);
  // Read through the page cache: a repository in the cache restores at memory speed, and on a
  // cold one the kernel's read-ahead did as well here as direct reads.
  return ReadAll(fd, offset, out, path);
}

void LocalBackend::Prefetch(const ObjectRef& ref, uint64_t offset, uint64_t length) {
  auto path = PathOf(ref);
  if (!path) return;
  auto file = Acquire(*path);
  if (!file) return;
  Fd guard(file->first);
  // The kernel reads the range into the page cache in the background.
  (void)::posix_fadvise(file->first, off_t(offset), off_t(length), POSIX_FADV_WILLNEED);
}

Result<ObjectInfo> LocalBackend::Stat(const ObjectRef& ref) {
  VMBACKUP_ASSIGN_OR_RETURN(std::string path, PathOf(ref));
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return PosixError("stat " + path, errno);
  return ObjectInfo{ref.name, uint64_t(st.st_size), int64_t(st.st_mtime)};
}

Result<std::vector<ObjectInfo>> LocalBackend::List(ObjectType type) {
  std::string folder = Join(dir_, ObjectTypeName(type));
  std::vector<std::string> folders = {folder};
  if (type == ObjectType::kPack) {
    VMBACKUP_ASSIGN_OR_RETURN(auto shards, ListDir(folder));
    folders.clear();
    for (const auto& s : shards) folders.push_back(Join(folder, s));
  }
  std::vector<ObjectInfo> out;
  for (const auto& f : folders) {
    VMBACKUP_ASSIGN_OR_RETURN(auto names, ListDir(f));
    for (const auto& n : names) {
      struct stat st;
      if (::stat(Join(f, n).c_str(), &st) == 0 && S_ISREG(st.st_mode))
        out.push_back({n, uint64_t(st.st_size), int64_t(st.st_mtime)});
    }
  }
  return out;
}

Status LocalBackend::Delete(const ObjectRef& ref) {
  VMBACKUP_ASSIGN_OR_RETURN(std::string path, PathOf(ref));
  Forget(path);
  if (::unlink(path.c_str()) != 0) return PosixError("remove " + path, errno);
  return Durable(ref.type) ? SyncFolder(FolderOf(path)) : Status::Ok();
}

}  // namespace vmbackup::storage
