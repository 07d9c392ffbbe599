#include "host/vm.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>

#include "base/checked_math.h"
#include "base/strings.h"
#include "format/vmdk/create.h"
#include "host/disk_layers.h"
#include "host/lock_generation.h"
#include "io/posix_file.h"

namespace vmbackup::host {

Result<std::unique_ptr<Vm>> Vm::Open(const std::string& dir) {
  std::unique_ptr<Vm> vm(new Vm());
  vm->dir_ = dir;
  vm->name_ = io::BaseName(dir);
  vm->root_ = io::DirName(dir);
  if (!io::PathExists(vm->Path(vm->name_ + ".vmx"))) {
    return NotFoundError("no VM '" + vm->name_ + "' (" + vm->Path(vm->name_ + ".vmx") +
                         " is missing)");
  }
  // The lock is a file held with flock: the kernel drops it when a process dies, so a killed
  // vmhost never leaves the VM locked.
  std::string lock = vm->Path(".vmhost.lock");
  vm->lock_fd_ = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (vm->lock_fd_ < 0) return PosixError("open " + lock, errno);
  while (::flock(vm->lock_fd_, LOCK_EX) != 0) {
    if (errno != EINTR) return PosixError("lock " + lock, errno);
  }
  // Before anything changes: open disk handles (SharedDisk) then look at the VM's files again.
  VMBACKUP_RETURN_IF_ERROR(RaiseLockGeneration(vm->lock_fd_).status());
  vm->RemoveStaleTemporaries();
  VMBACKUP_RETURN_IF_ERROR(vm->Load());
  return vm;
}

void Vm::RemoveStaleTemporaries() {
  // Metadata is replaced through "<file>.tmp" under the VM lock, which this process holds now:
  // any such file left is from a process that died mid-write.
  DIR* d = ::opendir(dir_.c_str());
  if (!d) return;
  std::vector<std::string> stale;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n.size() > 4 && n.compare(n.size() - 4, 4, ".tmp") == 0) stale.push_back(n);
  }
  ::closedir(d);
  for (const std::string& n : stale) ::unlink(Path(n).c_str());
}

Vm::~Vm() {
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the flock
}

std::string Vm::Path(const std::string& file) const { return io::JoinPath(dir_, file); }

vmdk::DiskOptions Vm::Confined(vmdk::DiskOptions o) const {
  o.confine_to = root_;
  return o;
}

Result<std::unique_ptr<ChangeTrackFile>> Vm::OpenCtkFile(const std::string& file, bool writable) {
  VMBACKUP_RETURN_IF_ERROR(io::CheckInside(root_, Path(file)));
  return ChangeTrackFile::Open(Path(file), writable);
}

Status Vm::Load() {
  std::string vmx_path = Path(name_ + ".vmx");
  VMBACKUP_ASSIGN_OR_RETURN(std::string text, io::ReadSmallFile(vmx_path, 1 << 20));
  Result<Vmx> vmx = Vmx::Parse(text);
  if (!vmx) return vmx.error().WithContext(vmx_path);
  vmx_ = std::move(*vmx);
  VMBACKUP_RETURN_IF_ERROR(vmx_.Disks().status().WithContext(vmx_path));
  std::string vmsd_path = Path(name_ + ".vmsd");
  vmsd_ = SnapshotDb();
  if (io::PathExists(vmsd_path)) {
    VMBACKUP_ASSIGN_OR_RETURN(std::string s, io::ReadSmallFile(vmsd_path, 1 << 20));
    Result<SnapshotDb> db = SnapshotDb::Parse(s);
    if (!db) return db.error().WithContext(vmsd_path);
    vmsd_ = std::move(*db);
  }
  return Status::Ok();
}

Status Vm::SaveVmx() { return io::WriteFileAtomic(Path(name_ + ".vmx"), vmx_.Serialize()); }
Status Vm::SaveVmsd() { return io::WriteFileAtomic(Path(name_ + ".vmsd"), vmsd_.Serialize()); }

