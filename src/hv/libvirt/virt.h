// Thin owners of libvirt's C handles (libvirt-dev) and libvirt's errors as Statuses. libvirt
// prints errors to stderr by default; Connect() turns that off, and every failure is read with
// LastError() instead.
#pragma once

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include <memory>
#include <string>

#include "base/result.h"

namespace vmbackup::hv::libvirt {

struct ConnectClose {
  void operator()(virConnectPtr c) const { virConnectClose(c); }
};
struct DomainFree {
  void operator()(virDomainPtr d) const { virDomainFree(d); }
};
struct CheckpointFree {
  void operator()(virDomainCheckpointPtr c) const { virDomainCheckpointFree(c); }
};
struct PoolFree {
  void operator()(virStoragePoolPtr p) const { virStoragePoolFree(p); }
};
struct VolumeFree {
  void operator()(virStorageVolPtr v) const { virStorageVolFree(v); }
};
struct StreamFree {
  void operator()(virStreamPtr s) const { virStreamFree(s); }
};
using ConnectPtr = std::unique_ptr<virConnect, ConnectClose>;
using PoolPtr = std::unique_ptr<virStoragePool, PoolFree>;
using VolumePtr = std::unique_ptr<virStorageVol, VolumeFree>;
using StreamPtr = std::unique_ptr<virStream, StreamFree>;
using DomainPtr = std::unique_ptr<virDomain, DomainFree>;
using CheckpointPtr = std::unique_ptr<virDomainCheckpoint, CheckpointFree>;

// The last libvirt error of this thread as a Status: "WHAT: libvirt's message", with a code
// from libvirt's error number (no domain or checkpoint: kNotFound; an operation the domain's
// state forbids: kFailedPrecondition; unsupported: kNotSupported; access: kPermissionDenied;
// a lost connection or an unresponsive agent: kUnavailable; else kIOError).
Status LastError(const std::string& what);
// libvirt's error number of the last error (VIR_ERR_OK when none).
int LastErrorNumber();

Result<ConnectPtr> Connect(const std::string& uri);

// Whether the domain is shut off (else it runs, or is paused: QEMU holds its images).
Result<bool> IsOff(virDomainPtr dom, const std::string& name);

// A string libvirt allocated, freed here.
std::string TakeString(char* s);

}  // namespace vmbackup::hv::libvirt
