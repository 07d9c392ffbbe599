#include "vsphere_api/inventory.h"

#include <dirent.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <algorithm>

#include "base/strings.h"
#include "format/vmdk/layer.h"
#include "io/posix_file.h"

namespace vmbackup::vsphere_api {
namespace {

using host::SnapshotSel;

Value Refs(const std::vector<MoRef>& refs) {
  Value a = Value::Array("ManagedObjectReference");
  for (const MoRef& r : refs) a.Add(Value::Ref(r));
  return a;
}

Value Strings(const std::vector<std::string>& items) {
  Value a = Value::Array("string");
  for (const auto& s : items) a.Add(Value::String(s));
  return a;
}

Value PowerState(bool on) {
  return Value::Enum("VirtualMachinePowerState", on ? "poweredOn" : "poweredOff");
}

Value FolderProps(const std::string& name, const MoRef& parent, std::vector<MoRef> children,
                  std::vector<std::string> child_types) {
  Value v = Value::Object("Folder");
  v.Set("name", Value::String(name));
  if (!parent.value.empty()) v.Set("parent", Value::Ref(parent));
  v.Set("childEntity", Refs(children));
  v.Set("childType", Strings(child_types));
  v.Set("overallStatus", Value::Enum("ManagedEntityStatus", "green"));
  return v;
}

// The disk's own identity: the base layer's ddb.uuid, as vSphere's backing uuid.
std::string DiskUuid(const host::Vm& vm, const std::string& base) {
  auto layer = vmdk::Layer::Open(io::JoinPath(vm.dir(), base), false, vm.dir());
  if (!layer) return "";
  return (*layer)->descriptor().GetDdb("ddb.uuid").value_or("");
}

bool EndsWith(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string FileType(const std::string& name) {
  if (EndsWith(name, ".vmx")) return "config";
  if (EndsWith(name, ".vmsd")) return "snapshotList";
  if (EndsWith(name, "-flat.vmdk")) return "diskExtent";
  if (EndsWith(name, "-ctk.vmdk")) return "diskDescriptor";
  if (EndsWith(name, ".vmdk")) return "diskDescriptor";
  return "";
}

}  // namespace

MoRef Inventory::SnapshotRef(const std::string& vm, uint32_t uid) {
  return {"VirtualMachineSnapshot", "snapshot-" + vm + "-" + std::to_string(uid)};
}

std::optional<std::string> Inventory::VmOf(const MoRef& ref) {
  if (ref.value.rfind("vm-", 0) == 0 && ref.value.size() > 3) {
    std::string name = ref.value.substr(3);
    if (!host::ValidateVmName(name).ok()) return std::nullopt;
    return name;
  }
  if (auto s = SnapshotOf(ref)) return s->first;
  return std::nullopt;
}

std::optional<std::pair<std::string, uint32_t>> Inventory::SnapshotOf(const MoRef& ref) {
  const std::string& v = ref.value;
  if (v.rfind("snapshot-", 0) != 0) return std::nullopt;
  const size_t dash = v.rfind('-');
  if (dash <= 9) return std::nullopt;
  std::string name = v.substr(9, dash - 9);
  auto uid = ParseUint(v.substr(dash + 1));
  if (!uid || *uid > 0xffffffffu || !host::ValidateVmName(name).ok()) return std::nullopt;
  return std::make_pair(name, uint32_t(*uid));
}

std::string Inventory::DatastorePath(const std::string& relative) const {
  return "[" + options_.datastore_name + "] " + relative;
}

Result<std::string> Inventory::RelativePath(std::string_view text) const {
  const std::string prefix = "[" + options_.datastore_name + "]";
  if (text.substr(0, prefix.size()) != prefix)
    return InvalidArgumentError("'" + std::string(text) + "' is not on datastore " +
                                options_.datastore_name);
  std::string rel(Trim(text.substr(prefix.size())));
  if (rel.empty() || rel[0] == '/' || rel.find('\0') != std::string::npos)
    return InvalidArgumentError("'" + std::string(text) + "' is not a path in the datastore");
  for (const std::string& part : Split(rel, '/'))
    if (part == "..")
      return InvalidArgumentError("'" + std::string(text) + "' leaves the datastore");
  return rel;
}

Result<host::Datastore> Inventory::OpenDatastore() const {
  return host::Datastore::Open(options_.datastore_root);
}

Result<std::unique_ptr<host::Vm>> Inventory::OpenVm(const std::string& name) const {
  VMBACKUP_RETURN_IF_ERROR(host::ValidateVmName(name));
  VMBACKUP_ASSIGN_OR_RETURN(host::Datastore ds, OpenDatastore());
  return ds.OpenVm(name);
}

std::vector<MoRef> Inventory::Vms() const {
  std::vector<MoRef> out;
  auto ds = OpenDatastore();
  if (!ds) return out;
  auto names = ds->ListVms();
  if (!names) return out;
  for (const auto& n : *names) out.push_back(VmRef(n));
  return out;
}

std::vector<MoRef> Inventory::Children(const MoRef& c) const {
  if (c == RootFolder()) return {DatacenterRef()};
  if (c == VmFolder()) return Vms();
  if (c == MoRef{"Folder", "ha-folder-datastore"}) return {DatastoreRef()};
  return {};
}

Value Inventory::ServiceContent() const {
  Value about = Value::Object("AboutInfo");
  about.Set("name", Value::String("vmhost"))
      .Set("fullName", Value::String("vmhost (vmbackup's embedded host) vSphere API " +
                                     std::string(kApiVersion)))
      .Set("vendor", Value::String("vmbackup"))
      .Set("version", Value::String("6.7.0"))
      .Set("build", Value::String("0"))
      .Set("localeVersion", Value::String("INTL"))
      .Set("localeBuild", Value::String("000"))
      .Set("osType", Value::String("linux-x64"))
      .Set("productLineId", Value::String("embeddedEsx"))
      .Set("apiType", Value::String("HostAgent"))
      .Set("apiVersion", Value::String(kApiVersion))
      .Set("instanceUuid", Value::String(options_.instance_uuid))
      .Set("licenseProductName", Value::String("vmhost"))
      .Set("licenseProductVersion", Value::String("6.0"));
  Value c = Value::Object("ServiceContent");
  c.Set("rootFolder", Value::Ref(RootFolder()))
      .Set("propertyCollector", Value::Ref({"PropertyCollector", "ha-property-collector"}))
      .Set("viewManager", Value::Ref({"ViewManager", "ViewManager"}))
      .Set("about", about)
      .Set("sessionManager", Value::Ref({"SessionManager", "ha-sessionmgr"}))
      .Set("authorizationManager", Value::Ref({"AuthorizationManager", "ha-authmgr"}))
      .Set("searchIndex", Value::Ref({"SearchIndex", "ha-searchindex"}))
      .Set("fileManager", Value::Ref({"FileManager", "ha-nfc-file-manager"}))
      .Set("virtualDiskManager", Value::Ref({"VirtualDiskManager", "ha-vdiskmanager"}))
      .Set("taskManager", Value::Ref({"TaskManager", "TaskManager"}));
  return c;
}

FaultOr<Value> Inventory::Properties(const MoRef& obj) const {
  if (obj.type == "ServiceInstance" && obj.value == "ServiceInstance") {
    Value v = Value::Object("ServiceInstance");
    v.Set("content", ServiceContent());
    return v;
  }
  if (obj.type == "Folder") {
    if (obj == RootFolder())
      return FolderProps("Datacenters", {}, Children(obj), {"Folder", "Datacenter"});
    if (obj == VmFolder())
      return FolderProps("vm", DatacenterRef(), Vms(), {"Folder", "VirtualMachine", "VirtualApp"});
    if (obj.value == "ha-folder-host")
      return FolderProps("host", DatacenterRef(), {}, {"Folder", "ComputeResource"});
    if (obj.value == "ha-folder-datastore")
      return FolderProps("datastore", DatacenterRef(), {DatastoreRef()}, {"Folder", "Datastore"});
    if (obj.value == "ha-folder-network")
      return FolderProps("network", DatacenterRef(), {}, {"Folder", "Network"});
  }
  if (obj == DatacenterRef()) {
    Value v = Value::Object("Datacenter");
    v.Set("name", Value::String(options_.datacenter_name))
        .Set("parent", Value::Ref(RootFolder()))
        .Set("vmFolder", Value::Ref(VmFolder()))
        .Set("hostFolder", Value::Ref({"Folder", "ha-folder-host"}))
        .Set("datastoreFolder", Value::Ref({"Folder", "ha-folder-datastore"}))
        .Set("networkFolder", Value::Ref({"Folder", "ha-folder-network"}))
        .Set("datastore", Refs({DatastoreRef()}))
        .Set("overallStatus", Value::Enum("ManagedEntityStatus", "green"));
    return v;
  }
  if (obj == DatastoreRef()) {
    struct statvfs st {};
    ::statvfs(options_.datastore_root.c_str(), &st);
    const int64_t capacity = int64_t(st.f_blocks) * int64_t(st.f_frsize);
    const int64_t free_space = int64_t(st.f_bavail) * int64_t(st.f_frsize);
    const std::string url = "ds:///vmfs/volumes/" + options_.datastore_name + "/";
    Value summary = Value::Object("DatastoreSummary");
    summary.Set("datastore", Value::Ref(obj))
        .Set("name", Value::String(options_.datastore_name))
        .Set("url", Value::String(url))
        .Set("capacity", Value::Long(capacity))
        .Set("freeSpace", Value::Long(free_space))
        .Set("accessible", Value::Bool(true))
        .Set("multipleHostAccess", Value::Bool(false))
        .Set("type", Value::String("VMFS"));
    Value info = Value::Object("DatastoreInfo");
    info.Set("name", Value::String(options_.datastore_name))
        .Set("url", Value::String(url))
        .Set("freeSpace", Value::Long(free_space))
        .Set("maxFileSize", Value::Long(62LL << 40));
    Value v = Value::Object("Datastore");
    v.Set("name", Value::String(options_.datastore_name))
        .Set("parent", Value::Ref({"Folder", "ha-folder-datastore"}))
        .Set("summary", summary)
        .Set("info", info)
        .Set("vm", Refs(Vms()))
        .Set("overallStatus", Value::Enum("ManagedEntityStatus", "green"));
    return v;
  }
  if (obj.type == "VirtualMachine") {
    auto name = VmOf(obj);
    if (!name || SnapshotOf(obj)) return ManagedObjectNotFoundFault(obj);
    auto vm = OpenVm(*name);
    if (!vm) return ManagedObjectNotFoundFault(obj);
    return VmProperties(**vm);
  }
  if (obj.type == "VirtualMachineSnapshot") {
    auto snap = SnapshotOf(obj);
    if (!snap) return ManagedObjectNotFoundFault(obj);
    auto vm = OpenVm(snap->first);
    if (!vm) return ManagedObjectNotFoundFault(obj);
    const host::Snapshot* s = (*vm)->snapshots().Find(snap->second);
    if (!s) return ManagedObjectNotFoundFault(obj);
    FaultOr<Value> config = VmConfig(**vm, snap->second);
    if (!config.ok()) return config.fault();
    std::vector<MoRef> children;
    for (uint32_t c : (*vm)->snapshots().Children(s->uid))
      children.push_back(SnapshotRef(snap->first, c));
    Value v = Value::Object("VirtualMachineSnapshot");
    v.Set("config", *config)
        .Set("childSnapshot", Refs(children))
        .Set("vm", Value::Ref(VmRef(snap->first)));
    return v;
  }
  return ManagedObjectNotFoundFault(obj);
}

FaultOr<Value> Inventory::VmConfig(host::Vm& vm, SnapshotSel snap) const {
  const MoRef self = snap ? SnapshotRef(vm.name(), *snap) : VmRef(vm.name());
  auto disks = vm.Disks();
  if (!disks) return FaultOf(disks.error(), self);
  const host::Vmx& vmx = vm.vmx();
  Value devices = Value::Array("VirtualDevice");
  Value controller = Value::Object("VirtualLsiLogicController");
  Value ctrl_info = Value::Object("Description");
  ctrl_info.Set("label", Value::String("SCSI controller 0"))
      .Set("summary", Value::String("LSI Logic"));
  controller.Set("key", Value::Int(1000))
      .Set("deviceInfo", ctrl_info)
      .Set("busNumber", Value::Int(0));
  devices.Add(controller);
  for (const host::DiskInfo& d : *disks) {
    auto layer = host::LayerFileFor(vmx, vm.snapshots(), vm.name(), d.index, snap);
    if (!layer) return FaultOf(layer.error(), self);
    const std::string folder = vm.name() + "/";
    Value backing = Value::Object("VirtualDiskFlatVer2BackingInfo");
    backing.Set("fileName", Value::String(DatastorePath(folder + *layer)))
        .Set("datastore", Value::Ref(DatastoreRef()))
        .Set("diskMode", Value::String("persistent"))
        .Set("thinProvisioned", Value::Bool(true))
        .Set("uuid", Value::String(d.chain.empty() ? "" : DiskUuid(vm, d.chain.back())));
    if (vmx.cbt_enabled()) {
      auto cid = vm.GetChangeId(d.index, snap);
      if (cid) backing.Set("changeId", Value::String(cid->ToString()));
    }
    Value info = Value::Object("Description");
    info.Set("label", Value::String(StrFormat("Hard disk %zu", d.index + 1)))
        .Set("summary",
             Value::String(StrFormat("%llu KB", (unsigned long long)(d.capacity / 1024))));
    Value disk = Value::Object("VirtualDisk");
    disk.Set("key", Value::Int(d.device_key))
        .Set("deviceInfo", info)
        .Set("backing", backing)
        .Set("controllerKey", Value::Int(1000 + (d.device_key - 2000) / 16))
        .Set("unitNumber", Value::Int((d.device_key - 2000) % 16))
        .Set("capacityInKB", Value::Long(int64_t(d.capacity / 1024)))
        .Set("capacityInBytes", Value::Long(int64_t(d.capacity)));
    devices.Add(disk);
  }
  Value hardware = Value::Object("VirtualHardware");
  hardware.Set("numCPU", Value::Int(1)).Set("memoryMB", Value::Int(256)).Set("device", devices);
  Value files = Value::Object("VirtualMachineFileInfo");
  const std::string dir = DatastorePath(vm.name() + "/");
  files.Set("vmPathName", Value::String(DatastorePath(vm.name() + "/" + vm.name() + ".vmx")))
      .Set("snapshotDirectory", Value::String(dir))
      .Set("suspendDirectory", Value::String(dir))
      .Set("logDirectory", Value::String(dir));
  const std::string uuid = vmx.uuid();
  const std::string instance_uuid = vmx.config().GetOr("vc.uuid", uuid);
  // extraConfig: the .vmx entries of tools and of vmhost itself.
  Value extra = Value::Array("OptionValue");
  for (const auto& [key, value] : vmx.config().entries()) {
    if (key.rfind("vmhost.", 0) != 0 && key.rfind("guestinfo.", 0) != 0 &&
        key.rfind("vmbackup.", 0) != 0)
      continue;
    Value o = Value::Object("OptionValue");
    o.Set("key", Value::String(key)).Set("value", Value::String(value).AsAny());
    extra.Add(o);
  }
  Value c = Value::Object("VirtualMachineConfigInfo");
  c.Set("changeVersion", Value::String("0"))
      .Set("modified", Value::DateTime(0))
      .Set("name", Value::String(vm.name()))
      .Set("guestFullName", Value::String("Other (64-bit)"))
      .Set("version", Value::String("vmx-14"))
      .Set("uuid", Value::String(uuid))
      .Set("instanceUuid", Value::String(instance_uuid))
      .Set("template", Value::Bool(false))
      .Set("guestId", Value::String(vmx.config().GetOr("guestOS", "other-64")))
      .Set("changeTrackingEnabled", Value::Bool(vmx.cbt_enabled()))
      .Set("files", files)
      .Set("hardware", hardware)
      .Set("extraConfig", extra);
  return c;
}

Value Inventory::SnapshotTree(const host::Vm& vm, const host::Snapshot& s) const {
  Value t = Value::Object("VirtualMachineSnapshotTree");
  t.Set("snapshot", Value::Ref(SnapshotRef(vm.name(), s.uid)))
      .Set("vm", Value::Ref(VmRef(vm.name())))
      .Set("name", Value::String(s.name))
      .Set("description", Value::String(s.description))
      .Set("id", Value::Int(s.uid))
      .Set("createTime", Value::DateTime(s.create_time_us))
      .Set("state", PowerState(false))
      .Set("quiesced", Value::Bool(s.consistency != host::Consistency::kCrash))
      .Set("replaySupported", Value::Bool(false));
  Value children = Value::Array("VirtualMachineSnapshotTree");
  for (uint32_t c : vm.snapshots().Children(s.uid)) {
    if (const host::Snapshot* cs = vm.snapshots().Find(c)) children.Add(SnapshotTree(vm, *cs));
  }
  t.Set("childSnapshotList", children);
  return t;
}

Value Inventory::VmProperties(host::Vm& vm) const {
  const host::Vmx& vmx = vm.vmx();
  const host::SnapshotDb& db = vm.snapshots();
  Value v = Value::Object("VirtualMachine");
  v.Set("name", Value::String(vm.name())).Set("parent", Value::Ref(VmFolder()));
  FaultOr<Value> config = VmConfig(vm, std::nullopt);
  if (config.ok()) v.Set("config", *config);
  Value runtime = Value::Object("VirtualMachineRuntimeInfo");
  runtime.Set("connectionState", Value::Enum("VirtualMachineConnectionState", "connected"))
      .Set("powerState", PowerState(vmx.powered_on()))
      .Set("consolidationNeeded", Value::Bool(db.need_consolidate));
  v.Set("runtime", runtime);
  if (!db.snapshots.empty()) {
    Value info = Value::Object("VirtualMachineSnapshotInfo");
    if (db.current) info.Set("currentSnapshot", Value::Ref(SnapshotRef(vm.name(), *db.current)));
    Value roots = Value::Array("VirtualMachineSnapshotTree");
    for (const host::Snapshot& s : db.snapshots)
      if (!s.parent) roots.Add(SnapshotTree(vm, s));
    info.Set("rootSnapshotList", roots);
    v.Set("snapshot", info);
    if (db.current) v.Set("rootSnapshot", Refs({SnapshotRef(vm.name(), *db.current)}));
  }
  // layoutEx: the VM folder's files.
  Value files = Value::Array("VirtualMachineFileLayoutExFileInfo");
  if (DIR* d = ::opendir(vm.dir().c_str())) {
    std::vector<std::string> names;
    while (dirent* e = ::readdir(d)) names.push_back(e->d_name);
    ::closedir(d);
    std::sort(names.begin(), names.end());
    int key = 0;
    for (const std::string& n : names) {
      const std::string type = FileType(n);
      if (type.empty()) continue;
      struct stat st {};
      if (::stat(io::JoinPath(vm.dir(), n).c_str(), &st) != 0) continue;
      Value f = Value::Object("VirtualMachineFileLayoutExFileInfo");
      f.Set("key", Value::Int(key++))
          .Set("name", Value::String(DatastorePath(vm.name() + "/" + n)))
          .Set("type", Value::String(type))
          .Set("size", Value::Long(int64_t(st.st_size)))
          .Set("uniqueSize", Value::Long(int64_t(st.st_blocks) * 512))
          .Set("accessible", Value::Bool(true));
      files.Add(f);
    }
  }
  Value layout = Value::Object("VirtualMachineFileLayoutEx");
  layout.Set("file", files).Set("timestamp", Value::DateTime(NowMicros()));
  v.Set("layoutEx", layout);
  Value summary_config = Value::Object("VirtualMachineConfigSummary");
  summary_config.Set("name", Value::String(vm.name()))
      .Set("template", Value::Bool(false))
      .Set("vmPathName", Value::String(DatastorePath(vm.name() + "/" + vm.name() + ".vmx")))
      .Set("uuid", Value::String(vmx.uuid()))
      .Set("instanceUuid", Value::String(vmx.config().GetOr("vc.uuid", vmx.uuid())));
  Value summary = Value::Object("VirtualMachineSummary");
  summary.Set("vm", Value::Ref(VmRef(vm.name())))
      .Set("runtime", runtime)
      .Set("config", summary_config)
      .Set("overallStatus", Value::Enum("ManagedEntityStatus", "green"));
  v.Set("summary", summary);
  v.Set("datastore", Refs({DatastoreRef()}));
  std::vector<std::string> disabled;
  if (!vmx.power_on_block().empty()) disabled.push_back("PowerOnVM_Task");
  v.Set("disabledMethod", Strings(disabled));
  v.Set("overallStatus", Value::Enum("ManagedEntityStatus", "green"));
  return v;
}

}  // namespace vmbackup::vsphere_api
