// The driver for the embedded host (src/host): source URI `vmhost:///abs/datastore`.
//
// Control-plane calls open the VM (taking its lock) for the call only, so a guest keeps
// writing through an NBD export meanwhile. Transport modes: `san` is direct access to the
// datastore's VMDK files (host::SharedDisk: each request takes the VM lock and follows the
// disk through snapshots); `hotadd` is never available on this host; `nbdssl` and `nbd` are
// not wired into this driver yet and report so.
#pragma once

#include <memory>
#include <string>

#include "host/datastore.h"
#include "hv/hypervisor.h"

namespace vmbackup::hv {

class VmhostDriver final : public Hypervisor {
 public:
  // kInvalidArgument for a URI that is not vmhost:///ABSOLUTE/PATH; kNotFound when the
  // datastore folder does not exist.
  static Result<std::unique_ptr<VmhostDriver>> Connect(std::string_view uri);

  std::string uri() const override { return uri_; }
  Result<std::vector<std::string>> ListVms() override;
  Result<VmInfo> GetVm(std::string_view name) override;
  Status EnableChangeTracking(const VmInfo& vm) override;
  Result<std::vector<SnapshotRef>> ListSnapshots(const VmInfo& vm) override;
  Result<SnapshotRef> CreateSnapshot(const VmInfo& vm, std::string_view name,
                                     const SnapshotOptions& options) override;
  Status RemoveSnapshot(const VmInfo& vm, const SnapshotRef& snapshot) override;
  Status RevertToSnapshot(const VmInfo& vm, const SnapshotRef& snapshot) override;
  Result<std::string> ChangeId(const VmInfo& vm, const SnapshotRef* snapshot,
                               int device_key) override;
  Result<ChangedAreas> QueryChangedDiskAreas(const VmInfo& vm, const SnapshotRef* snapshot,
                                             int device_key, uint64_t start_offset,
                                             std::string_view change_id) override;
  Result<std::unique_ptr<DiskAccess>> OpenDisk(const VmInfo& vm, const SnapshotRef* snapshot,
                                               int device_key, std::span<const TransportMode> modes,
                                               OpenMode mode,
                                               std::vector<std::string>* attempts) override;
  Result<VmInfo> CreateVm(std::string_view name, const std::string& config,
                          const std::vector<uint64_t>& capacities) override;

 private:
  VmhostDriver(std::string uri, host::Datastore ds) : uri_(std::move(uri)), ds_(std::move(ds)) {}
  Result<std::unique_ptr<host::Vm>> Open(const VmInfo& vm);

  std::string uri_;
  host::Datastore ds_;
};

}  // namespace vmbackup::hv
