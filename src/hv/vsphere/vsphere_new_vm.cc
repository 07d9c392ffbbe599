// Restores to a new VM on vSphere: the VM's files are made on the datastore (through the
// datastore map when it is mounted here, else uploaded through the file service), the VM is
// registered (RegisterVM_Task), and disks written over https are kept in a local file and
// uploaded whole, since the file service cannot write parts of a file.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "base/strings.h"
#include "format/vmdk/create.h"
#include "format/vmdk/disk.h"
#include "format/vmdk/layer.h"
#include "hv/vsphere/new_vm_config.h"
#include "hv/vsphere/vsphere_driver.h"
#include "io/posix_file.h"
#include "io/temp_dir.h"

namespace vmbackup::hv::vsphere {
namespace {

using xml::Escape;

std::string El(const char* name, const std::string& text) {
  return std::string("<") + name + ">" + Escape(text) + "</" + name + ">";
}

// Reads a local file for an upload.
std::function<Status(uint64_t, std::span<uint8_t>)> FileReader(std::shared_ptr<io::PosixFile> f) {
  return [f](uint64_t offset, std::span<uint8_t> buf) { return f->ReadAt(offset, buf); };
}

// A disk written locally and uploaded whole on Flush: the descriptor (vmfs, thin) and its
// flat file replace the base disk the VM was created with, keeping its CID.
class UploadAccess final : public DiskAccess {
 public:
  using Uploader = std::function<Status(const std::string& local, const std::string& remote_name)>;
  static Result<std::unique_ptr<UploadAccess>> Make(const std::string& file_name, uint64_t capacity,
                                                    uint32_t cid, std::string label,
                                                    Uploader upload) {
    VMBACKUP_ASSIGN_OR_RETURN(io::TempDir dir, io::TempDir::Make("vmbackup-upload"));
    const std::string path = io::JoinPath(dir.path(), file_name);
    vmdk::CreateOptions co;
    co.type = vmdk::DiskType::kVmfs;
    co.capacity = capacity;
    VMBACKUP_RETURN_IF_ERROR(vmdk::CreateDisk(path, co));
    {
      VMBACKUP_ASSIGN_OR_RETURN(auto layer, vmdk::Layer::Open(path, true, dir.path()));
      VMBACKUP_RETURN_IF_ERROR(layer->UpdateCid(cid));
    }
    vmdk::DiskOptions o;
    o.writable = true;
    o.preserve_cid = true;
    o.confine_to = dir.path();
    VMBACKUP_ASSIGN_OR_RETURN(auto disk, vmdk::Disk::Open(path, o));
    return std::unique_ptr<UploadAccess>(new UploadAccess(std::move(dir), path, std::move(disk),
                                                          std::move(label), std::move(upload)));
  }
  uint64_t size() const override { return disk_->size(); }
  std::string name() const override { return label_; }
  TransportMode transport() const override { return TransportMode::kHttps; }
  Status ReadAt(uint64_t offset, std::span<uint8_t> buf) override {
    return disk_->ReadAt(offset, buf);
  }
  Status WriteAt(uint64_t offset, std::span<const uint8_t> data) override {
    dirty_ = true;
    return disk_->WriteAt(offset, data);
  }
  Status WriteZeroes(uint64_t offset, uint64_t length) override {
    dirty_ = true;
    return disk_->WriteZeroes(offset, length);
  }
  Result<ExtentSet> AllocatedExtents(uint64_t offset, uint64_t length) override {
    return disk_->AllocatedExtents(offset, length);
  }
  // The data first, the descriptor last: until the descriptor is replaced the VM's disk is
  // the empty one it was created with, never a mix.
  Status Flush() override {
    VMBACKUP_RETURN_IF_ERROR(disk_->Flush());
    if (!dirty_) return Status::Ok();
    const std::string flat = vmdk::FlatFileFor(path_);
    VMBACKUP_RETURN_IF_ERROR(upload_(flat, io::BaseName(flat)));
    VMBACKUP_RETURN_IF_ERROR(upload_(path_, io::BaseName(path_)));
    dirty_ = false;
    return Status::Ok();
  }

