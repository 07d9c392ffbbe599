#include "hv/libvirt/libvirt_driver.h"

#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include "base/process.h"
#include "base/strings.h"
#include "base/subprocess.h"
#include "hv/libvirt/image_bitmaps.h"
#include "hv/libvirt/session.h"
#include "io/posix_file.h"
#include "xml/xml.h"

namespace vmbackup::hv::libvirt {
namespace {

constexpr const char* kMetadataNs = "https://vmbackup.dev/libvirt/1";
constexpr const char* kMetadataKey = "vmbackup";

// Creates the folder with exactly `mode` (whatever the umask); an existing one is left as it is.
Status MakeDir(const std::string& path, mode_t mode) {
  if (::mkdir(path.c_str(), mode) != 0) {
    if (errno == EEXIST) return Status::Ok();
    return PosixError("create folder " + path, errno);
  }
  if (::chmod(path.c_str(), mode) != 0) return PosixError("chmod " + path, errno);
  return Status::Ok();
}

// Whether the image at `path` holds bitmap `name`, enabled and consistent ("" when it does;
// otherwise why not). The image must not be open for writing.
std::string BitmapProblem(const std::string& path, const std::string& name) {
  auto bitmaps = ReadImageBitmaps(path);
  if (!bitmaps) return "cannot read " + path + ": " + bitmaps.error().message();
  for (const ImageBitmap& b : *bitmaps) {
    if (b.name != name) continue;
    if (b.in_use)
      return "bitmap " + name + " in " + path + " is inconsistent (QEMU did not close the image)";
    if (!b.enabled) return "bitmap " + name + " in " + path + " is disabled";
    return "";
  }
  if (bitmaps->empty()) return path + " holds no bitmaps";
  return path + " has no bitmap " + name + " (lost, e.g. by a crash of QEMU)";
}

}  // namespace

Result<DomainDesc> LiveDesc(virDomainPtr dom, const std::string& name) {
  const std::string xml = TakeString(virDomainGetXMLDesc(dom, 0));
  if (xml.empty()) return LastError("XML of " + name);
  return ParseDomainXml(xml);
}

int KillOrphanedQemuNbd() {
  int killed = 0;
  DIR* proc = ::opendir("/proc");
  if (!proc) return 0;
  const std::string want = std::string(kQemuNbdOwnerVar) + "=";
  while (dirent* e = ::readdir(proc)) {
    const std::string pid = e->d_name;
    if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
    auto comm = io::ReadSmallFile("/proc/" + pid + "/comm", 64);
    if (!comm || *comm != "qemu-nbd\n") continue;
    auto env = io::ReadSmallFile("/proc/" + pid + "/environ", 1 << 20);
    if (!env) continue;
    for (size_t p = 0; p < env->size();) {
      size_t end = env->find('\0', p);
      if (end == std::string::npos) end = env->size();
      if (env->compare(p, want.size(), want) == 0 &&
          !OwnerAlive(env->substr(p + want.size(), end - p - want.size()))) {
        if (::kill(std::stoi(pid), SIGKILL) == 0) ++killed;
      }
      p = end + 1;
    }
  }
  ::closedir(proc);
  return killed;
}

std::string JobSocketPath(const std::string& dir) { return dir + "/nbd.sock"; }
std::string ScratchPath(const std::string& dir, const std::string& target) {
  return dir + "/scratch-" + target + ".qcow2";
}
std::string MarkerPath(const std::string& dir) { return dir + "/snapshot"; }
std::string MarkerText(const std::string& name, const JobServer& server) {
  return name + "\n" + server.Endpoint() + "\n";
}
std::pair<std::string, std::string> ParseMarker(const std::string& text) {
  std::vector<std::string> lines = Split(text, '\n');
  return {lines.size() > 0 ? lines[0] : "", lines.size() > 1 ? lines[1] : ""};
}

LibvirtDriver::LibvirtDriver(std::string uri, ConnectPtr conn, DriverOptions options)
    : uri_(std::move(uri)), conn_(std::move(conn)), options_(std::move(options)) {}
LibvirtDriver::~LibvirtDriver() = default;

Result<std::unique_ptr<LibvirtDriver>> LibvirtDriver::Connect(const std::string& uri,
                                                              DriverOptions options) {
  std::string target = uri;
  if (uri.rfind("libvirt://", 0) == 0) target = "qemu://" + uri.substr(10);
  if (options.run_dir.empty()) {
    if (const char* env = std::getenv("VMBACKUP_LIBVIRT_RUN_DIR")) {
      options.run_dir = env;
    } else if (::geteuid() == 0) {
      options.run_dir = "/var/lib/vmbackup/libvirt";
    } else if (const char* xdg = std::getenv("XDG_RUNTIME_DIR")) {
      options.run_dir = std::string(xdg) + "/vmbackup-libvirt";
    } else {
      return InvalidArgumentError("libvirt: no run folder; set VMBACKUP_LIBVIRT_RUN_DIR");
    }
  }
  if (options.new_disk_format != "" && options.new_disk_format != "qcow2" &&
      options.new_disk_format != "raw") {
    return InvalidArgumentError("new disks are qcow2 or raw, not " + options.new_disk_format);
  }
  if (options.nbd_port <= 0 || options.nbd_port > 65535 - 9)
    return InvalidArgumentError(StrFormat("NBD port %d is out of range", options.nbd_port));
  VMBACKUP_ASSIGN_OR_RETURN(ConnectPtr conn, libvirt::Connect(target));
  KillOrphanedQemuNbd();  // a killed run's, which would hold images locked
  auto d = std::unique_ptr<LibvirtDriver>(new LibvirtDriver(uri, std::move(conn), options));
  d->remote_host_ = RemoteHost(target);
  return d;
}

Result<DomainPtr> LibvirtDriver::Domain(std::string_view name) {
  virDomainPtr d = virDomainLookupByName(conn_.get(), std::string(name).c_str());
  if (!d) {
    if (LastErrorNumber() == VIR_ERR_NO_DOMAIN)
      return NotFoundError("libvirt has no domain " + std::string(name) + " at " + uri_);
    return LastError("look up domain " + std::string(name));
  }
  return DomainPtr(d);
}

Result<std::vector<std::string>> LibvirtDriver::ListVms() {
  virDomainPtr* doms = nullptr;
  const int n = virConnectListAllDomains(conn_.get(), &doms, 0);
  if (n < 0) return LastError("list domains");
  std::vector<std::string> names;
  for (int i = 0; i < n; ++i) {
    names.push_back(virDomainGetName(doms[i]));
    virDomainFree(doms[i]);
  }
  std::free(doms);
  std::sort(names.begin(), names.end());
  return names;
}

Result<VmInfo> LibvirtDriver::GetVm(std::string_view name) {
  VMBACKUP_ASSIGN_OR_RETURN(DomainPtr dom, Domain(name));
  VmInfo vm;
  vm.name = virDomainGetName(dom.get());
  char uuid[VIR_UUID_STRING_BUFLEN];
  if (virDomainGetUUIDString(dom.get(), uuid) == 0) vm.id = uuid;
  VMBACKUP_ASSIGN_OR_RETURN(const bool off, IsOff(dom.get(), vm.name));
  vm.power = off ? PowerState::kOff : PowerState::kOn;
  vm.config = TakeString(virDomainGetXMLDesc(dom.get(), VIR_DOMAIN_XML_INACTIVE));
  if (vm.config.empty()) return LastError("definition of " + vm.name);
  VMBACKUP_ASSIGN_OR_RETURN(DomainDesc desc, LiveDesc(dom.get(), vm.name));
  const std::vector<DomainDisk> disks = BackupDisks(desc);
  for (size_t i = 0; i < disks.size(); ++i) {
    DiskInfo d;
    d.device_key = kFirstDeviceKey + int(i);
    d.label = disks[i].target;
    d.backing_path = disks[i].source;
    d.uuid = disks[i].source;  // another file under the same target is another disk
    d.cbt_enabled = true;      // checkpoints need nothing switched on; raw disks are told apart
    virDomainBlockInfo info{};
    if (virDomainGetBlockInfo(dom.get(), disks[i].target.c_str(), &info, 0) < 0)
      return LastError("size of disk " + disks[i].target + " of " + vm.name);
    d.capacity = info.capacity;
    vm.disks.push_back(d);
  }
  const std::string meta = TakeString(virDomainGetMetadata(dom.get(), VIR_DOMAIN_METADATA_ELEMENT,
                                                           kMetadataNs, VIR_DOMAIN_AFFECT_CONFIG));
  if (!meta.empty()) {
    if (auto doc = xml::Document::Parse(meta, "vmbackup metadata"))
      vm.power_on_block = doc->root().attr("reason").value_or("");
  }
  return vm;
}

Status LibvirtDriver::SetPowerOnBlock(const VmInfo& vm, const std::string& why) {
  VMBACKUP_ASSIGN_OR_RETURN(DomainPtr dom, Domain(vm.name));
  const std::string element =
      why.empty() ? "" : "<powerOnBlock reason='" + xml::Escape(why) + "'/>";
  if (virDomainSetMetadata(
          dom.get(), VIR_DOMAIN_METADATA_ELEMENT, why.empty() ? nullptr : element.c_str(),
          why.empty() ? nullptr : kMetadataKey, kMetadataNs, VIR_DOMAIN_AFFECT_CONFIG) < 0) {
    return LastError("record the power-on block of " + vm.name);
  }
  return Status::Ok();
}

Result<std::string> LibvirtDriver::DomainDir(const VmInfo& vm, const DomainDesc& live) {
  if (vm.id.empty() || vm.id.find_first_not_of("0123456789abcdef-") != std::string::npos)
    return InternalError("domain " + vm.name + " has no usable uuid");
  // The base folders are ours (root's); the domain's folder belongs to QEMU's user, which
  // creates the socket and scratch files there, and is closed to everyone else.
  std::string path;
  for (size_t p = 1; p <= options_.run_dir.size(); ++p) {
    if (p == options_.run_dir.size() || options_.run_dir[p] == '/') {
      path = options_.run_dir.substr(0, p);
      VMBACKUP_RETURN_IF_ERROR(MakeDir(path, 0755));
    }
  }
  const std::string dir = options_.run_dir + "/" + vm.id;
  VMBACKUP_RETURN_IF_ERROR(MakeDir(dir, 0700));
  unsigned uid = 0, gid = 0;
  if (::geteuid() == 0 && std::sscanf(live.qemu_user.c_str(), "+%u:+%u", &uid, &gid) == 2) {
    if (::chown(dir.c_str(), uid, gid) != 0) return PosixError("chown " + dir, errno);
  }
  return dir;
}

Result<LibvirtDriver::Session*> LibvirtDriver::FindSession(const VmInfo& vm,
                                                           const SnapshotRef* snapshot) {
  if (!snapshot) return NotSupportedError("libvirt: reads need a backup job (a snapshot)");
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = sessions_.find(snapshot->id);
    if (it != sessions_.end()) return it->second.get();
  }
  // A killed run's snapshot taken over (an interrupted in-place restore, the domain off): its
  // images as they are, with no change id to start from.
  if (snapshot->id.rfind("stale:", 0) != 0)
    return NotFoundError("libvirt: no job of this process for snapshot " + snapshot->name);
  VMBACKUP_ASSIGN_OR_RETURN(DomainPtr dom, Domain(vm.name));
  VMBACKUP_ASSIGN_OR_RETURN(std::unique_ptr<Session> s,
                            NewSession(dom.get(), vm, snapshot->name, {}));
  if (s->online) {
    return FailedPreconditionError("domain " + vm.name + " runs: snapshot " + snapshot->name +
                                   " of a killed run can only be removed");
  }
  s->id = snapshot->id;
  for (auto& d : s->disks) d->why_full = "an interrupted run's snapshot was taken over";
  std::lock_guard<std::mutex> l(mu_);
  auto& slot = sessions_[snapshot->id];
  if (!slot) slot = std::move(s);
  return slot.get();
}

