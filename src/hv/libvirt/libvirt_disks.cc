// The data plane of the libvirt driver: change tracking answers from QEMU's exports, and the
// disks opened through the job's NBD export (nbd) or the image files (san, qemu-nbd).
#include <algorithm>
#include <condition_variable>

#include "base/process.h"
#include "base/strings.h"
#include "hv/libvirt/libvirt_driver.h"
#include "hv/libvirt/session.h"
#include "hv/libvirt/volume_upload.h"

namespace vmbackup::hv::libvirt {
namespace {

constexpr uint32_t kDirty = 1;  // the flag of qemu:dirty-bitmap contexts

// A disk over one or several NBD connections to the same export: reads take any free one.
class NbdPoolAccess final : public DiskAccess {
 public:
  NbdPoolAccess(std::vector<std::unique_ptr<nbd::NbdDisk>> conns, TransportMode mode,
                std::string name)
      : conns_(std::move(conns)), mode_(mode), name_(std::move(name)) {
    for (auto& c : conns_) free_.push_back(c.get());
  }
  TransportMode transport() const override { return mode_; }
  bool concurrent_reads() const override { return conns_.size() > 1; }
  // QEMU 7.2's backup-job exports under TCG serve large requests badly: nbdcopy of the 2 GiB
  // bench disk took 0.9 s in 256 or 512 KiB requests but 4.5-5.7 s in 1 MiB ones on one domain
  // (2 and 4 MiB on another), so one request in flight per connection stays small.
  uint64_t max_read_size() const override { return 256 << 10; }
  uint64_t size() const override { return conns_[0]->size(); }
  std::string name() const override { return name_; }
  Status ReadAt(uint64_t offset, std::span<uint8_t> buf) override {
    nbd::NbdDisk* c = Take();
    Status s = c->ReadAt(offset, buf);
    Give(c);
    return s;
  }
  Status WriteAt(uint64_t offset, std::span<const uint8_t> data) override {
    return conns_[0]->WriteAt(offset, data);
  }
  Status WriteZeroes(uint64_t offset, uint64_t length) override {
    return conns_[0]->WriteZeroes(offset, length);
  }
  Status Flush() override { return conns_[0]->Flush(); }
  Result<ExtentSet> AllocatedExtents(uint64_t offset, uint64_t length) override {
    nbd::NbdDisk* c = Take();
    auto r = c->AllocatedExtents(offset, length);
    Give(c);
    return r;
  }

 private:
  nbd::NbdDisk* Take() {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [&] { return !free_.empty(); });
    nbd::NbdDisk* c = free_.back();
    free_.pop_back();
    return c;
  }
  void Give(nbd::NbdDisk* c) {
    {
      std::lock_guard<std::mutex> l(mu_);
      free_.push_back(c);
    }
    cv_.notify_one();
  }
  std::vector<std::unique_ptr<nbd::NbdDisk>> conns_;
  TransportMode mode_;
  std::string name_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<nbd::NbdDisk*> free_;
};

// qemu-nbd on one image, started by libnbd (socket activation): it serves this connection
// only and ends with it, also when vmbackup is killed after connecting. One killed before it
// connected would wait forever holding the image's lock: the environment names its owner, so
// that the next run ends it (KillOrphanedQemuNbd).
std::vector<std::string> QemuNbdArgs(const DomainDisk& dd, bool write, const std::string& bitmap) {
  std::vector<std::string> a{"env", std::string(kQemuNbdOwnerVar) + "=" + OwnerTag(), "qemu-nbd",
                             "--format=" + dd.format};
  if (write) {
    a.push_back("--discard=unmap");
  } else {
    a.push_back("--read-only");
  }
  if (!bitmap.empty()) a.push_back("--bitmap=" + bitmap);
  a.push_back(dd.source);
  return a;
}

std::string BitmapContext(const LibvirtDriver::Session& s, const LibvirtDriver::Session::Disk& d) {
  return s.online ? "qemu:dirty-bitmap:backup-" + d.dd.target : "qemu:dirty-bitmap:" + d.since;
}

}  // namespace

Result<std::string> LibvirtDriver::ChangeId(const VmInfo& vm, const SnapshotRef* snapshot,
                                            int device_key) {
  VMBACKUP_ASSIGN_OR_RETURN(Session * s, FindSession(vm, snapshot));
  Session::Disk* d = s->FindDisk(device_key);
  if (!d) return NotFoundError(StrFormat("domain %s has no disk %d", vm.name.c_str(), device_key));
  if (!s->bitmaps(*d)) return std::string(kNoBitmapChangeId);
  // Offline no checkpoint can be made: the point keeps the one its bitmap started from, which
  // still covers everything since (the next incremental reads these changes again).
  return s->online ? s->checkpoint : d->since;
}