 private:
  UploadAccess(io::TempDir dir, std::string path, std::unique_ptr<vmdk::Disk> disk,
               std::string label, Uploader upload)
      : dir_(std::move(dir)),
        path_(std::move(path)),
        disk_(std::move(disk)),
        label_(std::move(label)),
        upload_(std::move(upload)) {}
  io::TempDir dir_;
  std::string path_;
  std::unique_ptr<vmdk::Disk> disk_;
  std::string label_;
  Uploader upload_;
  bool dirty_ = false;
};

}  // namespace

Result<std::string> VsphereDriver::FolderUrl(const DatastorePath& path) {
  VMBACKUP_ASSIGN_OR_RETURN(std::string dc, Datacenter());
  return "/folder/" + http::UrlEncode(path.path, true) + "?dcPath=" + http::UrlEncode(dc) +
         "&dsName=" + http::UrlEncode(path.datastore);
}

Status VsphereDriver::Upload(const DatastorePath& path, uint64_t length,
                             const std::function<Status(uint64_t, std::span<uint8_t>)>& read) {
  VMBACKUP_ASSIGN_OR_RETURN(const std::string url, FolderUrl(path));
  VMBACKUP_ASSIGN_OR_RETURN(
      auto c, http::Client::Create(source_.BaseUrl(), client_->tls(), options_.timeout_seconds));
  c->set_cookies(client_->cookies());
  VMBACKUP_ASSIGN_OR_RETURN(http::Response r, c->PutStream(url, length, read));
  if (r.status != 200 && r.status != 201 && r.status != 204) {
    return IOError(
        StrFormat("vSphere: uploading %s answered HTTP %ld", path.Text().c_str(), r.status));
  }
  return Status::Ok();
}

Result<std::string> VsphereDriver::TargetDatastore() {
  if (!source_.datastore.empty()) return source_.datastore;
  VMBACKUP_ASSIGN_OR_RETURN(PropertyAnswer a, client_->RetrieveAll("Datastore", {"name"}));
  if (a.objects.size() != 1) {
    return InvalidArgumentError(
        StrFormat("vSphere %s has %zu datastores: name the one for new VMs in the source URI "
                  "(?datastore=NAME)",
                  source_.host.c_str(), a.objects.size()));
  }
  return a.objects[0].Get("name").text();
}

Result<VmInfo> VsphereDriver::CreateVm(std::string_view name_view, const std::string& config,
                                       const std::vector<uint64_t>& capacities,
                                       const std::string& power_on_block) {
  const std::string name(name_view);
  if (name.empty() || name.size() > 80 || name.find_first_of("/\\[]\"%") != std::string::npos ||
      name[0] == '.')
    return InvalidArgumentError("'" + name + "' cannot name a VM folder on a datastore");
  if (auto existing = FindVm(name); existing) {
    return AlreadyExistsError("vSphere " + source_.host + " has a VM named " + name);
  } else if (existing.error().code() != ErrorCode::kNotFound) {
    return existing.error();
  }
  VMBACKUP_ASSIGN_OR_RETURN(const std::string ds, TargetDatastore());
  VMBACKUP_ASSIGN_OR_RETURN(NewVmConfig cfg,
                            MakeNewVmConfig(config, name, capacities.size(), power_on_block));
  std::map<int, CreatedDisk> disks;
  auto mapped = options_.datastore_map.find(ds);
  std::vector<std::pair<DatastorePath, uint32_t>> made;
  if (mapped != options_.datastore_map.end()) {
    // The datastore is mounted here: the files are made in place, thin.
    const std::string dir = io::JoinPath(mapped->second, name);
    if (::mkdir(dir.c_str(), 0755) != 0) return PosixError("mkdir " + dir, errno);
    for (size_t i = 0; i < capacities.size(); ++i) {
      const std::string path = io::JoinPath(dir, cfg.disk_files[i]);
      vmdk::CreateOptions co;
      co.type = vmdk::DiskType::kVmfs;
      co.capacity = capacities[i];
      VMBACKUP_RETURN_IF_ERROR(vmdk::CreateDisk(path, co));
      VMBACKUP_ASSIGN_OR_RETURN(auto layer, vmdk::Layer::Open(path, false, dir));
      made.push_back({{ds, name + "/" + cfg.disk_files[i]}, layer->descriptor().cid});
    }
    VMBACKUP_RETURN_IF_ERROR(io::WriteFileAtomic(io::JoinPath(dir, name + ".vmx"), cfg.vmx));
  } else {
    // Uploaded: small sparse disks (their size does not grow with the capacity's zeros).
    VMBACKUP_ASSIGN_OR_RETURN(io::TempDir tmp, io::TempDir::Make("vmbackup-upload"));
    for (size_t i = 0; i < capacities.size(); ++i) {
      const std::string path = io::JoinPath(tmp.path(), cfg.disk_files[i]);
      vmdk::CreateOptions co;
      co.type = vmdk::DiskType::kSparse;
      co.capacity = capacities[i];
      VMBACKUP_RETURN_IF_ERROR(vmdk::CreateDisk(path, co));
      VMBACKUP_ASSIGN_OR_RETURN(auto layer, vmdk::Layer::Open(path, false, tmp.path()));
      const DatastorePath remote{ds, name + "/" + cfg.disk_files[i]};
      VMBACKUP_ASSIGN_OR_RETURN(auto f, io::PosixFile::Open(path, io::OpenMode::kReadOnly));
      std::shared_ptr<io::PosixFile> file(std::move(f));
      VMBACKUP_RETURN_IF_ERROR(Upload(remote, file->size(), FileReader(file)));
      made.push_back({remote, layer->descriptor().cid});
    }
    const std::string vmx = cfg.vmx;
    VMBACKUP_RETURN_IF_ERROR(Upload({ds, name + "/" + name + ".vmx"}, vmx.size(),
                                    [&vmx](uint64_t off, std::span<uint8_t> buf) {
                                      std::memcpy(buf.data(), vmx.data() + off, buf.size());
                                      return Status::Ok();
                                    }));
  }
  // Registration, in the datacenter's VM folder (and a resource pool where the host has one).
  VMBACKUP_ASSIGN_OR_RETURN(std::string dc, Datacenter());
  VMBACKUP_ASSIGN_OR_RETURN(PropertyAnswer dcs,
                            client_->RetrieveAll("Datacenter", {"name", "vmFolder"}));
  MoRef folder;
  for (const auto& o : dcs.objects)
    if (o.Get("name").text() == dc) folder = MoRef::From(o.Get("vmFolder"));
  if (folder.empty()) return NotFoundError("vSphere: datacenter " + dc + " has no VM folder");
  std::string args = El("path", "[" + ds + "] " + name + "/" + name + ".vmx") + El("name", name) +
                     "<asTemplate>false</asTemplate>";
  if (auto pools = client_->RetrieveAll("ResourcePool", {"name"}); pools && !pools->objects.empty())
    args += pools->objects[0].obj.Xml("pool");
  MoRef ref;
  VMBACKUP_RETURN_IF_ERROR(RunTask(folder, "RegisterVM_Task", args, "register VM " + name, &ref));
  if (!ref.empty()) vm_refs_[name] = ref;
  VMBACKUP_ASSIGN_OR_RETURN(VmInfo vm, GetVm(name));
  if (vm.disks.size() != made.size()) {
    return ProtocolError(StrFormat("vSphere: the new VM %s has %zu disks, not %zu", name.c_str(),
                                   vm.disks.size(), made.size()));
  }
  for (size_t i = 0; i < made.size(); ++i)
    disks[vm.disks[i].device_key] = {made[i].first, made[i].second, capacities[i]};
  created_[name] = disks;
  if (!power_on_block.empty()) {
    VMBACKUP_RETURN_IF_ERROR(SetPowerOnBlock(vm, power_on_block));
    vm.power_on_block = power_on_block;
  }
  return vm;
}

Result<std::unique_ptr<DiskAccess>> VsphereDriver::OpenUpload(const VmInfo& vm,
                                                              const SnapshotRef* snapshot,
                                                              int device_key,
                                                              const std::string& label) {
  auto it = created_.find(vm.name);
  const auto disk = it == created_.end() ? nullptr : &it->second;
  if (!disk || !disk->count(device_key)) {
    return NotSupportedError(
        "the datastore file service replaces whole files; it cannot write parts of a disk "
        "(only the disks of a VM this restore created are uploaded whole)");
  }
  const CreatedDisk& c = disk->at(device_key);
  // The layer being written must be the base the VM was created with.
  VMBACKUP_ASSIGN_OR_RETURN(std::string file, Backing(vm, snapshot, device_key, "fileName"));
  VMBACKUP_ASSIGN_OR_RETURN(DatastorePath path, ParseDatastorePath(file));
  if (path.datastore != c.file.datastore || path.path != c.file.path) {
    return NotSupportedError(file + " is not the disk this restore created (" + c.file.Text() +
                             "); the file service cannot write it in part");
  }
  const std::string folder = c.file.path.substr(0, c.file.path.rfind('/') + 1);
  const std::string ds = c.file.datastore;
  auto upload = [this, folder, ds](const std::string& local, const std::string& remote) -> Status {
    VMBACKUP_ASSIGN_OR_RETURN(auto f, io::PosixFile::Open(local, io::OpenMode::kReadOnly));
    std::shared_ptr<io::PosixFile> source(std::move(f));
    return Upload({ds, folder + remote}, source->size(), FileReader(source));
  };
  VMBACKUP_ASSIGN_OR_RETURN(auto access, UploadAccess::Make(io::BaseName(c.file.path), c.capacity,
                                                            c.cid, label, std::move(upload)));
  return std::unique_ptr<DiskAccess>(std::move(access));
}

}  // namespace vmbackup::hv::vsphere
