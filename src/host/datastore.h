// Datastore: a folder holding one sub-folder per VM, in VMware's layout (disk_layers.h).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "host/vm.h"

namespace vmbackup::host {

struct NewVmOptions {
  std::vector<uint64_t> disk_sizes;  // bytes; thin (a hole until written)
  bool cbt = false;
  std::string power_on_block;  // set from the start (a VM being restored): see Vmx
};

class Datastore {
 public:
  // Creates the folder (and parents) when missing.
  static Status Init(const std::string& root);
  // kNotFound when `root` is not a folder.
  static Result<Datastore> Open(const std::string& root);

  const std::string& root() const { return root_; }
  Result<std::vector<std::string>> ListVms() const;
  // Names: letters, digits, '.', '_' and '-' (not first), at most 80 characters.
  Result<std::unique_ptr<Vm>> CreateVm(const std::string& name, const NewVmOptions& options);
  Result<std::unique_ptr<Vm>> OpenVm(const std::string& name) const;
  // The VM must be powered off.
  Status DeleteVm(const std::string& name);

 private:
  explicit Datastore(std::string root) : root_(std::move(root)) {}
  std::string root_;
};

Status ValidateVmName(const std::string& name);

}  // namespace vmbackup::host
