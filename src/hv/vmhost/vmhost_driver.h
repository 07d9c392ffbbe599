// The driver for the embedded host (src/host): source URI `vmhost:///abs/datastore`.
//
// Control-plane calls open the VM (taking its lock) for the call only, so a guest keeps
// writing through an NBD export meanwhile. Transport modes: `san` is direct access to the
// datastore's VMDK files (host::SharedDisk: each request takes the VM lock and follows the
// disk through snapshots); `hotadd` is never available on this host; `nbd` and `nbdssl`
// start nbdkit with the vmhost plugin on a private unix socket (nbdssl: TLS with a fresh
// pre-shared key) and read it with libnbd, as VDDK's NBD modes read an ESXi host.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "host/datastore.h"
#include "hv/hypervisor.h"

namespace vmbackup::hv {

struct VmhostDriverOptions {
  std::string nbdkit_plugin;  // nbdkit-vmhost-plugin.so; empty: the NBD modes are unavailable
  // Extra nbdkit arguments for the NBD modes ("--filter=error" before the plugin, the
  // filter's key=value parameters after it): the tests put nbdkit's filters in the data path.
  std::vector<std::string> nbdkit_extra_args;
};

class VmhostDriver final : public Hypervisor {
 public:
  // kInvalidArgument for a URI that is not vmhost:///ABSOLUTE/PATH; kNotFound when the
  // datastore folder does not exist.
  static Result<std::unique_ptr<VmhostDriver>> Connect(std::string_view uri,
                                                       VmhostDriverOptions options = {});

  std::string uri() const override { return uri_; }
  Result<std::vector<std::string>> ListVms() override;
  Result<VmInfo> GetVm(std::string_view name) override;
  Status EnableChangeTracking(const VmInfo& vm) override;
  Status ResetChangeTracking(const VmInfo& vm) override;
  Status SetPowerOnBlock(const VmInfo& vm, const std::string& why) override;
  Status DestroyVm(const VmInfo& vm) override;
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
                          const std::vector<uint64_t>& capacities,
                          const std::string& power_on_block) override;

 private:
  VmhostDriver(std::string uri, host::Datastore ds, VmhostDriverOptions o)
      : uri_(std::move(uri)), ds_(std::move(ds)), options_(std::move(o)) {}
  Result<std::unique_ptr<host::Vm>> Open(const VmInfo& vm);
  Result<std::unique_ptr<DiskAccess>> OpenNbd(const VmInfo& vm, const std::string& snapshot_uid,
                                              size_t disk, bool tls, OpenMode mode);

  std::string uri_;
  host::Datastore ds_;
  VmhostDriverOptions options_;
};

}  // namespace vmbackup::hv
