// Restore points (docs/repository-format.md section 7): the record, writing a new point from a
// parent point, and reading a point's disk at any range.
#pragma once

#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "base/extent_set.h"
#include "repo/tree.h"

namespace vmbackup::repo {

struct PointDisk {
  int key = 0;
  std::string label;
  uint64_t capacity = 0;
  uint64_t chunk_size = 0;
  TreeRoot tree;
  std::string change_id, snapshot, transport;
  // The disk's own identity on the host (vSphere's backing uuid), "" where there is none: a
  // change id only means something for the disk it came from.
  std::string disk_uuid;
  uint64_t bytes_scanned = 0, bytes_new = 0;
};

struct Point {
  std::string id;  // YYYYMMDDTHHMMSS.ffffffZ-xxxxxxxx
  std::string vm_name, vm_id;
  std::string created;
  std::string parent;  // empty: none
  std::string notes, consistency = "crash", snapshot;
  std::string config;  // the VM configuration blob, as stored (hex in the record)
  nlohmann::json stats = nlohmann::json::object();    // the job's statistics
  nlohmann::json timings = nlohmann::json::object();  // seconds per stage
  std::vector<PointDisk> disks;
  bool is_protected = false;  // from the marker object, not the record
};

// The point record as JSON (docs/repository-format.md section 7), plus "protected".
nlohmann::json PointToJson(const Point& point);

// The index in `point.disks` of the disk with device key `key`; kNotFound naming the keys
// the point has.
Result<size_t> FindPointDisk(const Point& point, int key);

Status SavePoint(Repository& repo, const Point& point);
Result<Point> LoadPoint(Repository& repo, const std::string& id);
// Ids of every point, sorted (oldest first).
Result<std::vector<std::string>> ListPoints(Repository& repo);
Status ProtectPoint(Repository& repo, const std::string& id);
Status UnprotectPoint(Repository& repo, const std::string& id);

// Writes a point. Disks written through it inherit the parent point's tree for the same device
// key and capacity, so only what is written is new. WriteChunk and MarkZero are thread-safe.
class PointWriter {
 public:
  static Result<std::unique_ptr<PointWriter>> Start(Repository& repo, Point meta);
  // The same for a copy of a point of another repository: it keeps `meta`'s id and creation
  // time (its parent, when set, must be in `repo`).
  static Result<std::unique_ptr<PointWriter>> StartCopy(Repository& repo, Point meta);
  // Returns the disk's index in the point. With `from_parent`, the disk starts as the parent
  // point's disk of the same key and capacity (an incremental); otherwise as zeros (a full).
  Result<size_t> AddDisk(const PointDisk& disk, bool from_parent = true);
  const std::optional<Point>& parent() const { return parent_; }
  // The record's "stats" and "timings", set before Commit.
  void SetRecordExtras(nlohmann::json stats, nlohmann::json timings);
  // The disk as the parent point has it (same key and capacity), if it does.
  std::optional<PointDisk> ParentDisk(int key, uint64_t capacity) const;
  // The disk's byte counts in the record, known once it is written.
  Status SetDiskStats(size_t disk, uint64_t bytes_scanned, uint64_t bytes_new);
  // `offset` on the chunk grid; `data` one chunk (shorter only at the end of the disk).
  Status WriteChunk(size_t disk, uint64_t offset, std::span<const uint8_t> data,
                    bool* is_new = nullptr);
  // The chunk at `offset` (on the chunk grid) is blob `id`, which the repository holds
  // (kFailedPrecondition when it does not): a copy from a repository that names chunks alike.
  Status ReferenceChunk(size_t disk, uint64_t offset, const Id& id);
  // [offset, offset+length) on the chunk grid (or ending at the capacity) reads as zeros.
  Status MarkZero(size_t disk, uint64_t offset, uint64_t length);
  // Flushes packs and index, stores the trees, flushes again, saves the point record.
  Result<Point> Commit();
  // Gives the point up: nothing more is written, Commit fails. Chunks stored so far stay as
  // unreferenced data until gc (as after a crash). Destroying an uncommitted writer is the same.
  void Abandon();

 private:
  PointWriter(Repository& repo, Point meta) : repo_(repo), point_(std::move(meta)) {}
  Status CheckChunk(size_t disk, uint64_t offset, uint64_t length) const;
  Repository& repo_;
  Point point_;
  std::optional<Point> parent_;
  std::mutex mu_;
  std::vector<std::unique_ptr<TreeWriter>> trees_;
  bool abandoned_ = false;
};

// Reads one disk of a point. Not thread-safe (one reader per thread).
class PointDiskReader {
 public:
  static Result<std::unique_ptr<PointDiskReader>> Open(Repository& repo, const Point& point,
                                                       size_t disk);
  uint64_t capacity() const { return disk_.capacity; }
  Status Read(uint64_t offset, std::span<uint8_t> buf);
  // Asks the repository to start fetching the chunks of this range (a hint: a restore calls
  // it for the window after the one it reads, so that reads overlap).
  Status Prefetch(uint64_t offset, uint64_t length);
  // The chunk-aligned ranges that hold data (every other byte reads as zero).
  Result<ExtentSet> Allocated(uint64_t offset, uint64_t length);
  // The id of the chunk holding byte `offset` (zero for an all-zero chunk): what a restored
  // copy's chunk must hash to (Repository::codec().IdOf).
  Result<Id> ChunkIdAt(uint64_t offset);
  uint64_t chunk_size() const { return disk_.chunk_size; }

 private:
  PointDiskReader(Repository& repo, const PointDisk& d)
      : repo_(repo), disk_(d), tree_(repo, d.tree, ChunkCount(d)) {}
  static uint64_t ChunkCount(const PointDisk& d) {
    return (d.capacity + d.chunk_size - 1) / d.chunk_size;
  }
  Repository& repo_;
  PointDisk disk_;
  TreeReader tree_;
  std::vector<uint8_t> partial_[2];  // the chunks a Read covers in part (its first, its last)
};

}  // namespace vmbackup::repo
