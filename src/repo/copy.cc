#include "repo/copy.h"

#include <optional>
#include <vector>

#include "base/checked_math.h"
#include "base/strings.h"
#include "repo/tree.h"

namespace vmbackup::repo {
namespace {

// Chunks loaded from the source in one LoadInto: 16 MiB at 64 KiB chunks, adjacent ones of a
// pack in one read (one ranged GET on S3).
constexpr size_t kBatchChunks = 256;

// Whether both repositories derive the same id from the same bytes (no encryption on either,
// or the same id key): then an id the target holds is the chunk itself.
bool NameChunksAlike(const Repository& a, const Repository& b) {
  static constexpr uint8_t kProbe[] = "vmbackup copy: do these repositories name chunks alike?";
  return a.codec().IdOf(kProbe) == b.codec().IdOf(kProbe);
}

// Feeds one disk's chunks from the source into the target's point writer, in batches.
class DiskCopier {
 public:
  DiskCopier(Repository& from, Repository& to, PointWriter& w, size_t disk, const PointDisk& d,
             CopyReport& report, std::atomic<uint64_t>* progress)
      : from_(from), to_(to), w_(w), disk_(disk), d_(d), report_(report), progress_(progress) {}

  // Chunk `index` is `id` in the source (zero: zeros).
  Status Add(uint64_t index, const Id& id) {
    const uint64_t offset = index * d_.chunk_size;
    const uint64_t length = std::min(d_.chunk_size, d_.capacity - offset);
    if (id.is_zero()) {
      Count(length);
      return w_.MarkZero(disk_, offset, length);
    }
    if (report_.same_ids && to_.Has(id)) {
      Count(length);
      return w_.ReferenceChunk(disk_, offset, id);
    }
    filling_.push_back({index, id});
    if (filling_.size() < kBatchChunks) return Status::Ok();
    // The source starts fetching this batch (a remote store: in the background) while the one
    // before is stored, so that the network and the store's work overlap.
    std::vector<Id> ids;
    for (const auto& chunk : filling_) ids.push_back(chunk.second);
    from_.Prefetch(ids);
    Status s = Store(batch_);
    batch_.swap(filling_);
    filling_.clear();
    return s;
  }

  // Stores what was added and not stored yet.
  Status Flush() {
    VMBACKUP_RETURN_IF_ERROR(Store(batch_));
    batch_.clear();
    Status s = Store(filling_);
    filling_.clear();
    return s;
  }

 private:
  using Batch = std::vector<std::pair<uint64_t, Id>>;

  Status Store(const Batch& batch) {
    if (batch.empty()) return Status::Ok();
    std::vector<Id> ids;
    std::vector<uint64_t> offsets;
    uint64_t total = 0;
    for (const auto& [index, id] : batch) {
      ids.push_back(id);
      offsets.push_back(total);
      total += std::min(d_.chunk_size, d_.capacity - index * d_.chunk_size);
    }
    buffer_.resize(total);
    std::vector<std::span<uint8_t>> outs;
    for (size_t i = 0; i < batch.size(); ++i) {
      const uint64_t end = i + 1 < batch.size() ? offsets[i + 1] : total;
      outs.push_back(std::span<uint8_t>(buffer_).subspan(offsets[i], end - offsets[i]));
    }
    VMBACKUP_RETURN_IF_ERROR(from_.LoadInto(BlobType::kChunk, ids, outs)
                                 .WithContext(StrFormat("disk %d of the source", d_.key)));
    for (size_t i = 0; i < batch.size(); ++i) {
      bool fresh = false;
      VMBACKUP_RETURN_IF_ERROR(
          w_.WriteChunk(disk_, batch[i].first * d_.chunk_size, outs[i], &fresh));
      ++report_.chunks_read;
      report_.bytes_read += outs[i].size();
      if (fresh) {
        ++report_.chunks_new;
        report_.bytes_new += outs[i].size();
      }
      Count(outs[i].size());
    }
    return Status::Ok();
  }

  void Count(uint64_t bytes) {
    if (progress_) progress_->fetch_add(bytes, std::memory_order_relaxed);
  }

  Repository& from_;
  Repository& to_;
  PointWriter& w_;
  size_t disk_;
  const PointDisk& d_;
  CopyReport& report_;
  std::atomic<uint64_t>* progress_;
  Batch batch_;    // full, asked of the source ahead: stored next
  Batch filling_;  // being added to
  std::vector<uint8_t> buffer_;
};

}  // namespace

Result<CopyReport> CopyPoint(Repository& from, Repository& to, const std::string& id,
                             std::atomic<uint64_t>* progress) {
  CopyReport report;
  if (auto there = LoadPoint(to, id); there.ok()) {
    return report;
  } else if (there.error().code() != ErrorCode::kNotFound) {
    return there.error().WithContext("the target's point " + id);
  }
  VMBACKUP_ASSIGN_OR_RETURN(Point p, LoadPoint(from, id));
  for (const PointDisk& d : p.disks) {
    if (d.chunk_size != to.chunk_size()) {
      return FailedPreconditionError(StrFormat(
          "point %s has %s chunks and the target repository %s ones: copies need the same "
          "chunk size (init the target with --chunk-size %s)",
          id.c_str(), HumanBytes(d.chunk_size).c_str(), HumanBytes(to.chunk_size()).c_str(),
          HumanBytes(d.chunk_size).c_str()));
    }
  }
  // The parent stays when the target holds it (copies go oldest first); its disks are then the
  // base the changed chunks go onto.
  std::optional<Point> source_parent;
  Point meta = p;
  if (!p.parent.empty() && LoadPoint(to, p.parent).ok()) {
    report.parent_kept = true;
    if (auto sp = LoadPoint(from, p.parent); sp.ok()) source_parent = std::move(*sp);
  } else {
    meta.parent.clear();
  }
  report.same_ids = NameChunksAlike(from, to);
  VMBACKUP_ASSIGN_OR_RETURN(auto w, PointWriter::StartCopy(to, meta));
  for (const PointDisk& d : p.disks) {
    const uint64_t chunks = DivRoundUp(d.capacity, d.chunk_size);
    std::optional<PointDisk> base;
    if (source_parent && w->ParentDisk(d.key, d.capacity)) {
      for (const PointDisk& pd : source_parent->disks)
        if (pd.key == d.key && pd.capacity == d.capacity && pd.chunk_size == d.chunk_size)
          base = pd;
    }
    VMBACKUP_ASSIGN_OR_RETURN(size_t disk, w->AddDisk(d, base.has_value()));
    DiskCopier copier(from, to, *w, disk, d, report, progress);
    auto add = [&](uint64_t index, const Id& chunk) { return copier.Add(index, chunk); };
    if (base) {
      uint64_t differing = 0;
      VMBACKUP_RETURN_IF_ERROR(
          DiffTreeChunks(from, base->tree, d.tree, chunks, [&](uint64_t index, const Id& chunk) {
            ++differing;
            return add(index, chunk);
          }).WithContext(StrFormat("disk %d", d.key)));
      report.chunks_unchanged += chunks - differing;
    } else {
      TreeReader tree(from, d.tree, chunks);
      VMBACKUP_RETURN_IF_ERROR(
          tree.ForEachChunk(0, chunks, add).WithContext(StrFormat("disk %d", d.key)));
    }
    VMBACKUP_RETURN_IF_ERROR(copier.Flush());
  }
  VMBACKUP_RETURN_IF_ERROR(w->Commit().status());
  if (p.is_protected) VMBACKUP_RETURN_IF_ERROR(ProtectPoint(to, id));
  report.copied = true;
  return report;
}

}  // namespace vmbackup::repo
