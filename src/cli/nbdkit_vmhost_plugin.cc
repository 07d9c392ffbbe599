// nbdkit-vmhost-plugin.so: serves one disk of a vmhost VM over NBD (the nbd and nbdssl
// transports). Parameters: datastore=DIR vm=NAME [disk=N] [snapshot=NAME|UID]
// [mode=read|write|restore]. Each connection gets its own host::SharedDisk, which follows the
// VM through snapshots taken while it is served. Requests are serialized: the host library is
// not thread-safe, and vmhost commands lock the VM between requests.
#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include <cerrno>
#include <string>
#include <vector>

#include "base/strings.h"
#include "host/shared_disk.h"
#include "io/posix_file.h"

#define THREAD_MODEL NBDKIT_THREAD_MODEL_SERIALIZE_ALL_REQUESTS

namespace {

using vmbackup::ErrorCode;
using vmbackup::Status;
using vmbackup::host::SharedDisk;

std::string g_datastore, g_vm, g_snapshot, g_mode = "read";
size_t g_disk = 0;
vmbackup::host::SnapshotSel g_snap;
vmbackup::host::DiskOpenMode g_open_mode = vmbackup::host::DiskOpenMode::kRead;

int Fail(const Status& s) {
  nbdkit_error("%s", s.message().c_str());
  switch (s.code()) {
    case ErrorCode::kPermissionDenied: nbdkit_set_error(EPERM); break;
    case ErrorCode::kInvalidArgument: nbdkit_set_error(EINVAL); break;
    case ErrorCode::kNotSupported: nbdkit_set_error(ENOTSUP); break;
    default: nbdkit_set_error(EIO); break;
  }
  return -1;
}

int Config(const char* key, const char* value) {
  std::string k = key;
  if (k == "datastore")
    g_datastore = value;
  else if (k == "vm")
    g_vm = value;
  else if (k == "snapshot")
    g_snapshot = value;
  else if (k == "mode")
    g_mode = value;
  else if (k == "disk") {
    auto n = vmbackup::ParseUint(value);
    if (!n) return Fail(n.error());
    g_disk = size_t(*n);
  } else {
    nbdkit_error("unknown parameter '%s'", key);
    return -1;
  }
  return 0;
}

int ConfigComplete() {
  if (g_datastore.empty() || g_vm.empty()) {
    nbdkit_error("datastore= and vm= are required");
    return -1;
  }
  auto mode = vmbackup::host::ParseDiskOpenMode(g_mode);
  if (!mode) return Fail(mode.error());
  g_open_mode = *mode;
  std::string dir = vmbackup::io::JoinPath(g_datastore, g_vm);
  if (!g_snapshot.empty()) {
    // Resolve a snapshot name once, to a uid that stays valid while the name could be reused.
    auto vm = vmbackup::host::Vm::Open(dir);
    if (!vm) return Fail(vm.error());
    auto s = (*vm)->snapshots().Lookup(g_snapshot);
    if (!s) return Fail(s.error());
    g_snap = (*s)->uid;
  }
  // Fail now, with the reason, rather than at the first connection.
  auto probe = SharedDisk::Open(dir, g_disk, g_snap, g_open_mode);
  if (!probe) return Fail(probe.error());
  return 0;
}

void* Open(int readonly) {
  auto mode = readonly ? vmbackup::host::DiskOpenMode::kRead : g_open_mode;
  auto d = SharedDisk::Open(vmbackup::io::JoinPath(g_datastore, g_vm), g_disk, g_snap, mode);
  if (!d) {
    Fail(d.error());
    return nullptr;
  }
  return d->release();
}

void Close(void* h) { delete static_cast<SharedDisk*>(h); }

int64_t GetSize(void* h) { return int64_t(static_cast<SharedDisk*>(h)->size()); }
int CanWrite(void* h) { return static_cast<SharedDisk*>(h)->writable() ? 1 : 0; }
int CanFlush(void*) { return 1; }
int CanExtents(void*) { return 1; }
int CanMultiConn(void*) { return 0; }

int Pread(void* h, void* buf, uint32_t count, uint64_t offset, uint32_t) {
  Status s = static_cast<SharedDisk*>(h)->Read(offset, {static_cast<uint8_t*>(buf), count});
  return s.ok() ? 0 : Fail(s);
}

int Pwrite(void* h, const void* buf, uint32_t count, uint64_t offset, uint32_t flags) {
  auto* d = static_cast<SharedDisk*>(h);
  Status s = d->Write(offset, {static_cast<const uint8_t*>(buf), count});
  if (s.ok() && (flags & NBDKIT_FLAG_FUA)) s = d->Flush();
  return s.ok() ? 0 : Fail(s);
}

int CanZero(void* h) { return static_cast<SharedDisk*>(h)->writable() ? 1 : 0; }
int CanTrim(void*) { return 0; }

// NBD_CMD_WRITE_ZEROES: with NBDKIT_FLAG_MAY_TRIM (the client allowed holes) the range is
// deallocated where the disk can; otherwise zeros are written.
int Zero(void* h, uint32_t count, uint64_t offset, uint32_t flags) {
  auto* d = static_cast<SharedDisk*>(h);
  Status s = d->WriteZeroes(offset, count, (flags & NBDKIT_FLAG_MAY_TRIM) != 0);
  if (s.ok() && (flags & NBDKIT_FLAG_FUA)) s = d->Flush();
  return s.ok() ? 0 : Fail(s);
}

int Flush(void* h, uint32_t) {
  Status s = static_cast<SharedDisk*>(h)->Flush();
  return s.ok() ? 0 : Fail(s);
}

int Extents(void* h, uint32_t count, uint64_t offset, uint32_t, struct nbdkit_extents* extents) {
  std::vector<vmbackup::vmdk::ChainRun> runs;
  Status s = static_cast<SharedDisk*>(h)->Map(offset, count, &runs);
  if (!s.ok()) return Fail(s);
  for (const auto& r : runs) {
    uint32_t type = 0;  // data
    if (r.state == vmbackup::vmdk::BlockState::kZero) type = NBDKIT_EXTENT_ZERO;
    if (r.state == vmbackup::vmdk::BlockState::kUnallocated)
      type = NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO;
    if (nbdkit_add_extent(extents, r.offset, r.length, type) == -1) return -1;
  }
  return 0;
}

struct nbdkit_plugin plugin = [] {
  struct nbdkit_plugin p {};
  p.name = "vmhost";
  p.longname = "vmbackup embedded host disk";
  p.version = "1";
  p.description = "Serves a disk of a vmhost VM (current state, snapshot, or restore target)";
  p.config = Config;
  p.config_complete = ConfigComplete;
  p.config_help =
      "datastore=DIR vm=NAME    the VM\n"
      "disk=N                   disk index (default 0)\n"
      "snapshot=NAME|UID        serve a snapshot instead of the current state\n"
      "mode=read|write|restore  write: the current state as the guest; restore: the snapshot's "
      "disk";
  p.open = Open;
  p.close = Close;
  p.get_size = GetSize;
  p.can_write = CanWrite;
  p.can_flush = CanFlush;
  p.can_extents = CanExtents;
  p.can_multi_conn = CanMultiConn;
  p.pread = Pread;
  p.pwrite = Pwrite;
  p.can_zero = CanZero;
  p.can_trim = CanTrim;
  p.zero = Zero;
  p.flush = Flush;
  p.extents = Extents;
  return p;
}();

}  // namespace

NBDKIT_REGISTER_PLUGIN(plugin)
