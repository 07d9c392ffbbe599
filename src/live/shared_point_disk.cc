#include "live/shared_point_disk.h"

#include <algorithm>
#include <cstring>

#include "base/checked_math.h"
#include "base/strings.h"

namespace vmbackup::live {
namespace {

constexpr size_t kLeafPagesKept = 64;  // 2 MiB of ids; 4 GiB of disk at 64 KiB chunks
constexpr size_t kPrefetchQueue = 64;  // requests beyond it are dropped (they are hints)

}  // namespace

Result<std::unique_ptr<SharedPointDisk>> SharedPointDisk::Open(repo::Repository& repo,
                                                               const repo::Point& point, int key,
                                                               const CacheOptions& options) {
  VMBACKUP_ASSIGN_OR_RETURN(size_t i, repo::FindPointDisk(point, key));
  const repo::PointDisk& d = point.disks[i];
  if (d.chunk_size == 0) return CorruptionError("point " + point.id + ": disk with chunk size 0");
  return std::unique_ptr<SharedPointDisk>(new SharedPointDisk(repo, d, options));
}

SharedPointDisk::SharedPointDisk(repo::Repository& repo, const repo::PointDisk& d,
                                 const CacheOptions& o)
    : repo_(repo), disk_(d), options_(o), tree_(repo, d.tree, ChunkCount()) {
  // Room for at least a few chunks, whatever was asked.
  options_.cache_bytes = std::max<uint64_t>(options_.cache_bytes, 4 * disk_.chunk_size);
  stream_ends_.fill(UINT64_MAX);
  if (options_.readahead_bytes) loader_ = std::thread([this] { LoaderMain(); });
}

SharedPointDisk::~SharedPointDisk() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  work_.notify_all();
  if (loader_.joinable()) loader_.join();
}

uint64_t SharedPointDisk::ChunkLength(uint64_t chunk) const {
  return std::min(disk_.chunk_size, disk_.capacity - chunk * disk_.chunk_size);
}

Result<std::vector<repo::Id>> SharedPointDisk::ChunkIds(uint64_t first, uint64_t end) {
  std::vector<repo::Id> out;
  out.reserve(end - first);
  std::lock_guard lock(tree_mu_);
  for (uint64_t c = first; c < end;) {
    const uint64_t page = c / repo::kTreeFanout;
    auto it = leaves_.find(page);
    if (it == leaves_.end()) {
      VMBACKUP_ASSIGN_OR_RETURN(const std::vector<repo::Id>* ids, tree_.Page(0, page));
      if (leaves_.size() >= kLeafPagesKept) {
        leaves_.erase(leaf_lru_.back());
        leaf_lru_.pop_back();
      }
      it = leaves_.emplace(page, *ids).first;
      leaf_lru_.push_front(page);
    } else {
      leaf_lru_.remove(page);  // short list: a scan is cheap next to a page load
      leaf_lru_.push_front(page);
    }
    const auto& ids = it->second;
    const uint64_t page_first = page * repo::kTreeFanout;
    const uint64_t stop = std::min(end, page_first + ids.size());
    if (stop <= c) return CorruptionError("tree: a leaf page is shorter than the disk");
    for (; c < stop; ++c) out.push_back(ids[c - page_first]);
  }
  return out;
}

Status SharedPointDisk::LoadClaimed(std::vector<Claim>& claims) {
  if (claims.empty()) return Status::Ok();
  std::vector<repo::Id> ids;
  std::vector<std::vector<uint8_t>> bufs(claims.size());
  std::vector<std::span<uint8_t>> outs;
  for (size_t i = 0; i < claims.size(); ++i) {
    ids.push_back(claims[i].id);
    bufs[i].resize(ChunkLength(claims[i].chunk));
    outs.emplace_back(bufs[i]);
  }
  Status s = repo_.LoadInto(repo::BlobType::kChunk, ids, outs);
  {
    std::lock_guard lock(mu_);
    for (size_t i = 0; i < claims.size(); ++i) {
      Slot& slot = *claims[i].slot;
      slot.loading = false;
      if (!s.ok()) {
        slot.error = s;
        slots_.erase(claims[i].chunk);  // not cached: the next read tries again
        continue;
      }
      cached_bytes_ += bufs[i].size();
      slot.data = std::make_shared<const std::vector<uint8_t>>(std::move(bufs[i]));
      lru_.push_front(claims[i].chunk);
      slot.lru = lru_.begin();
      ++stats_.chunks_loaded;
    }
    EvictLocked();
  }
  loaded_.notify_all();
  return s;
}

void SharedPointDisk::EvictLocked() {
  while (cached_bytes_ > options_.cache_bytes && !lru_.empty()) {
    auto it = slots_.find(lru_.back());
    lru_.pop_back();
    if (it == slots_.end()) continue;
    cached_bytes_ -= it->second->data->size();  // readers still copying keep their reference
    slots_.erase(it);
  }
}

