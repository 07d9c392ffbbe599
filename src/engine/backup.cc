#include "engine/backup.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <random>
#include <thread>

#include "base/strings.h"
#include "hv/changed_areas.h"
#include "hv/job_lock.h"
#include "repo/marks.h"

namespace vmbackup::engine {
namespace {

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

bool Cancelled(const BackupOptions& o) { return o.cancel && o.cancel->load(); }

// Removes the snapshot when the job ends, whatever way it ends.
class SnapshotGuard {
 public:
  SnapshotGuard(hv::Hypervisor& hv, const hv::VmInfo& vm) : hv_(hv), vm_(vm) {}
  ~SnapshotGuard() {
    if (snapshot_) Remove().IgnoreError();  // the error path already reports the first error
  }
  void Set(hv::SnapshotRef s) { snapshot_ = std::move(s); }
  Status Remove() {
    if (!snapshot_) return Status::Ok();
    Status s = hv_.RemoveSnapshot(vm_, *snapshot_);
    snapshot_.reset();
    return s;
  }

 private:
  hv::Hypervisor& hv_;
  const hv::VmInfo& vm_;
  std::optional<hv::SnapshotRef> snapshot_;
};

// One read request: [offset, offset+length), on the chunk grid, at most max_read long.
struct Request {
  uint64_t offset, length;
};

std::vector<Request> SplitRequests(const ExtentSet& set, uint64_t max_read) {
  std::vector<Request> out;
  for (const Extent& e : set) {
    for (uint64_t o = e.offset; o < e.end(); o += max_read)
      out.push_back({o, std::min(max_read, e.end() - o)});
  }
  return out;
}

// Reads `plan.read` from the disk and writes it into the point; records `plan.zeros`.
Status CopyDisk(hv::DiskAccess& disk, repo::PointWriter& writer, size_t index,
                const hv::DiskPlan& plan, uint64_t chunk, const BackupOptions& o,
                DiskProgress& progress, DiskReport& report) {
  for (const Extent& z : plan.zeros) {
    VMBACKUP_RETURN_IF_ERROR(writer.MarkZero(index, z.offset, z.length));
    report.bytes_zero += z.length;
  }
  uint64_t max_read = disk.preferred_read_size() ? disk.preferred_read_size() : o.max_read;
  if (disk.max_read_size()) max_read = std::min(max_read, disk.max_read_size());
  const std::vector<Request> requests = SplitRequests(plan.read, std::max(chunk, max_read));
  // Several requests in flight: workers take requests in disk order; reads are serialized
  // on the DiskAccess (one connection) unless it takes reads at once; hashing, compression and
  // storing run in parallel.
  std::mutex disk_mu, report_mu;
  const bool concurrent = disk.concurrent_reads();
  std::atomic<size_t> next{0};
  Status first_error;
  std::atomic<bool> failed{false};
  auto work = [&] {
    std::vector<uint8_t> buf;
    double read_s = 0, store_s = 0;
    uint64_t zero = 0, fresh = 0, dedup = 0, read = 0;
    for (size_t i; !failed && (i = next.fetch_add(1)) < requests.size();) {
      const Request& r = requests[i];
      Status s;
      if (Cancelled(o)) s = CancelledError("backup interrupted");
      buf.resize(r.length);
      auto t0 = Clock::now();
      if (s.ok()) {
        std::unique_lock<std::mutex> l(disk_mu, std::defer_lock);
        if (!concurrent) l.lock();
        s = disk.ReadAt(r.offset, buf);
      }
      read_s += Since(t0);
      read += r.length;
      t0 = Clock::now();
      for (uint64_t c = 0; s.ok() && c < r.length; c += chunk) {
        std::span<const uint8_t> piece(buf.data() + c, std::min(chunk, r.length - c));
        bool is_new = false;
        s = writer.WriteChunk(index, r.offset + c, piece, &is_new);
        if (IsAllZero(piece.data(), piece.size())) {
          zero += piece.size();
        } else if (is_new) {
          fresh += piece.size();
        } else {
          dedup += piece.size();
        }
      }
      store_s += Since(t0);
      progress.done += r.length;
      if (!s.ok()) {
        std::lock_guard<std::mutex> l(report_mu);
        if (first_error.ok())
          first_error = s.WithContext(
              StrFormat("disk %d at %llu", report.device_key, (unsigned long long)r.offset));
        failed = true;
      }
    }
    std::lock_guard<std::mutex> l(report_mu);
    report.read_seconds += read_s;
    report.store_seconds += store_s;
    report.bytes_zero += zero;
    report.bytes_new += fresh;
    report.bytes_deduplicated += dedup;
    report.bytes_read += read;
  };
  report.reads_in_flight = o.reads_in_flight > 0 ? o.reads_in_flight
                           : disk.transport() == hv::TransportMode::kSan
                               ? int(std::max(1u, std::thread::hardware_concurrency()))
                               : 4;
  std::vector<std::thread> pool;
  for (int t = 1; t < report.reads_in_flight; ++t) pool.emplace_back(work);
  work();
  for (auto& th : pool) th.join();
  return first_error;
}

// The CBT audit: a random sample of the chunks change tracking did not report must read
// exactly as they are in the parent point. kCorruption naming the first that does not.
Status AuditUnchanged(hv::DiskAccess& disk, repo::Repository& repo, const repo::Point& parent,
                      int device_key, const ExtentSet& changed, uint64_t chunk, double percent,
                      DiskReport& report) {
  size_t index = parent.disks.size();
  for (size_t i = 0; i < parent.disks.size(); ++i)
    if (parent.disks[i].key == device_key) index = i;
  VMBACKUP_ASSIGN_OR_RETURN(auto reader, repo::PointDiskReader::Open(repo, parent, index));
  const uint64_t capacity = reader->capacity(), chunks = (capacity + chunk - 1) / chunk;
  const ExtentSet touched = changed.AlignOutward(chunk, capacity);
  std::mt19937_64 rng(std::random_device{}());
  const uint64_t want = std::max<uint64_t>(1, uint64_t(double(chunks) * percent / 100.0));
  std::vector<uint8_t> buf(chunk);
  for (uint64_t n = 0, tries = 0; n < want && tries < want * 4; ++tries) {
    const uint64_t c = percent >= 100 ? tries : rng() % chunks;
    if (c >= chunks) break;
    const uint64_t off = c * chunk, len = std::min(chunk, capacity - off);
    if (touched.Overlaps(off, len)) continue;
    std::span<uint8_t> piece(buf.data(), len);
    VMBACKUP_RETURN_IF_ERROR(disk.ReadAt(off, piece));  // before CopyDisk: no other reader
    VMBACKUP_ASSIGN_OR_RETURN(repo::Id want_id, reader->ChunkIdAt(off));
    repo::Id got = IsAllZero(piece.data(), len) ? repo::Id{} : repo.codec().IdOf(piece);
    ++n;
    ++report.audited_chunks;
    if (got != want_id) {
      return CorruptionError(StrFormat(
          "CBT audit: disk %d bytes %llu+%llu changed since point %s, but change tracking "
          "reported them unchanged; this backup is void and the next one will be a full",
          device_key, (unsigned long long)off, (unsigned long long)len, parent.id.c_str()));
    }
  }
  return Status::Ok();
}

struct DiskJob {
  hv::DiskInfo info;
  DiskReport report;
  DiskProgress progress;
  Status status;
};

Status BackupDisk(hv::Hypervisor& hv, const hv::VmInfo& vm, const hv::SnapshotRef& snap,
                  repo::Repository& repo, repo::PointWriter& writer, const BackupOptions& o,
                  const std::string& full_needed, DiskJob& job) {
  const uint64_t chunk = repo.chunk_size();
  const auto t0 = Clock::now();
  const hv::DiskInfo& d = job.info;
  DiskReport& r = job.report;
  r.device_key = d.device_key;
  r.label = d.label;
  r.capacity = d.capacity;

  // Incremental when the parent point has this disk with a change id and the same capacity,
  // and the host still knows that change id; otherwise an allocated-blocks full.
  std::optional<repo::PointDisk> parent = writer.ParentDisk(d.device_key, d.capacity);
  std::optional<ExtentSet> changed;
  if (o.force_full) {
    r.full_reason = "--full was given";
  } else if (!parent) {
    r.full_reason = "no earlier point has this disk";
    if (writer.parent()) {
      for (const auto& pd : writer.parent()->disks) {
        if (pd.key == d.device_key && pd.capacity != d.capacity) {
          r.full_reason =
              StrFormat("the disk was resized from %s to %s since the last point",
                        HumanBytes(pd.capacity).c_str(), HumanBytes(d.capacity).c_str());
        }
      }
    }
  } else if (!parent->disk_uuid.empty() && !d.uuid.empty() && parent->disk_uuid != d.uuid) {
    r.full_reason = "the disk was replaced since the last point (its uuid was " +
                    parent->disk_uuid + ", is " + d.uuid + ")";
  } else if (parent->change_id.empty()) {
    r.full_reason = "the previous point has no change id for this disk";
  } else if (!full_needed.empty()) {
    r.full_reason = full_needed;
  } else {
    int calls = 0;
    auto c =
        hv::CollectChangedAreas(hv, vm, &snap, d.device_key, d.capacity, parent->change_id, &calls);
    r.cbt_queries += calls;
    if (c) {
      changed = std::move(*c);
    } else if (c.error().code() == ErrorCode::kNotFound) {
      r.full_reason = "the host no longer knows change id " + parent->change_id + " (" +
                      c.error().message() + ")";
    } else if (c.error().code() == ErrorCode::kNotSupported) {
      r.full_reason = "the host cannot tell what changed (" + c.error().message() +
                      "): every allocated block is read, and only what differs is stored";
    } else {
      return c.error().WithContext(StrFormat("disk %d: changed areas", d.device_key));
    }
  }
  if (changed && repo.HasDamage()) {
    // The new point shares the parent's unchanged chunks and pages. Chunks known to be damaged
    // are read again (the point gets what the disk holds, and the repository a good copy when
    // it is the same data); a damaged page makes this disk a full.
    const uint64_t chunks = (d.capacity + chunk - 1) / chunk;
    repo::TreeReader tree(repo, parent->tree, chunks);
    ExtentSet bad;
    Status walk = tree.ForEachChunk(0, chunks, [&](uint64_t i, const repo::Id& id) {
      if (repo.IsDamaged(id)) bad.Add(i * chunk, std::min(chunk, d.capacity - i * chunk));
      return Status::Ok();
    });
    if (!walk.ok()) {
      changed.reset();
      r.full_reason = "the previous point's tree is damaged (" + walk.message() + ")";
    } else if (!bad.empty()) {
      changed->Add(bad);
      r.damaged_reread = bad.total_bytes();
    }
  }
  if (!changed && writer.parent() && !o.force_full && o.no_full_fallback) {
    return FailedPreconditionError(
        StrFormat("disk %d needs a full backup (%s) and "
                  "--no-full-fallback was given",
                  d.device_key, r.full_reason.c_str()));
  }
  std::vector<std::string> attempts;
  VMBACKUP_ASSIGN_OR_RETURN(auto access, hv.OpenDisk(vm, &snap, d.device_key, o.transports,
                                                     hv::OpenMode::kRead, &attempts));
  int calls = 0;
  Result<ExtentSet> host_allocated =
      hv::CollectChangedAreas(hv, vm, &snap, d.device_key, d.capacity, "*", &calls);
  r.cbt_queries += calls;
  if (!host_allocated && host_allocated.error().code() == ErrorCode::kNotSupported) {
    // The host cannot tell what is allocated: the transport may (a VMDK's grain tables),
    // and otherwise every byte is read (zeros are still detected and not stored).
    host_allocated = access->AllocatedExtents(0, d.capacity);
  }
  if (!host_allocated)
    return host_allocated.error().WithContext(StrFormat("disk %d: allocated areas", d.device_key));
  ExtentSet allocated = std::move(*host_allocated);
  hv::DiskPlan plan;
  if (changed) {
    r.mode = "incremental";
    r.bytes_changed = changed->total_bytes();
    plan = hv::PlanIncremental(*changed, allocated, chunk, d.capacity);
  } else {
    r.mode = "full";
    r.bytes_changed = allocated.total_bytes();
    plan = hv::PlanFull(allocated, chunk, d.capacity);
  }
  job.progress.device_key = d.device_key;
  job.progress.total = plan.read.total_bytes();

  repo::PointDisk pd;
  pd.key = d.device_key;
  pd.label = d.label;
  pd.capacity = d.capacity;
  pd.snapshot = snap.id;
  pd.disk_uuid = d.uuid;
  VMBACKUP_ASSIGN_OR_RETURN(pd.change_id, hv.ChangeId(vm, &snap, d.device_key));
  r.change_id = pd.change_id;
  r.transport = std::string(hv::TransportName(access->transport()));
  pd.transport = r.transport;
  pd.bytes_scanned = plan.read.total_bytes();
  VMBACKUP_ASSIGN_OR_RETURN(size_t index, writer.AddDisk(pd, changed.has_value()));
  if (changed && o.audit_cbt_percent > 0) {
    VMBACKUP_RETURN_IF_ERROR(AuditUnchanged(*access, repo, *writer.parent(), d.device_key, *changed,
                                            chunk, o.audit_cbt_percent, r));
  }
  VMBACKUP_RETURN_IF_ERROR(CopyDisk(*access, writer, index, plan, chunk, o, job.progress, r));
  r.seconds = Since(t0);
  return writer.SetDiskStats(index, pd.bytes_scanned, r.bytes_new);
}

}  // namespace

Result<BackupReport> RunBackup(hv::Hypervisor& hv, repo::Repository& repo,
                               const catalog::CatalogWait& catalog, const BackupOptions& o,
                               const ProgressFn& progress) {
  const auto t0 = Clock::now();
  BackupReport report;
  const repo::RepoStats stats0 = repo.stats();
  const storage::TransferStats transfer0 = repo.backend().transfer_stats();
  // One job per VM: with the lock held, every snapshot of ours is a leftover of a dead job.
  VMBACKUP_ASSIGN_OR_RETURN(auto job_lock,
                            hv::JobLock::Acquire(hv.uri(), o.vm, "backup", o.lock_wait_seconds));
  VMBACKUP_ASSIGN_OR_RETURN(hv::VmInfo vm, hv.GetVm(o.vm));
  report.vm = vm.name;
  if (!vm.power_on_block.empty()) {
    return FailedPreconditionError("VM " + vm.name + " is not whole: " + vm.power_on_block +
                                   " (a backup would store half-written disks)");
  }
  bool cbt = !vm.disks.empty();
  for (const auto& d : vm.disks) cbt = cbt && d.cbt_enabled;
  if (!cbt) {
    VMBACKUP_RETURN_IF_ERROR(hv.EnableChangeTracking(vm).WithContext("enable change tracking"));
    report.notes.push_back("change tracking was off: enabled it (this backup is a full)");
    VMBACKUP_ASSIGN_OR_RETURN(vm, hv.GetVm(o.vm));
  }

  // Snapshots left by killed runs of ours go first (VMWARE-RULES.md: snapshot hygiene).
  VMBACKUP_ASSIGN_OR_RETURN(auto snapshots, hv.ListSnapshots(vm));
  for (const auto& s : snapshots) {
    if (s.name == kRestoreSnapshot) {
      return FailedPreconditionError(
          "VM " + vm.name + " has an unfinished in-place restore (snapshot " + s.name +
          "): its disks are neither the old nor the restored ones. Run the restore again "
          "('vmbackup restore POINT --in-place'), which finishes it; a backup now would store "
          "the mixed disks");
    }
  }
  for (const auto& s : snapshots) {
    if (s.name.compare(0, kSnapshotPrefix.size(), kSnapshotPrefix) != 0) continue;
    VMBACKUP_RETURN_IF_ERROR(
        hv.RemoveSnapshot(vm, s).WithContext("remove stale snapshot " + s.name));
    report.notes.push_back("removed snapshot " + s.name + " left by an interrupted backup");
  }

  // The parent: the VM's newest point.
  std::string parent;
  std::vector<repo::PointDisk> parent_disks;
  VMBACKUP_ASSIGN_OR_RETURN(auto ids, repo::ListPoints(repo));
  for (auto it = ids.rbegin(); it != ids.rend() && parent.empty(); ++it) {
    auto p = repo::LoadPoint(repo, *it);
    if (p && p->vm_name == vm.name) {
      parent = *it;
      parent_disks = p->disks;
    }
  }
  report.parent = parent;

  // Marks in the repository ask for fulls: a failed CBT audit, an in-place restore.
  VMBACKUP_ASSIGN_OR_RETURN(std::vector<repo::FullNeeded> marks,
                            repo::FullNeededMarks(repo, vm.name));
  auto full_needed = [&](int key) -> std::string {
    for (const auto& m : marks) {
      if (m.disks.empty() || std::find(m.disks.begin(), m.disks.end(), key) != m.disks.end())
        return m.reason;
    }
    return "";
  };

  SnapshotGuard guard(hv, vm);
  hv::SnapshotOptions so;
  so.quiesce = o.quiesce;
  so.allow_crash_consistent = o.allow_crash_consistent;
  so.description = "vmbackup: backup in progress";
  so.transports = o.transports;
  if (!o.force_full) {
    // The change ids BackupDisk will ask about (the same disk, size and uuid; no mark).
    for (const auto& d : vm.disks) {
      for (const auto& pd : parent_disks) {
        if (pd.key == d.device_key && pd.capacity == d.capacity && !pd.change_id.empty() &&
            pd.chunk_size == repo.chunk_size() &&
            (pd.disk_uuid.empty() || d.uuid.empty() || pd.disk_uuid == d.uuid) &&
            full_needed(d.device_key).empty())
          so.since[d.device_key] = pd.change_id;
      }
    }
  }
  const std::string snap_name = std::string(kSnapshotPrefix) + UtcNowRfc3339();
  VMBACKUP_ASSIGN_OR_RETURN(hv::SnapshotRef snap, hv.CreateSnapshot(vm, snap_name, so));
  guard.Set(snap);
  report.snapshot = snap.name;
  report.consistency = std::string(hv::ConsistencyName(snap.achieved));
  if (o.quiesce && snap.achieved == hv::Consistency::kCrash && vm.power == hv::PowerState::kOn)
    report.notes.push_back("quiescing failed: the snapshot is only crash-consistent");

  repo::Point meta;
  meta.vm_name = vm.name;
  meta.vm_id = vm.id;
  meta.parent = parent;
  meta.notes = o.notes;
  meta.consistency = report.consistency;
  meta.snapshot = snap.id;
  meta.config = vm.config;
  VMBACKUP_ASSIGN_OR_RETURN(auto writer, repo::PointWriter::Start(repo, meta));

  // Disks, a bounded number at once.
  std::vector<std::unique_ptr<DiskJob>> jobs;
  for (const auto& d : vm.disks) {
    jobs.push_back(std::make_unique<DiskJob>());
    jobs.back()->info = d;
  }
  std::atomic<bool> reading{true};
  std::thread ticker;
  if (progress) {
    ticker = std::thread([&] {
      std::vector<DiskProgress*> all;
      for (auto& j : jobs) all.push_back(&j->progress);
      while (reading) {
        progress(all);
        std::this_thread::sleep_for(std::chrono::milliseconds(250));
      }
      progress(all);
    });
  }
  std::atomic<size_t> next{0};
  auto disk_worker = [&] {
    for (size_t i; (i = next.fetch_add(1)) < jobs.size();) {
      jobs[i]->status = BackupDisk(hv, vm, snap, repo, *writer, o,
                                   full_needed(jobs[i]->info.device_key), *jobs[i]);
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < std::max(1, o.parallel_disks) && size_t(t) < jobs.size(); ++t)
    pool.emplace_back(disk_worker);
  disk_worker();
  for (auto& th : pool) th.join();
  reading = false;
  if (ticker.joinable()) ticker.join();
  for (auto& j : jobs) {
    report.disks.push_back(j->report);
    if (!j->status.ok()) {
      writer->Abandon();
      if (j->status.code() == ErrorCode::kCorruption &&
          j->status.message().rfind("CBT audit", 0) == 0) {
        repo::MarkFullNeeded(
            repo, vm.name, repo::FullReason::kCbtAudit,
            {"the last backup's CBT audit failed (" + j->status.message() + ")", {}})
            .IgnoreError();  // the audit's own error is the one to report
      }
      return j->status;
    }
  }
  if (Cancelled(o)) return CancelledError("backup interrupted");

  const repo::RepoStats stats1 = repo.stats();
  report.hash_seconds = double(stats1.hash_ns - stats0.hash_ns) / 1e9;
  report.compress_seconds = double(stats1.encode_ns - stats0.encode_ns) / 1e9;
  report.pack_write_seconds = double(stats1.pack_write_ns - stats0.pack_write_ns) / 1e9;
  report.bytes_stored = stats1.bytes_packed - stats0.bytes_packed;
  uint64_t read = 0, fresh = 0, zero = 0, dedup = 0;
  double read_s = 0;
  for (const auto& d : report.disks) {
    read += d.bytes_read;
    fresh += d.bytes_new;
    zero += d.bytes_zero;
    dedup += d.bytes_deduplicated;
    read_s += d.read_seconds;
  }
  writer->SetRecordExtras({{"bytes_read", read},
                           {"bytes_new", fresh},
                           {"bytes_zero", zero},
                           {"bytes_deduplicated", dedup},
                           {"bytes_stored", report.bytes_stored}},
                          {{"total", Since(t0)},
                           {"source_read", read_s},
                           {"hashing", report.hash_seconds},
                           {"compression", report.compress_seconds},
                           {"repository_write", report.pack_write_seconds}});
  catalog::Catalog* cat = nullptr;  // a point the catalog cannot take is not made
  if (catalog) {
    VMBACKUP_ASSIGN_OR_RETURN(cat, catalog());
  }
  // Nothing reads the snapshot any more: the host removes it (merging its delta) while the
  // repository makes the point durable, instead of after (11-14 ms of an incremental's 250).
  std::future<Status> removal = std::async(std::launch::async, [&] { return guard.Remove(); });
  Result<repo::Point> committed = writer->Commit();
  const Status removed = removal.get();
  if (!committed) return committed.error();
  const repo::Point& point = *committed;
  report.point = point.id;
  report.transfer = repo.backend().transfer_stats() - transfer0;
  // The snapshot goes before the report: an error removing it fails the job loudly.
  VMBACKUP_RETURN_IF_ERROR(removed.WithContext("the restore point " + point.id +
                                               " is complete, but removing snapshot " + snap.name));
  if (!marks.empty()) VMBACKUP_RETURN_IF_ERROR(repo::ClearFullNeeded(repo, vm.name));
  if (cat) VMBACKUP_RETURN_IF_ERROR(cat->AddPoint(point));
  report.seconds = Since(t0);
  return report;
}

}  // namespace vmbackup::engine
