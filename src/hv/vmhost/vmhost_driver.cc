#include "hv/vmhost/vmhost_driver.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "base/strings.h"
#include "format/vmdk/layer.h"
#include "host/shared_disk.h"
#include "host/transports.h"
#include "io/posix_file.h"
#include "nbd/nbd_disk.h"

namespace vmbackup::hv {
namespace {

Consistency FromHost(host::Consistency c) {
  switch (c) {
    case host::Consistency::kCrash: return Consistency::kCrash;
    case host::Consistency::kFileSystem: return Consistency::kFileSystem;
    case host::Consistency::kApplication: return Consistency::kApplication;
  }
  return Consistency::kCrash;
}

SnapshotRef RefOf(const host::Snapshot& s) {
  return {std::to_string(s.uid), s.name, FromHost(s.consistency)};
}

Result<host::SnapshotSel> SelOf(const SnapshotRef* snapshot) {
  if (!snapshot) return host::SnapshotSel();
  auto uid = ParseUint(snapshot->id);
  if (!uid || *uid > UINT32_MAX) return InvalidArgumentError("bad snapshot id " + snapshot->id);
  return host::SnapshotSel(uint32_t(*uid));
}

// From the .vmx alone: opening every disk's chain (Vm::Disks) for this took about 100 system
// calls per QueryChangedDiskAreas page (26 pages for a 5% change of a 2 GiB disk).
Result<size_t> DiskIndex(host::Vm& vm, int device_key) {
  VMBACKUP_ASSIGN_OR_RETURN(std::vector<host::VmxDisk> disks, vm.vmx().Disks());
  for (size_t i = 0; i < disks.size(); ++i)
    if (disks[i].device_key == device_key) return i;
  return NotFoundError(StrFormat("VM %s has no disk %d", vm.name().c_str(), device_key));
}

// One disk through host::SharedDisk: the `san` transport of this host.
class SanDisk final : public DiskAccess {
 public:
  SanDisk(std::unique_ptr<host::SharedDisk> disk, std::string name)
      : disk_(std::move(disk)), name_(std::move(name)) {}
  uint64_t size() const override { return disk_->size(); }
  std::string name() const override { return name_; }
  TransportMode transport() const override { return TransportMode::kSan; }
  Status ReadAt(uint64_t offset, std::span<uint8_t> buf) override {
    return disk_->Read(offset, buf);
  }
  Status WriteAt(uint64_t offset, std::span<const uint8_t> data) override {
    return disk_->Write(offset, data);
  }
  Status WriteZeroes(uint64_t offset, uint64_t length) override {
    return disk_->WriteZeroes(offset, length, /*may_trim=*/true);
  }
  Status Flush() override { return disk_->Flush(); }
  Result<ExtentSet> AllocatedExtents(uint64_t offset, uint64_t length) override {
    std::vector<vmdk::ChainRun> runs;
    VMBACKUP_RETURN_IF_ERROR(disk_->Map(offset, length, &runs));
    ExtentSet out;
    for (const auto& r : runs)
      if (r.state == vmdk::BlockState::kData) out.Add(r.offset, r.length);
    return out;
  }

 private:
  std::unique_ptr<host::SharedDisk> disk_;
  std::string name_;
};

// 32 random bytes as hex, for a TLS pre-shared key.
Result<std::string> RandomHexKey() {
  unsigned char raw[32];
  int fd = ::open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  bool ok = fd >= 0 && ::read(fd, raw, sizeof raw) == ssize_t(sizeof raw);
  if (fd >= 0) ::close(fd);
  if (!ok) return IOError("read /dev/urandom");
  std::string hex;
  for (unsigned char c : raw) hex += StrFormat("%02x", c);
  return hex;
}

// One disk through nbdkit and the vmhost plugin, read with libnbd: the `nbd` and `nbdssl`
// transports. Owns the nbdkit process (started with --exit-with-parent, so a killed backup
// leaves none behind) and its private folder.
class NbdAccess final : public DiskAccess {
 public:
  NbdAccess(TransportMode mode, pid_t pid, std::string dir, std::unique_ptr<nbd::NbdDisk> disk)
      : mode_(mode), pid_(pid), dir_(std::move(dir)), disk_(std::move(disk)) {}
  ~NbdAccess() override {
    disk_.reset();
    Stop(pid_, dir_);
  }
  static void Stop(pid_t pid, const std::string& dir) {
    if (pid > 0) {
      ::kill(pid, SIGTERM);
      while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
      }
    }
    for (const char* f : {"nbd.sock", "nbdkit.pid", "psk"}) ::unlink((dir + "/" + f).c_str());
    ::rmdir(dir.c_str());
  }
  uint64_t size() const override { return disk_->size(); }
  std::string name() const override { return disk_->name(); }
  TransportMode transport() const override { return mode_; }
  Status ReadAt(uint64_t offset, std::span<uint8_t> buf) override {
    return disk_->ReadAt(offset, buf);
  }
  Status WriteAt(uint64_t offset, std::span<const uint8_t> data) override {
    return disk_->WriteAt(offset, data);
  }
  Status WriteZeroes(uint64_t offset, uint64_t length) override {
    return disk_->WriteZeroes(offset, length);
  }
  Status Flush() override { return disk_->Flush(); }
  Result<ExtentSet> AllocatedExtents(uint64_t offset, uint64_t length) override {
    return disk_->AllocatedExtents(offset, length);
  }