Result<std::vector<SnapshotRef>> LibvirtDriver::ListSnapshots(const VmInfo& vm) {
  std::vector<SnapshotRef> out;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (const auto& [id, s] : sessions_) out.push_back({id, s->name, Consistency::kCrash});
  }
  if (!out.empty() || vm.id.empty()) return out;
  // Left by a killed run: the marker in the domain's folder, or a backup job serving on our
  // socket there.
  const std::string dir = options_.run_dir + "/" + vm.id;
  auto marker = io::ReadSmallFile(MarkerPath(dir), 4096);
  std::string name = ParseMarker(marker ? *marker : "").first;
  VMBACKUP_ASSIGN_OR_RETURN(DomainPtr dom, Domain(vm.name));
  const std::string job = TakeString(virDomainBackupGetXMLDesc(dom.get(), 0));
  if (name.empty() && !job.empty() && JobEndpoint(job) == "unix:" + JobSocketPath(dir))
    name = std::string(kCheckpointPrefix) + "job";
  if (!name.empty()) out.push_back({"stale:" + name, name, Consistency::kCrash});
  return out;
}

Result<std::unique_ptr<LibvirtDriver::Session>> LibvirtDriver::NewSession(
    virDomainPtr dom, const VmInfo& vm, const std::string& name,
    const std::map<int, std::string>& since) {
  VMBACKUP_ASSIGN_OR_RETURN(DomainDesc live, LiveDesc(dom, vm.name));
  auto s = std::make_unique<Session>();
  s->name = name;
  s->id = name;
  VMBACKUP_ASSIGN_OR_RETURN(s->dir, DomainDir(vm, live));
  VMBACKUP_ASSIGN_OR_RETURN(const bool off, IsOff(dom, vm.name));
  s->online = !off;
  s->server.socket = JobSocketPath(s->dir);
  // A killed run's job may serve elsewhere: its marker says where.
  if (auto marker = io::ReadSmallFile(MarkerPath(s->dir), 4096)) {
    if (auto tcp = JobServer::FromTcpEndpoint(ParseMarker(*marker).second)) s->server = *tcp;
  }
  const std::vector<DomainDisk> disks = BackupDisks(live);
  for (size_t i = 0; i < disks.size(); ++i) {
    auto d = std::make_unique<Session::Disk>();
    d->key = kFirstDeviceKey + int(i);
    d->dd = disks[i];
    for (const auto& vd : vm.disks)
      if (vd.device_key == d->key) d->capacity = vd.capacity;
    if (auto it = since.find(d->key); it != since.end()) d->since = it->second;
    if (!d->since.empty() && !s->bitmaps(*d)) {
      d->why_full = "disk " + d->dd.target + " is " + d->dd.format + ", which cannot hold a " +
                    "persistent dirty bitmap";
      d->since.clear();
    } else if (!d->since.empty()) {
      virDomainCheckpointPtr cp = virDomainCheckpointLookupByName(dom, d->since.c_str(), 0);
      if (!cp) {
        d->why_full =
            "libvirt has no checkpoint " + d->since + " (deleted, or the domain was defined anew)";
        d->since.clear();
      } else {
        virDomainCheckpointFree(cp);
      }
    }
    if (!s->online && !d->since.empty()) {
      std::string problem = BitmapProblem(d->dd.source, d->since);
      if (!problem.empty()) {
        d->why_full = problem;
        d->since.clear();
      }
    }
    s->disks.push_back(std::move(d));
  }
  return s;
}

