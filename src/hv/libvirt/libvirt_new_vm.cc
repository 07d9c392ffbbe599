// Restores to a new domain: its disk files (on a remote libvirt, volumes of a storage pool) and
// its definition; and removing such a domain.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>

#include "base/strings.h"
#include "base/subprocess.h"
#include "hv/libvirt/libvirt_driver.h"
#include "io/posix_file.h"
#include "xml/xml.h"

namespace vmbackup::hv::libvirt {

std::string DefaultImagesDir() {
  if (::geteuid() == 0) return "/var/lib/libvirt/images";
  const char* home = std::getenv("HOME");
  return std::string(home ? home : ".") + "/.local/share/libvirt/images";
}

namespace {

// Deletes the volume at `path` of a storage pool; kNotFound when no pool holds it.
Status DeleteVolume(virConnectPtr conn, const std::string& path) {
  virStorageVolPtr v = virStorageVolLookupByPath(conn, path.c_str());
  if (!v) return LastError("find volume " + path);
  VolumePtr vol(v);
  if (virStorageVolDelete(v, 0) < 0) return LastError("delete volume " + path);
  return Status::Ok();
}

}  // namespace

bool LibvirtDriver::MadeHere(const std::string& vm_name) {
  std::lock_guard<std::mutex> l(mu_);
  return volumes_.count(vm_name) > 0;
}

Result<std::vector<NewDisk>> LibvirtDriver::CreateVolumes(const std::string& name,
                                                          const std::vector<DomainDisk>& disks,
                                                          const std::vector<uint64_t>& capacities) {
  const std::string where = "libvirt on " + remote_host_;
  if (options_.new_disk_format == "qcow2") {
    return NotSupportedError(where +
                             ": new disks there are raw volumes, uploaded through libvirt's "
                             "connection as they are (a qcow2 would have to be made here "
                             "first); leave out --disk-format qcow2");
  }
  if (!options_.new_disk_dir.empty()) {
    return InvalidArgumentError(where +
                                ": new disks go to a storage pool there (--disk-pool), "
                                "not to a folder (--disk-dir)");
  }
  const std::string pool_name = options_.new_disk_pool.empty() ? "default" : options_.new_disk_pool;
  virStoragePoolPtr p = virStoragePoolLookupByName(conn_.get(), pool_name.c_str());
  if (!p) return LastError(where + ": storage pool " + pool_name + " (--disk-pool)");
  PoolPtr pool(p);
  if (virStoragePoolIsActive(p) != 1) {
    return FailedPreconditionError(where + ": storage pool " + pool_name +
                                   " is not active (virsh pool-start " + pool_name + ")");
  }
  std::vector<NewDisk> made;
  for (size_t i = 0; i < disks.size(); ++i) {
    const std::string vol_name = name + "-" + disks[i].target + ".img";
    const std::string xml =
        "<volume><name>" + xml::Escape(vol_name) + "</name><capacity unit='bytes'>" +
        std::to_string(capacities[i]) +
        "</capacity><allocation unit='bytes'>0</allocation><target><format type='raw'/>"
        "</target></volume>";
    VolumePtr vol(virStorageVolCreateXML(p, xml.c_str(), 0));
    Status error;
    std::string path;
    if (!vol) {
      error = LastError(where + ": create volume " + vol_name + " in pool " + pool_name);
    } else if ((path = TakeString(virStorageVolGetPath(vol.get()))).empty()) {
      error = LastError(where + ": path of volume " + vol_name);
      virStorageVolDelete(vol.get(), 0);
    }
    if (!error.ok()) {
      for (const auto& d : made) DeleteVolume(conn_.get(), d.path).IgnoreError();  // undo
      return error;
    }
    NewDisk nd;
    nd.path = path;
    nd.format = "raw";
    made.push_back(nd);
  }
  return made;
}

Result<std::vector<NewDisk>> LibvirtDriver::CreateFiles(const std::string& name,
                                                        const std::vector<DomainDisk>& disks,
                                                        const std::vector<uint64_t>& capacities) {
  std::vector<NewDisk> made;
  auto fail = [&made](Status error) {
    for (const auto& d : made) ::unlink(d.path.c_str());  // undo
    return error;
  };
  const std::string dir =
      !options_.new_disk_dir.empty() ? options_.new_disk_dir : DefaultImagesDir();
  if (!disks.empty() && !io::PathExists(dir))
    return NotFoundError("folder " + dir + " for the new disks does not exist (--disk-dir)");
  for (size_t i = 0; i < disks.size(); ++i) {
    NewDisk nd;
    nd.format = !options_.new_disk_format.empty() ? options_.new_disk_format
                : disks[i].format == "raw"        ? "raw"
                                                  : "qcow2";
    nd.path =
        io::JoinPath(dir, name + "-" + disks[i].target + (nd.format == "raw" ? ".img" : ".qcow2"));
    if (io::PathExists(nd.path))
      return fail(AlreadyExistsError("new disk " + nd.path + " exists already"));
    auto r = RunCommandOk(
        {"qemu-img", "create", "-q", "-f", nd.format, nd.path, std::to_string(capacities[i])}, 120);
    if (!r) return fail(r.error().WithContext("create disk " + nd.path));
    made.push_back(nd);
  }
  return made;
}

Result<VmInfo> LibvirtDriver::CreateVm(std::string_view name, const std::string& config,
                                       const std::vector<uint64_t>& capacities,
                                       const std::string& power_on_block) {
  if (!SafeDomainName(name)) {
    return InvalidArgumentError("domain name '" + std::string(name) +
                                "': use letters, digits, '-', '_' and '.' (it names its files)");
  }
  if (auto existing = Domain(name))
    return AlreadyExistsError("domain " + std::string(name) + " exists");
  VMBACKUP_ASSIGN_OR_RETURN(DomainDesc saved, ParseDomainXml(config));
  const std::vector<DomainDisk> disks = BackupDisks(saved);
  if (disks.size() != capacities.size()) {
    return InvalidArgumentError(StrFormat("the saved domain has %zu disks, the point %zu",
                                          disks.size(), capacities.size()));
  }
  const bool remote = !remote_host_.empty();
  VMBACKUP_ASSIGN_OR_RETURN(std::vector<NewDisk> made,
                            remote ? CreateVolumes(std::string(name), disks, capacities)
                                   : CreateFiles(std::string(name), disks, capacities));
  auto undo = [&] {
    for (const auto& d : made) {
      if (remote) {
        DeleteVolume(conn_.get(), d.path).IgnoreError();  // best effort: the error is returned
      } else {
        ::unlink(d.path.c_str());
      }
    }
  };
  auto xml = NewDomainXml(config, name, made);
  if (!xml) {
    undo();
    return xml.error();
  }
  virDomainPtr dom = virDomainDefineXML(conn_.get(), xml->c_str());
  if (!dom) {
    undo();
    return LastError("define domain " + std::string(name));
  }
  virDomainFree(dom);
  VMBACKUP_ASSIGN_OR_RETURN(VmInfo vm, GetVm(name));
  if (remote) {
    std::lock_guard<std::mutex> l(mu_);
    auto& volumes = volumes_[vm.name];
    for (size_t i = 0; i < made.size(); ++i) volumes[kFirstDeviceKey + int(i)] = made[i].path;
  }
  if (!power_on_block.empty()) {
    VMBACKUP_RETURN_IF_ERROR(SetPowerOnBlock(vm, power_on_block));
    vm.power_on_block = power_on_block;
  }
  return vm;
}

Status LibvirtDriver::DestroyVm(const VmInfo& vm) {
  VMBACKUP_ASSIGN_OR_RETURN(DomainPtr dom, Domain(vm.name));
  VMBACKUP_ASSIGN_OR_RETURN(const bool off, IsOff(dom.get(), vm.name));
  if (!off) return FailedPreconditionError("domain " + vm.name + " runs: it is not destroyed");
  const std::string config = TakeString(virDomainGetXMLDesc(dom.get(), VIR_DOMAIN_XML_INACTIVE));
  VMBACKUP_ASSIGN_OR_RETURN(DomainDesc desc, ParseDomainXml(config));
  if (virDomainUndefineFlags(dom.get(), VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA |
                                            VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA |
                                            VIR_DOMAIN_UNDEFINE_MANAGED_SAVE) < 0) {
    return LastError("undefine domain " + vm.name);
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    volumes_.erase(vm.name);
  }
  for (const auto& d : BackupDisks(desc)) {
    if (!remote_host_.empty()) {
      // There, only what a storage pool holds can be deleted (a disk that is no volume stays).
      if (d.type == "file") {
        Status s = DeleteVolume(conn_.get(), d.source);
        if (!s.ok() && s.code() != ErrorCode::kNotFound) return s;
      }
      continue;
    }
    struct stat st {};
    if (d.type == "file" && ::lstat(d.source.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        ::unlink(d.source.c_str()) != 0) {
      return PosixError("delete disk " + d.source + " of " + vm.name, errno);
    }
  }
  return Status::Ok();
}

}  // namespace vmbackup::hv::libvirt
