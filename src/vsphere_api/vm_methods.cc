// The methods of VirtualMachine, VirtualMachineSnapshot, the VM folder and the
// AuthorizationManager: snapshots, power, change tracking, registration, power-on blocks, and
// QueryChangedDiskAreas. Long operations run as tasks (tasks.h) on the VM under its lock.
#include "base/strings.h"
#include "vsphere_api/service.h"

namespace vmbackup::vsphere_api {
namespace {

using xml::Node;

bool True(Node n) { return n.text() == "true" || n.text() == "1"; }

Fault PowerFault(const std::string& vm, bool on, const char* requested) {
  return InvalidPowerStateFault(
      "The attempted operation cannot be performed in the current state (Powered " +
          std::string(on ? "on" : "off") + ") of " + vm + ".",
      requested, on ? "poweredOn" : "poweredOff");
}

FaultOr<Value> Done(const Status& s, const MoRef& obj) {
  if (!s.ok()) return FaultOf(s, obj);
  return Value();
}

// Deletes `uid` and, with `children`, its subtree first (leaves before their parents).
Status DeleteSnapshotTree(host::Vm& vm, uint32_t uid, bool children) {
  if (children) {
    for (uint32_t c : vm.snapshots().Children(uid))
      VMBACKUP_RETURN_IF_ERROR(DeleteSnapshotTree(vm, c, true));
  }
  return vm.DeleteSnapshot(uid);
}

}  // namespace

FaultOr<std::string> Service::StartTask(const Session& s, const std::string& vm,
                                        const std::string& description, Tasks::Work work) {
  FaultOr<MoRef> task =
      tasks_.Start(description, Inventory::VmRef(vm), vm, s.user, std::move(work));
  if (!task.ok()) return task.fault();
  return Value::Ref(*task).Xml("returnval", false);
}

FaultOr<std::string> Service::VmMethod(const SoapRequest& r, const Session& s) {
  const MoRef self = r.this_ref;
  auto name_opt = Inventory::VmOf(self);
  if (!name_opt || Inventory::SnapshotOf(self)) return ManagedObjectNotFoundFault(self);
  const std::string name = *name_opt;
  const std::string& m = r.method;
  // A task of this VM holds its lock: the answer is TaskInProgress now, not after it.
  if (m != "QueryChangedDiskAreas") {
    if (auto running = tasks_.Running(Inventory::VmRef(name)))
      return TaskInProgressFault("Another task is already in progress on " + name + ".", *running);
  }
  {
    auto vm = inventory_.OpenVm(name);
    if (!vm) return ManagedObjectNotFoundFault(self);
  }
  if (m == "QueryChangedDiskAreas") return QueryChangedDiskAreas(r, name);
  auto with_vm = [this, name, self](auto op) -> Tasks::Work {
    return [this, name, self, op]() -> FaultOr<Value> {
      auto vm = inventory_.OpenVm(name);
      if (!vm) return ManagedObjectNotFoundFault(self);
      return op(**vm);
    };
  };
  if (m == "CreateSnapshot_Task") {
    const std::string snap_name = r.Arg("name").text();
    host::SnapshotOptions o;
    o.description = r.Arg("description").text();
    o.quiesce = True(r.Arg("quiesce"));
    const bool memory = True(r.Arg("memory"));
    if (snap_name.empty()) return InvalidArgumentFault("a snapshot needs a name", "name");
    return StartTask(
        s, name, "VirtualMachine.createSnapshot", with_vm([=](host::Vm& vm) -> FaultOr<Value> {
          if (memory && vm.vmx().powered_on())
            return Fault{"NotSupported", "vmhost takes no memory snapshots (memory=false)", ""};
          auto snap = vm.CreateSnapshot(snap_name, o);
          if (!snap) return FaultOf(snap.error(), self);
          return Value::Ref(Inventory::SnapshotRef(vm.name(), snap->uid));
        }));
  }
  if (m == "RemoveAllSnapshots_Task") {
    return StartTask(s, name, "VirtualMachine.removeAllSnapshots",
                     with_vm([=](host::Vm& vm) { return Done(vm.DeleteAllSnapshots(), self); }));
  }
  if (m == "ConsolidateVMDisks_Task") {
    return StartTask(s, name, "VirtualMachine.consolidateDisks",
                     with_vm([=](host::Vm& vm) { return Done(vm.Consolidate(), self); }));
  }
  if (m == "RevertToCurrentSnapshot_Task") {
    return StartTask(s, name, "VirtualMachine.revertToCurrentSnapshot",
                     with_vm([=](host::Vm& vm) -> FaultOr<Value> {
                       if (vm.vmx().powered_on()) return PowerFault(name, true, "poweredOff");
                       if (!vm.snapshots().current)
                         return Fault{"NotFound", name + " has no current snapshot", ""};
                       return Done(vm.RevertToSnapshot(*vm.snapshots().current), self);
                     }));
  }
  if (m == "ReconfigVM_Task") {
    Node spec = r.Arg("spec");
    std::optional<bool> cbt;
    std::vector<std::pair<std::string, std::string>> extra;
    for (Node field : spec.children()) {
      if (field.name() == "changeTrackingEnabled") {
        cbt = True(field);
      } else if (field.name() == "extraConfig") {
        extra.emplace_back(field.child("key").text(), field.child("value").text());
      } else if (field.name() != "changeVersion") {
        return Fault{
            "NotSupported",
            "vmhost reconfigures only changeTrackingEnabled and extraConfig, not " + field.name(),
            ""};
      }
    }
    return StartTask(
        s, name, "VirtualMachine.reconfigure", with_vm([=](host::Vm& vm) -> FaultOr<Value> {
          for (const auto& [key, value] : extra) {
            Status st = vm.SetExtraConfig(key, value);
            if (!st.ok()) return InvalidArgumentFault(st.message(), "extraConfig");
          }
          if (!cbt) return Value();
          return Done(*cbt ? vm.EnableChangeTracking() : vm.DisableChangeTracking(), self);
        }));
  }
  if (m == "PowerOnVM_Task") {
    return StartTask(
        s, name, "VirtualMachine.powerOn", with_vm([=](host::Vm& vm) -> FaultOr<Value> {
          if (vm.vmx().powered_on()) return PowerFault(name, true, "poweredOn");
          if (!vm.vmx().power_on_block().empty()) {
            return Fault{"MethodDisabled",
                         "PowerOnVM_Task is disabled on " + name + ": " + vm.vmx().power_on_block(),
                         "<source>" + xml::Escape(vm.vmx().power_on_block()) + "</source>"};
          }
          return Done(vm.PowerOn(), self);
        }));
  }
  if (m == "PowerOffVM_Task") {
    return StartTask(s, name, "VirtualMachine.powerOff",
                     with_vm([=](host::Vm& vm) -> FaultOr<Value> {
                       if (!vm.vmx().powered_on()) return PowerFault(name, false, "poweredOff");
                       return Done(vm.PowerOff(false), self);
                     }));
  }
  if (m == "Destroy_Task") {
    return StartTask(s, name, "VirtualMachine.destroy", [this, name, self]() -> FaultOr<Value> {
      auto ds = inventory_.OpenDatastore();
      if (!ds) return FaultOf(ds.error(), self);
      Status st = ds->DeleteVm(name);
      if (st.code() == ErrorCode::kFailedPrecondition) return PowerFault(name, true, "poweredOff");
      return Done(st, self);
    });
  }
  return MethodNotFoundFault(self, m);
}

FaultOr<std::string> Service::SnapshotMethod(const SoapRequest& r, const Session& s) {
  const MoRef self = r.this_ref;
  auto snap = Inventory::SnapshotOf(self);
  if (!snap) return ManagedObjectNotFoundFault(self);
  const auto [name, uid] = *snap;
  if (auto running = tasks_.Running(Inventory::VmRef(name)))
    return TaskInProgressFault("Another task is already in progress on " + name + ".", *running);
  {
    auto vm = inventory_.OpenVm(name);
    if (!vm || !(*vm)->snapshots().Find(uid)) return ManagedObjectNotFoundFault(self);
  }
  auto with_snapshot = [this, name = name, uid = uid, self](auto op) -> Tasks::Work {
    return [this, name, uid, self, op]() -> FaultOr<Value> {
      auto vm = inventory_.OpenVm(name);
      if (!vm || !(*vm)->snapshots().Find(uid)) return ManagedObjectNotFoundFault(self);
      return op(**vm);
    };
  };
  if (r.method == "RemoveSnapshot_Task") {
    const bool children = True(r.Arg("removeChildren"));
    return StartTask(s, name, "VirtualMachine.removeSnapshot",
                     with_snapshot([=, uid = uid](host::Vm& vm) {
                       return Done(DeleteSnapshotTree(vm, uid, children), self);
                     }));
  }
  if (r.method == "RevertToSnapshot_Task") {
    return StartTask(s, name, "VirtualMachine.revert",
                     with_snapshot([=, name = name, uid = uid](host::Vm& vm) -> FaultOr<Value> {
                       // vmhost reverts only powered-off VMs: a running guest would lose its
                       // state without a memory snapshot to return to.
                       if (vm.vmx().powered_on()) return PowerFault(name, true, "poweredOff");
                       return Done(vm.RevertToSnapshot(uid), self);
                     }));
  }
  return MethodNotFoundFault(self, r.method);
}

FaultOr<std::string> Service::FolderMethod(const SoapRequest& r, const Session& s) {
  if (r.this_ref != Inventory::VmFolder() || r.method != "RegisterVM_Task") {
    if (r.this_ref.value.rfind("ha-folder-", 0) != 0) return ManagedObjectNotFoundFault(r.this_ref);
    return MethodNotFoundFault(r.this_ref, r.method);
  }
  if (True(r.Arg("asTemplate"))) return Fault{"NotSupported", "vmhost has no templates", ""};
  auto rel = inventory_.RelativePath(r.Arg("path").text());
  if (!rel) return InvalidArgumentFault(rel.error().message(), "path");
  const auto parts = Split(*rel, '/');
  if (parts.size() != 2 || parts[1] != parts[0] + ".vmx" || !host::ValidateVmName(parts[0]).ok()) {
    return InvalidArgumentFault("vmhost registers a VM as [" + inventory_.options().datastore_name +
                                    "] NAME/NAME.vmx, not " + r.Arg("path").text(),
                                "path");
  }
  const std::string name = parts[0];
  if (Node n = r.Arg("name"); n && !n.text().empty() && n.text() != name) {
    return InvalidArgumentFault("vmhost names a VM after its folder: " + name + ", not " + n.text(),
                                "name");
  }
  const MoRef vm_ref = Inventory::VmRef(name);
  return StartTask(s, name, "Folder.registerVm", [this, name, vm_ref]() -> FaultOr<Value> {
    auto vm = inventory_.OpenVm(name);
    if (!vm) {
      return FileFault("cannot register " + name + ": " + vm.error().message(),
                       inventory_.DatastorePath(name + "/" + name + ".vmx"));
    }
    auto disks = (*vm)->Disks();
    if (!disks) return FaultOf(disks.error(), vm_ref);
    return Value::Ref(vm_ref);
  });
}

FaultOr<std::string> Service::AuthorizationMethod(const SoapRequest& r) {
  if (r.this_ref.value != "ha-authmgr") return ManagedObjectNotFoundFault(r.this_ref);
  const bool disable = r.method == "DisableMethods";
  if (!disable && r.method != "EnableMethods") return MethodNotFoundFault(r.this_ref, r.method);
  const std::string source = r.Arg("sourceId").text();
  std::string reason = r.Arg("reason").text();
  for (Node m : r.call.children("method")) {
    if (m.child("reasonId")) reason = m.child("reasonId").text();
    // 6.x sends DisabledMethodRequest {method, reasonId}; older clients a plain string.
    const std::string method = m.child("method") ? m.child("method").text() : m.text();
    if (method != "PowerOnVM_Task")
      return InvalidArgumentFault("vmhost can disable only PowerOnVM_Task, not " + method,
                                  "method");
  }
  for (Node e : r.call.children("entity")) {
    const MoRef ref{e.attr("type").value_or(""), e.text()};
    auto name = Inventory::VmOf(ref);
    if (ref.type != "VirtualMachine" || !name || Inventory::SnapshotOf(ref))
      return ManagedObjectNotFoundFault(ref);
    auto vm = inventory_.OpenVm(*name);
    if (!vm) return ManagedObjectNotFoundFault(ref);
    const std::string why = !reason.empty()   ? reason
                            : !source.empty() ? "disabled by " + source
                                              : "disabled through the vSphere API";
    Status st = (*vm)->SetPowerOnBlock(disable ? why : "");
    if (!st.ok()) return FaultOf(st, ref);
  }
  return std::string();
}

FaultOr<std::string> Service::QueryChangedDiskAreas(const SoapRequest& r, const std::string& name) {
  const MoRef self = r.this_ref;
  auto vm = inventory_.OpenVm(name);
  if (!vm) return ManagedObjectNotFoundFault(self);
  host::SnapshotSel snap;
  if (Node sn = r.Arg("snapshot")) {
    const MoRef sref{sn.attr("type").value_or(""), sn.text()};
    auto s = Inventory::SnapshotOf(sref);
    if (!s || s->first != name || !(*vm)->snapshots().Find(s->second))
      return ManagedObjectNotFoundFault(sref);
    snap = s->second;
  }
  auto key = ParseUint(r.Arg("deviceKey").text());
  auto start = ParseUint(r.Arg("startOffset").text());
  if (!key) return InvalidArgumentFault("deviceKey is not a number", "deviceKey");
  if (!start) return InvalidArgumentFault("startOffset is not a number", "startOffset");
  auto disks = (*vm)->vmx().Disks();
  if (!disks) return FaultOf(disks.error(), self);
  std::optional<size_t> index;
  for (size_t i = 0; i < disks->size(); ++i)
    if (uint64_t((*disks)[i].device_key) == *key) index = i;
  if (!index)
    return InvalidArgumentFault(
        StrFormat("%s has no disk with key %llu", name.c_str(), (unsigned long long)*key),
        "deviceKey");
  const std::string change_id = r.Arg("changeId").text();
  if (!(*vm)->vmx().cbt_enabled() && change_id != "*") {
    return FileFault("change tracking is not enabled on " + name,
                     inventory_.DatastorePath(name + "/" + (*disks)[*index].file_name));
  }
  auto areas = (*vm)->QueryChangedDiskAreas(*index, snap, *start, change_id);
  if (!areas) {
    const Status& e = areas.error();
    if (e.code() == ErrorCode::kNotFound) {
      // An unknown or invalidated change id: vSphere's FileFault, which means "back up in
      // full" to a client.
      return FileFault(e.message(),
                       inventory_.DatastorePath(name + "/" + (*disks)[*index].file_name));
    }
    if (e.code() == ErrorCode::kFailedPrecondition || e.code() == ErrorCode::kInvalidArgument)
      return InvalidArgumentFault(e.message(), "changeId");
    return FaultOf(e, self);
  }
  Value v = Value::Object("DiskChangeInfo");
  v.Set("startOffset", Value::Long(int64_t(areas->start_offset)))
      .Set("length", Value::Long(int64_t(areas->length)));
  Value list = Value::Array("DiskChangeExtent");
  for (const Extent& e : areas->areas) {
    Value x = Value::Object("DiskChangeExtent");
    x.Set("start", Value::Long(int64_t(e.offset))).Set("length", Value::Long(int64_t(e.length)));
    list.Add(x);
  }
  v.Set("changedArea", list);
  return v.Xml("returnval", false);
}

}  // namespace vmbackup::vsphere_api