Result<SnapshotRef> LibvirtDriver::CreateSnapshot(const VmInfo& vm, std::string_view name,
                                                  const SnapshotOptions& options) {
  VMBACKUP_ASSIGN_OR_RETURN(DomainPtr dom, Domain(vm.name));
  VMBACKUP_ASSIGN_OR_RETURN(std::unique_ptr<Session> s,
                            NewSession(dom.get(), vm, std::string(name), options.since));
  s->upload = !s->online && !remote_host_.empty() && MadeHere(vm.name);
  if (!s->online && !remote_host_.empty() && !s->upload) {
    return FailedPreconditionError("domain " + vm.name + " on " + remote_host_ +
                                   " is off: its images are not files here, and only a running "
                                   "domain's backup job serves them over the network");
  }
  // The marker first: a kill from here on leaves something the next run finds.
  s->server = {JobSocketPath(s->dir), "", 0, false};
  VMBACKUP_RETURN_IF_ERROR(io::WriteFileAtomic(MarkerPath(s->dir), MarkerText(s->name, s->server)));
  SnapshotRef ref{s->id, s->name, Consistency::kCrash};
  if (s->online) {
    auto achieved = BeginJob(dom.get(), vm, *s, options);
    if (!achieved) {
      ::unlink(MarkerPath(s->dir).c_str());
      ::rmdir(s->dir.c_str());  // empty now, unless someone else's files are in it
      return achieved.error();
    }
    ref.achieved = *achieved;
  }
  std::lock_guard<std::mutex> l(mu_);
  sessions_[s->id] = std::move(s);
  return ref;
}

}  // namespace vmbackup::hv::libvirt