Result<ChangedAreas> LibvirtDriver::QueryChangedDiskAreas(const VmInfo& vm,
                                                          const SnapshotRef* snapshot,
                                                          int device_key, uint64_t start_offset,
                                                          std::string_view change_id) {
  VMBACKUP_ASSIGN_OR_RETURN(Session * s, FindSession(vm, snapshot));
  Session::Disk* d = s->FindDisk(device_key);
  if (!d) return NotFoundError(StrFormat("domain %s has no disk %d", vm.name.c_str(), device_key));
  const bool all = change_id == "*";
  if (!all && (!s->bitmaps(*d) || change_id == kNoBitmapChangeId)) {
    return NotSupportedError("disk " + d->dd.target + " is " + d->dd.format +
                             ", which cannot hold a persistent dirty bitmap");
  }
  if (!all && (d->since.empty() || change_id != d->since)) {
    return NotFoundError(!d->why_full.empty() ? d->why_full
                                              : "the job's view of disk " + d->dd.target +
                                                    " does not start at " + std::string(change_id));
  }
  std::lock_guard<std::mutex> l(d->mu);
  if (!d->meta) {
    nbd::NbdDisk::Options o;
    if (!d->since.empty()) o.meta_contexts.push_back(BitmapContext(*s, *d));
    auto c = s->online ? ConnectJob(*s, d->dd.target, o)
                       : nbd::NbdDisk::ConnectActivated(QemuNbdArgs(d->dd, false, d->since),
                                                        "qemu-nbd of " + d->dd.source, o);
    if (!c) return c.error().WithContext("disk " + d->dd.target + " of " + vm.name);
    d->meta = std::move(*c);
  }
  const uint64_t capacity = d->meta->size();
  if (start_offset >= capacity) return ChangedAreas{start_offset, 0, {}};
  auto map = all ? d->meta->AllocatedExtents(start_offset, capacity - start_offset)
                 : d->meta->MapContext(BitmapContext(*s, *d), start_offset, capacity - start_offset,
                                       kDirty, true);
  if (!map) return map.error().WithContext("disk " + d->dd.target + " of " + vm.name);
  ChangedAreas out{start_offset, capacity - start_offset, {}};
  for (const Extent& e : *map) out.areas.push_back(e);
  return out;
}

Result<std::unique_ptr<nbd::NbdDisk>> LibvirtDriver::ConnectJob(const Session& s,
                                                                const std::string& target,
                                                                nbd::NbdDisk::Options o) {
  if (!s.server.socket.empty()) return nbd::NbdDisk::ConnectUnix(s.server.socket, target, o);
  o.tls_certificates = options_.nbd_tls_dir;
  return nbd::NbdDisk::ConnectTcp(s.server.host, s.server.port, target, o);
}

Result<std::unique_ptr<DiskAccess>> LibvirtDriver::OpenExport(const VmInfo& vm, Session& s,
                                                              int key) {
  Session::Disk* d = s.FindDisk(key);
  std::vector<std::unique_ptr<nbd::NbdDisk>> conns;
  for (int i = 0; i < std::max(1, options_.max_connections_per_disk); ++i) {
    auto c = ConnectJob(s, d->dd.target, {});
    if (!c) return c.error();
    const bool multi = (*c)->can_multi_conn();
    conns.push_back(std::move(*c));
    if (!multi) break;
  }
  const bool tls = s.server.socket.empty();
  return std::unique_ptr<DiskAccess>(new NbdPoolAccess(
      std::move(conns), tls ? TransportMode::kNbdSsl : TransportMode::kNbd,
      StrFormat("%s disk %s (backup job export%s)", vm.name.c_str(), d->dd.target.c_str(),
                tls ? (" at " + s.server.Endpoint() + ", TLS").c_str() : "")));
}

