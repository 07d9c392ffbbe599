// Vm: one virtual machine of the embedded host, opened under its lock. Implements SYSTEM.md
// section 1 on VMware-format files: guest disk I/O with copy-on-write deltas and CBT,
// snapshots (create, delete in its three cases, delete-all, revert, consolidate), change ids
// and QueryChangedDiskAreas.
//
// Every metadata update replaces the .vmx or .vmsd atomically, in an order after which a
// crash leaves at most unreferenced deltas, which Consolidate() merges or removes.
// One Vm object per process and VM at a time; not thread-safe.
#pragma once

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "format/vmdk/disk.h"
#include "host/change_tracking.h"
#include "host/vmsd.h"
#include "host/vmx.h"

namespace vmbackup::host {

inline constexpr size_t kMaxSnapshots = 32;

struct DiskInfo {
  size_t index = 0;
  std::string node;
  int device_key = 0;
  std::string stem;
  std::string leaf;  // current leaf descriptor (the .vmx fileName)
  uint64_t capacity = 0;
  std::vector<std::string> chain;  // leaf first, base last
  std::string change_id;           // of the current state, when CBT is on
};

struct SnapshotOptions {
  std::string description;
  bool quiesce = false;
  bool allow_crash_fallback = false;  // a failing freeze hook then yields crash consistency
};

// A snapshot reference for reads and queries: nullopt = the VM's current state.
using SnapshotSel = std::optional<uint32_t>;

// The layer file that holds `disk` at `snap` (or the current leaf), from parsed metadata.
Result<std::string> LayerFileFor(const Vmx& vmx, const SnapshotDb& vmsd, const std::string& vm,
                                 size_t disk, SnapshotSel snap);

class Vm {
 public:
  // Opens the VM in `dir` (the VM folder), waiting for its lock. Errors: kNotFound when there
  // is no .vmx, kCorruption when the .vmx or .vmsd cannot be parsed.
  static Result<std::unique_ptr<Vm>> Open(const std::string& dir);
  ~Vm();

  const std::string& name() const { return name_; }
  const std::string& dir() const { return dir_; }
  const Vmx& vmx() const { return vmx_; }
  const SnapshotDb& snapshots() const { return vmsd_; }

  // Disk details, including the chain of each disk.
  Result<std::vector<DiskInfo>> Disks();
  // Problems found in the VM's files (missing deltas, broken chains, bad ctk files), for
  // `vmhost vm info`; empty when everything opens.
  std::vector<std::string> Diagnose();

  // kFailedPrecondition while a power-on block is set (vmx().power_on_block()).
  Status PowerOn();
  // Sets (or, with "", clears) the power-on block.
  Status SetPowerOnBlock(const std::string& why);
  // Sets (or, with "", removes) a .vmx entry kept for tools, as vSphere's extraConfig: only
  // keys under "guestinfo." and "vmbackup." (kInvalidArgument otherwise).
  Status SetExtraConfig(const std::string& key, const std::string& value);
  // Invalidates every change id of every disk (a new tracking epoch): the next backup of each
  // disk is a full. For writes change tracking cannot see (an in-place restore).
  Status ResetChangeTracking();
  // `hard` stands for a power loss: change tracking is invalidated, as on VMware.
  Status PowerOff(bool hard);

  // Guest I/O on the current state (a write needs the VM powered on).
  Status Write(size_t disk, uint64_t offset, std::span<const uint8_t> data);
  Status Read(size_t disk, SnapshotSel snap, uint64_t offset, std::span<uint8_t> buf);
  // The disk as a block device: the current state (writable if asked), or a snapshot.
  Result<std::unique_ptr<vmdk::Disk>> OpenDisk(size_t disk, SnapshotSel snap, bool writable);

  Result<Snapshot> CreateSnapshot(const std::string& name, const SnapshotOptions& options);
  Status DeleteSnapshot(uint32_t uid);
  Status DeleteAllSnapshots();
  Status RevertToSnapshot(uint32_t uid);
  // Merges or removes deltas that neither the .vmx nor a snapshot references.
  Status Consolidate();

  // Grows a disk (no snapshots may exist, as on VMware); change ids are invalidated.
  Status ResizeDisk(size_t disk, uint64_t new_capacity);

  Status EnableChangeTracking();
  // Stops tracking; a later EnableChangeTracking starts a new epoch, so no change id of
  // before is accepted again.
  Status DisableChangeTracking();
  // Takes over the settings of another VM's .vmx text (a restore to a new VM): everything but
  // identity (name, uuids), disks and controllers, power state and change tracking switches,
  // and values that are paths leaving the VM folder (absolute, or with "..").
  Status AdoptSettings(std::string_view other_vmx);
  Result<ChangeId> GetChangeId(size_t disk, SnapshotSel snap);
  // vSphere semantics: areas changed since `change_id` ("*" = every allocated area) up to the
  // snapshot (or the current state of a powered-off VM), from `start_offset`, at most
  // vmx().cbt_max_areas() areas per answer. Errors: kNotFound for an unknown or invalidated
  // change id, kInvalidArgument for a bad request.
  Result<ChangedAreas> QueryChangedDiskAreas(size_t disk, SnapshotSel snap, uint64_t start_offset,
                                             std::string_view change_id);
  Result<ChangedAreas> QueryAllocatedBlocks(size_t disk, SnapshotSel snap, uint64_t start_offset);

 private:
  Vm() = default;
  void RemoveStaleTemporaries();
  Status Load();
  Status SaveVmx();
  Status SaveVmsd();
  // A file of the VM folder. Files named by outside input (descriptors, .vmx, .vmsd) are only
  // opened through Confined(), OpenCtkFile() or with root_ as confinement: they must resolve
  // inside the datastore.
  std::string Path(const std::string& file) const;
  vmdk::DiskOptions Confined(vmdk::DiskOptions o = {}) const;
  Result<std::unique_ptr<ChangeTrackFile>> OpenCtkFile(const std::string& file, bool writable);
  Result<std::vector<VmxDisk>> VmxDisks() const { return vmx_.Disks(); }
  Result<std::string> LayerFor(size_t disk, SnapshotSel snap);
  Result<std::unique_ptr<ChangeTrackFile>> OpenCtk(const std::string& layer_file, bool writable);
  Status InvalidateChangeTracking();
  // Gives `layer_file` its own ctk: a copy of `source` with sequence number `seq`, named after
  // the layer and referenced from its descriptor (version 3).
  Status GiveLayerCtk(const std::string& layer_file, ChangeTrackFile& source, uint64_t seq);
  Status RunHook(const std::string& hook, const char* what);
  Status ConsolidateDisk(size_t disk, const std::string& stem);
  Status MergeInto(const std::string& child, const std::string& parent);
  // Copies `runs` (data or zero) of `src` into the layer file `into`, its CID kept.
  Status MergeRuns(const std::vector<vmdk::ChainRun>& runs, io::BlockReader& src,
                   const std::string& from, const std::string& into);
  Status CollapseToBase(const std::string& leaf, const std::string& base);

  std::string dir_, name_;
  std::string root_;  // the datastore: every file the VM uses resolves inside it
  int lock_fd_ = -1;
  Vmx vmx_;
  SnapshotDb vmsd_;
};

}  // namespace vmbackup::host
