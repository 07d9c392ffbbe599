// Backend: where a repository keeps its objects. Objects are written once and never changed:
// Save creates, Delete removes, nothing overwrites. Everything above this interface (the
// repository, GC, verify) does its I/O through it and assumes no file system, so that an S3
// backend can come later behind the same contract (restic's backend split).
//
// Implementations are thread-safe: any number of calls may run at once.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace vmbackup::storage {

// The kinds of objects; each lives in its own namespace (a folder, a key prefix).
enum class ObjectType {
  kConfig,
  kKey,
  kPack,
  kIndex,
  kTree,
  kPoint,
  kLock,
  kMark,       // notes for the next job of a VM ("the next backup must be a full")
  kForgotten,  // tombstones of removed point records
  kDamage,     // blob copies found damaged or missing
  kTest,       // results of restore tests (test-restore), per point
};
std::string_view ObjectTypeName(ObjectType t);  // "config", "keys", "packs", ...

// Object Lock (write once, read many; S3's): the store itself refuses to delete or overwrite an
// object before its lock ends. Governance locks may be lifted by a specially privileged user,
// compliance locks by nobody.
enum class LockMode { kGovernance, kCompliance };

struct ObjectRef {
  ObjectType type;
  std::string name;  // [A-Za-z0-9._-]{1,128}, not starting with '.'
};

// The objects a repository locks: those its restore points need (config, keys, packs, point
// records). Index files are not locked: they are rebuilt from the packs' trailers (check
// --repair), and gc replaces them. Locks, marks, tombstones, damage records and test results
// stay deletable: they are replaced or removed as a matter of course, as are the markers of
// protected points (points/<id>.protected).
bool IsLockable(const ObjectRef& ref);

struct ObjectInfo {
  std::string name;
  uint64_t size = 0;
  int64_t mtime = 0;  // when it was saved, seconds since the Unix epoch (gc's grace period)
};

// What a remote store's backend sent and received, for reports (counted since it was opened).
struct TransferStats {
  uint64_t requests = 0;       // requests answered (or failed), retries included
  uint64_t objects_saved = 0;  // Save calls that stored an object
  uint64_t bytes_sent = 0, bytes_received = 0;
  uint64_t retries = 0;  // calls repeated after a transient failure
  uint64_t wait_ns = 0;  // time spent in requests, summed over threads
  TransferStats operator-(const TransferStats& b) const {
    return {requests - b.requests,     objects_saved - b.objects_saved,
            bytes_sent - b.bytes_sent, bytes_received - b.bytes_received,
            retries - b.retries,       wait_ns - b.wait_ns};
  }
};

// A large object saved piece by piece while it is made (packs, as they are built), so that it
// never has to be whole in memory. Nothing is visible under a name before Commit; a writer
// destroyed uncommitted leaves nothing behind (after a crash: what Save's would leave).
// Not thread-safe: one thread uses a writer.
class ObjectWriter {
 public:
  static constexpr size_t kAlign = 4096;
  virtual ~ObjectWriter() = default;
  // Appends `bytes`. A large piece appended at a multiple of kAlign goes around the page cache
  // (a local disk), from its own memory when that is on a kAlign boundary.
  virtual Status Append(std::span<const uint8_t> bytes) = 0;
  // Stores what was appended under `name`, durably, all or nothing, as Save does; kAlreadyExists
  // when the object exists. After that error the writer still holds its bytes for the two calls
  // below; after any other outcome it is spent.
  virtual Status Commit(const std::string& name) = 0;
  // After kAlreadyExists: whether the existing object holds exactly the appended bytes.
  virtual Result<bool> SameAsExisting() = 0;
  // After kAlreadyExists: replaces the existing object (a damaged copy) with the appended bytes.
  virtual Status ReplaceExisting() = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;

  // Stores `data` under `ref`, durably, all or nothing: after a crash the object is either
  // absent or complete. kAlreadyExists when it exists (objects are written once).
  virtual Status Save(const ObjectRef& ref, std::span<const uint8_t> data) = 0;

  // The whole object. kNotFound when absent.
  virtual Result<std::vector<uint8_t>> Load(const ObjectRef& ref) = 0;

  // `length` bytes from `offset`. kNotFound when absent; kCorruption when the object is shorter
  // than the range asked for (the caller's metadata promised more than is there). The default
  // asks Stat for the size before it allocates, then reads with ReadRange.
  virtual Result<std::vector<uint8_t>> LoadRange(const ObjectRef& ref, uint64_t offset,
                                                 uint64_t length);

  // `out.size()` bytes from `offset` into `out`, with the errors of LoadRange. Restores read
  // packs this way into buffers they reuse.
  virtual Status ReadRange(const ObjectRef& ref, uint64_t offset, std::span<uint8_t> out) = 0;

  // How many bytes nobody asked for are worth reading to serve two ranges of one object with one
  // request: 0 for a local file (a read costs little), about a round trip's worth of transfer
  // for a remote store (a request costs a round trip).
  virtual uint64_t CoalesceGap() const { return 0; }

  // How many large Saves are worth having in flight at once: 1 for a local disk (one O_DIRECT
  // stream keeps it busy), several for a remote store, where each waits on round trips and on
  // the server.
  virtual int SavesInFlight() const { return 1; }

  // Whether NewWriter gives writers. The default saves whole objects only: a remote store sends
  // an object in one request, and again on a retry.
  virtual bool WritesInPieces() const { return false; }
  // A writer for a new object of `type`; kNotSupported unless WritesInPieces().
  virtual Result<std::unique_ptr<ObjectWriter>> NewWriter(ObjectType type);

  // Counters of a remote store's traffic; all zero for a local one.
  virtual TransferStats transfer_stats() const { return {}; }

  // A hint that these bytes will be read soon: a backend may start fetching them (restores
  // overlap reads this way). Errors are ignored; the default does nothing.
  virtual void Prefetch(const ObjectRef& /*ref*/, uint64_t /*offset*/, uint64_t /*length*/) {}

  // kNotFound when absent.
  virtual Result<ObjectInfo> Stat(const ObjectRef& ref) = 0;

  // Every object of `type`, in no particular order.
  virtual Result<std::vector<ObjectInfo>> List(ObjectType type) = 0;

  // kNotFound when absent.
  virtual Status Delete(const ObjectRef& ref) = 0;

  // For messages: a path or a URL.
  virtual std::string location() const = 0;

  // Object Lock, where the store has it (the defaults: a store without). From now on, objects
  // of lockable types are saved locked in `mode` for `seconds`. kNotSupported without.
  virtual Status LockNewObjects(LockMode mode, int64_t seconds);
  // When the lock of `ref` ends (Unix seconds); 0 when it has none. kNotFound when absent.
  virtual Result<int64_t> LockedUntil(const ObjectRef& ref);
  // Keeps `ref` locked until at least `until` (a lock is never shortened). kNotSupported
  // without Object Lock.
  virtual Status ExtendLock(const ObjectRef& ref, int64_t until);
};

// kInvalidArgument unless the name is safe in every backend (see ObjectRef).
Status ValidateObjectName(std::string_view name);

}  // namespace vmbackup::storage
