// Restores to a new domain: its disk files and its definition; and removing such a domain.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>

#include "base/strings.h"
#include "base/subprocess.h"
#include "hv/libvirt/libvirt_driver.h"
#include "io/posix_file.h"

namespace vmbackup::hv::libvirt {

std::string DefaultImagesDir() {
  if (::geteuid() == 0) return "/var/lib/libvirt/images";
  const char* home = std::getenv("HOME");
  return std::string(home ? home : ".") + "/.local/share/libvirt/images";
}

Result<VmInfo> LibvirtDriver::CreateVm(std::string_view name, const std::string& config,
                                       const std::vector<uint64_t>& capacities,
                                       const std::string& power_on_block) {
  if (!remote_host_.empty()) {
    return NotSupportedError("libvirt on " + remote_host_ +
                             ": new domains are made on this machine's libvirt, where their disks "
                             "are written (restore to files and copy them there)");
  }
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
  std::vector<NewDisk> made;
  auto undo = [&] {
    for (const auto& d : made) ::unlink(d.path.c_str());
  };
  for (size_t i = 0; i < disks.size(); ++i) {
    NewDisk nd;
    nd.format = !options_.new_disk_format.empty() ? options_.new_disk_format
                : disks[i].format == "raw"        ? "raw"
                                                  : "qcow2";
    const std::string dir =
        !options_.new_disk_dir.empty() ? options_.new_disk_dir : DefaultImagesDir();
    if (!io::PathExists(dir)) {
      undo();
      return NotFoundError("folder " + dir + " for the new disks does not exist (--disk-dir)");
    }
    nd.path = io::JoinPath(
        dir, std::string(name) + "-" + disks[i].target + (nd.format == "raw" ? ".img" : ".qcow2"));
    if (io::PathExists(nd.path)) {
      undo();
      return AlreadyExistsError("new disk " + nd.path + " exists already");
    }
    auto r = RunCommandOk(
        {"qemu-img", "create", "-q", "-f", nd.format, nd.path, std::to_string(capacities[i])}, 120);
    if (!r) {
      undo();
      return r.error().WithContext("create disk " + nd.path);
    }
    made.push_back(nd);
  }
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
  if (!remote_host_.empty())
    return NotSupportedError("libvirt on " + remote_host_ +
                             ": its domains' disks are not files here");
  const std::string config = TakeString(virDomainGetXMLDesc(dom.get(), VIR_DOMAIN_XML_INACTIVE));
  VMBACKUP_ASSIGN_OR_RETURN(DomainDesc desc, ParseDomainXml(config));
  if (virDomainUndefineFlags(dom.get(), VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA |
                                            VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA |
                                            VIR_DOMAIN_UNDEFINE_MANAGED_SAVE) < 0) {
    return LastError("undefine domain " + vm.name);
  }
  for (const auto& d : BackupDisks(desc)) {
    struct stat st {};
    if (d.type == "file" && ::lstat(d.source.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        ::unlink(d.source.c_str()) != 0) {
      return PosixError("delete disk " + d.source + " of " + vm.name, errno);
    }
  }
  return Status::Ok();
}

}  // namespace vmbackup::hv::libvirt