 private:
  TransportMode mode_;
  pid_t pid_;
  std::string dir_;
  std::unique_ptr<nbd::NbdDisk> disk_;
};

}  // namespace

Result<std::unique_ptr<DiskAccess>> VmhostDriver::OpenNbd(const VmInfo& vm,
                                                          const std::string& snapshot_uid,
                                                          size_t disk, bool tls, OpenMode mode) {
  const TransportMode tm = tls ? TransportMode::kNbdSsl : TransportMode::kNbd;
  if (options_.nbdkit_plugin.empty()) return UnavailableError("no nbdkit plugin was given");
  VMBACKUP_RETURN_IF_ERROR(host::CheckTransport(
      tls ? host::TransportMode::kNbdSsl : host::TransportMode::kNbd, options_.nbdkit_plugin));
  if (snapshot_uid.empty()) return UnavailableError("the NBD modes serve snapshots only");
  char tmpl[] = "/tmp/vmbackup-nbd-XXXXXX";
  if (!::mkdtemp(tmpl)) return PosixError("create a folder for nbdkit", errno);
  const std::string dir = tmpl, sock = dir + "/nbd.sock", pidfile = dir + "/nbdkit.pid",
                    psk = dir + "/psk";
  std::vector<std::string> args = {"nbdkit", "--foreground", "--exit-with-parent", "-U", sock,
                                   "-P",     pidfile};
  if (tls) {
    // A fresh pre-shared key per connection, readable by this user only.
    auto key = RandomHexKey();
    Status s = !key ? key.error() : io::WriteFileAtomic(psk, "vmbackup:" + *key + "\n");
    if (!s.ok()) {
      NbdAccess::Stop(0, dir);
      return s;
    }
    ::chmod(psk.c_str(), 0600);
    args.insert(args.end(), {"--tls=require", "--tls-psk=" + psk});
  }
  if (mode == OpenMode::kRead) args.push_back("-r");
  std::vector<std::string> after;
  for (const auto& a : options_.nbdkit_extra_args)
    (a.rfind("--", 0) == 0 ? args : after).push_back(a);
  args.insert(args.end(), {options_.nbdkit_plugin, "datastore=" + ds_.root(), "vm=" + vm.name,
                           "disk=" + std::to_string(disk), "snapshot=" + snapshot_uid,
                           std::string("mode=") + (mode == OpenMode::kRead ? "read" : "restore")});
  args.insert(args.end(), after.begin(), after.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  int rc = posix_spawnp(&pid, "nbdkit", nullptr, nullptr, argv.data(), environ);
  if (rc != 0) {
    NbdAccess::Stop(0, dir);
    return PosixError("start nbdkit", rc);
  }
  // nbdkit writes its pid file once it listens.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!io::PathExists(pidfile)) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      NbdAccess::Stop(0, dir);
      return UnavailableError(StrFormat("nbdkit exited (status %d) before serving", status));
    }
    if (std::chrono::steady_clock::now() > deadline) {
      NbdAccess::Stop(pid, dir);
      return UnavailableError("nbdkit did not start serving within 20 s");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  std::string uri = (tls ? "nbds+unix:///?socket=" : "nbd+unix:///?socket=") + sock;
  if (tls) uri += "&tls-psk-file=" + psk;
  nbd::NbdDisk::Options no;
  no.allow_local_files = true;  // the URI is ours
  no.tls_username = "vmbackup";
  auto nbd_disk = nbd::NbdDisk::Connect(uri, no);
  if (!nbd_disk) {
    NbdAccess::Stop(pid, dir);
    return nbd_disk.error();
  }
  return std::unique_ptr<DiskAccess>(new NbdAccess(tm, pid, dir, std::move(*nbd_disk)));
}

Result<std::unique_ptr<VmhostDriver>> VmhostDriver::Connect(std::string_view uri,
                                                            VmhostDriverOptions options) {
  constexpr std::string_view kScheme = "vmhost://";
  if (uri.substr(0, kScheme.size()) != kScheme || uri.size() <= kScheme.size() + 1 ||
      uri[kScheme.size()] != '/') {
    return InvalidArgumentError("source '" + std::string(uri) +
                                "' is not vmhost:///ABSOLUTE/DATASTORE/PATH");
  }
  std::string root(uri.substr(kScheme.size()));
  VMBACKUP_ASSIGN_OR_RETURN(host::Datastore ds, host::Datastore::Open(root));
  return std::unique_ptr<VmhostDriver>(
      new VmhostDriver(std::string(uri), std::move(ds), std::move(options)));
}

Result<std::unique_ptr<host::Vm>> VmhostDriver::Open(const VmInfo& vm) {
  return ds_.OpenVm(vm.name);
}

Result<std::vector<std::string>> VmhostDriver::ListVms() { return ds_.ListVms(); }

Result<VmInfo> VmhostDriver::GetVm(std::string_view name) {
  VMBACKUP_ASSIGN_OR_RETURN(auto vm, ds_.OpenVm(std::string(name)));
  VmInfo info;
  info.name = vm->name();
  info.id = vm->vmx().uuid();
  info.power = vm->vmx().powered_on() ? PowerState::kOn : PowerState::kOff;
  info.config = vm->vmx().Serialize();
  info.power_on_block = vm->vmx().power_on_block();
  VMBACKUP_ASSIGN_OR_RETURN(auto disks, vm->Disks());
  for (const auto& d : disks) {
    DiskInfo di;
    di.device_key = d.device_key;
    di.capacity = d.capacity;
    di.label = StrFormat("Hard disk %zu", d.index + 1);
    di.backing_path = vm->dir() + "/" + d.leaf;
    di.cbt_enabled = vm->vmx().cbt_enabled();
    // The base disk's ddb.uuid names the disk itself: a disk replaced under the same device key
    // gets another one, and its change ids mean nothing for the old one.
    if (!d.chain.empty()) {
      auto base = vmdk::Layer::Open(vm->dir() + "/" + d.chain.back(), false, vm->dir());
      if (base) di.uuid = (*base)->descriptor().GetDdb("ddb.uuid").value_or("");
    }
    info.disks.push_back(di);
  }
  return info;
}

Status VmhostDriver::EnableChangeTracking(const VmInfo& vm) {
  VMBACKUP_ASSIGN_OR_RETURN(auto v, Open(vm));
  return v->EnableChangeTracking();
}

Status VmhostDriver::ResetChangeTracking(const VmInfo& vm) {
  VMBACKUP_ASSIGN_OR_RETURN(auto v, Open(vm));
  return v->ResetChangeTracking();
}

Status VmhostDriver::SetPowerOnBlock(const VmInfo& vm, const std::string& why) {
  VMBACKUP_ASSIGN_OR_RETURN(auto v, Open(vm));
  return v->SetPowerOnBlock(why);
}

Status VmhostDriver::DestroyVm(const VmInfo& vm) { return ds_.DeleteVm(vm.name); }

Result<std::vector<SnapshotRef>> VmhostDriver::ListSnapshots(const VmInfo& vm) {
  VMBACKUP_ASSIGN_OR_RETURN(auto v, Open(vm));
  std::vector<SnapshotRef> out;
  for (const auto& s : v->snapshots().snapshots) out.push_back(RefOf(s));
  return out;
}

Result<SnapshotRef> VmhostDriver::CreateSnapshot(const VmInfo& vm, std::string_view name,
                                                 const SnapshotOptions& options) {
  VMBACKUP_ASSIGN_OR_RETURN(auto v, Open(vm));
  host::SnapshotOptions o;
  o.description = options.description;
  o.quiesce = options.quiesce;
  o.allow_crash_fallback = options.allow_crash_consistent;
  VMBACKUP_ASSIGN_OR_RETURN(host::Snapshot s, v->CreateSnapshot(std::string(name), o));
  return RefOf(s);
}

Status VmhostDriver::RemoveSnapshot(const VmInfo& vm, const SnapshotRef& snapshot) {
  VMBACKUP_ASSIGN_OR_RETURN(host::SnapshotSel sel, SelOf(&snapshot));
  VMBACKUP_ASSIGN_OR_RETURN(auto v, Open(vm));
  return v->DeleteSnapshot(*sel);
}

Status VmhostDriver::RevertToSnapshot(const VmInfo& vm, const SnapshotRef& snapshot) {
  VMBACKUP_ASSIGN_OR_RETURN(host::SnapshotSel sel, SelOf(&snapshot));
  VMBACKUP_ASSIGN_OR_RETURN(auto v, Open(vm));
  return v->RevertToSnapshot(*sel);
}

Result<std::string> VmhostDriver::ChangeId(const VmInfo& vm, const SnapshotRef* snapshot,
                                           int device_key) {
  VMBACKUP_ASSIGN_OR_RETURN(host::SnapshotSel sel, SelOf(snapshot));
  VMBACKUP_ASSIGN_OR_RETURN(auto v, Open(vm));
  VMBACKUP_ASSIGN_OR_RETURN(size_t index, DiskIndex(*v, device_key));
  VMBACKUP_ASSIGN_OR_RETURN(host::ChangeId id, v->GetChangeId(index, sel));
  return id.ToString();
}

Result<ChangedAreas> VmhostDriver::QueryChangedDiskAreas(const VmInfo& vm,
                                                         const SnapshotRef* snapshot,
                                                         int device_key, uint64_t start_offset,
                                                         std::string_view change_id) {
  VMBACKUP_ASSIGN_OR_RETURN(host::SnapshotSel sel, SelOf(snapshot));
  VMBACKUP_ASSIGN_OR_RETURN(auto v, Open(vm));
  VMBACKUP_ASSIGN_OR_RETURN(size_t index, DiskIndex(*v, device_key));
  VMBACKUP_ASSIGN_OR_RETURN(host::ChangedAreas a,
                            v->QueryChangedDiskAreas(index, sel, start_offset, change_id));
  return ChangedAreas{a.start_offset, a.length, std::move(a.areas)};
}

Result<std::unique_ptr<DiskAccess>> VmhostDriver::OpenDisk(
    const VmInfo& vm, const SnapshotRef* snapshot, int device_key,
    std::span<const TransportMode> modes, OpenMode mode, std::vector<std::string>* attempts) {
  VMBACKUP_ASSIGN_OR_RETURN(host::SnapshotSel sel, SelOf(snapshot));
  size_t index = 0;
  {
    VMBACKUP_ASSIGN_OR_RETURN(auto v, Open(vm));
    VMBACKUP_ASSIGN_OR_RETURN(index, DiskIndex(*v, device_key));
  }
  std::vector<std::string> tried;
  for (TransportMode m : modes) {
    Status why;
    if (m == TransportMode::kSan) {
      // Writes go into a snapshot's own layer (restore, SYSTEM.md 2.2), reads anywhere.
      host::DiskOpenMode dm =
          mode == OpenMode::kRead ? host::DiskOpenMode::kRead : host::DiskOpenMode::kRestore;
      auto d = host::SharedDisk::Open(ds_.root() + "/" + vm.name, index, sel, dm);
      if (d) {
        if (attempts) *attempts = tried;
        return std::unique_ptr<DiskAccess>(
            new SanDisk(std::move(*d), StrFormat("%s disk %d (san)", vm.name.c_str(), device_key)));
      }
      why = d.error();
    } else if (m == TransportMode::kHotAdd) {
      why = UnavailableError("needs a backup proxy VM on the host, which vmhost does not have");
    } else if (m == TransportMode::kHttps) {
      why = UnavailableError("the embedded host serves no datastore file service");
    } else {
      auto d = OpenNbd(vm, snapshot ? snapshot->id : "", index, m == TransportMode::kNbdSsl, mode);
      if (d) {
        if (attempts) *attempts = tried;
        return std::move(*d);
      }
      why = d.error();
    }
    tried.push_back(std::string(TransportName(m)) + ": " + why.message());
  }
  if (attempts) *attempts = tried;
  std::string all;
  for (const auto& t : tried) all += (all.empty() ? "" : "; ") + t;
  return UnavailableError(StrFormat("no transport could open %s disk %d: %s", vm.name.c_str(),
                                    device_key, all.c_str()));
}

Result<VmInfo> VmhostDriver::CreateVm(std::string_view name, const std::string& config,
                                      const std::vector<uint64_t>& capacities,
                                      const std::string& power_on_block) {
  host::NewVmOptions o;
  o.disk_sizes = capacities;
  o.cbt = true;
  o.power_on_block = power_on_block;
  {
    VMBACKUP_ASSIGN_OR_RETURN(auto vm, ds_.CreateVm(std::string(name), o));
    if (!config.empty())
      VMBACKUP_RETURN_IF_ERROR(vm->AdoptSettings(config).WithContext("the point's configuration"));
  }
  return GetVm(name);
}

}  // namespace vmbackup::hv
