#include "host/datastore.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>

#include "base/strings.h"
#include "format/vmdk/create.h"
#include "host/disk_layers.h"
#include "io/posix_file.h"

namespace vmbackup::host {

Status ValidateVmName(const std::string& name) {
  bool ok = !name.empty() && name.size() <= 80 && name[0] != '-' && name[0] != '.';
  for (char c : name) {
    ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '.' || c == '_' || c == '-');
  }
  if (!ok) {
    return InvalidArgumentError(
        "VM name '" + name +
        "' must be 1-80 letters, digits, '.', '_' or '-', not starting with '-' or '.'");
  }
  return Status::Ok();
}

Status Datastore::Init(const std::string& root) {
  std::string path;
  for (size_t i = 0; i <= root.size(); ++i) {
    if (i == root.size() || root[i] == '/') {
      path = root.substr(0, i);
      if (!path.empty() && ::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
        return PosixError("create " + path, errno);
      }
    }
  }
  return Status::Ok();
}

Result<Datastore> Datastore::Open(const std::string& root) {
  struct stat st;
  if (::stat(root.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return NotFoundError("datastore " + root + " is not a folder (create it with 'vmhost init')");
  }
  return Datastore(root);
}

Result<std::vector<std::string>> Datastore::ListVms() const {
  DIR* d = ::opendir(root_.c_str());
  if (!d) return PosixError("list " + root_, errno);
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n == "." || n == "..") continue;
    if (io::PathExists(io::JoinPath(io::JoinPath(root_, n), n + ".vmx"))) names.push_back(n);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

Result<std::unique_ptr<Vm>> Datastore::CreateVm(const std::string& name, const NewVmOptions& o) {
  VMBACKUP_RETURN_IF_ERROR(ValidateVmName(name));
  if (o.disk_sizes.empty())
    return InvalidArgumentError("a VM needs at least one disk (--disk SIZE)");
  if (o.disk_sizes.size() > 15) return InvalidArgumentError("at most 15 disks per VM");
  std::string dir = io::JoinPath(root_, name);
  if (::mkdir(dir.c_str(), 0700) != 0) {
    if (errno == EEXIST) return AlreadyExistsError("VM " + name + " already exists");
    return PosixError("create " + dir, errno);
  }
  // A VM that could not be made whole leaves nothing behind: not a file, not its folder.
  auto undo = [&](const Status& s) {
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
    return s.WithContext("create VM " + name);
  };
  for (size_t i = 0; i < o.disk_sizes.size(); ++i) {
    vmdk::CreateOptions co;
    co.type = vmdk::DiskType::kVmfs;
    co.capacity = o.disk_sizes[i];
    Status s = vmdk::CreateDisk(io::JoinPath(dir, DiskStem(name, i) + ".vmdk"), co);
    if (!s.ok()) return undo(s);
  }
  // The .vmx comes last: until it exists there is no VM, only files to clean up.
  Vmx vmx = Vmx::New(name, o.disk_sizes.size(), false);
  vmx.set_power_on_block(o.power_on_block);
  Status s = io::WriteFileAtomic(io::JoinPath(dir, name + ".vmx"), vmx.Serialize());
  if (!s.ok()) return undo(s);
  auto vm = Vm::Open(dir);
  if (!vm) return undo(vm.error());
  if (o.cbt) {
    s = (*vm)->EnableChangeTracking();
    if (!s.ok()) {
      vm->reset();
      return undo(s);
    }
  }
  return vm;
}

Result<std::unique_ptr<Vm>> Datastore::OpenVm(const std::string& name) const {
  VMBACKUP_RETURN_IF_ERROR(ValidateVmName(name));
  return Vm::Open(io::JoinPath(root_, name));
}

Status Datastore::DeleteVm(const std::string& name) {
  std::string dir;
  {
    VMBACKUP_ASSIGN_OR_RETURN(auto vm, OpenVm(name));
    if (vm->vmx().powered_on())
      return FailedPreconditionError("VM " + name + " is powered on; power it off first");
    dir = vm->dir();
    // The .vmx goes first (under the lock): from then on the VM no longer exists.
    std::string vmx = io::JoinPath(dir, name + ".vmx");
    if (::unlink(vmx.c_str()) != 0) return PosixError("remove " + vmx, errno);
  }
  DIR* d = ::opendir(dir.c_str());
  if (!d) return PosixError("list " + dir, errno);
  std::vector<std::string> files;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") files.push_back(n);
  }
  ::closedir(d);
  for (const std::string& f : files) {
    std::string p = io::JoinPath(dir, f);
    if (::unlink(p.c_str()) != 0 && errno != ENOENT) return PosixError("remove " + p, errno);
  }
  if (::rmdir(dir.c_str()) != 0) return PosixError("remove " + dir, errno);
  return Status::Ok();
}

}  // namespace vmbackup::host