Result<std::unique_ptr<DiskAccess>> LibvirtDriver::OpenSan(const VmInfo& vm, Session& s, int key,
                                                           OpenMode mode) {
  Session::Disk* d = s.FindDisk(key);
  const bool write = mode == OpenMode::kWrite;
  if (write) {
    // Our read-only block-status server would hold the image against the writer.
    std::lock_guard<std::mutex> l(d->mu);
    d->meta.reset();
  }
  std::vector<std::unique_ptr<nbd::NbdDisk>> conns;
  const int n = write ? 1 : std::max(1, std::min(2, options_.max_connections_per_disk));
  for (int i = 0; i < n; ++i) {
    auto c = nbd::NbdDisk::ConnectActivated(QemuNbdArgs(d->dd, write, ""),
                                            "qemu-nbd of " + d->dd.source, {});
    if (!c) return c.error();
    conns.push_back(std::move(*c));
  }
  return std::unique_ptr<DiskAccess>(new NbdPoolAccess(
      std::move(conns), TransportMode::kSan,
      StrFormat("%s disk %s (%s)", vm.name.c_str(), d->dd.target.c_str(), d->dd.source.c_str())));
}

Result<std::unique_ptr<DiskAccess>> LibvirtDriver::OpenUpload(const VmInfo& vm, Session& s,
                                                              int key) {
  std::string path;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = volumes_.find(vm.name);
    if (it != volumes_.end() && it->second.count(key)) path = it->second.at(key);
  }
  if (path.empty())
    return NotFoundError(
        StrFormat("no volume of disk %d of %s was made here", key, vm.name.c_str()));
  virStorageVolPtr v = virStorageVolLookupByPath(conn_.get(), path.c_str());
  if (!v) return LastError("find volume " + path + " on " + remote_host_);
  VolumePtr vol(v);
  const Session::Disk* d = s.FindDisk(key);
  VMBACKUP_ASSIGN_OR_RETURN(
      auto access, VolumeUploadAccess::Make(
                       conn_.get(), std::move(vol), d->capacity,
                       StrFormat("%s disk %s (volume %s on %s)", vm.name.c_str(),
                                 d->dd.target.c_str(), path.c_str(), remote_host_.c_str())));
  return std::unique_ptr<DiskAccess>(std::move(access));
}

std::string LibvirtDriver::TransportRefusal(const Session& s, TransportMode m,
                                            OpenMode mode) const {
  const bool tls_job = s.server.socket.empty();
  switch (m) {
    case TransportMode::kSan:
      if (!remote_host_.empty()) return "the domain's images are on " + remote_host_ + ", not here";
      if (s.online) return "the domain runs: its image files change under a reader";
      return "";
    case TransportMode::kNbd:
    case TransportMode::kNbdSsl:
      if (s.upload && mode == OpenMode::kWrite) {
        if (m == TransportMode::kNbd) {
          return "the new domain's volumes on " + remote_host_ +
                 " are written through libvirt's connection: that is the nbdssl transport";
        }
        return "";
      }
      if (!s.online) return "the domain is off: no backup job serves its disks";
      if (mode == OpenMode::kWrite) return "a backup job's export is read-only";
      if (m == TransportMode::kNbd && tls_job) {
        return "the job serves over TCP with TLS (" + s.server.Endpoint() +
               "): that is the nbdssl transport";
      }
      if (m == TransportMode::kNbdSsl && !tls_job) {
        return "the job serves on a unix socket here (nbd); a job over TCP with TLS is made "
               "for a remote libvirt, or when nbdssl is asked for without nbd";
      }
      return "";
    default: return "libvirt offers no such transport";
  }
}

Result<std::unique_ptr<DiskAccess>> LibvirtDriver::OpenDisk(
    const VmInfo& vm, const SnapshotRef* snapshot, int device_key,
    std::span<const TransportMode> modes, OpenMode mode, std::vector<std::string>* attempts) {
  VMBACKUP_ASSIGN_OR_RETURN(Session * s, FindSession(vm, snapshot));
  if (!s->FindDisk(device_key))
    return NotFoundError(StrFormat("domain %s has no disk %d", vm.name.c_str(), device_key));
  std::vector<std::string> tried;
  for (TransportMode m : modes) {
    std::string why = TransportRefusal(*s, m, mode);
    if (why.empty()) {
      auto a = m == TransportMode::kSan ? OpenSan(vm, *s, device_key, mode)
               : s->upload              ? OpenUpload(vm, *s, device_key)
                                        : OpenExport(vm, *s, device_key);
      if (a) return a;
      why = a.error().message();
    }
    tried.push_back(std::string(TransportName(m)) + ": " + why);
  }
  if (attempts) *attempts = tried;
  std::string all;
  for (const auto& t : tried) all += (all.empty() ? "" : "; ") + t;
  return UnavailableError(StrFormat("no transport opened disk %d of %s (%s)", device_key,
                                    vm.name.c_str(), all.c_str()));
}

}  // namespace vmbackup::hv::libvirt
