// nbdkit-vmbackup-plugin.so: serves one disk of a restore point straight from the repository,
// read-only (`vmbackup serve` runs nbdkit with it). Parameters:
//   repo=DIR|S3-URL point=ID disk=KEY [key-file=PATH] [passphrase-file=PATH] [cache=MIB]
//   [s3-ca-file=PATH]
// An encrypted repository's passphrase may also come from VMBACKUP_PASSPHRASE (never from a
// parameter: nbdkit's command line is visible to every user), and an S3 repository's
// credentials from the environment or ~/.aws/credentials (location/location.h).
//
// Requests run in parallel and the export allows multi-conn (it never changes). Chunks are
// loaded once, cached and verified by live::SharedPointDisk; extents report zero chunks as
// holes; NBD_CMD_CACHE loads ahead. The process holds a shared repository lock from start to
// exit, so gc cannot remove what it serves. Everything that starts threads happens in
// .after_fork (nbdkit may fork to the background after .config_complete).
#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include <cerrno>
#include <cstdlib>
#include <memory>
#include <string>

#include "base/strings.h"
#include "io/posix_file.h"
#include "live/shared_point_disk.h"
#include "location/location.h"
#include "repo/lock.h"

#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

namespace {

using vmbackup::ErrorCode;
using vmbackup::Status;

struct Params {
  std::string repo, point, key_file, passphrase_file, s3_ca_file;
  int disk = 2000;
  uint64_t cache_mib = 64;
} g_params;

// Members go in reverse order of need: the disk, the repository, the lock, its backend.
struct Served {
  std::unique_ptr<vmbackup::storage::Backend> lock_backend;
  std::unique_ptr<vmbackup::repo::RepoLock> lock;
  std::unique_ptr<vmbackup::repo::Repository> repo;
  std::unique_ptr<vmbackup::live::SharedPointDisk> disk;
};
Served* g_served = nullptr;

int Fail(const Status& s) {
  nbdkit_error("%s", s.message().c_str());
  switch (s.code()) {
    case ErrorCode::kInvalidArgument: nbdkit_set_error(EINVAL); break;
    case ErrorCode::kNotSupported: nbdkit_set_error(ENOTSUP); break;
    default: nbdkit_set_error(EIO); break;
  }
  return -1;
}

int Config(const char* key, const char* value) {
  const std::string k = key;
  if (k == "repo") {
    g_params.repo = value;
  } else if (k == "point") {
    g_params.point = value;
  } else if (k == "key-file") {
    g_params.key_file = value;
  } else if (k == "passphrase-file") {
    g_params.passphrase_file = value;
  } else if (k == "s3-ca-file") {
    g_params.s3_ca_file = value;
  } else if (k == "disk" || k == "cache") {
    auto n = vmbackup::ParseUint(value);
    if (!n || *n > 1'000'000) {
      nbdkit_error("%s=%s is not a number", key, value);
      return -1;
    }
    if (k == "disk") g_params.disk = int(*n);
    if (k == "cache") g_params.cache_mib = *n;
  } else {
    nbdkit_error("unknown parameter '%s'", key);
    return -1;
  }
  return 0;
}

int ConfigComplete() {
  if (g_params.repo.empty() || g_params.point.empty()) {
    nbdkit_error("repo= and point= are required");
    return -1;
  }
  return 0;
}

vmbackup::Result<vmbackup::repo::KeySource> Keys() {
  vmbackup::repo::KeySource k;
  if (!g_params.key_file.empty()) {
    k.key_file = g_params.key_file;
  } else if (!g_params.passphrase_file.empty()) {
    VMBACKUP_ASSIGN_OR_RETURN(std::string p,
                              vmbackup::io::ReadSmallFile(g_params.passphrase_file, 4096));
    while (!p.empty() && (p.back() == '\n' || p.back() == '\r')) p.pop_back();
    k.passphrase = p;
  } else if (const char* env = std::getenv("VMBACKUP_PASSPHRASE")) {
    k.passphrase = env;
  }
  return k;
}

Status Start() {
  auto served = std::make_unique<Served>();
  const vmbackup::location::Options where{g_params.s3_ca_file};
  VMBACKUP_ASSIGN_OR_RETURN(served->lock_backend, vmbackup::location::Open(g_params.repo, where));
  vmbackup::repo::LockOptions lo;
  lo.purpose = "serve";
  VMBACKUP_ASSIGN_OR_RETURN(served->lock,
                            vmbackup::repo::RepoLock::Acquire(*served->lock_backend, lo));
  VMBACKUP_ASSIGN_OR_RETURN(auto backend, vmbackup::location::Open(g_params.repo, where));
  VMBACKUP_ASSIGN_OR_RETURN(auto keys, Keys());
  VMBACKUP_ASSIGN_OR_RETURN(served->repo,
                            vmbackup::repo::Repository::Open(std::move(backend), keys));
  VMBACKUP_ASSIGN_OR_RETURN(auto point, vmbackup::repo::LoadPoint(*served->repo, g_params.point));
  vmbackup::live::CacheOptions co;
  co.cache_bytes = g_params.cache_mib << 20;
  VMBACKUP_ASSIGN_OR_RETURN(
      served->disk, vmbackup::live::SharedPointDisk::Open(*served->repo, point, g_params.disk, co));
  g_served = served.release();
  return Status::Ok();
}

int AfterFork() {
  Status s = Start();
  return s.ok() ? 0 : Fail(s);
}

void Unload() {
  if (!g_served) return;
  const auto st = g_served->disk->stats();
  nbdkit_debug("chunks loaded %llu, hits %llu, waits %llu, prefetched %llu",
               (unsigned long long)st.chunks_loaded, (unsigned long long)st.hits,
               (unsigned long long)st.waits, (unsigned long long)st.prefetched);
  delete g_served;  // the lock object goes last
  g_served = nullptr;
}

void* Open(int) { return g_served; }
int64_t GetSize(void*) { return int64_t(g_served->disk->capacity()); }
int CanWrite(void*) { return 0; }
int CanMultiConn(void*) { return 1; }
int CanExtents(void*) { return 1; }
int CanCache(void*) { return NBDKIT_CACHE_NATIVE; }

int Pread(void*, void* buf, uint32_t count, uint64_t offset, uint32_t) {
  Status s = g_served->disk->Read(offset, {static_cast<uint8_t*>(buf), count});
  return s.ok() ? 0 : Fail(s);
}

int Cache(void*, uint32_t count, uint64_t offset, uint32_t) {
  g_served->disk->Prefetch(offset, count);
  return 0;
}

int Extents(void*, uint32_t count, uint64_t offset, uint32_t, struct nbdkit_extents* extents) {
  auto runs = g_served->disk->Extents(offset, count);
  if (!runs) return Fail(runs.error());
  for (const auto& r : *runs) {
    const uint32_t type = r.zero ? NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO : 0;
    if (nbdkit_add_extent(extents, r.offset, r.length, type) == -1) return -1;
  }
  return 0;
}

struct nbdkit_plugin plugin = [] {
  struct nbdkit_plugin p {};
  p.name = "vmbackup";
  p.longname = "vmbackup restore point disk";
  p.version = "1";
  p.description = "Serves one disk of a vmbackup restore point, read-only, from the repository";
  p.config = Config;
  p.config_complete = ConfigComplete;
  p.config_help =
      "repo=DIR                 the repository (a folder)\n"
      "point=ID                 the restore point's full id\n"
      "disk=KEY                 the disk's device key (default 2000)\n"
      "key-file=PATH            key of an encrypted repository (or passphrase-file=PATH,\n"
      "                         or VMBACKUP_PASSPHRASE in the environment)\n"
      "cache=MIB                decoded chunks kept in memory (default 64)";
  p.after_fork = AfterFork;
  p.unload = Unload;
  p.open = Open;
  p.get_size = GetSize;
  p.can_write = CanWrite;
  p.can_multi_conn = CanMultiConn;
  p.can_extents = CanExtents;
  p.can_cache = CanCache;
  p.pread = Pread;
  p.cache = Cache;
  p.extents = Extents;
  return p;
}();

}  // namespace

NBDKIT_REGISTER_PLUGIN(plugin)
