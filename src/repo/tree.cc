#include "repo/tree.h"

#include <cstring>

#include "base/checked_math.h"
#include "base/endian.h"
#include "base/strings.h"

namespace vmbackup::repo {
namespace {

constexpr char kPageMagic[8] = {'V', 'M', 'B', 'K', 'T', 'R', '0', '1'};
constexpr size_t kPageHeader = 24;

// Chunks covered by one page at `level` (1024^(level+1)), saturating.
uint64_t Span(int level) {
  uint64_t s = kTreeFanout;
  for (int i = 0; i < level; ++i) s = s > UINT64_MAX / kTreeFanout ? UINT64_MAX : s * kTreeFanout;
  return s;
}

// Entries of page `page` at `level` for a disk of `chunks` chunks.
uint64_t PageCount(int level, uint64_t page, uint64_t chunks) {
  uint64_t child_span = level == 0 ? 1 : Span(level - 1);
  uint64_t first = page * Span(level);
  uint64_t children = DivRoundUp(chunks - std::min(chunks, first), child_span);
  return std::min(children, kTreeFanout);
}

std::vector<uint8_t> EncodePage(int level, uint64_t first_chunk, const std::vector<Id>& ids) {
  std::vector<uint8_t> p(kPageHeader + 32 * ids.size(), 0);
  std::memcpy(p.data(), kPageMagic, 8);
  p[8] = uint8_t(level);
  StoreLE32(p.data() + 12, uint32_t(ids.size()));
  StoreLE64(p.data() + 16, first_chunk);
  for (size_t i = 0; i < ids.size(); ++i)
    std::memcpy(p.data() + kPageHeader + 32 * i, ids[i].bytes.data(), 32);
  return p;
}

// The ids of a stored page, checked against the place it must fill.
Result<std::vector<Id>> DecodePage(std::span<const uint8_t> raw, const Id& id, int level,
                                   uint64_t page, uint64_t count) {
  if (raw.size() < kPageHeader || std::memcmp(raw.data(), kPageMagic, 8) != 0 || raw[8] != level ||
      LoadLE32(raw.data() + 12) != count || raw.size() != kPageHeader + 32 * count ||
      LoadLE64(raw.data() + 16) != page * Span(level)) {
    return CorruptionError(StrFormat("tree page %s (level %d, page %llu) does not fit its place",
                                     id.Hex().c_str(), level, (unsigned long long)page));
  }
  std::vector<Id> ids(count);
  for (uint64_t i = 0; i < count; ++i)
    std::memcpy(ids[i].bytes.data(), raw.data() + kPageHeader + 32 * i, 32);
  return ids;
}

bool AllZero(const std::vector<Id>& ids) {
  for (const Id& id : ids)
    if (!id.is_zero()) return false;
  return true;
}

}  // namespace

int TreeDepth(uint64_t chunk_count) {
  int depth = 1;
  uint64_t pages = DivRoundUp(std::max<uint64_t>(chunk_count, 1), kTreeFanout);
  while (pages > 1) {
    pages = DivRoundUp(pages, kTreeFanout);
    ++depth;
  }
  return depth;
}

TreeReader::TreeReader(Repository& repo, const TreeRoot& root, uint64_t chunk_count)
    : repo_(repo), root_(root), chunk_count_(chunk_count) {}

Result<const std::vector<Id>*> TreeReader::Page(int level, uint64_t page) {
  auto it = cache_.find(level);
  if (it != cache_.end() && it->second.first == page) return &it->second.second;
  Id id;
  if (level == root_.depth - 1) {
    if (page != 0) return CorruptionError("tree: page past the root");
    id = root_.root;
  } else {
    VMBACKUP_ASSIGN_OR_RETURN(const std::vector<Id>* parent, Page(level + 1, page / kTreeFanout));
    size_t slot = size_t(page % kTreeFanout);
    if (slot >= parent->size()) return CorruptionError("tree page is missing a child");
    id = (*parent)[slot];
  }
  uint64_t count = PageCount(level, page, chunk_count_);
  std::vector<Id> ids(count);
  if (!id.is_zero()) {
    VMBACKUP_ASSIGN_OR_RETURN(auto raw, repo_.Load(BlobType::kTree, id));
    VMBACKUP_ASSIGN_OR_RETURN(ids, DecodePage(raw, id, level, page, count));
  }
  auto& slot = cache_[level];
  slot = {page, std::move(ids)};
  // Lower levels cached under another parent are now stale only if they belonged to another
  // page; they carry their own page number, so nothing else to do.
  return &slot.second;
}

Result<Id> TreeReader::ChunkAt(uint64_t index) {
  if (index >= chunk_count_) return InvalidArgumentError("chunk index past the end of the disk");
  VMBACKUP_ASSIGN_OR_RETURN(const std::vector<Id>* leaf, Page(0, index / kTreeFanout));
  return (*leaf)[size_t(index % kTreeFanout)];
}

Status TreeReader::ForEachChunk(uint64_t first, uint64_t end,
                                const std::function<Status(uint64_t, const Id&)>& fn) {
  end = std::min(end, chunk_count_);
  // Walk top-down so that a zero subtree is skipped without visiting its leaves.
  std::function<Status(int, uint64_t)> walk = [&](int level, uint64_t page) -> Status {
    uint64_t base = page * Span(level);
    if (base >= end || base + Span(level) <= first) return Status::Ok();
    VMBACKUP_ASSIGN_OR_RETURN(const std::vector<Id>* ids, Page(level, page));
    std::vector<Id> copy = *ids;  // deeper pages may evict this one from the cache
    for (size_t i = 0; i < copy.size(); ++i) {
      if (copy[i].is_zero()) continue;
      if (level == 0) {
        uint64_t index = base + i;
        if (index >= first && index < end) VMBACKUP_RETURN_IF_ERROR(fn(index, copy[i]));
      } else {
        VMBACKUP_RETURN_IF_ERROR(walk(level - 1, page * kTreeFanout + i));
      }
    }
    return Status::Ok();
  };
  if (root_.root.is_zero()) return Status::Ok();
  return walk(root_.depth - 1, 0);
}

Status DiffTreeChunks(Repository& repo, const TreeRoot& a, const TreeRoot& b, uint64_t chunk_count,
                      const std::function<Status(uint64_t, const Id&)>& fn) {
  if (a.root == b.root) return Status::Ok();
  if (a.depth != b.depth) return InvalidArgumentError("trees of different shapes");
  TreeReader ta(repo, a, chunk_count), tb(repo, b, chunk_count);
  std::function<Status(int, uint64_t)> walk = [&](int level, uint64_t page) -> Status {
    // Copies: deeper pages may evict these from the readers' caches.
    VMBACKUP_ASSIGN_OR_RETURN(const std::vector<Id>* pa, ta.Page(level, page));
    const std::vector<Id> ida = *pa;
    VMBACKUP_ASSIGN_OR_RETURN(const std::vector<Id>* pb, tb.Page(level, page));
    const std::vector<Id> idb = *pb;
    for (size_t i = 0; i < ida.size() && i < idb.size(); ++i) {
      if (ida[i] == idb[i]) continue;
      const uint64_t child = page * kTreeFanout + i;
      if (level == 0) {
        if (child < chunk_count) VMBACKUP_RETURN_IF_ERROR(fn(child, idb[i]));
      } else {
        VMBACKUP_RETURN_IF_ERROR(walk(level - 1, child));
      }
    }
    return Status::Ok();
  };
  return walk(a.depth - 1, 0);
}

Status ForEachTreeBlob(Repository& repo, const TreeRoot& root, uint64_t chunk_count,
                       const std::function<bool(BlobType, const Id&)>& fn) {
  if (root.root.is_zero() || !fn(BlobType::kTree, root.root)) return Status::Ok();
  TreeReader reader(repo, root, chunk_count);
  std::function<Status(int, uint64_t)> walk = [&](int level, uint64_t page) -> Status {
    VMBACKUP_ASSIGN_OR_RETURN(const std::vector<Id>* ids, reader.Page(level, page));
    std::vector<Id> copy = *ids;  // deeper pages may evict this one from the reader's cache
    for (size_t i = 0; i < copy.size(); ++i) {
      if (copy[i].is_zero()) continue;
      if (level == 0) {
        fn(BlobType::kChunk, copy[i]);
      } else if (fn(BlobType::kTree, copy[i])) {
        VMBACKUP_RETURN_IF_ERROR(walk(level - 1, page * kTreeFanout + i));
      }
    }
    return Status::Ok();
  };
  return walk(root.depth - 1, 0);
}

TreeWriter::TreeWriter(Repository& repo, uint64_t chunk_count, std::optional<TreeRoot> parent)
    : repo_(repo), chunk_count_(chunk_count), depth_(TreeDepth(chunk_count)) {
  if (parent && parent->depth == depth_) {
    parent_.emplace(repo, *parent, chunk_count);
    parent_root_ = parent;
  }
}

Result<std::vector<Id>> TreeWriter::BasePage(int level, uint64_t page) {
  if (parent_) {
    VMBACKUP_ASSIGN_OR_RETURN(const std::vector<Id>* ids, parent_->Page(level, page));
    return *ids;
  }
  return std::vector<Id>(PageCount(level, page, chunk_count_));
}

Status TreeWriter::Set(uint64_t index, const Id& id) {
  if (index >= chunk_count_) return InvalidArgumentError("chunk index past the end of the disk");
  uint64_t page = index / kTreeFanout;
  auto it = dirty_leaves_.find(page);
  if (it == dirty_leaves_.end()) {
    std::vector<Id> base;
    auto stored = stored_leaves_.find(page);
    if (stored == stored_leaves_.end()) {
      VMBACKUP_ASSIGN_OR_RETURN(base, BasePage(0, page));
    } else if (stored->second.is_zero()) {
      base.resize(PageCount(0, page, chunk_count_));
    } else {  // evicted too early: read it back (it must be flushed to be loaded)
      VMBACKUP_RETURN_IF_ERROR(repo_.Flush());
      VMBACKUP_ASSIGN_OR_RETURN(auto raw, repo_.Load(BlobType::kTree, stored->second));
      VMBACKUP_ASSIGN_OR_RETURN(
          base, DecodePage(raw, stored->second, 0, page, PageCount(0, page, chunk_count_)));
    }
    if (stored != stored_leaves_.end()) stored_leaves_.erase(stored);
    it = dirty_leaves_.emplace(page, std::move(base)).first;
  }
  it->second[size_t(index % kTreeFanout)] = id;
  if (dirty_leaves_.size() > kMaxDirtyLeaves) return EvictLowestLeaf();
  return Status::Ok();
}

Status TreeWriter::EvictLowestLeaf() {
  auto it = dirty_leaves_.begin();
  Id id;  // zero for an all-zero page: never stored
  if (!AllZero(it->second)) {
    VMBACKUP_ASSIGN_OR_RETURN(
        id, repo_.Store(BlobType::kTree, EncodePage(0, it->first * Span(0), it->second)));
  }
  stored_leaves_[it->first] = id;
  dirty_leaves_.erase(it);
  return Status::Ok();
}

Result<TreeRoot> TreeWriter::Finish() {
  // Level by level, store the dirty pages and mark their parents dirty.
  std::map<uint64_t, std::vector<Id>> dirty = std::move(dirty_leaves_);
  for (int level = 0;; ++level) {
    std::map<uint64_t, Id> ids;
    if (level == 0) ids = std::move(stored_leaves_);
    for (auto& [page, entries] : dirty) {
      Id id;  // zero for an all-zero page: never stored
      if (!AllZero(entries)) {
        VMBACKUP_ASSIGN_OR_RETURN(
            id, repo_.Store(BlobType::kTree, EncodePage(level, page * Span(level), entries)));
      }
      ids[page] = id;
    }
    if (level == depth_ - 1) {
      if (ids.empty()) return parent_root_ ? *parent_root_ : TreeRoot{Id{}, depth_};
      return TreeRoot{ids.begin()->second, depth_};
    }
    std::map<uint64_t, std::vector<Id>> up;
    for (const auto& [page, id] : ids) {
      uint64_t parent_page = page / kTreeFanout;
      auto it = up.find(parent_page);
      if (it == up.end()) {
        VMBACKUP_ASSIGN_OR_RETURN(auto base, BasePage(level + 1, parent_page));
        it = up.emplace(parent_page, std::move(base)).first;
      }
      it->second[size_t(page % kTreeFanout)] = id;
    }
    dirty = std::move(up);
  }
}

}  // namespace vmbackup::repo