Result<std::vector<DiskInfo>> Vm::Disks() {
  VMBACKUP_ASSIGN_OR_RETURN(std::vector<VmxDisk> disks, VmxDisks());
  std::vector<DiskInfo> out;
  for (size_t i = 0; i < disks.size(); ++i) {
    DiskInfo d;
    d.index = i;
    d.node = disks[i].node;
    d.device_key = disks[i].device_key;
    d.stem = DiskStem(name_, i);
    d.leaf = disks[i].file_name;
    auto disk = vmdk::Disk::Open(Path(d.leaf), Confined());
    if (!disk) return disk.error().WithContext(name_ + " disk " + std::to_string(i));
    d.capacity = (*disk)->size();
    for (const auto& layer : (*disk)->layers()) d.chain.push_back(io::BaseName(layer->path()));
    if (vmx_.cbt_enabled()) {
      auto ctk = OpenCtk(d.leaf, false);
      if (ctk) d.change_id = (*ctk)->change_id().ToString();
    }
    out.push_back(std::move(d));
  }
  return out;
}

std::vector<std::string> Vm::Diagnose() {
  std::vector<std::string> problems;
  auto disks = VmxDisks();
  if (!disks) return {disks.error().message()};
  for (size_t i = 0; i < disks->size(); ++i) {
    const std::string& leaf = (*disks)[i].file_name;
    auto disk = vmdk::Disk::Open(Path(leaf), Confined());
    if (!disk) {
      problems.push_back("disk " + std::to_string(i) + " (" + leaf +
                         "): " + disk.error().message());
      continue;
    }
    if (vmx_.cbt_enabled()) {
      for (const auto& layer : (*disk)->layers()) {
        const std::string& ctk = layer->descriptor().change_track_path;
        if (ctk.empty()) continue;
        auto f = OpenCtkFile(ctk, false);
        if (!f) problems.push_back("disk " + std::to_string(i) + ": " + f.error().message());
      }
    }
  }
  for (const Snapshot& s : vmsd_.snapshots) {
    for (const SnapshotDisk& d : s.disks) {
      auto disk = vmdk::Disk::Open(Path(d.file_name), Confined());
      if (!disk) {
        problems.push_back("snapshot " + std::to_string(s.uid) + " '" + s.name + "' " + d.node +
                           ": " + disk.error().message());
      }
    }
  }
  if (vmsd_.need_consolidate)
    problems.push_back("snapshot.needConsolidate is set: run 'vmhost vm consolidate'");
  return problems;
}

Status Vm::SetPowerOnBlock(const std::string& why) {
  vmx_.set_power_on_block(why);
  return SaveVmx();
}

