#include "hv/vsphere/vsphere_driver.h"

#include <functional>

#include "base/strings.h"
#include "format/vmdk/disk.h"
#include "hv/vsphere/http_file.h"
#include "hv/vsphere/nbd_endpoint.h"
#include "io/posix_file.h"
#include "nbd/nbd_disk.h"

namespace vmbackup::hv::vsphere {
namespace {

using xml::Escape;
using xml::Node;

// The extraConfig key that says why a VM may not be powered on (SetPowerOnBlock).
constexpr const char* kPowerOnBlockKey = "vmbackup.powerOnBlocked";

std::string El(const char* name, const std::string& text) {
  return std::string("<") + name + ">" + Escape(text) + "</" + name + ">";
}

// The VirtualDisk devices of an ArrayOfVirtualDevice.
std::vector<Node> VirtualDisks(Node devices) {
  std::vector<Node> out;
  for (Node d : devices.children("VirtualDevice"))
    if (d.xsi_type() == "VirtualDisk") out.push_back(d);
  return out;
}

Node DiskByKey(Node devices, int key) {
  for (Node d : VirtualDisks(devices))
    if (d.child("key").text() == std::to_string(key)) return d;
  return Node();
}

uint64_t Capacity(Node disk) {
  if (auto b = ParseUint(disk.child("capacityInBytes").text()); b && *b > 0) return *b;
  auto kb = ParseUint(disk.child("capacityInKB").text());
  return kb ? *kb * 1024 : 0;
}

// A disk opened through the VMDK library (over local files for san, HTTP for https) or an NBD
// endpoint (nbd, nbdssl).
class BlockAccess final : public DiskAccess {
 public:
  BlockAccess(std::unique_ptr<io::BlockWriter> disk, TransportMode mode, std::string name,
              bool concurrent)
      : disk_(std::move(disk)), mode_(mode), name_(std::move(name)), concurrent_(concurrent) {}
  uint64_t size() const override { return disk_->size(); }
  std::string name() const override { return name_; }
  TransportMode transport() const override { return mode_; }
  // Flat chains read without state, over local files (pread) or HttpFile's connection pool.
  bool concurrent_reads() const override { return concurrent_; }
  // Over https, 8 MiB ranges: vcsim's file service spent 2.6 CPU seconds serving 2 GiB in
  // 2 MiB ranges and 2.0 in 8 MiB ones, CPU the backup needs on a small proxy.
  uint64_t preferred_read_size() const override {
    return mode_ == TransportMode::kHttps ? uint64_t(8) << 20 : 0;
  }
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
  std::unique_ptr<io::BlockWriter> disk_;
  TransportMode mode_;
  std::string name_;
  bool concurrent_;
};

}  // namespace

Result<std::vector<DiskInfo>> ParseVirtualDisks(Node devices, bool cbt_enabled) {
  std::vector<DiskInfo> disks;
  for (Node d : VirtualDisks(devices)) {
    DiskInfo di;
    auto key = ParseUint(d.child("key").text());
    if (!key || *key > 0x7fffffff)
      return ProtocolError("vSphere: a VirtualDisk without a valid key");
    di.device_key = int(*key);
    di.capacity = Capacity(d);
    di.label = d.path("deviceInfo/label").text();
    di.backing_path = d.path("backing/fileName").text();
    di.uuid = d.path("backing/uuid").text();
    di.cbt_enabled = cbt_enabled;
    for (const DiskInfo& other : disks) {
      if (other.device_key == di.device_key)
        return ProtocolError(StrFormat("vSphere: two VirtualDisks with key %d", di.device_key));
    }
    disks.push_back(std::move(di));
  }
  std::sort(disks.begin(), disks.end(),
            [](const DiskInfo& x, const DiskInfo& y) { return x.device_key < y.device_key; });
  return disks;
}

Result<ChangedAreas> ParseChangedAreas(Node rv) {
  ChangedAreas out;
  auto so = ParseUint(rv.child("startOffset").text());
  auto len = ParseUint(rv.child("length").text());
  if (!so || !len) {
    return ProtocolError("vSphere: QueryChangedDiskAreas answered without startOffset/length");
  }
  out.start_offset = *so;
  out.length = *len;
  for (Node a : rv.children("changedArea")) {
    auto s = ParseUint(a.child("start").text());
    auto l = ParseUint(a.child("length").text());
    if (!s || !l) return ProtocolError("vSphere: a changedArea without start/length");
    out.areas.push_back({*s, *l});
  }
  return out;
}

Result<std::unique_ptr<VsphereDriver>> VsphereDriver::Connect(const std::string& uri,
                                                              const DriverOptions& options) {
  std::unique_ptr<VsphereDriver> d(new VsphereDriver());
  VMBACKUP_ASSIGN_OR_RETURN(d->source_, ParseSourceUri(uri));
  d->uri_ = uri;
  d->options_ = options;
  if (options.password.empty()) {
    return InvalidArgumentError("vSphere " + d->source_.host +
                                ": no password (--password-file, VMBACKUP_VSPHERE_PASSWORD, or a "
                                "terminal to ask on)");
  }
  VimClient::Options vo;
  vo.url = d->source_.BaseUrl();
  vo.user = d->source_.user;
  vo.password = options.password;
  vo.tls.ca_file = d->source_.ca_file;
  vo.tls.thumbprint = d->source_.thumbprint;
  vo.tls.trust_hint =
      "pin it with thumbprint=SHA256:... (vmbackup vsphere thumbprint HOST prints it) or give its "
      "CA";
  vo.timeout_seconds = options.timeout_seconds;
  VMBACKUP_ASSIGN_OR_RETURN(d->client_, VimClient::Connect(vo));
  return d;
}

VsphereDriver::~VsphereDriver() = default;

Status VsphereDriver::RunTask(const MoRef& target, const std::string& method,
                              const std::string& args, const std::string& what, MoRef* result) {
  VMBACKUP_ASSIGN_OR_RETURN(auto doc, client_->Invoke(method, target, args));
  MoRef task = MoRef::From(VimClient::ReturnVal(*doc));
  if (task.empty()) return ProtocolError("vSphere " + what + ": " + method + " returned no task");
  VMBACKUP_ASSIGN_OR_RETURN(auto done,
                            client_->WaitForTask(task, what, options_.task_limit_seconds));
  if (result) *result = MoRef::From(done.result);
  return Status::Ok();
}

Result<std::string> VsphereDriver::Datacenter() {
  if (!datacenter_.empty()) return datacenter_;
  if (!source_.datacenter.empty()) return datacenter_ = source_.datacenter;
  VMBACKUP_ASSIGN_OR_RETURN(PropertyAnswer a, client_->RetrieveAll("Datacenter", {"name"}));
  if (a.objects.size() != 1) {
    return InvalidArgumentError(StrFormat(
        "vSphere %s has %zu datacenters: name one in the source URI (vsphere://USER@HOST/DC)",
        source_.host.c_str(), a.objects.size()));
  }
  return datacenter_ = a.objects[0].Get("name").text();
}

Result<std::vector<std::string>> VsphereDriver::ListVms() {
  VMBACKUP_ASSIGN_OR_RETURN(PropertyAnswer a, client_->RetrieveAll("VirtualMachine", {"name"}));
  std::vector<std::string> names;
  for (const auto& o : a.objects) {
    names.push_back(o.Get("name").text());
    vm_refs_[names.back()] = o.obj;
  }
  std::sort(names.begin(), names.end());
  return names;
}

Result<MoRef> VsphereDriver::FindVm(std::string_view name) {
  const std::string n(name);
  if (!source_.datacenter.empty()) {
    auto r = client_->FindByInventoryPath(source_.datacenter + "/vm/" + n);
    if (r) return vm_refs_[n] = *r;
    if (r.error().code() != ErrorCode::kNotFound) return r.error();
  }
  VMBACKUP_ASSIGN_OR_RETURN(PropertyAnswer a, client_->RetrieveAll("VirtualMachine", {"name"}));
  std::vector<MoRef> found;
  for (const auto& o : a.objects)
    if (o.Get("name").text() == n) found.push_back(o.obj);
  if (found.empty()) return NotFoundError("vSphere " + source_.host + " has no VM named " + n);
  if (found.size() > 1) {
    return InvalidArgumentError(
        StrFormat("vSphere %s has %zu VMs named %s: name the datacenter "
                  "in the source URI",
                  source_.host.c_str(), found.size(), n.c_str()));
  }
  return vm_refs_[n] = found[0];
}

Result<MoRef> VsphereDriver::VmRef(const VmInfo& vm) {
  auto it = vm_refs_.find(vm.name);
  if (it != vm_refs_.end()) return it->second;
  return FindVm(vm.name);
}

Result<VmInfo> VsphereDriver::GetVm(std::string_view name) {
  VMBACKUP_ASSIGN_OR_RETURN(MoRef ref, FindVm(name));
  VMBACKUP_ASSIGN_OR_RETURN(
      PropertyAnswer a, client_->RetrieveProperties(
                            "VirtualMachine", {ref},
                            {"name", "config.uuid", "config.instanceUuid", "config.hardware.device",
                             "config.changeTrackingEnabled", "config.files.vmPathName",
                             "runtime.powerState", "config.extraConfig", "disabledMethod"}));
  if (a.objects.empty()) return NotFoundError("vSphere: VM " + std::string(name) + " vanished");
  const ObjectContent& o = a.objects[0];
  VmInfo vm;
  vm.name = o.Get("name").text();
  vm.id = o.Get("config.instanceUuid").text();
  if (vm.id.empty()) vm.id = o.Get("config.uuid").text();
  vm.power =
      o.Get("runtime.powerState").text() == "poweredOff" ? PowerState::kOff : PowerState::kOn;
  const bool cbt = o.Get("config.changeTrackingEnabled").text() == "true";
  for (Node m : o.Get("disabledMethod").children("string")) {
    if (m.text() != "PowerOnVM_Task") continue;
    vm.power_on_block = "PowerOnVM_Task is disabled";
    for (Node opt : o.Get("config.extraConfig").children("OptionValue")) {
      if (opt.child("key").text() == kPowerOnBlockKey && !opt.child("value").text().empty())
        vm.power_on_block = opt.child("value").text();
    }
  }
  VMBACKUP_ASSIGN_OR_RETURN(vm.disks, ParseVirtualDisks(o.Get("config.hardware.device"), cbt));
  // The configuration file, kept with the point for restores to a new VM.
  if (auto vmx = ParseDatastorePath(o.Get("config.files.vmPathName").text())) {
    auto text = DownloadFile(*vmx, 4 << 20);
    if (text) vm.config = std::move(*text);
  }
  return vm;
}

Result<std::string> VsphereDriver::DownloadFile(const DatastorePath& path, size_t limit) {
  VMBACKUP_ASSIGN_OR_RETURN(const std::string url, FolderUrl(path));
  VMBACKUP_ASSIGN_OR_RETURN(
      auto c, http::Client::Create(source_.BaseUrl(), client_->tls(), options_.timeout_seconds));
  c->set_cookies(client_->cookies());
  VMBACKUP_ASSIGN_OR_RETURN(http::Response r, c->Send({"GET", url, {}, ""}));
  if (r.status != 200) {
    return IOError(StrFormat("vSphere: GET %s answered HTTP %ld", path.Text().c_str(), r.status));
  }
  if (r.body.size() > limit) return CorruptionError(path.Text() + " is too large");
  return r.body;
}

Status VsphereDriver::EnableChangeTracking(const VmInfo& vm) {
  VMBACKUP_ASSIGN_OR_RETURN(MoRef ref, VmRef(vm));
  VMBACKUP_RETURN_IF_ERROR(RunTask(
      ref, "ReconfigVM_Task", "<spec><changeTrackingEnabled>true</changeTrackingEnabled></spec>",
      "enable change tracking of " + vm.name));
  // The setting takes effect at the next stun/unstun: a snapshot create and delete.
  MoRef snap;
  VMBACKUP_RETURN_IF_ERROR(RunTask(
      ref, "CreateSnapshot_Task",
      El("name", "vmbackup-cbt-activate") + "<memory>false</memory><quiesce>false</quiesce>",
      "activate change tracking of " + vm.name, &snap));
  return RunTask(snap, "RemoveSnapshot_Task",
                 "<removeChildren>false</removeChildren><consolidate>true</consolidate>",
                 "activate change tracking of " + vm.name);
}

Status VsphereDriver::ResetChangeTracking(const VmInfo& vm) {
  VMBACKUP_ASSIGN_OR_RETURN(MoRef ref, VmRef(vm));
  VMBACKUP_RETURN_IF_ERROR(RunTask(
      ref, "ReconfigVM_Task", "<spec><changeTrackingEnabled>false</changeTrackingEnabled></spec>",
      "reset change tracking of " + vm.name));
  return EnableChangeTracking(vm);
}

Status VsphereDriver::SetPowerOnBlock(const VmInfo& vm, const std::string& why) {
  VMBACKUP_ASSIGN_OR_RETURN(MoRef ref, VmRef(vm));
  const MoRef auth = client_->authorization_manager();
  if (auth.empty())
    return NotSupportedError("vSphere " + source_.host + " has no AuthorizationManager");
  // The reason travels in extraConfig (vSphere keeps no reason with a disabled method that a
  // client can read back), and the block itself is AuthorizationManager.DisableMethods, the
  // way VADP tools keep a VM under restore from being powered on.
  VMBACKUP_RETURN_IF_ERROR(RunTask(ref, "ReconfigVM_Task",
                                   "<spec><extraConfig>" + El("key", kPowerOnBlockKey) +
                                       "<value xsi:type=\"xsd:string\">" + Escape(why) +
                                       "</value></extraConfig></spec>",
                                   "record why " + vm.name + " may not be powered on"));
  const std::string method =
      why.empty() ? El("method", "PowerOnVM_Task")
                  : "<method>" + El("method", "PowerOnVM_Task") + El("reasonId", why) + "</method>";
  return client_
      ->Invoke(why.empty() ? "EnableMethods" : "DisableMethods", auth,
               ref.Xml("entity") + method + El("sourceId", "vmbackup"))
      .status()
      .WithContext((why.empty() ? "allow " : "block ") + vm.name + " to power on");
}

Result<std::vector<SnapshotRef>> VsphereDriver::ListSnapshots(const VmInfo& vm) {
  VMBACKUP_ASSIGN_OR_RETURN(MoRef ref, VmRef(vm));
  VMBACKUP_ASSIGN_OR_RETURN(PropertyAnswer a,
                            client_->RetrieveProperties("VirtualMachine", {ref}, {"snapshot"}));
  std::vector<SnapshotRef> out;
  if (a.objects.empty()) return out;
  // The tree, flattened: each VirtualMachineSnapshotTree and its childSnapshotList.
  std::function<void(Node)> walk = [&](Node tree) {
    SnapshotRef s;
    s.id = MoRef::From(tree.child("snapshot")).value;
    s.name = tree.child("name").text();
    s.achieved =
        tree.child("quiesced").text() == "true" ? Consistency::kFileSystem : Consistency::kCrash;
    out.push_back(s);
    for (Node c : tree.children("childSnapshotList")) walk(c);
  };
  for (Node t : a.objects[0].Get("snapshot").children("rootSnapshotList")) walk(t);
  return out;
}

Status VsphereDriver::ConsolidateIfNeeded(const VmInfo& vm, const MoRef& ref) {
  VMBACKUP_ASSIGN_OR_RETURN(
      PropertyAnswer a,
      client_->RetrieveProperties("VirtualMachine", {ref}, {"runtime.consolidationNeeded"}));
  if (a.objects.empty() || a.objects[0].Get("runtime.consolidationNeeded").text() != "true")
    return Status::Ok();
  // Delta disks left by an earlier snapshot removal: merged before a new snapshot stacks on
  // them, and after our own removal (VMWARE-RULES: snapshot hygiene).
  return RunTask(ref, "ConsolidateVMDisks_Task", "", "consolidate the disks of " + vm.name);
}

Result<SnapshotRef> VsphereDriver::CreateSnapshot(const VmInfo& vm, std::string_view name,
                                                  const SnapshotOptions& options) {
  VMBACKUP_ASSIGN_OR_RETURN(MoRef ref, VmRef(vm));
  VMBACKUP_RETURN_IF_ERROR(ConsolidateIfNeeded(vm, ref));
  auto args = [&](bool quiesce) {
    return El("name", std::string(name)) + El("description", options.description) +
           "<memory>false</memory><quiesce>" + (quiesce ? "true" : "false") + "</quiesce>";
  };
  MoRef snap;
  Status s = RunTask(ref, "CreateSnapshot_Task", args(options.quiesce),
                     "snapshot " + std::string(name) + " of " + vm.name, &snap);
  if (!s.ok() && options.quiesce && options.allow_crash_consistent) {
    s = RunTask(ref, "CreateSnapshot_Task", args(false),
                "snapshot " + std::string(name) + " of " + vm.name + " (crash-consistent)", &snap);
  }
  VMBACKUP_RETURN_IF_ERROR(s);
  VMBACKUP_ASSIGN_OR_RETURN(auto all, ListSnapshots(vm));
  for (const SnapshotRef& r : all) {
    if (r.id != snap.value) continue;
    if (options.quiesce && r.achieved == Consistency::kCrash && !options.allow_crash_consistent) {
      RemoveSnapshot(vm, r).IgnoreError();
      return FailedPreconditionError("vSphere: the snapshot of " + vm.name +
                                     " is not quiesced (--allow-crash-consistent accepts that)");
    }
    return r;
  }
  return ProtocolError("vSphere: snapshot " + snap.value + " of " + vm.name +
                       " is not in the VM's snapshot tree");
}

Status VsphereDriver::RemoveSnapshot(const VmInfo& vm, const SnapshotRef& snapshot) {
  VMBACKUP_RETURN_IF_ERROR(
      RunTask({"VirtualMachineSnapshot", snapshot.id}, "RemoveSnapshot_Task",
              "<removeChildren>false</removeChildren><consolidate>true</consolidate>",
              "remove snapshot " + snapshot.name + " of " + vm.name));
  VMBACKUP_ASSIGN_OR_RETURN(MoRef ref, VmRef(vm));
  return ConsolidateIfNeeded(vm, ref);
}

Status VsphereDriver::RevertToSnapshot(const VmInfo& vm, const SnapshotRef& snapshot) {
  return RunTask({"VirtualMachineSnapshot", snapshot.id}, "RevertToSnapshot_Task",
                 "<suppressPowerOn>true</suppressPowerOn>",
                 "revert " + vm.name + " to snapshot " + snapshot.name);
}

Result<PropertyAnswer> VsphereDriver::Devices(const VmInfo& vm, const SnapshotRef* snapshot) {
  if (snapshot) {
    return client_->RetrieveProperties("VirtualMachineSnapshot",
                                       {{"VirtualMachineSnapshot", snapshot->id}},
                                       {"config.hardware.device"});
  }
  VMBACKUP_ASSIGN_OR_RETURN(MoRef ref, VmRef(vm));
  return client_->RetrieveProperties("VirtualMachine", {ref}, {"config.hardware.device"});
}

Result<std::string> VsphereDriver::Backing(const VmInfo& vm, const SnapshotRef* snapshot,
                                           int device_key, std::string_view field) {
  VMBACKUP_ASSIGN_OR_RETURN(PropertyAnswer a, Devices(vm, snapshot));
  Node disk = a.objects.empty() ? Node()
                                : DiskByKey(a.objects[0].Get("config.hardware.device"), device_key);
  if (!disk)
    return NotFoundError(StrFormat("vSphere: %s has no disk %d", vm.name.c_str(), device_key));
  return disk.child("backing").child(field).text();
}

Result<std::string> VsphereDriver::ChangeId(const VmInfo& vm, const SnapshotRef* snapshot,
                                            int device_key) {
  return Backing(vm, snapshot, device_key, "changeId");  // "" where change tracking is off
}

Result<ChangedAreas> VsphereDriver::QueryChangedDiskAreas(const VmInfo& vm,
                                                          const SnapshotRef* snapshot,
                                                          int device_key, uint64_t start_offset,
                                                          std::string_view change_id) {
  VMBACKUP_ASSIGN_OR_RETURN(MoRef ref, VmRef(vm));
  std::string args;
  if (snapshot) args += MoRef{"VirtualMachineSnapshot", snapshot->id}.Xml("snapshot");
  args += El("deviceKey", std::to_string(device_key)) +
          El("startOffset", std::to_string(start_offset)) + El("changeId", std::string(change_id));
  auto doc = client_->Invoke("QueryChangedDiskAreas", ref, args);
  if (!doc) {
    const std::string f = client_->last_fault();
    if (f == "FileFault" || f == "InvalidArgument") {
      return NotFoundError(StrFormat("vSphere does not know change id %.*s of %s disk %d (%s)",
                                     int(change_id.size()), change_id.data(), vm.name.c_str(),
                                     device_key, doc.error().message().c_str()));
    }
    return doc.error();
  }
  return ParseChangedAreas(VimClient::ReturnVal(**doc));
}

Result<std::unique_ptr<DiskAccess>> VsphereDriver::OpenDisk(
    const VmInfo& vm, const SnapshotRef* snapshot, int device_key,
    std::span<const TransportMode> modes, OpenMode mode, std::vector<std::string>* attempts) {
  VMBACKUP_ASSIGN_OR_RETURN(std::string file, Backing(vm, snapshot, device_key, "fileName"));
  VMBACKUP_ASSIGN_OR_RETURN(DatastorePath path, ParseDatastorePath(file));
  uint64_t capacity = 0;
  for (const DiskInfo& d : vm.disks)
    if (d.device_key == device_key) capacity = d.capacity;
  const std::string label = StrFormat("%s disk %d", vm.name.c_str(), device_key);
  std::vector<std::string> tried;
  for (TransportMode m : modes) {
    Status why;
    Result<std::unique_ptr<vmdk::Disk>> disk = UnavailableError("");
    if (m == TransportMode::kSan) {
      auto it = options_.datastore_map.find(path.datastore);
      if (it == options_.datastore_map.end()) {
        why = UnavailableError("datastore " + path.datastore +
                               " is not mapped to a folder here (--datastore-map)");
      } else {
        vmdk::DiskOptions o;
        o.writable = mode == OpenMode::kWrite;
        // A snapshot's own layer is written by a restore (SYSTEM.md 2.2) and the delta above
        // it must stay valid until the revert: its CID stays.
        o.preserve_cid = o.writable && snapshot != nullptr;
        o.confine_to = it->second;
        disk = vmdk::Disk::Open(io::JoinPath(it->second, path.path), o);
        if (!disk) why = disk.error();
      }
    } else if (m == TransportMode::kHttps) {
      if (mode == OpenMode::kWrite) {
        auto up = OpenUpload(vm, snapshot, device_key, label + " (https)");
        if (up) {
          if (attempts) *attempts = tried;
          return up;
        }
        why = up.error();
      } else {
        auto dc = Datacenter();
        if (!dc) {
          why = dc.error();
        } else {
          vmdk::DiskOptions o;
          const std::string base = source_.BaseUrl();
          const http::TlsOptions tls = client_->tls();
          const std::string cookies = client_->cookies();
          const std::string ds = path.datastore, dcname = *dc;
          const double timeout = options_.timeout_seconds;
          VimClient* client = client_.get();  // outlives the disks it opens (driver contract)
          // Paths of the chain are "/<path in the datastore>"; ".." never leaves it because
          // JoinPath resolves them before the opener sees them, and the root stops there.
          o.open_file = [=](const std::string& p,
                            bool) -> Result<std::shared_ptr<io::BlockWriter>> {
            if (p.find("/../") != std::string::npos || p.rfind("/..", 0) == 0)
              return PermissionDeniedError(p + " leaves the datastore");
            const std::string url = "/folder/" + http::UrlEncode(p.substr(1), true) +
                                    "?dcPath=" + http::UrlEncode(dcname) +
                                    "&dsName=" + http::UrlEncode(ds);
            VMBACKUP_ASSIGN_OR_RETURN(
                auto f, HttpFile::Open(base, tls, cookies, url, "[" + ds + "] " + p.substr(1),
                                       timeout, [client](const std::string& refused) {
                                         return client->RenewSession(refused);
                                       }));
            return std::shared_ptr<io::BlockWriter>(std::move(f));
          };
          disk = vmdk::Disk::Open("/" + path.path, o);
          if (!disk) why = disk.error();
        }
      }
    } else if (m == TransportMode::kHotAdd) {
      why = UnavailableError("this proxy is not a VM of that vCenter");
    } else {
      auto nbd = OpenNbd(vm, snapshot, device_key, file, m, mode);
      if (nbd) {
        if (attempts) *attempts = tried;
        return nbd;
      }
      why = nbd.error();
    }
    if (disk) {
      if (capacity != 0 && (*disk)->size() != capacity) {
        why = CorruptionError(StrFormat("%s: the VMDK holds %llu bytes, vSphere says %llu",
                                        file.c_str(), (unsigned long long)(*disk)->size(),
                                        (unsigned long long)capacity));
      } else {
        if (attempts) *attempts = tried;
        const bool concurrent = (*disk)->ConcurrentReads();
        return std::unique_ptr<DiskAccess>(new BlockAccess(
            std::move(*disk), m, label + " (" + std::string(TransportName(m)) + ")", concurrent));
      }
    }
    tried.push_back(std::string(TransportName(m)) + ": " + why.message());
  }
  if (attempts) *attempts = tried;
  std::string all;
  for (const auto& t : tried) all += (all.empty() ? "" : "; ") + t;
  return UnavailableError("no transport could open " + label + ": " + all);
}

Result<std::unique_ptr<DiskAccess>> VsphereDriver::OpenNbd(const VmInfo& vm,
                                                           const SnapshotRef* snapshot,
                                                           int device_key, const std::string& file,
                                                           TransportMode m, OpenMode mode) {
  if (options_.nbd_template.empty())
    return UnavailableError("no NBD endpoint is configured for vSphere disks (--nbd-uri)");
  VMBACKUP_ASSIGN_OR_RETURN(MoRef ref, VmRef(vm));
  NbdEndpointVars v;
  v.vm = vm.name;
  v.vm_moref = ref.value;
  v.key = std::to_string(device_key);
  for (size_t i = 0; i < vm.disks.size(); ++i)
    if (vm.disks[i].device_key == device_key) v.disk = std::to_string(i);
  v.snapshot = snapshot ? snapshot->id : "";
  v.snapshot_name = snapshot ? snapshot->name : "";
  v.file = file;
  v.mode = mode == OpenMode::kRead ? "read" : snapshot ? "restore" : "write";
  VMBACKUP_ASSIGN_OR_RETURN(NbdEndpoint e, ExpandNbdTemplate(options_.nbd_template, v));
  if (m == TransportMode::kNbdSsl && !e.tls)
    return UnavailableError("the --nbd-uri endpoint is not TLS (nbds://...)");
  if (m == TransportMode::kNbd && e.tls)
    return UnavailableError("the --nbd-uri endpoint uses TLS: that is the nbdssl transport");
  // The template is the user's own configuration: it may name local files (TLS certificates).
  nbd::NbdDisk::Options o;
  o.allow_local_files = true;
  auto disk = e.command ? nbd::NbdDisk::ConnectCommand(e.argv, e.Describe())
                        : nbd::NbdDisk::Connect(e.uri, o);
  if (!disk) return disk.error();
  if (mode == OpenMode::kWrite && (*disk)->read_only())
    return PermissionDeniedError(e.Describe() + " is read-only");
  uint64_t capacity = 0;
  for (const DiskInfo& d : vm.disks)
    if (d.device_key == device_key) capacity = d.capacity;
  if (capacity != 0 && (*disk)->size() != capacity) {
    return CorruptionError(StrFormat("%s holds %llu bytes, vSphere says disk %d has %llu",
                                     e.Describe().c_str(), (unsigned long long)(*disk)->size(),
                                     device_key, (unsigned long long)capacity));
  }
  return std::unique_ptr<DiskAccess>(
      new BlockAccess(std::move(*disk), m,
                      StrFormat("%s disk %d (%s)", vm.name.c_str(), device_key,
                                std::string(TransportName(m)).c_str()),
                      false));
}

Status VsphereDriver::DestroyVm(const VmInfo& vm) {
  VMBACKUP_ASSIGN_OR_RETURN(MoRef ref, VmRef(vm));
  return RunTask(ref, "Destroy_Task", "", "destroy " + vm.name);
}

}  // namespace vmbackup::hv::vsphere