Status SharedPointDisk::Read(uint64_t offset, std::span<uint8_t> buf) {
  if (!RangeWithin(offset, buf.size(), disk_.capacity)) {
    return InvalidArgumentError(
        StrFormat("read of %zu bytes at %llu past the end of the disk "
                  "(%llu bytes)",
                  buf.size(), (unsigned long long)offset, (unsigned long long)disk_.capacity));
  }
  if (buf.empty()) return Status::Ok();
  const uint64_t cs = disk_.chunk_size, end = offset + buf.size();
  const uint64_t first = offset / cs, last = (end - 1) / cs;
  VMBACKUP_ASSIGN_OR_RETURN(std::vector<repo::Id> ids, ChunkIds(first, last + 1));
  struct Part {
    uint64_t chunk;
    std::shared_ptr<Slot> slot;
  };
  std::vector<Part> parts;
  std::vector<Claim> claims;
  {
    std::lock_guard lock(mu_);
    for (uint64_t c = first; c <= last; ++c) {
      const repo::Id& id = ids[c - first];
      if (id.is_zero()) continue;
      auto it = slots_.find(c);
      if (it == slots_.end()) {
        auto slot = std::make_shared<Slot>();
        slots_.emplace(c, slot);
        claims.push_back({c, id, slot});
        parts.push_back({c, slot});
        continue;
      }
      if (it->second->loading) {
        ++stats_.waits;
      } else {
        ++stats_.hits;
        lru_.splice(lru_.begin(), lru_, it->second->lru);
      }
      parts.push_back({c, it->second});
    }
  }
  NoteSequential(offset, end);
  VMBACKUP_RETURN_IF_ERROR(LoadClaimed(claims));
  // Zero chunks first; then each stored chunk's part of the range.
  for (uint64_t c = first; c <= last; ++c) {
    if (!ids[c - first].is_zero()) continue;
    const uint64_t from = std::max(offset, c * cs), to = std::min(end, c * cs + ChunkLength(c));
    std::memset(buf.data() + (from - offset), 0, to - from);
  }
  for (auto& p : parts) {
    std::shared_ptr<const std::vector<uint8_t>> data;
    {
      std::unique_lock lock(mu_);
      loaded_.wait(lock, [&] { return !p.slot->loading; });
      if (!p.slot->error.ok()) return p.slot->error;
      data = p.slot->data;
    }
    const uint64_t start = p.chunk * cs;
    const uint64_t from = std::max(offset, start), to = std::min(end, start + data->size());
    std::memcpy(buf.data() + (from - offset), data->data() + (from - start), to - from);
  }
  return Status::Ok();
}

Result<std::vector<DiskExtent>> SharedPointDisk::Extents(uint64_t offset, uint64_t length) {
  std::vector<DiskExtent> out;
  if (offset >= disk_.capacity) return out;
  const uint64_t end = offset + std::min(length, disk_.capacity - offset);
  if (end == offset) return out;
  const uint64_t cs = disk_.chunk_size, first = offset / cs, last = (end - 1) / cs;
  VMBACKUP_ASSIGN_OR_RETURN(std::vector<repo::Id> ids, ChunkIds(first, last + 1));
  for (uint64_t c = first; c <= last; ++c) {
    const bool zero = ids[c - first].is_zero();
    const uint64_t from = std::max(offset, c * cs), to = std::min(end, c * cs + ChunkLength(c));
    if (!out.empty() && out.back().zero == zero) {
      out.back().length += to - from;
    } else {
      out.push_back({from, to - from, zero});
    }
  }
  return out;
}

void SharedPointDisk::NoteSequential(uint64_t offset, uint64_t end) {
  if (!options_.readahead_bytes) return;
  bool sequential = false;
  {
    std::lock_guard lock(mu_);
    for (uint64_t& e : stream_ends_) {
      if (e == offset) {
        e = end;
        sequential = true;
        break;
      }
    }
    if (!sequential) {
      stream_ends_[next_stream_] = end;
      next_stream_ = (next_stream_ + 1) % stream_ends_.size();
    }
  }
  if (sequential) Prefetch(end, options_.readahead_bytes);
}

void SharedPointDisk::Prefetch(uint64_t offset, uint64_t length) {
  if (offset >= disk_.capacity || length == 0 || !loader_.joinable()) return;
  length = std::min({length, disk_.capacity - offset, options_.cache_bytes / 2});
  const uint64_t cs = disk_.chunk_size;
  const uint64_t first = offset / cs, end = (offset + length + cs - 1) / cs;
  {
    std::lock_guard lock(mu_);
    // Already asked for: nothing to queue. The queue is bounded: a hint may be dropped.
    for (const auto& r : prefetch_)
      if (r.first <= first && end <= r.second) return;
    if (prefetch_.size() >= kPrefetchQueue) prefetch_.pop_front();
    prefetch_.emplace_back(first, end);
  }
  work_.notify_one();
}

void SharedPointDisk::LoaderMain() {
  for (;;) {
    std::pair<uint64_t, uint64_t> range;
    {
      std::unique_lock lock(mu_);
      work_.wait(lock, [&] { return stopping_ || !prefetch_.empty(); });
      if (stopping_) return;
      range = prefetch_.front();
      prefetch_.pop_front();
    }
    auto ids = ChunkIds(range.first, range.second);
    if (!ids) continue;  // the reader that needs it will see the error
    std::vector<Claim> claims;
    {
      std::lock_guard lock(mu_);
      for (uint64_t c = range.first; c < range.second; ++c) {
        const repo::Id& id = (*ids)[c - range.first];
        if (id.is_zero() || slots_.count(c)) continue;
        auto slot = std::make_shared<Slot>();
        slots_.emplace(c, slot);
        claims.push_back({c, id, slot});
      }
      stats_.prefetched += claims.size();
    }
    (void)LoadClaimed(claims);  // errors reach the readers that wait on these chunks
  }
}

CacheStats SharedPointDisk::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

}  // namespace vmbackup::live