Status Vm::SetExtraConfig(const std::string& key, const std::string& value) {
  const bool allowed = (key.rfind("guestinfo.", 0) == 0 || key.rfind("vmbackup.", 0) == 0) &&
                       key.find_first_not_of(
                           "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                           "0123456789._-") == std::string::npos &&
                       key.size() <= 128 && value.size() <= 4096;
  if (!allowed) {
    return InvalidArgumentError("VM " + name_ + ": '" + key +
                                "' is not a key tools may set (guestinfo.* and vmbackup.*)");
  }
  if (value.empty()) {
    vmx_.config().Remove(key);
  } else {
    vmx_.config().Set(key, value);
  }
  return SaveVmx();
}

Status Vm::ResetChangeTracking() {
  if (!vmx_.cbt_enabled()) return Status::Ok();
  return InvalidateChangeTracking();
}

Status Vm::PowerOn() {
  if (vmx_.powered_on()) return Status::Ok();
  if (!vmx_.power_on_block().empty()) {
    return FailedPreconditionError("VM " + name_ +
                                   " may not be powered on: " + vmx_.power_on_block());
  }
  // Every disk must open before the VM runs.
  VMBACKUP_RETURN_IF_ERROR(Disks().status());
  vmx_.set_powered_on(true);
  return SaveVmx();
}

Status Vm::PowerOff(bool hard) {
  if (hard && vmx_.cbt_enabled()) VMBACKUP_RETURN_IF_ERROR(InvalidateChangeTracking());
  if (!vmx_.powered_on()) return Status::Ok();
  vmx_.set_powered_on(false);
  return SaveVmx();
}

Result<std::string> LayerFileFor(const Vmx& vmx, const SnapshotDb& vmsd, const std::string& vm,
                                 size_t disk, SnapshotSel snap) {
  VMBACKUP_ASSIGN_OR_RETURN(std::vector<VmxDisk> disks, vmx.Disks());
  if (disk >= disks.size()) {
    return InvalidArgumentError(
        StrFormat("VM %s has no disk %zu (it has %zu)", vm.c_str(), disk, disks.size()));
  }
  if (!snap) return disks[disk].file_name;
  const Snapshot* s = vmsd.Find(*snap);
  if (!s) return NotFoundError(StrFormat("VM %s has no snapshot %u", vm.c_str(), *snap));
  for (const SnapshotDisk& d : s->disks) {
    if (!EqualsIgnoreCase(d.node, disks[disk].node)) continue;
    if (d.file_name.empty() || d.file_name.find('/') != std::string::npos) {
      return CorruptionError(
          StrFormat("snapshot %u: disk file name '%s' must be a file in the VM "
                    "folder",
                    *snap, d.file_name.c_str()));
    }
    return d.file_name;
  }
  return NotFoundError(
      StrFormat("snapshot %u does not hold disk %s", *snap, disks[disk].node.c_str()));
}

Result<std::string> Vm::LayerFor(size_t disk, SnapshotSel snap) {
  return LayerFileFor(vmx_, vmsd_, name_, disk, snap);
}

Result<std::unique_ptr<vmdk::Disk>> Vm::OpenDisk(size_t disk, SnapshotSel snap, bool writable) {
  if (writable && snap) return InvalidArgumentError("a snapshot's disk is read-only");
  VMBACKUP_ASSIGN_OR_RETURN(std::string layer, LayerFor(disk, snap));
  vmdk::DiskOptions o = Confined();
  o.writable = writable;
  return vmdk::Disk::Open(Path(layer), o);
}

Status Vm::Read(size_t disk, SnapshotSel snap, uint64_t offset, std::span<uint8_t> buf) {
  VMBACKUP_ASSIGN_OR_RETURN(auto d, OpenDisk(disk, snap, false));
  return d->ReadAt(offset, buf);
}

Status Vm::Write(size_t disk, uint64_t offset, std::span<const uint8_t> data) {
  if (!vmx_.powered_on())
    return FailedPreconditionError("VM " + name_ +
                                   " is powered off: power it on to write as the guest");
  VMBACKUP_ASSIGN_OR_RETURN(std::string leaf, LayerFor(disk, std::nullopt));
  vmdk::DiskOptions o = Confined();
  o.writable = true;
  VMBACKUP_ASSIGN_OR_RETURN(auto d, vmdk::Disk::Open(Path(leaf), o));
  if (!RangeWithin(offset, data.size(), d->size())) {
    return InvalidArgumentError(
        StrFormat("write of %zu bytes at %llu lies past the end of disk %zu (%llu bytes)",
                  data.size(), (unsigned long long)offset, disk, (unsigned long long)d->size()));
  }
  if (vmx_.cbt_enabled()) {
    // Recorded before the data is written: a crash in between can only over-report.
    VMBACKUP_ASSIGN_OR_RETURN(auto ctk, OpenCtk(leaf, true));
    VMBACKUP_RETURN_IF_ERROR(ctk->Record(offset, data.size()));
  }
  VMBACKUP_RETURN_IF_ERROR(d->WriteAt(offset, data));
  return d->Flush();
}

Result<std::unique_ptr<ChangeTrackFile>> Vm::OpenCtk(const std::string& layer_file, bool writable) {
  VMBACKUP_ASSIGN_OR_RETURN(auto layer, vmdk::Layer::Open(Path(layer_file), false, root_));
  const std::string& ctk = layer->descriptor().change_track_path;
  if (ctk.empty()) {
    return NotFoundError(layer_file + " has no change tracking file (it predates enabling CBT)");
  }
  return OpenCtkFile(ctk, writable);
}

Status Vm::ResizeDisk(size_t disk, uint64_t new_capacity) {
  if (!vmsd_.snapshots.empty()) {
    return FailedPreconditionError("VM " + name_ +
                                   " has snapshots: delete them before resizing a disk");
  }
  VMBACKUP_ASSIGN_OR_RETURN(std::string leaf, LayerFor(disk, std::nullopt));
  if (leaf != DiskStem(name_, disk) + ".vmdk") {
    return FailedPreconditionError("disk " + std::to_string(disk) + " still runs on delta " + leaf +
                                   ": consolidate first");
  }
  VMBACKUP_RETURN_IF_ERROR(vmdk::GrowFlatDisk(Path(leaf), new_capacity));
  if (vmx_.cbt_enabled()) {
    // A resized disk starts a new tracking epoch: every earlier change id is void.
    VMBACKUP_ASSIGN_OR_RETURN(auto d, OpenDisk(disk, std::nullopt, false));
    VMBACKUP_RETURN_IF_ERROR(io::CheckInside(root_, Path(CtkFileFor(leaf))));
    VMBACKUP_RETURN_IF_ERROR(ChangeTrackFile::Create(Path(CtkFileFor(leaf)), ChangeId::NewEpoch(),
                                                     1, vmx_.cbt_granularity(), d->size()));
  }
  return Status::Ok();
}

Status Vm::AdoptSettings(std::string_view other_vmx) {
  VMBACKUP_ASSIGN_OR_RETURN(ConfigFile other, ConfigFile::Parse(other_vmx));
  // Keys that belong to this VM and its files, never to the one the settings come from.
  static constexpr std::string_view kOwn[] = {"displayname",
                                              "uuid.",
                                              "vc.uuid",
                                              "scsi",
                                              "ide",
                                              "sata",
                                              "nvme",
                                              "ctk",
                                              "vmhost.powerstate",
                                              "vmhost.poweronblocked",
                                              "checkpoint.",
                                              "filesearchpath",
                                              ".encoding"};
  for (const auto& [key, value] : other.entries()) {
    std::string lower;
    for (char c : key) lower += char(std::tolower(static_cast<unsigned char>(c)));
    bool own = false;
    for (std::string_view p : kOwn) own = own || lower.rfind(p, 0) == 0;
    if (own) continue;
    // A setting that names a file outside the VM folder (nvram = "/etc/...", "../x") would
    // point this VM at files it must not touch: left out.
    if (!value.empty() && (value[0] == '/' || value.find("../") != std::string::npos ||
                           value.find("..\\") != std::string::npos || value == "..")) {
      continue;
    }
    vmx_.config().Set(key, value);
  }
  return SaveVmx();
}

Status Vm::EnableChangeTracking() {
  if (vmx_.cbt_enabled()) return Status::Ok();
  VMBACKUP_ASSIGN_OR_RETURN(std::vector<VmxDisk> disks, VmxDisks());
  for (const VmxDisk& d : disks) {
    VMBACKUP_ASSIGN_OR_RETURN(auto layer, vmdk::Layer::Open(Path(d.file_name), true, root_));
    std::string ctk = CtkFileFor(d.file_name);
    VMBACKUP_RETURN_IF_ERROR(io::CheckInside(root_, Path(ctk)));
    VMBACKUP_RETURN_IF_ERROR(ChangeTrackFile::Create(Path(ctk), ChangeId::NewEpoch(), 1,
                                                     vmx_.cbt_granularity(), layer->capacity()));
    vmdk::Descriptor desc = layer->descriptor();
    desc.version = 3;  // as ESXi marks a tracked disk
    desc.change_track_path = ctk;
    VMBACKUP_RETURN_IF_ERROR(layer->ReplaceDescriptor(desc));
  }
  vmx_.set_cbt_enabled(true);
  return SaveVmx();
}

Status Vm::DisableChangeTracking() {
  if (!vmx_.cbt_enabled()) return Status::Ok();
  VMBACKUP_RETURN_IF_ERROR(InvalidateChangeTracking());
  vmx_.set_cbt_enabled(false);
  return SaveVmx();
}

Status Vm::GiveLayerCtk(const std::string& layer_file, ChangeTrackFile& source, uint64_t seq) {
  std::string ctk_file = CtkFileFor(layer_file);
  VMBACKUP_RETURN_IF_ERROR(io::CheckInside(root_, Path(ctk_file)));
  VMBACKUP_RETURN_IF_ERROR(source.CopyTo(Path(ctk_file), seq));
  VMBACKUP_ASSIGN_OR_RETURN(auto layer, vmdk::Layer::Open(Path(layer_file), true, root_));
  vmdk::Descriptor d = layer->descriptor();
  d.version = 3;  // as ESXi marks a tracked disk
  d.change_track_path = ctk_file;
  return layer->ReplaceDescriptor(d);
}

Status Vm::InvalidateChangeTracking() {
  VMBACKUP_ASSIGN_OR_RETURN(std::vector<VmxDisk> disks, VmxDisks());
  for (size_t i = 0; i < disks.size(); ++i) {
    auto epoch = ChangeId::NewEpoch();
    VMBACKUP_ASSIGN_OR_RETURN(auto layers, ScanLayers(dir_, DiskStem(name_, i)));
    for (const auto& [file, node] : layers) {
      if (node.change_track_path.empty()) continue;
      auto ctk = OpenCtkFile(node.change_track_path, true);
      if (!ctk) continue;  // a damaged ctk is reported by Diagnose; it cannot vouch for anything
      VMBACKUP_RETURN_IF_ERROR((*ctk)->Reset(epoch));
    }
  }
  return Status::Ok();
}

Result<ChangeId> Vm::GetChangeId(size_t disk, SnapshotSel snap) {
  if (!vmx_.cbt_enabled())
    return FailedPreconditionError("change tracking is not enabled on VM " + name_);
  VMBACKUP_ASSIGN_OR_RETURN(std::string layer, LayerFor(disk, snap));
  VMBACKUP_ASSIGN_OR_RETURN(auto ctk, OpenCtk(layer, false));
  return ctk->change_id();
}

Result<ChangedAreas> Vm::QueryAllocatedBlocks(size_t disk, SnapshotSel snap,
                                              uint64_t start_offset) {
  VMBACKUP_ASSIGN_OR_RETURN(auto d, OpenDisk(disk, snap, false));
  if (start_offset > d->size())
    return InvalidArgumentError("startOffset lies past the end of the disk");
  VMBACKUP_ASSIGN_OR_RETURN(ExtentSet alloc,
                            d->AllocatedExtents(start_offset, d->size() - start_offset));
  alloc = alloc.AlignOutward(vmx_.cbt_granularity(), d->size())
              .Clip(start_offset, d->size() - start_offset);
  ChangedAreas out;
  out.start_offset = start_offset;
  uint64_t end = d->size();
  for (const Extent& e : alloc) {
    if (out.areas.size() == vmx_.cbt_max_areas()) {
      end = e.offset;
      break;
    }
    out.areas.push_back(e);
  }
  out.length = end - start_offset;
  return out;
}

Result<ChangedAreas> Vm::QueryChangedDiskAreas(size_t disk, SnapshotSel snap, uint64_t start_offset,
                                               std::string_view change_id) {
  if (!vmx_.cbt_enabled())
    return FailedPreconditionError("change tracking is not enabled on VM " + name_);
  if (!snap && vmx_.powered_on()) {
    return FailedPreconditionError(
        "the current state of a running VM cannot be queried: take a snapshot");
  }
  if (change_id == "*") return QueryAllocatedBlocks(disk, snap, start_offset);
  VMBACKUP_ASSIGN_OR_RETURN(ChangeId since, ChangeId::Parse(change_id));
  VMBACKUP_ASSIGN_OR_RETURN(std::string layer, LayerFor(disk, snap));
  VMBACKUP_ASSIGN_OR_RETURN(auto ctk, OpenCtk(layer, false));
  return ctk->Query(since, start_offset, vmx_.cbt_max_areas());
}

}  // namespace vmbackup::host
