#include "repo/point.h"

#include <algorithm>
#include <cstring>
#include <ctime>
#include <nlohmann/json.hpp>

#include "base/checked_math.h"
#include "base/strings.h"
#include "repo/json_fields.h"
#include "repo/object_lock.h"

namespace vmbackup::repo {
namespace {

using nlohmann::json;

std::vector<uint8_t> PointAad(const std::string& id) {
  std::string s = "vmbackup point " + id;
  return {s.begin(), s.end()};
}

std::string NewPointId() {
  // UTC with microseconds, so that ids sort by creation time.
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  char buf[32];
  strftime(buf, sizeof buf, "%Y%m%dT%H%M%S", &tm);
  return StrFormat("%s.%06ldZ-%s", buf, long(ts.tv_nsec / 1000), ToHex(RandomBytes(4)).c_str());
}

json RecordJson(const Point& p) {
  json disks = json::array();
  for (const PointDisk& d : p.disks) {
    json dj = {{"key", d.key},
               {"label", d.label},
               {"capacity", d.capacity},
               {"chunk_size", d.chunk_size},
               {"root", d.tree.root.Hex()},
               {"depth", d.tree.depth},
               {"change_id", d.change_id},
               {"snapshot", d.snapshot},
               {"transport", d.transport},
               {"bytes_scanned", d.bytes_scanned},
               {"bytes_new", d.bytes_new}};
    if (!d.disk_uuid.empty()) dj["uuid"] = d.disk_uuid;
    disks.push_back(std::move(dj));
  }
  return {{"version", 1},
          {"id", p.id},
          {"vm", {{"name", p.vm_name}, {"id", p.vm_id}}},
          {"created", p.created},
          {"parent", p.parent.empty() ? json(nullptr) : json(p.parent)},
          {"notes", p.notes},
          {"consistency", p.consistency},
          {"snapshot", p.snapshot},
          {"config", ToHex({reinterpret_cast<const uint8_t*>(p.config.data()), p.config.size()})},
          {"disks", disks},
          {"stats", p.stats},
          {"timings", p.timings}};
}

Result<Point> FromJson(const json& j) {
  if (!j.is_object() || !j.contains("version") || !j["version"].is_number_integer() ||
      j["version"].get<int64_t>() != 1)
    return CorruptionError("point record: not version 1");
  Point p;
  try {
    p.id = j.at("id").get<std::string>();
    p.vm_name = j.at("vm").value("name", "");
    p.vm_id = j.at("vm").value("id", "");
    p.created = j.value("created", "");
    if (j.contains("parent") && j["parent"].is_string()) p.parent = j["parent"].get<std::string>();
    p.notes = j.value("notes", "");
    p.consistency = j.value("consistency", "crash");
    p.snapshot = j.value("snapshot", "");
    if (j.contains("stats") && j["stats"].is_object()) p.stats = j["stats"];
    if (j.contains("timings") && j["timings"].is_object()) p.timings = j["timings"];
    auto cfg = FromHex(j.value("config", ""));
    if (!cfg) return CorruptionError("point record: config: " + cfg.error().message());
    p.config.assign(cfg->begin(), cfg->end());
    for (const json& d : j.at("disks")) {
      PointDisk pd;
      pd.key = IntAt<int>(d, "key");
      pd.label = d.value("label", "");
      pd.capacity = IntAt<uint64_t>(d, "capacity");
      pd.chunk_size = IntAt<uint64_t>(d, "chunk_size");
      auto root = Id::FromHex(d.at("root").get<std::string>());
      if (!root) return CorruptionError("point record: root: " + root.error().message());
      pd.tree.root = *root;
      pd.tree.depth = IntAt<int>(d, "depth");
      pd.change_id = d.value("change_id", "");
      pd.snapshot = d.value("snapshot", "");
      pd.transport = d.value("transport", "");
      pd.disk_uuid = d.value("uuid", "");
      pd.bytes_scanned = IntOr<uint64_t>(d, "bytes_scanned", 0);
      pd.bytes_new = IntOr<uint64_t>(d, "bytes_new", 0);
      if (pd.chunk_size == 0 || !IsPowerOfTwo(pd.chunk_size) ||
          pd.tree.depth != TreeDepth(DivRoundUp(pd.capacity, pd.chunk_size))) {
        return CorruptionError("point record: disk " + std::to_string(pd.key) +
                               " has inconsistent sizes");
      }
      p.disks.push_back(pd);
    }
  } catch (const json::exception& e) {
    return CorruptionError(std::string("point record: ") + e.what());
  }
  return p;
}

}  // namespace

json PointToJson(const Point& p) {
  json j = RecordJson(p);
  j["protected"] = p.is_protected;
  return j;
}

Status SavePoint(Repository& repo, const Point& p) {
  std::string text = RecordJson(p).dump();
  std::vector<uint8_t> blob = repo.codec().Encode(
      {reinterpret_cast<const uint8_t*>(text.data()), text.size()}, PointAad(p.id));
  return repo.backend().Save({storage::ObjectType::kPoint, p.id}, blob);
}

Result<Point> LoadPoint(Repository& repo, const std::string& id) {
  VMBACKUP_RETURN_IF_ERROR(storage::ValidateObjectName(id));
  auto blob = repo.backend().Load({storage::ObjectType::kPoint, id});
  if (!blob) {
    if (blob.error().code() == ErrorCode::kNotFound) return NotFoundError("no restore point " + id);
    return blob.error();
  }
  auto text = repo.codec().Decode(*blob, PointAad(id), 64 << 20);
  if (!text) return text.error().WithContext("restore point " + id);
  json j = json::parse(text->begin(), text->end(), nullptr, false);
  if (j.is_discarded()) return CorruptionError("restore point " + id + ": not JSON");
  VMBACKUP_ASSIGN_OR_RETURN(Point p, FromJson(j));
  if (p.id != id) return CorruptionError("restore point " + id + " says it is " + p.id);
  p.is_protected = repo.backend().Stat({storage::ObjectType::kPoint, id + ".protected"}).ok();
  return p;
}

Result<std::vector<std::string>> ListPoints(Repository& repo) {
  VMBACKUP_ASSIGN_OR_RETURN(auto objects, repo.backend().List(storage::ObjectType::kPoint));
  std::vector<std::string> ids;
  const std::string marker = ".protected";
  for (const auto& o : objects) {
    bool is_marker = o.name.size() > marker.size() &&
                     o.name.compare(o.name.size() - marker.size(), marker.size(), marker) == 0;
    if (!is_marker) ids.push_back(o.name);
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

Status ProtectPoint(Repository& repo, const std::string& id) {
  VMBACKUP_RETURN_IF_ERROR(LoadPoint(repo, id).status());
  Status s = repo.backend().Save({storage::ObjectType::kPoint, id + ".protected"}, {});
  return s.code() == ErrorCode::kAlreadyExists ? Status::Ok() : s;
}

Status UnprotectPoint(Repository& repo, const std::string& id) {
  VMBACKUP_RETURN_IF_ERROR(LoadPoint(repo, id).status());
  Status s = repo.backend().Delete({storage::ObjectType::kPoint, id + ".protected"});
  return s.code() == ErrorCode::kNotFound ? Status::Ok() : s;
}

Result<std::unique_ptr<PointWriter>> PointWriter::Start(Repository& repo, Point meta) {
  std::unique_ptr<PointWriter> w(new PointWriter(repo, std::move(meta)));
  if (!w->point_.parent.empty()) {
    VMBACKUP_ASSIGN_OR_RETURN(w->parent_, LoadPoint(repo, w->point_.parent));
  }
  w->point_.id = NewPointId();
  w->point_.created = UtcNowRfc3339();
  w->point_.disks.clear();
  return w;
}

Result<std::unique_ptr<PointWriter>> PointWriter::StartCopy(Repository& repo, Point meta) {
  const std::string id = meta.id, created = meta.created;
  if (id.empty() || created.empty()) return InvalidArgumentError("a copied point needs its id");
  VMBACKUP_ASSIGN_OR_RETURN(auto w, Start(repo, std::move(meta)));
  w->point_.id = id;
  w->point_.created = created;
  return w;
}

std::optional<PointDisk> PointWriter::ParentDisk(int key, uint64_t capacity) const {
  if (!parent_) return std::nullopt;
  for (const PointDisk& pd : parent_->disks) {
    if (pd.key == key && pd.capacity == capacity && pd.chunk_size == repo_.chunk_size()) return pd;
  }
  return std::nullopt;
}

Result<size_t> PointWriter::AddDisk(const PointDisk& spec, bool from_parent) {
  std::lock_guard<std::mutex> l(mu_);
  PointDisk d = spec;
  d.chunk_size = repo_.chunk_size();
  if (d.capacity == 0) return InvalidArgumentError("a disk needs a capacity");
  uint64_t chunks = DivRoundUp(d.capacity, d.chunk_size);
  std::optional<TreeRoot> base;
  if (from_parent) {
    if (auto pd = ParentDisk(d.key, d.capacity)) base = pd->tree;
  }
  trees_.push_back(std::make_unique<TreeWriter>(repo_, chunks, base));
  point_.disks.push_back(d);
  return point_.disks.size() - 1;
}

Status PointWriter::CheckChunk(size_t disk, uint64_t offset, uint64_t length) const {
  if (disk >= point_.disks.size()) return InvalidArgumentError("no such disk in this point");
  const PointDisk& d = point_.disks[disk];
  if (offset % d.chunk_size != 0 || !RangeWithin(offset, length, d.capacity) ||
      (length % d.chunk_size != 0 && offset + length != d.capacity)) {
    return InvalidArgumentError(StrFormat(
        "range %llu+%llu is not on the %llu-byte chunk grid of the disk",
        (unsigned long long)offset, (unsigned long long)length, (unsigned long long)d.chunk_size));
  }
  return Status::Ok();
}

Status PointWriter::WriteChunk(size_t disk, uint64_t offset, std::span<const uint8_t> data,
                               bool* is_new) {
  {
    std::lock_guard<std::mutex> l(mu_);
    VMBACKUP_RETURN_IF_ERROR(CheckChunk(disk, offset, data.size()));
    if (data.size() > point_.disks[disk].chunk_size)
      return InvalidArgumentError("more than one chunk");
  }
  Id id;  // all-zero chunks are never stored
  bool fresh = false;
  if (!IsAllZero(data.data(), data.size())) {
    VMBACKUP_ASSIGN_OR_RETURN(id, repo_.Store(BlobType::kChunk, data, &fresh));
  }
  if (is_new) *is_new = fresh;
  std::lock_guard<std::mutex> l(mu_);
  return trees_[disk]->Set(offset / point_.disks[disk].chunk_size, id);
}

Status PointWriter::ReferenceChunk(size_t disk, uint64_t offset, const Id& id) {
  std::lock_guard<std::mutex> l(mu_);
  if (disk >= point_.disks.size()) return InvalidArgumentError("no such disk in this point");
  const PointDisk& d = point_.disks[disk];
  if (offset >= d.capacity) return InvalidArgumentError("a chunk past the end of the disk");
  VMBACKUP_RETURN_IF_ERROR(CheckChunk(disk, offset, std::min(d.chunk_size, d.capacity - offset)));
  if (!id.is_zero() && !repo_.Has(id))
    return FailedPreconditionError("chunk " + id.Hex() + " is not in the repository");
  return trees_[disk]->Set(offset / point_.disks[disk].chunk_size, id);
}

Status PointWriter::MarkZero(size_t disk, uint64_t offset, uint64_t length) {
  std::lock_guard<std::mutex> l(mu_);
  VMBACKUP_RETURN_IF_ERROR(CheckChunk(disk, offset, length));
  uint64_t cs = point_.disks[disk].chunk_size;
  for (uint64_t i = offset / cs; i < DivRoundUp(offset + length, cs); ++i) {
    VMBACKUP_RETURN_IF_ERROR(trees_[disk]->Set(i, Id{}));
  }
  return Status::Ok();
}

Status PointWriter::SetDiskStats(size_t disk, uint64_t bytes_scanned, uint64_t bytes_new) {
  std::lock_guard<std::mutex> l(mu_);
  if (disk >= point_.disks.size()) return InvalidArgumentError("no such disk in this point");
  point_.disks[disk].bytes_scanned = bytes_scanned;
  point_.disks[disk].bytes_new = bytes_new;
  return Status::Ok();
}

void PointWriter::SetRecordExtras(nlohmann::json stats, nlohmann::json timings) {
  std::lock_guard<std::mutex> l(mu_);
  point_.stats = std::move(stats);
  point_.timings = std::move(timings);
}

void PointWriter::Abandon() {
  std::lock_guard<std::mutex> l(mu_);
  abandoned_ = true;
}

Result<Point> PointWriter::Commit() {
  std::lock_guard<std::mutex> l(mu_);
  if (abandoned_) return FailedPreconditionError("the point was abandoned");
  // Commit order: chunk packs, tree pages (packs of their own, gc's unit), one index file for
  // both, then the point. The last chunk pack is written while the tree pages are made.
  VMBACKUP_RETURN_IF_ERROR(repo_.SealPack());
  for (size_t i = 0; i < trees_.size(); ++i) {
    VMBACKUP_ASSIGN_OR_RETURN(point_.disks[i].tree, trees_[i]->Finish());
  }
  // Disks in the record by device key, whatever order they were added in (disks are backed
  // up in parallel).
  std::stable_sort(point_.disks.begin(), point_.disks.end(),
                   [](const PointDisk& a, const PointDisk& b) { return a.key < b.key; });
  VMBACKUP_RETURN_IF_ERROR(repo_.Flush());
  if (repo_.object_lock().seconds > 0) {
    // Before the point appears, everything it needs is locked at least as long as it will be.
    VMBACKUP_ASSIGN_OR_RETURN(
        LockReport locks,
        KeepPointLocked(repo_, point_, int64_t(::time(nullptr)) + repo_.object_lock().seconds));
    point_.stats["locks_checked"] = locks.objects;
    point_.stats["locks_extended"] = locks.extended;
  }
  VMBACKUP_RETURN_IF_ERROR(SavePoint(repo_, point_));
  return point_;
}

Result<size_t> FindPointDisk(const Point& point, int key) {
  for (size_t i = 0; i < point.disks.size(); ++i)
    if (point.disks[i].key == key) return i;
  std::string keys;
  for (const auto& d : point.disks) keys += (keys.empty() ? "" : ", ") + std::to_string(d.key);
  return NotFoundError(StrFormat("point %s has no disk %d (its disks: %s)", point.id.c_str(), key,
                                 keys.empty() ? "none" : keys.c_str()));
}

Result<std::unique_ptr<PointDiskReader>> PointDiskReader::Open(Repository& repo, const Point& point,
                                                               size_t disk) {
  if (disk >= point.disks.size()) {
    return InvalidArgumentError(StrFormat("point %s has no disk %zu", point.id.c_str(), disk));
  }
  return std::unique_ptr<PointDiskReader>(new PointDiskReader(repo, point.disks[disk]));
}

Status PointDiskReader::Read(uint64_t offset, std::span<uint8_t> buf) {
  if (!RangeWithin(offset, buf.size(), disk_.capacity))
    return InvalidArgumentError("read past the end of the disk");
  if (buf.empty()) return Status::Ok();
  const uint64_t cs = disk_.chunk_size;
  const uint64_t first = offset / cs, last = (offset + buf.size() - 1) / cs;
  // Every stored chunk of the range is fetched and decoded at once, straight into `buf` when
  // the range covers it whole, else into `partial_` (at most the first and the last chunk).
  // Zero chunks are zeroed in `buf`.
  std::vector<Id> ids;
  std::vector<std::span<uint8_t>> outs;
  struct Partial {
    uint64_t chunk_start;
    size_t slot;  // in partial_
  };
  std::vector<Partial> partials;
  for (uint64_t c = first; c <= last; ++c) {
    VMBACKUP_ASSIGN_OR_RETURN(Id id, tree_.ChunkAt(c));
    const uint64_t chunk_start = c * cs, chunk_len = std::min(cs, disk_.capacity - chunk_start);
    const uint64_t from = std::max(offset, chunk_start),
                   to = std::min(offset + buf.size(), chunk_start + chunk_len);
    if (id.is_zero()) {
      std::memset(buf.data() + (from - offset), 0, to - from);
      continue;
    }
    ids.push_back(id);
    if (from == chunk_start && to == chunk_start + chunk_len) {
      outs.emplace_back(buf.data() + (from - offset), chunk_len);
    } else {
      partials.push_back({chunk_start, partials.size()});
      partial_[partials.back().slot].resize(chunk_len);
      outs.emplace_back(partial_[partials.back().slot]);
    }
  }
  if (ids.empty()) return Status::Ok();
  Status s = repo_.LoadInto(BlobType::kChunk, ids, outs);
  if (!s.ok()) {
    return s.WithContext(
        StrFormat("disk %d bytes %llu+%zu", disk_.key, (unsigned long long)offset, buf.size()));
  }
  for (const Partial& p : partials) {
    const std::vector<uint8_t>& chunk = partial_[p.slot];
    const uint64_t from = std::max(offset, p.chunk_start),
                   to = std::min(offset + buf.size(), p.chunk_start + chunk.size());
    std::memcpy(buf.data() + (from - offset), chunk.data() + (from - p.chunk_start), to - from);
  }
  return Status::Ok();
}

Status PointDiskReader::Prefetch(uint64_t offset, uint64_t length) {
  if (offset >= disk_.capacity) return Status::Ok();
  const uint64_t cs = disk_.chunk_size;
  const uint64_t end = offset + std::min(length, disk_.capacity - offset);
  std::vector<Id> ids;
  VMBACKUP_RETURN_IF_ERROR(
      tree_.ForEachChunk(offset / cs, DivRoundUp(end, cs), [&](uint64_t, const Id& id) {
        ids.push_back(id);
        return Status::Ok();
      }));
  repo_.Prefetch(ids);
  return Status::Ok();
}

Result<Id> PointDiskReader::ChunkIdAt(uint64_t offset) {
  if (offset >= disk_.capacity) return InvalidArgumentError("offset past the end of the disk");
  return tree_.ChunkAt(offset / disk_.chunk_size);
}

Result<ExtentSet> PointDiskReader::Allocated(uint64_t offset, uint64_t length) {
  ExtentSet out;
  const uint64_t cs = disk_.chunk_size;
  uint64_t end = std::min(
      disk_.capacity, offset + std::min(length, disk_.capacity - std::min(offset, disk_.capacity)));
  VMBACKUP_RETURN_IF_ERROR(
      tree_.ForEachChunk(offset / cs, DivRoundUp(end, cs), [&](uint64_t i, const Id&) {
        out.Add(i * cs, std::min(cs, disk_.capacity - i * cs));
        return Status::Ok();
      }));
  return out.Clip(offset, end - std::min(offset, end));
}

}  // namespace vmbackup::repo
