// Disk trees (docs/repository-format.md section 6): pages of up to 1024 ids; leaves list chunk
// ids, upper pages list page ids; the zero id stands for an all-zero chunk or subtree.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <vector>

#include "repo/repository.h"

namespace vmbackup::repo {

inline constexpr uint64_t kTreeFanout = 1024;

// Levels of the tree of a disk with `chunk_count` chunks (at least 1).
int TreeDepth(uint64_t chunk_count);

struct TreeRoot {
  Id root;  // zero: the whole disk is zeros
  int depth = 1;
};

// Reads chunk ids, keeping the last page of each level. Not thread-safe.
class TreeReader {
 public:
  TreeReader(Repository& repo, const TreeRoot& root, uint64_t chunk_count);
  Result<Id> ChunkAt(uint64_t index);
  // Calls `fn` for every non-zero chunk in [first, end), skipping zero subtrees whole.
  Status ForEachChunk(uint64_t first, uint64_t end,
                      const std::function<Status(uint64_t, const Id&)>& fn);
  // The ids of page `page` at `level` (zeros when it is an all-zero subtree).
  Result<const std::vector<Id>*> Page(int level, uint64_t page);

 private:
  Repository& repo_;
  TreeRoot root_;
  uint64_t chunk_count_;
  std::map<int, std::pair<uint64_t, std::vector<Id>>> cache_;  // level -> (page, ids)
};

// Calls `fn` for every stored blob of a tree, pages (kTree) and chunks (kChunk), top-down.
// When `fn` returns false for a page, its subtree is skipped (callers use this to walk a page
// shared by several trees once). Fails on the first page that cannot be read.
Status ForEachTreeBlob(Repository& repo, const TreeRoot& root, uint64_t chunk_count,
                       const std::function<bool(BlobType, const Id&)>& fn);

// Calls `fn(index, id in b)` for every chunk whose id differs between trees `a` and `b` of the
// same shape (the same chunk count), in disk order; equal page ids (shared subtrees) are
// skipped whole.
Status DiffTreeChunks(Repository& repo, const TreeRoot& a, const TreeRoot& b, uint64_t chunk_count,
                      const std::function<Status(uint64_t, const Id&)>& fn);

// Builds the tree of a new point: starts from the parent's tree (or all zeros), takes chunk
// ids, and at Finish() stores the pages that changed (with their ancestors). Memory stays
// bounded on huge sparse disks: beyond kMaxDirtyLeaves changed leaves, the lowest is stored
// early (backups write in disk order, so it is rarely touched again; when it is, it is read
// back). Not thread-safe.
class TreeWriter {
 public:
  TreeWriter(Repository& repo, uint64_t chunk_count, std::optional<TreeRoot> parent);
  Status Set(uint64_t index, const Id& id);
  Result<TreeRoot> Finish();

 private:
  static constexpr size_t kMaxDirtyLeaves = 128;  // 4 MiB of ids
  Result<std::vector<Id>> BasePage(int level, uint64_t page);
  Status EvictLowestLeaf();
  Repository& repo_;
  uint64_t chunk_count_;
  int depth_;
  std::optional<TreeReader> parent_;
  std::optional<TreeRoot> parent_root_;
  std::map<uint64_t, std::vector<Id>> dirty_leaves_;
  std::map<uint64_t, Id> stored_leaves_;  // changed leaves already stored
};

}  // namespace vmbackup::repo
