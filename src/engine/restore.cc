#include "engine/restore.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <thread>

#include "base/strings.h"
#include "engine/backup.h"
#include "hv/changed_areas.h"
#include "hv/job_lock.h"
#include "repo/marks.h"

namespace vmbackup::engine {
namespace {

using Clock = std::chrono::steady_clock;
using WriteFn = std::function<Status(uint64_t, std::span<const uint8_t>)>;
using ZeroFn = std::function<Status(uint64_t, uint64_t)>;
using ReadFn = std::function<Status(uint64_t, std::span<uint8_t>)>;

constexpr uint64_t kWindow = 8 << 20;

double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

std::vector<Extent> Windows(const ExtentSet& ranges) {
  std::vector<Extent> out;
  for (const Extent& e : ranges)
    for (uint64_t o = e.offset; o < e.end(); o += kWindow)
      out.push_back({o, std::min(kWindow, e.end() - o)});
  return out;
}

// Runs `fn(reader, window, buffer)` over the windows on several threads, each with its own
// reader and an aligned 8 MiB buffer (O_DIRECT targets need one). With `prefetch`, each thread
// asks for the window one round ahead before it works on its own, so repository reads overlap.
Status ForEachWindow(
    repo::Repository& repo, const repo::Point& point, size_t disk, const ExtentSet& ranges,
    const RestoreOptions& o, bool prefetch,
    const std::function<Status(repo::PointDiskReader&, const Extent&, std::span<uint8_t>)>& fn) {
  const std::vector<Extent> windows = Windows(ranges);
  if (o.progress) {
    o.progress->device_key = point.disks[disk].key;
    o.progress->done = 0;
    o.progress->total = ranges.total_bytes();
  }
  // A remote store answers each request after a round trip: more windows in flight hide it.
  const int wanted = repo.backend().CoalesceGap() > 0 ? std::max(o.threads, 8) : o.threads;
  const size_t threads = std::min(size_t(std::max(1, wanted)), windows.size());
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex mu;
  Status first;
  auto work = [&] {
    auto reader = repo::PointDiskReader::Open(repo, point, disk);
    std::unique_ptr<uint8_t, decltype(&std::free)> buf(
        static_cast<uint8_t*>(std::aligned_alloc(4096, kWindow)), &std::free);
    Status s = !reader ? reader.error()
               : !buf  ? IOError("out of memory for a restore buffer")
                       : Status::Ok();
    for (size_t i; s.ok() && !failed && (i = next.fetch_add(1)) < windows.size();) {
      if (o.cancel && o.cancel->load()) {
        s = CancelledError("restore interrupted");
        break;
      }
      if (o.progress) o.progress->done += windows[i].length;
      if (prefetch && i + threads < windows.size()) {
        const Extent& ahead = windows[i + threads];
        (void)(*reader)->Prefetch(ahead.offset, ahead.length);  // a hint: errors come with Read
      }
      s = fn(**reader, windows[i], {buf.get(), size_t(windows[i].length)});
    }
    if (!s.ok()) {
      std::lock_guard<std::mutex> l(mu);
      if (first.ok()) first = s;
      failed = true;
    }
  };
  std::vector<std::thread> pool;
  for (size_t t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (auto& th : pool) th.join();
  return first;
}

bool IsDamage(const Status& s) {
  return s.code() == ErrorCode::kCorruption || s.code() == ErrorCode::kNotFound;
}

// Writes `ranges` of the point's disk: the chunks that hold data, and, unless `zero` is empty
// (a new target that reads zeros already), the rest as zeros through `zero`, which deallocates
// where the target can (a thin disk stays thin). With
// o.ignore_damage, chunks that cannot be read from the repository are not written and are
// added to `*damaged` instead of failing the restore.
Status CopyOut(repo::Repository& repo, const repo::Point& point, size_t disk,
               const ExtentSet& ranges, const ZeroFn& zero, const WriteFn& write,
               const RestoreOptions& o, uint64_t* written, ExtentSet* damaged,
               uint64_t* zeroed = nullptr) {
  std::atomic<uint64_t> bytes{0}, zero_bytes{0};
  std::mutex damaged_mu;
  // One range chunk by chunk, after it failed as a whole: what reads is written.
  auto salvage = [&](repo::PointDiskReader& r, const Extent& e, std::span<uint8_t> buf) -> Status {
    const uint64_t cs = r.chunk_size();
    for (uint64_t c = e.offset; c < e.end();) {
      const uint64_t len = std::min(e.end(), (c / cs + 1) * cs) - c;
      std::span<uint8_t> piece = buf.subspan(c - e.offset, len);
      Status s = r.Read(c, piece);
      if (s.ok()) {
        VMBACKUP_RETURN_IF_ERROR(write(c, piece));
        bytes += len;
      } else if (IsDamage(s)) {
        std::lock_guard<std::mutex> l(damaged_mu);
        damaged->Add(c, len);
      } else {
        return s;
      }
      c += len;
    }
    return Status::Ok();
  };
  Status s = ForEachWindow(
      repo, point, disk, ranges, o, /*prefetch=*/true,
      [&](repo::PointDiskReader& r, const Extent& w, std::span<uint8_t> buf) -> Status {
        VMBACKUP_ASSIGN_OR_RETURN(ExtentSet parts, r.Allocated(w.offset, w.length));
        if (zero) {
          ExtentSet holes;
          holes.Add(w);
          holes.Subtract(parts);
          for (const Extent& h : holes) {
            VMBACKUP_RETURN_IF_ERROR(zero(h.offset, h.length));
            zero_bytes += h.length;
          }
        }
        for (const Extent& e : parts) {
          std::span<uint8_t> piece = buf.subspan(0, e.length);
          Status read = r.Read(e.offset, piece);
          if (!read.ok() && o.ignore_damage && damaged && IsDamage(read)) {
            VMBACKUP_RETURN_IF_ERROR(salvage(r, e, piece));
            continue;
          }
          VMBACKUP_RETURN_IF_ERROR(read);
          VMBACKUP_RETURN_IF_ERROR(write(e.offset, piece));
          bytes += e.length;
        }
        return Status::Ok();
      });
  *written = bytes;
  if (zeroed) *zeroed = zero_bytes;
  return s;
}

// Reads `ranges` back from the target and checks every chunk against the point's chunk id
// (chunks in `skip`, left unwritten as damaged, are not checked).
// Only what can hold data is read back: the chunks the point holds, and what the target says
// it holds besides (`target_allocated`, from its allocation map: a hole reads zeros, which is
// what the point has there). A 10 GiB disk holding 64 MiB verifies in the time of 64 MiB.
Status VerifyWritten(repo::Repository& repo, const repo::Point& point, size_t disk,
                     const ExtentSet& ranges, const ReadFn& read,
                     const std::function<Result<ExtentSet>(uint64_t, uint64_t)>& target_allocated,
                     const RestoreOptions& o, const ExtentSet& skip = {}) {
  const repo::PointDisk& pd = point.disks[disk];
  ExtentSet check;
  {
    VMBACKUP_ASSIGN_OR_RETURN(auto reader, repo::PointDiskReader::Open(repo, point, disk));
    for (const Extent& e : ranges) {
      VMBACKUP_ASSIGN_OR_RETURN(ExtentSet held, reader->Allocated(e.offset, e.length));
      check.Add(held);
      VMBACKUP_ASSIGN_OR_RETURN(ExtentSet there, target_allocated(e.offset, e.length));
      check.Add(there.Clip(e.offset, e.length));
    }
  }
  check = check.AlignOutward(pd.chunk_size, pd.capacity).Intersect(ranges);
  return ForEachWindow(
      repo, point, disk, check, o, /*prefetch=*/false,
      [&](repo::PointDiskReader& r, const Extent& w, std::span<uint8_t> buf) -> Status {
        VMBACKUP_RETURN_IF_ERROR(read(w.offset, buf));
        const uint64_t cs = r.chunk_size();
        for (uint64_t c = w.offset; c < w.end(); c = (c / cs + 1) * cs) {
          const uint64_t chunk_start = c / cs * cs;
          const uint64_t chunk_end = std::min(chunk_start + cs, point.disks[disk].capacity);
          if (chunk_start < w.offset || chunk_end > w.end()) continue;  // partial: skipped
          if (skip.Overlaps(chunk_start, chunk_end - chunk_start)) continue;
          std::span<const uint8_t> bytes(buf.data() + (chunk_start - w.offset),
                                         chunk_end - chunk_start);
          VMBACKUP_ASSIGN_OR_RETURN(repo::Id want, r.ChunkIdAt(chunk_start));
          repo::Id got =
              IsAllZero(bytes.data(), bytes.size()) ? repo::Id{} : repo.codec().IdOf(bytes);
          if (got != want) {
            return CorruptionError(
                StrFormat("verify: disk %d bytes %llu+%llu differ from the restore point",
                          point.disks[disk].key, (unsigned long long)chunk_start,
                          (unsigned long long)(chunk_end - chunk_start)));
          }
        }
        return Status::Ok();
      });
}

// The parts of [offset, offset+length) of an open file that hold data (SEEK_DATA/SEEK_HOLE;
// all of it where the file system cannot tell).
Result<ExtentSet> FileDataExtents(int fd, const std::string& path, uint64_t offset,
                                  uint64_t length) {
  ExtentSet out;
  const uint64_t end = offset + length;
  for (uint64_t pos = offset; pos < end;) {
    off_t data = ::lseek(fd, off_t(pos), SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;  // no data after pos
      if (errno == EINVAL) {
        out.Add(pos, end - pos);
        break;
      }
      return PosixError("seek data in " + path, errno);
    }
    if (uint64_t(data) >= end) break;
    off_t hole = ::lseek(fd, data, SEEK_HOLE);
    uint64_t stop = hole < 0 ? end : std::min<uint64_t>(uint64_t(hole), end);
    out.Add(uint64_t(data), stop - uint64_t(data));
    pos = stop;
  }
  return out;
}

// Flushes a file being written on a thread of its own, each time another `every` bytes were
// written, so that the flush a restore ends with finds little left to do: the device's write
// cache (a VM's disk: the host's page cache) drains while the restore still reads. Measured on
// this kind of machine: the last fsync of a 1.5 GiB restore took 0.5-0.9 s, 0.1-0.3 s after
// flushes along the way. A failed flush is kept and returned by Finish (the kernel reports a
// write error once: the final fsync might not see it).
class BackgroundFlusher {
 public:
  BackgroundFlusher(int fd, uint64_t every) : fd_(fd), every_(every), thread_([this] { Main(); }) {}
  ~BackgroundFlusher() { Stop(); }
  void Wrote(uint64_t bytes) {
    if ((written_ += bytes) >= every_) cv_.notify_one();
  }
  // Stops the thread; the first failed flush, if any.
  Status Finish() {
    Stop();
    std::lock_guard<std::mutex> l(mu_);
    return error_;
  }

 private:
  void Stop() {
    {
      std::lock_guard<std::mutex> l(mu_);
      stopping_ = true;
    }
    cv_.notify_one();
    if (thread_.joinable()) thread_.join();
  }
  void Main() {
    std::unique_lock<std::mutex> l(mu_);
    for (;;) {
      cv_.wait(l, [&] { return stopping_ || written_ >= every_; });
      if (stopping_) return;
      written_ = 0;
      l.unlock();
      const int rc = ::fdatasync(fd_);
      const int err = errno;
      l.lock();
      if (rc != 0 && error_.ok()) error_ = PosixError("flush the restored file", err);
    }
  }
  const int fd_;
  const uint64_t every_;
  std::atomic<uint64_t> written_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  Status error_;
  std::thread thread_;  // last: starts when the rest is ready
};

ExtentSet Whole(uint64_t capacity) {
  ExtentSet s;
  s.Add(0, capacity);
  return s;
}

// Writes point disk `index` into `access` (a disk opened for writing), over `ranges`; with
// `sparse` the target is new (reads zeros), else what is zero in the point is zeroed too.
Status WriteDisk(repo::Repository& repo, const repo::Point& point, size_t index,
                 hv::DiskAccess& access, const ExtentSet& ranges, bool sparse,
                 const RestoreOptions& o, RestoredDisk& out) {
  const auto t0 = Clock::now();
  std::mutex mu;  // one connection: requests in turn
  WriteFn write = [&](uint64_t off, std::span<const uint8_t> data) {
    std::lock_guard<std::mutex> l(mu);
    return access.WriteAt(off, data);
  };
  ZeroFn zero;
  if (!sparse) {
    zero = [&](uint64_t off, uint64_t len) {
      std::lock_guard<std::mutex> l(mu);
      return access.WriteZeroes(off, len);
    };
  }
  VMBACKUP_RETURN_IF_ERROR(CopyOut(repo, point, index, ranges, zero, write, o, &out.bytes_written,
                                   &out.damaged, &out.bytes_zeroed));
  VMBACKUP_RETURN_IF_ERROR(access.Flush());
  if (o.verify) {
    ReadFn read = [&](uint64_t off, std::span<uint8_t> buf) {
      std::lock_guard<std::mutex> l(mu);
      return access.ReadAt(off, buf);
    };
    auto allocated = [&](uint64_t off, uint64_t len) {
      std::lock_guard<std::mutex> l(mu);
      return access.AllocatedExtents(off, len);
    };
    VMBACKUP_RETURN_IF_ERROR(
        VerifyWritten(repo, point, index, ranges, read, allocated, o, out.damaged));
    out.verified = true;
  }
  out.seconds = Since(t0);
  return Status::Ok();
}

}  // namespace

Result<RestoreReport> RestoreToFile(repo::Repository& repo, const repo::Point& point,
                                    int device_key, const std::string& path,
                                    const RestoreOptions& o) {
  const auto t0 = Clock::now();
  VMBACKUP_ASSIGN_OR_RETURN(size_t index, repo::FindPointDisk(point, device_key));
  const uint64_t capacity = point.disks[index].capacity;
  // O_DIRECT: the page cache would only slow a write-once stream down (see storage/README).
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_DIRECT, 0600);
  if (fd < 0 && errno == EINVAL)
    fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return PosixError("create " + path, errno);
  auto close_fd = std::unique_ptr<int, void (*)(int*)>(&fd, [](int* f) { ::close(*f); });
  if (::ftruncate(fd, off_t(capacity)) != 0) return PosixError("size " + path, errno);
  std::mutex mode_mu;
  BackgroundFlusher flusher(fd, 256 << 20);
  WriteFn write = [&](uint64_t off, std::span<const uint8_t> data) -> Status {
    flusher.Wrote(data.size());
    size_t done = 0;
    while (done < data.size()) {
      ssize_t n = ::pwrite(fd, data.data() + done, data.size() - done, off_t(off + done));
      if (n < 0 && errno == EINVAL) {  // an unaligned tail: finish without O_DIRECT
        std::lock_guard<std::mutex> l(mode_mu);
        int flags = ::fcntl(fd, F_GETFL);
        if (flags >= 0 && (flags & O_DIRECT) && ::fcntl(fd, F_SETFL, flags & ~O_DIRECT) == 0)
          continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return PosixError("write " + path, errno);
      done += size_t(n);
    }
    return Status::Ok();
  };
  RestoreReport report;
  report.point = point.id;
  report.target = path;
  RestoredDisk d;
  d.device_key = device_key;
  d.capacity = capacity;
  d.target = path;
  d.mode = "sparse";
  d.bytes_planned = capacity;
  VMBACKUP_RETURN_IF_ERROR(
      CopyOut(repo, point, index, Whole(capacity), {}, write, o, &d.bytes_written, &d.damaged));
  VMBACKUP_RETURN_IF_ERROR(flusher.Finish());
  if (::fsync(fd) != 0) return PosixError("fsync " + path, errno);
  if (o.verify) {
    int rfd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (rfd < 0) return PosixError("open " + path, errno);
    auto close_rfd = std::unique_ptr<int, void (*)(int*)>(&rfd, [](int* f) { ::close(*f); });
    ReadFn read = [&](uint64_t off, std::span<uint8_t> buf) -> Status {
      size_t done = 0;
      while (done < buf.size()) {
        ssize_t n = ::pread(rfd, buf.data() + done, buf.size() - done, off_t(off + done));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return PosixError("read " + path, errno);
        if (n == 0) return CorruptionError(path + " is shorter than the disk");
        done += size_t(n);
      }
      return Status::Ok();
    };
    VMBACKUP_RETURN_IF_ERROR(VerifyWritten(
        repo, point, index, Whole(capacity), read,
        [&](uint64_t off, uint64_t len) -> Result<ExtentSet> {
          return FileDataExtents(rfd, path, off, len);
        },
        o, d.damaged));
    d.verified = true;
  }
  d.seconds = Since(t0);
  report.disks.push_back(d);
  report.seconds = Since(t0);
  return report;
}

Result<RestoreReport> RestoreToStream(repo::Repository& repo, const repo::Point& point,
                                      int device_key,
                                      const std::function<Status(std::span<const uint8_t>)>& write,
                                      const std::function<Status(uint64_t)>& zeros,
                                      const RestoreOptions& o) {
  const auto t0 = Clock::now();
  VMBACKUP_ASSIGN_OR_RETURN(size_t index, repo::FindPointDisk(point, device_key));
  const uint64_t capacity = point.disks[index].capacity;
  VMBACKUP_ASSIGN_OR_RETURN(auto reader, repo::PointDiskReader::Open(repo, point, index));
  RestoredDisk d;
  d.device_key = device_key;
  d.capacity = capacity;
  d.target = "standard output";
  d.mode = "stream";
  d.bytes_planned = capacity;
  std::vector<uint8_t> buf(kWindow);
  for (uint64_t at = 0; at < capacity; at += kWindow) {
    if (o.cancel && o.cancel->load()) return CancelledError("restore interrupted");
    const uint64_t len = std::min(kWindow, capacity - at);
    if (at + len < capacity)
      (void)reader->Prefetch(at + len, kWindow);  // a hint: errors come with Read
    VMBACKUP_ASSIGN_OR_RETURN(ExtentSet data, reader->Allocated(at, len));
    uint64_t pos = at;
    for (const Extent& e : data) {
      if (e.offset > pos) VMBACKUP_RETURN_IF_ERROR(zeros(e.offset - pos));
      std::span<uint8_t> piece(buf.data(), e.length);
      Status s = reader->Read(e.offset, piece);
      if (!s.ok() && o.ignore_damage && IsDamage(s)) {
        // Chunk by chunk: what cannot be read becomes zeros in the stream, and is listed.
        const uint64_t cs = reader->chunk_size();
        for (uint64_t c = e.offset; c < e.end();) {
          const uint64_t n = std::min(e.end(), (c / cs + 1) * cs) - c;
          std::span<uint8_t> part(buf.data(), n);
          Status cs_status = reader->Read(c, part);
          if (cs_status.ok()) {
            VMBACKUP_RETURN_IF_ERROR(write(part));
            d.bytes_written += n;
          } else if (IsDamage(cs_status)) {
            d.damaged.Add(c, n);
            VMBACKUP_RETURN_IF_ERROR(zeros(n));
          } else {
            return cs_status;
          }
          c += n;
        }
        pos = e.end();
        continue;
      }
      VMBACKUP_RETURN_IF_ERROR(s);
      VMBACKUP_RETURN_IF_ERROR(write(piece));
      d.bytes_written += e.length;
      pos = e.end();
    }
    if (pos < at + len) VMBACKUP_RETURN_IF_ERROR(zeros(at + len - pos));
  }
  d.seconds = Since(t0);
  RestoreReport report;
  report.point = point.id;
  report.target = d.target;
  report.disks.push_back(d);
  report.seconds = d.seconds;
  return report;
}

namespace {
// The snapshot a restore writes under; in place, the restore asks what changed since the
// point's change ids.
hv::SnapshotOptions RestoreSnapshotOptions(const repo::Point& point, const std::string& what) {
  hv::SnapshotOptions so;
  so.description = "vmbackup: " + what + " of point " + point.id;
  for (const auto& pd : point.disks)
    if (!pd.change_id.empty()) so.since[pd.key] = pd.change_id;
  return so;
}
}  // namespace

Result<RestoreReport> RestoreToNewVm(hv::Hypervisor& hv, repo::Repository& repo,
                                     const repo::Point& point, const std::string& name,
                                     const RestoreOptions& o) {
  const auto t0 = Clock::now();
  VMBACKUP_ASSIGN_OR_RETURN(auto job_lock,
                            hv::JobLock::Acquire(hv.uri(), name, "restore", o.lock_wait_seconds));
  RestoreReport report;
  report.point = point.id;
  // A VM left by an interrupted restore (it carries our power-on block) is replaced; any other
  // VM of that name is not ours to touch.
  auto existing = hv.GetVm(name);
  if (existing) {
    if (existing->power_on_block.rfind(kIncompleteRestore, 0) != 0)
      return AlreadyExistsError("VM " + name + " already exists");
    VMBACKUP_RETURN_IF_ERROR(
        hv.DestroyVm(*existing).WithContext("replace the VM an interrupted restore left"));
    report.notes.push_back("replaced VM " + name + ", left incomplete by an interrupted restore");
  } else if (existing.error().code() != ErrorCode::kNotFound) {
    return existing.error();
  }
  std::vector<uint64_t> capacities;
  for (const auto& d : point.disks) capacities.push_back(d.capacity);
  // The VM cannot be powered on until its disks are whole (and verified, when asked): a kill
  // at any moment leaves a VM that says it is incomplete, which the next run replaces.
  const std::string block = std::string(kIncompleteRestore) + " of point " + point.id +
                            ": its disks are not whole; run the restore again, which replaces "
                            "this VM";
  VMBACKUP_ASSIGN_OR_RETURN(hv::VmInfo vm, hv.CreateVm(name, point.config, capacities, block));
  report.target = hv.uri() + " VM " + vm.name;
  // Disks are written into a snapshot's layer, then the VM reverts to it (SYSTEM.md 2.2).
  VMBACKUP_ASSIGN_OR_RETURN(
      hv::SnapshotRef snap,
      hv.CreateSnapshot(vm, kRestoreSnapshot, RestoreSnapshotOptions(point, "restore")));
  for (size_t i = 0; i < point.disks.size(); ++i) {
    const hv::DiskInfo& target = vm.disks.at(i);
    RestoredDisk d;
    d.device_key = target.device_key;
    d.capacity = target.capacity;
    d.mode = "sparse";
    d.bytes_planned = target.capacity;
    std::vector<std::string> attempts;
    VMBACKUP_ASSIGN_OR_RETURN(auto access, hv.OpenDisk(vm, &snap, target.device_key, o.transports,
                                                       hv::OpenMode::kWrite, &attempts));
    d.transport = std::string(hv::TransportName(access->transport()));
    d.target = access->name();
    VMBACKUP_RETURN_IF_ERROR(
        WriteDisk(repo, point, i, *access, Whole(target.capacity), true, o, d));
    report.disks.push_back(d);
  }
  VMBACKUP_RETURN_IF_ERROR(hv.RevertToSnapshot(vm, snap));
  VMBACKUP_RETURN_IF_ERROR(hv.RemoveSnapshot(vm, snap));
  bool damaged = false;
  for (const auto& d : report.disks) damaged = damaged || !d.damaged.empty();
  if (damaged) {
    report.notes.push_back("VM " + name +
                           " stays blocked from powering on: damaged ranges were not restored "
                           "(see below); the host's tools can lift the block");
    VMBACKUP_RETURN_IF_ERROR(hv.SetPowerOnBlock(
        vm, "vmbackup: restored from point " + point.id + " with damaged ranges left unwritten"));
  } else {
    VMBACKUP_RETURN_IF_ERROR(hv.SetPowerOnBlock(vm, ""));
  }
  report.seconds = Since(t0);
  return report;
}

Result<RestoreReport> RestoreInPlace(hv::Hypervisor& hv, repo::Repository& repo,
                                     const repo::Point& point, const std::string& vm_name,
                                     const RestoreOptions& o) {
  const auto t0 = Clock::now();
  const std::string name = vm_name.empty() ? point.vm_name : vm_name;
  VMBACKUP_ASSIGN_OR_RETURN(
      auto job_lock, hv::JobLock::Acquire(hv.uri(), name, "in-place restore", o.lock_wait_seconds));
  VMBACKUP_ASSIGN_OR_RETURN(hv::VmInfo vm, hv.GetVm(name));
  if (vm.power != hv::PowerState::kOff) {
    return FailedPreconditionError("VM " + vm.name +
                                   " is powered on: power it off to restore in place");
  }
  for (const auto& pd : point.disks) {
    bool found = false;
    for (const auto& d : vm.disks) {
      if (d.device_key != pd.key) continue;
      found = true;
      if (d.capacity != pd.capacity) {
        return FailedPreconditionError(StrFormat(
            "disk %d of VM %s has %s, the point's has %s: restore to a new VM instead", pd.key,
            vm.name.c_str(), HumanBytes(d.capacity).c_str(), HumanBytes(pd.capacity).c_str()));
      }
    }
    if (!found) {
      return NotFoundError(
          StrFormat("VM %s has no disk %d: restore to a new VM instead", vm.name.c_str(), pd.key));
    }
  }
  RestoreReport report;
  report.point = point.id;
  report.target = hv.uri() + " VM " + vm.name + " (in place)";
  // An interrupted restore's snapshot is taken over, never stacked with another (its layer is
  // the one half written; what it holds is written again below).
  std::optional<hv::SnapshotRef> snap;
  VMBACKUP_ASSIGN_OR_RETURN(auto snapshots, hv.ListSnapshots(vm));
  for (const auto& s : snapshots) {
    if (s.name == kRestoreSnapshot) snap = s;
  }
  const bool took_over = snap.has_value();
  if (took_over) {
    report.notes.push_back("took over snapshot " + snap->name +
                           " of an interrupted in-place restore");
  } else {
    VMBACKUP_ASSIGN_OR_RETURN(
        snap,
        hv.CreateSnapshot(vm, kRestoreSnapshot, RestoreSnapshotOptions(point, "in-place restore")));
  }
  // Every disk must open for writing before anything changes (a transport that cannot write
  // parts of a disk is named now); a snapshot made for nothing goes again.
  for (const auto& pd : point.disks) {
    std::vector<std::string> attempts;
    auto probe = hv.OpenDisk(vm, &*snap, pd.key, o.transports, hv::OpenMode::kWrite, &attempts);
    if (!probe) {
      if (!took_over) hv.RemoveSnapshot(vm, *snap).IgnoreError();
      return probe.error().WithContext(
          StrFormat("in-place restore of VM %s: disk %d cannot be written; nothing was changed",
                    vm.name.c_str(), pd.key));
    }
  }
  // What to write per disk: what changed on the VM since the point (change tracking), else the
  // whole disk. Asked before change tracking is reset below.
  std::vector<ExtentSet> ranges(point.disks.size());
  std::vector<RestoredDisk> disks(point.disks.size());
  std::vector<int> keys;
  for (size_t i = 0; i < point.disks.size(); ++i) {
    const repo::PointDisk& pd = point.disks[i];
    RestoredDisk& d = disks[i];
    d.device_key = pd.key;
    d.capacity = pd.capacity;
    keys.push_back(pd.key);
    auto changed = pd.change_id.empty()
                       ? Result<ExtentSet>(NotFoundError("the point has no change id"))
                       : hv::CollectChangedAreas(hv, vm, &*snap, pd.key, pd.capacity, pd.change_id);
    if (changed) {
      ranges[i] = changed->AlignOutward(pd.chunk_size, pd.capacity);
      d.mode = "changed areas";
    } else if (changed.error().code() == ErrorCode::kNotFound) {
      ranges[i] = Whole(pd.capacity);
      d.mode = "whole disk";
      d.why_whole = changed.error().message();
      report.notes.push_back(
          StrFormat("disk %d is written whole: change tracking cannot say "
                    "what changed since the point (%s)",
                    pd.key, d.why_whole.c_str()));
    } else {
      return changed.error().WithContext(StrFormat("disk %d: changed areas", pd.key));
    }
    d.bytes_planned = ranges[i].total_bytes();
  }
  // Before the first byte is written, so that no kill can skip it: the VM may not be powered on
  // while its disks are mixed; the repository asks the next backup for fulls of these disks;
  // and the host's change tracking starts over, since it does not see these writes (any tool
  // that backs the VM up then reads it whole).
  VMBACKUP_RETURN_IF_ERROR(
      hv.SetPowerOnBlock(vm, "vmbackup: an in-place restore of point " + point.id +
                                 " did not finish: the disks are mixed; run 'vmbackup restore " +
                                 point.id + " --in-place' again"));
  VMBACKUP_RETURN_IF_ERROR(
      repo::MarkFullNeeded(repo, vm.name, repo::FullReason::kInPlaceRestore,
                           {"an in-place restore of point " + point.id +
                                " wrote the disk where change tracking cannot see it",
                            keys}));
  VMBACKUP_RETURN_IF_ERROR(hv.ResetChangeTracking(vm).WithContext("reset change tracking"));
  for (size_t i = 0; i < point.disks.size(); ++i) {
    RestoredDisk& d = disks[i];
    std::vector<std::string> attempts;
    VMBACKUP_ASSIGN_OR_RETURN(auto access, hv.OpenDisk(vm, &*snap, d.device_key, o.transports,
                                                       hv::OpenMode::kWrite, &attempts));
    d.transport = std::string(hv::TransportName(access->transport()));
    d.target = access->name();
    Status s = WriteDisk(repo, point, i, *access, ranges[i], false, o, d);
    if (!s.ok()) {
      // The snapshot's layer is half written: it stays, so that nothing merges it into the
      // VM's current state, and the block stays; the next run takes both over.
      return s.WithContext("in-place restore stopped; VM " + vm.name + " keeps snapshot " +
                           snap->name + " and may not be powered on (run the restore again)");
    }
    report.disks.push_back(d);
  }
  VMBACKUP_RETURN_IF_ERROR(hv.RevertToSnapshot(vm, *snap));
  VMBACKUP_RETURN_IF_ERROR(hv.RemoveSnapshot(vm, *snap));
  bool damaged = false;
  for (const auto& d : report.disks) damaged = damaged || !d.damaged.empty();
  VMBACKUP_RETURN_IF_ERROR(hv.SetPowerOnBlock(
      vm, damaged ? "vmbackup: the in-place restore of point " + point.id +
                        " left damaged ranges unwritten (they hold older data); the host's "
                        "tools can lift this block"
                  : ""));
  report.notes.push_back("the next backup of " + vm.name +
                         " reads the restored disks whole (change tracking did not see the "
                         "restore's writes)");
  report.seconds = Since(t0);
  return report;
}

}  // namespace vmbackup::engine
