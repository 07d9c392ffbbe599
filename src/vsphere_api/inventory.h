// The embedded host as vSphere sees it: one datacenter ("ha-datacenter") with one datastore
// (the vmhost datastore folder), its VMs and their snapshots, with morefs and properties in
// vim25's names and types. Objects are read from the datastore on every call, so the answers
// follow what `vmhost` commands change while the server runs.
//
// Morefs: VMs "vm-<name>", snapshots "snapshot-<vm>-<uid>", the datastore by its name, and
// ESXi's names for the rest ("ha-folder-root", "ha-datacenter", ...).
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/result.h"
#include "host/datastore.h"
#include "vsphere_api/soap.h"
#include "vsphere_api/value.h"

namespace vmbackup::vsphere_api {

inline constexpr const char* kApiVersion = "6.7";

struct InventoryOptions {
  std::string datastore_root;  // the vmhost datastore folder
  std::string datastore_name = "datastore1";
  std::string datacenter_name = "ha-datacenter";
  std::string instance_uuid;  // of the server (AboutInfo)
};

class Inventory {
 public:
  explicit Inventory(InventoryOptions options) : options_(std::move(options)) {}
  const InventoryOptions& options() const { return options_; }

  static MoRef RootFolder() { return {"Folder", "ha-folder-root"}; }
  static MoRef VmFolder() { return {"Folder", "ha-folder-vm"}; }
  static MoRef DatacenterRef() { return {"Datacenter", "ha-datacenter"}; }
  MoRef DatastoreRef() const { return {"Datastore", options_.datastore_name}; }
  static MoRef VmRef(const std::string& name) { return {"VirtualMachine", "vm-" + name}; }
  static MoRef SnapshotRef(const std::string& vm, uint32_t uid);
  // The VM of a VirtualMachine moref, or of a snapshot moref with its uid.
  static std::optional<std::string> VmOf(const MoRef& ref);
  static std::optional<std::pair<std::string, uint32_t>> SnapshotOf(const MoRef& ref);

  // The ServiceContent (RetrieveServiceContent's answer).
  Value ServiceContent() const;
  // Every property of an inventory object (the fields of the returned value); a fault for an
  // object that does not exist.
  FaultOr<Value> Properties(const MoRef& obj) const;
  // The child entities of a folder or datacenter (for container views and traversals).
  std::vector<MoRef> Children(const MoRef& container) const;
  std::vector<MoRef> Vms() const;

  // "[datastore1] vm/vm.vmx" for a path relative to the datastore root.
  std::string DatastorePath(const std::string& relative) const;
  // The datastore-relative path of "[name] path"; kInvalidArgument for another datastore or a
  // path that leaves the root ("..", absolute).
  Result<std::string> RelativePath(std::string_view datastore_path) const;

  Result<host::Datastore> OpenDatastore() const;
  // The VM, opened under its lock; kNotFound names the moref.
  Result<std::unique_ptr<host::Vm>> OpenVm(const std::string& name) const;

 private:
  Value VmProperties(host::Vm& vm) const;
  FaultOr<Value> VmConfig(host::Vm& vm, host::SnapshotSel snap) const;
  Value SnapshotTree(const host::Vm& vm, const host::Snapshot& s) const;

  InventoryOptions options_;
};

}  // namespace vmbackup::vsphere_api
