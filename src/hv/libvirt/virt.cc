#include "hv/libvirt/virt.h"

#include <libvirt/virterror.h>

#include <cstdlib>
#include <mutex>

#include "base/lazy_library.h"

VMBACKUP_DECLARE_LAZY_LIBRARY(libvirt)
VMBACKUP_DECLARE_LAZY_LIBRARY(libvirt_qemu)

namespace vmbackup::hv::libvirt {
namespace {

void Quiet(void*, virErrorPtr) {}

ErrorCode CodeOf(int number) {
  switch (number) {
    case VIR_ERR_NO_DOMAIN:
    case VIR_ERR_NO_DOMAIN_CHECKPOINT:
    case VIR_ERR_NO_DOMAIN_BACKUP:
    case VIR_ERR_NO_DOMAIN_SNAPSHOT:
    case VIR_ERR_NO_DOMAIN_METADATA:
    case VIR_ERR_NO_STORAGE_POOL:
    case VIR_ERR_NO_STORAGE_VOL: return ErrorCode::kNotFound;
    case VIR_ERR_OPERATION_INVALID:
    case VIR_ERR_CHECKPOINT_INCONSISTENT: return ErrorCode::kFailedPrecondition;
    case VIR_ERR_NO_SUPPORT:
    case VIR_ERR_OPERATION_UNSUPPORTED:
    case VIR_ERR_ARGUMENT_UNSUPPORTED: return ErrorCode::kNotSupported;
    case VIR_ERR_OPERATION_DENIED:
    case VIR_ERR_ACCESS_DENIED: return ErrorCode::kPermissionDenied;
    case VIR_ERR_AUTH_FAILED:
    case VIR_ERR_AUTH_CANCELLED:
    case VIR_ERR_AUTH_UNAVAILABLE: return ErrorCode::kUnauthenticated;
    case VIR_ERR_NO_CONNECT:
    case VIR_ERR_RPC:
    case VIR_ERR_AGENT_UNRESPONSIVE:
    case VIR_ERR_AGENT_UNSYNCED:
    case VIR_ERR_OPERATION_TIMEOUT: return ErrorCode::kUnavailable;
    case VIR_ERR_DOM_EXIST:
    case VIR_ERR_STORAGE_VOL_EXIST: return ErrorCode::kAlreadyExists;
    default: return ErrorCode::kIOError;
  }
}

}  // namespace

int LastErrorNumber() {
  virErrorPtr e = virGetLastError();
  return e ? e->code : VIR_ERR_OK;
}

Status LastError(const std::string& what) {
  virErrorPtr e = virGetLastError();
  if (!e) return IOError(what + ": libvirt failed without saying why");
  return Status(CodeOf(e->code), what + ": " + (e->message ? e->message : "unknown error"));
}

std::string TakeString(char* s) {
  if (!s) return "";
  std::string out(s);
  std::free(s);
  return out;
}

Result<bool> IsOff(virDomainPtr dom, const std::string& name) {
  int state = 0, reason = 0;
  if (virDomainGetState(dom, &state, &reason, 0) < 0) return LastError("state of " + name);
  return state == VIR_DOMAIN_SHUTOFF;
}

Result<ConnectPtr> Connect(const std::string& uri) {
  VMBACKUP_RETURN_IF_ERROR(lazy::Load(lazy::libvirt));  // an error here, not an exit on a call
  VMBACKUP_RETURN_IF_ERROR(lazy::Load(lazy::libvirt_qemu));
  static std::once_flag once;
  std::call_once(once, [] {
    virInitialize();
    virSetErrorFunc(nullptr, Quiet);
  });
  virConnectPtr c = virConnectOpen(uri.c_str());
  if (!c) return LastError("connect to libvirt at " + uri);
  return ConnectPtr(c);
}

}  // namespace vmbackup::hv::libvirt
