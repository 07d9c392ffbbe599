// The NBD endpoint of a vSphere disk, from a template the user gives (--nbd-uri): vmbackup
// cannot ship VDDK, so a site that has it (nbdkit's vddk plugin) or any other NBD server names
// how to reach each disk. Two forms:
//   nbd://HOST[:PORT]/{vm}-{key}, nbd+unix:///{vm}?socket=..., nbds://... (TLS: nbdssl)
//   exec:COMMAND ARG... : run per disk (no shell), speaking NBD on its stdin and stdout, e.g.
//     exec:nbdkit -s vddk server=vc.example vm=moref={vm_moref} snapshot={snapshot} file={file}
// Placeholders: {vm} (name), {vm_moref}, {key} (device key), {disk} (index in key order),
// {snapshot} (moref value, empty for the current state), {snapshot_name}, {file} (the disk's
// backing file at that snapshot, "[ds] folder/disk.vmdk"), {mode} ("read"; "write" for the
// current state, "restore" for a snapshot's own layer). In URIs values are percent-encoded;
// in exec arguments each value stays inside its argument.
#pragma once

#include <string>
#include <vector>

#include "base/result.h"

namespace vmbackup::hv::vsphere {

struct NbdEndpointVars {
  std::string vm, vm_moref, key, disk, snapshot, snapshot_name, file, mode;
};

struct NbdEndpoint {
  bool command = false;           // exec: form
  std::vector<std::string> argv;  // exec: the command
  std::string uri;                // else the URI
  bool tls = false;               // nbds:// or nbds+unix://
  std::string Describe() const;
};

// kInvalidArgument for an unknown scheme or placeholder, or an unclosed brace.
Status CheckNbdTemplate(const std::string& tmpl);
Result<NbdEndpoint> ExpandNbdTemplate(const std::string& tmpl, const NbdEndpointVars& vars);

}  // namespace vmbackup::hv::vsphere
