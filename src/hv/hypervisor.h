// The hypervisor interfaces, shaped after VADP so that every
// driver (the embedded host, libvirt, vSphere) maps onto them directly: a control plane
// (Hypervisor: VMs, snapshots, change tracking) and a data plane (DiskAccess: one opened disk,
// through the transport mode that connected).
//
// Drivers answer one call at a time as the host does; paging, changed-and-allocated
// intersection and transport negotiation live once, in hv/changed_areas.h and the engine.
#pragma once

#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/extent_set.h"
#include "base/result.h"
#include "io/block_device.h"

namespace vmbackup::hv {

enum class PowerState { kOff, kOn };
enum class Consistency { kCrash, kFileSystem, kApplication };
std::string_view ConsistencyName(Consistency c);  // "crash", "filesystem", "application"

struct DiskInfo {
  int device_key = 0;  // 2000, 2001, ... as on vSphere
  uint64_t capacity = 0;
  std::string label, backing_path;
  std::string uuid;  // the backing's own id where the host has one (vSphere's backing.uuid)
  bool cbt_enabled = false;
};

struct VmInfo {
  std::string id, name;
  PowerState power = PowerState::kOff;
  std::vector<DiskInfo> disks;
  std::string config;          // the VM's configuration file, as the host keeps it
  std::string power_on_block;  // why it may not be powered on (SetPowerOnBlock); empty: it may
};

// VDDK's transport modes, in its order of preference, and the datastore file service over
// HTTPS (vSphere's /folder: whole files only, for hosts with no other open path).
enum class TransportMode { kSan, kHotAdd, kNbdSsl, kNbd, kHttps };
std::string_view TransportName(TransportMode m);  // "san", "hotadd", "nbdssl", "nbd", "https"
// "san:hotadd:nbdssl:nbd" (any order, no repeats). kInvalidArgument naming the bad part.
Result<std::vector<TransportMode>> ParseTransportList(std::string_view text);

struct SnapshotRef {
  std::string id, name;
  Consistency achieved = Consistency::kCrash;
};

struct SnapshotOptions {
  std::string description;
  bool quiesce = false;
  bool allow_crash_consistent = false;  // a failed quiesce then gives a crash-consistent one
  // The change ids this job will ask QueryChangedDiskAreas about, by device key. Hosts that
  // must know an incremental's base when the snapshot is taken (libvirt: a backup job's
  // checkpoint) use them; the others ignore them.
  std::map<int, std::string> since;
  // The transports OpenDisk will be asked for, in order. Hosts whose snapshot decides how its
  // disks are served (libvirt: a job's export on a unix socket, or over TCP with TLS) use them.
  std::vector<TransportMode> transports;
};

// One answer of QueryChangedDiskAreas: it covers [start_offset, start_offset + length).
struct ChangedAreas {
  uint64_t start_offset = 0, length = 0;
  std::vector<Extent> areas;
};

enum class OpenMode { kRead, kWrite };

// One opened disk. Not thread-safe.
class DiskAccess : public io::BlockWriter {
 public:
  virtual TransportMode transport() const = 0;
  // Whether ReadAt may be called from several threads at once (then a backup keeps several
  // reads in flight on this disk, not one after another).
  virtual bool concurrent_reads() const { return false; }
  // The largest read this disk serves well (0: any); the engine's requests stay within it.
  // QEMU 7.2's backup-job exports, for one, serve large reads several times slower.
  virtual uint64_t max_read_size() const { return 0; }
  // The read size this disk serves best (0: the engine's default). Each HTTP request, for
  // one, costs the server a request's work, whatever its size.
  virtual uint64_t preferred_read_size() const { return 0; }
};

class Hypervisor {
 public:
  virtual ~Hypervisor() = default;
  virtual std::string uri() const = 0;

  virtual Result<std::vector<std::string>> ListVms() = 0;
  // kNotFound naming the VM when there is none.
  virtual Result<VmInfo> GetVm(std::string_view name) = 0;
  virtual Status EnableChangeTracking(const VmInfo& vm) = 0;
  // Invalidates every change id of the VM's disks (vSphere: change tracking off and on again),
  // so that every later QueryChangedDiskAreas since an earlier id answers kNotFound. Done before
  // writes change tracking cannot see (an in-place restore).
  virtual Status ResetChangeTracking(const VmInfo& vm) = 0;
  // Keeps the VM from being powered on, saying why (vSphere: AuthorizationManager.DisableMethods
  // of PowerOnVM_Task); "" allows it again. A restore sets it while disks are half written.
  virtual Status SetPowerOnBlock(const VmInfo& vm, const std::string& why) = 0;

  virtual Result<std::vector<SnapshotRef>> ListSnapshots(const VmInfo& vm) = 0;
  virtual Result<SnapshotRef> CreateSnapshot(const VmInfo& vm, std::string_view name,
                                             const SnapshotOptions& options) = 0;
  virtual Status RemoveSnapshot(const VmInfo& vm, const SnapshotRef& snapshot) = 0;
  virtual Status RevertToSnapshot(const VmInfo& vm, const SnapshotRef& snapshot) = 0;

  // The change id of a disk at a snapshot (nullptr: the current state of a powered-off VM).
  virtual Result<std::string> ChangeId(const VmInfo& vm, const SnapshotRef* snapshot,
                                       int device_key) = 0;
  // One page, vSphere semantics: areas changed since `change_id` ("*" = every allocated
  // area), from `start_offset`. kNotFound when the change id is unknown or invalidated.
  virtual Result<ChangedAreas> QueryChangedDiskAreas(const VmInfo& vm, const SnapshotRef* snapshot,
                                                     int device_key, uint64_t start_offset,
                                                     std::string_view change_id) = 0;

  // Opens a disk (at a snapshot, or the current state) with the first of `modes` that
  // works; `attempts` gets one line per mode tried and why it failed. kUnavailable when none
  // worked.
  virtual Result<std::unique_ptr<DiskAccess>> OpenDisk(const VmInfo& vm,
                                                       const SnapshotRef* snapshot, int device_key,
                                                       std::span<const TransportMode> modes,
                                                       OpenMode mode,
                                                       std::vector<std::string>* attempts) = 0;

  // A new, powered-off VM with the given configuration and empty disks of these capacities
  // (device keys 2000, 2001, ... in order), with `power_on_block` set from the start when not
  // empty. kAlreadyExists when the name is taken.
  virtual Result<VmInfo> CreateVm(std::string_view name, const std::string& config,
                                  const std::vector<uint64_t>& capacities,
                                  const std::string& power_on_block = "") = 0;
  // Deletes a powered-off VM and its disks.
  virtual Status DestroyVm(const VmInfo& vm) = 0;
};

}  // namespace vmbackup::hv
