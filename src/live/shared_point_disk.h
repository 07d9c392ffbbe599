// SharedPointDisk: one disk of a restore point as a random-access disk that many threads read
// at once: the NBD export (`vmbackup serve`) and file-level restore read through it.
//
// Contracts:
// - Every chunk is loaded through Repository::LoadInto, which decrypts, decompresses and
//   re-hashes it: a damaged chunk is an error (kCorruption), never wrong bytes.
// - A chunk is loaded once however many readers want it at the same time: the first claims
//   it, the others wait for it (without that, a client with 64 requests in flight decodes the
//   same chunk 64 times).
// - Decoded chunks stay in an LRU of `cache_bytes`; a failed load is not cached (the next read
//   tries again).
// - A reader whose read starts where an earlier one ended is sequential: the chunks after it
//   are loaded in the background (`readahead_bytes`). Prefetch() does the same on request
//   (NBD_CMD_CACHE).
// - All-zero chunks are never loaded: they read as zeros and Extents() calls them holes.
#pragma once

#include <array>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <list>
#include <memory>
#include <mutex>
#include <span>
#include <thread>
#include <unordered_map>
#include <vector>

#include "repo/point.h"
#include "repo/tree.h"

namespace vmbackup::live {

struct CacheOptions {
  uint64_t cache_bytes = 64ull << 20;     // decoded chunks kept (at least a few chunks)
  uint64_t readahead_bytes = 4ull << 20;  // loaded ahead of a sequential reader; 0: none
};

struct DiskExtent {
  uint64_t offset = 0, length = 0;
  bool zero = false;  // an all-zero chunk: a hole
};

struct CacheStats {
  uint64_t chunks_loaded = 0;  // decoded from the repository
  uint64_t hits = 0;           // found decoded in the cache
  uint64_t waits = 0;          // found while another thread was loading it
  uint64_t prefetched = 0;     // loaded by readahead or Prefetch()
};

class SharedPointDisk {
 public:
  // The disk with device key `key` of `point`. `repo` must outlive the disk.
  static Result<std::unique_ptr<SharedPointDisk>> Open(repo::Repository& repo,
                                                       const repo::Point& point, int key,
                                                       const CacheOptions& options = {});
  ~SharedPointDisk();  // waits for the background loader
  SharedPointDisk(const SharedPointDisk&) = delete;
  SharedPointDisk& operator=(const SharedPointDisk&) = delete;

  uint64_t capacity() const { return disk_.capacity; }
  uint64_t chunk_size() const { return disk_.chunk_size; }
  const repo::PointDisk& disk() const { return disk_; }

  // Thread-safe. kInvalidArgument past the end; kCorruption/kNotFound from the repository.
  Status Read(uint64_t offset, std::span<uint8_t> buf);
  // The range cut at chunk boundaries into data and zero (hole) runs, adjacent runs of one kind
  // merged. Thread-safe.
  Result<std::vector<DiskExtent>> Extents(uint64_t offset, uint64_t length);
  // Starts loading the range's chunks in the background (at most half the cache). Thread-safe.
  void Prefetch(uint64_t offset, uint64_t length);
  CacheStats stats() const;

 private:
  struct Slot {
    bool loading = true;
    Status error;
    std::shared_ptr<const std::vector<uint8_t>> data;
    std::list<uint64_t>::iterator lru;
  };
  struct Claim {
    uint64_t chunk;
    repo::Id id;
    std::shared_ptr<Slot> slot;
  };
  SharedPointDisk(repo::Repository& repo, const repo::PointDisk& d, const CacheOptions& o);
  uint64_t ChunkCount() const { return (disk_.capacity + disk_.chunk_size - 1) / disk_.chunk_size; }
  uint64_t ChunkLength(uint64_t chunk) const;
  // The ids of chunks [first, end) (zero ids for zero chunks).
  Result<std::vector<repo::Id>> ChunkIds(uint64_t first, uint64_t end);
  // Loads the claimed chunks in one batch and publishes them (or their error) to waiters.
  Status LoadClaimed(std::vector<Claim>& claims);
  // Called with mu_ held: drops least recently used decoded chunks beyond the cache size.
  void EvictLocked();
  void NoteSequential(uint64_t offset, uint64_t end);
  void LoaderMain();

  repo::Repository& repo_;
  repo::PointDisk disk_;
  CacheOptions options_;

  std::mutex tree_mu_;
  repo::TreeReader tree_;
  std::unordered_map<uint64_t, std::vector<repo::Id>> leaves_;  // leaf page -> ids
  std::list<uint64_t> leaf_lru_;

  mutable std::mutex mu_;
  std::condition_variable loaded_, work_;
  std::unordered_map<uint64_t, std::shared_ptr<Slot>> slots_;
  std::list<uint64_t> lru_;  // ready chunks, most recent first
  uint64_t cached_bytes_ = 0;
  std::array<uint64_t, 16> stream_ends_{};  // where recent reads ended
  size_t next_stream_ = 0;
  std::deque<std::pair<uint64_t, uint64_t>> prefetch_;  // chunk ranges [first, end)
  bool stopping_ = false;
  CacheStats stats_;
  std::thread loader_;
};

}  // namespace vmbackup::live
