// The vSphere driver: VMware VMs through the vSphere Web Services API (control plane) and open
// data paths (transports), for backups and restores like those of the embedded host.
//
// Transports, tried per disk in the order asked:
//   san     the datastore is visible here (an NFS mount, a LUN, a copy): --datastore-map gives
//           its folder; the snapshot's VMDK chain is read with our VMDK library, confined to
//           that folder.
//   https   the datastore file service (/folder/PATH?dcPath=..&dsName=..) with HTTP ranges and
//           the session cookie, feeding the same chain reader. Read-only.
//   hotadd  unavailable: this proxy is not a VM of that vCenter.
//   nbd, nbdssl  unavailable until an NBD endpoint is configured.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>

#include "hv/hypervisor.h"
#include "hv/vsphere/vim_client.h"
#include "hv/vsphere/vsphere_source.h"

namespace vmbackup::hv::vsphere {

struct DriverOptions {
  std::string password;                              // never logged, never on a command line
  std::map<std::string, std::string> datastore_map;  // datastore name -> local folder (san)
  std::string nbd_template;  // --nbd-uri: each disk's NBD endpoint (nbd_endpoint.h), or ""
  double timeout_seconds = 60;
  double task_limit_seconds = 3600;
};

// The VirtualDisks of an ArrayOfVirtualDevice, by device key (kProtocol for a disk without a
// key, or two with one key).
Result<std::vector<DiskInfo>> ParseVirtualDisks(xml::Node devices, bool cbt_enabled);
// A DiskChangeInfo (QueryChangedDiskAreas' answer). Its areas are checked by the caller
// (hv::CollectChangedAreas refuses areas out of place).
Result<ChangedAreas> ParseChangedAreas(xml::Node returnval);

class VsphereDriver final : public Hypervisor {
 public:
  static Result<std::unique_ptr<VsphereDriver>> Connect(const std::string& uri,
                                                        const DriverOptions& options);
  ~VsphereDriver() override;

  std::string uri() const override { return uri_; }
  Result<std::vector<std::string>> ListVms() override;
  Result<VmInfo> GetVm(std::string_view name) override;
  Status EnableChangeTracking(const VmInfo& vm) override;
  Status ResetChangeTracking(const VmInfo& vm) override;
  Status SetPowerOnBlock(const VmInfo& vm, const std::string& why) override;
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
  Status DestroyVm(const VmInfo& vm) override;

  VimClient& client() { return *client_; }

 private:
  VsphereDriver() = default;
  Result<MoRef> VmRef(const VmInfo& vm);
  Result<MoRef> FindVm(std::string_view name);
  Result<std::string> Datacenter();
  Status RunTask(const MoRef& target, const std::string& method, const std::string& args,
                 const std::string& what, MoRef* result = nullptr);
  // The VirtualDisk elements of a VM now, or of one of its snapshots.
  Result<PropertyAnswer> Devices(const VmInfo& vm, const SnapshotRef* snapshot);
  // A field of a disk's backing ("fileName", "changeId"), now or at a snapshot.
  Result<std::string> Backing(const VmInfo& vm, const SnapshotRef* snapshot, int device_key,
                              std::string_view field);
  Result<std::string> DownloadFile(const DatastorePath& path, size_t limit);
  // ConsolidateVMDisks_Task when runtime.consolidationNeeded says so.
  Status ConsolidateIfNeeded(const VmInfo& vm, const MoRef& ref);
  // A disk through the user's NBD endpoint (nbd, nbdssl).
  Result<std::unique_ptr<DiskAccess>> OpenNbd(const VmInfo& vm, const SnapshotRef* snapshot,
                                              int device_key, const std::string& file,
                                              TransportMode m, OpenMode mode);
  // The URL path of a datastore file (/folder/PATH?dcPath=..&dsName=..).
  Result<std::string> FolderUrl(const DatastorePath& path);
  // Replaces a datastore file through the file service (PUT) with `length` bytes from `read`.
  Status Upload(const DatastorePath& path, uint64_t length,
                const std::function<Status(uint64_t, std::span<uint8_t>)>& read);
  // The datastore a new VM goes to: the URI's ?datastore=, or the datacenter's only one.
  Result<std::string> TargetDatastore();
  // A disk of a VM this driver created, written whole over https: kept in a local file and
  // uploaded on Flush.
  Result<std::unique_ptr<DiskAccess>> OpenUpload(const VmInfo& vm, const SnapshotRef* snapshot,
                                                 int device_key, const std::string& label);

  // Disks of the VMs this driver created (restores to a new VM): their base descriptor and the
  // CID it was made with, which an upload must keep (a snapshot's delta names it).
  struct CreatedDisk {
    DatastorePath file;
    uint32_t cid = 0;
    uint64_t capacity = 0;
  };
  std::map<std::string, std::map<int, CreatedDisk>> created_;

  std::string uri_;
  SourceUri source_;
  DriverOptions options_;
  std::unique_ptr<VimClient> client_;
  std::map<std::string, MoRef> vm_refs_;  // VM name -> moref
  std::string datacenter_;
};

}  // namespace vmbackup::hv::vsphere
