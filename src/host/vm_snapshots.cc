// Snapshots of the embedded host: create (optionally quiesced), delete, delete-all, revert and
// consolidate (SYSTEM.md section 1.2).
//
// Deltas form a tree. A layer is "referenced" when the .vmx (the current state) or a snapshot
// names it. Deleting a snapshot drops it from the .vmsd first; its layer is then unreferenced
// and consolidation does the rest, one rule at a time until nothing changes:
//   - an unreferenced layer with no children is removed (a dead branch: no merge);
//   - an unreferenced layer with one child absorbs that child (the child's own grains are
//     written into it, its CID kept so the chain stays valid), then takes its place.
// Every view that a reference reads is the same before and after each step, so a merge cut
// short by a crash is simply done again by the next consolidation.
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <set>
#include <thread>

#include "base/strings.h"
#include "format/vmdk/create.h"
#include "host/disk_layers.h"
#include "host/vm.h"
#include "io/posix_file.h"

extern char** environ;

namespace vmbackup::host {
namespace {

constexpr uint64_t kCopyChunk = 4 << 20;

int64_t NowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Copies the ranges `runs` (data or zero) from `src` into `dst`.
Status CopyRuns(const std::vector<vmdk::ChainRun>& runs, io::BlockReader& src,
                io::BlockWriter& dst) {
  std::vector<uint8_t> buf;
  for (const vmdk::ChainRun& r : runs) {
    for (uint64_t pos = r.offset; pos < r.offset + r.length;) {
      uint64_t n = std::min(kCopyChunk, r.offset + r.length - pos);
      buf.assign(n, 0);
      if (r.state == vmdk::BlockState::kData) VMBACKUP_RETURN_IF_ERROR(src.ReadAt(pos, buf));
      VMBACKUP_RETURN_IF_ERROR(dst.WriteAt(pos, buf));
      pos += n;
    }
  }
  return dst.Flush();
}

}  // namespace

Status Vm::MergeRuns(const std::vector<vmdk::ChainRun>& runs, io::BlockReader& src,
                     const std::string& from, const std::string& into) {
  // The target keeps its CID: the layers above it read the same bytes before and after.
  vmdk::DiskOptions o = Confined();
  o.writable = true;
  o.preserve_cid = true;
  VMBACKUP_ASSIGN_OR_RETURN(auto target, vmdk::Disk::Open(Path(into), o));
  return CopyRuns(runs, src, *target).WithContext("merge " + from + " into " + into);
}

Status Vm::RunHook(const std::string& hook, const char* what) {
  // The hook gets its action and the VM name; it has 60 seconds, like VMware's quiesce timeout.
  std::vector<std::string> args = {hook, what, name_};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid;
  int rc = ::posix_spawn(&pid, hook.c_str(), nullptr, nullptr, argv.data(), environ);
  if (rc != 0) return PosixError(std::string(what) + " hook " + hook, rc);
  for (int waited_ms = 0;; waited_ms += 50) {
    int status;
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) {
      if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return Status::Ok();
      return IOError(StrFormat("%s hook %s failed (%s %d)", what, hook.c_str(),
                               WIFEXITED(status) ? "exit" : "signal",
                               WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status)));
    }
    if (waited_ms >= 60000) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return UnavailableError(std::string(what) + " hook " + hook + " timed out after 60 s");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

Result<Snapshot> Vm::CreateSnapshot(const std::string& name, const SnapshotOptions& options) {
  if (vmsd_.snapshots.size() >= kMaxSnapshots) {
    return FailedPreconditionError(StrFormat("VM %s already has %zu snapshots, the most allowed",
                                             name_.c_str(), kMaxSnapshots));
  }
  if (name.empty()) return InvalidArgumentError("a snapshot needs a name");
  VMBACKUP_ASSIGN_OR_RETURN(std::vector<VmxDisk> disks, VmxDisks());
  Snapshot s;
  s.name = name;
  s.description = options.description;
  s.quiesce_requested = options.quiesce;
  s.consistency = Consistency::kCrash;
  bool frozen = false;
  // Quiescing a running guest with no way to do it is the same failure as a freeze that fails:
  // an error unless crash consistency was accepted (a powered-off guest needs no freezing).
  if (options.quiesce && vmx_.powered_on() && vmx_.freeze_hook().empty() &&
      !options.allow_crash_fallback) {
    return FailedPreconditionError(
        "quiesced snapshot of " + name_ +
        ": the VM has no way to quiesce its guest (no vmhost.freezeHook); allow a "
        "crash-consistent snapshot (--allow-crash-consistent) or configure a freeze hook");
  }
  if (options.quiesce && !vmx_.freeze_hook().empty()) {
    Status f = RunHook(vmx_.freeze_hook(), "freeze");
    if (f.ok()) {
      frozen = true;
      s.consistency = Consistency::kFileSystem;
    } else if (!options.allow_crash_fallback) {
      return f.WithContext("quiesced snapshot of " + name_);
    }
  }
  // Thaw on every path once frozen.
  auto body = [&]() -> Status {
    std::vector<std::string> deltas;
    for (size_t i = 0; i < disks.size(); ++i) {
      VMBACKUP_ASSIGN_OR_RETURN(std::string delta, NextDeltaName(dir_, DiskStem(name_, i)));
      vmdk::CreateOptions co;
      co.parent = Path(disks[i].file_name);
      co.parent_confine_to = root_;
      VMBACKUP_RETURN_IF_ERROR(vmdk::CreateDisk(Path(delta), co));
      if (vmx_.cbt_enabled()) {
        VMBACKUP_ASSIGN_OR_RETURN(auto ctk, OpenCtk(disks[i].file_name, false));
        VMBACKUP_RETURN_IF_ERROR(GiveLayerCtk(delta, *ctk, ctk->change_id().seq + 1));
      }
      deltas.push_back(delta);
      s.disks.push_back({disks[i].node, disks[i].file_name});
    }
    s.uid = vmsd_.last_uid + 1;
    s.parent = vmsd_.current;
    s.create_time_us = NowMicros();
    // The .vmx moves to the deltas first: a crash before the .vmsd is written leaves the old
    // leaves unreferenced under the new ones, which consolidation merges back.
    for (size_t i = 0; i < disks.size(); ++i) vmx_.SetDiskFile(disks[i].node, deltas[i]);
    VMBACKUP_RETURN_IF_ERROR(SaveVmx());
    vmsd_.last_uid = s.uid;
    vmsd_.current = s.uid;
    vmsd_.snapshots.push_back(s);
    return SaveVmsd();
  };
  Status st = body();
  if (frozen) {
    Status t = RunHook(vmx_.thaw_hook().empty() ? vmx_.freeze_hook() : vmx_.thaw_hook(), "thaw");
    if (st.ok() && !t.ok()) st = t;
  }
  if (!st.ok()) return st.WithContext("snapshot " + name + " of " + name_);
  return s;
}

Status Vm::DeleteSnapshot(uint32_t uid) {
  Snapshot* s = vmsd_.Find(uid);
  if (!s) return NotFoundError(StrFormat("VM %s has no snapshot %u", name_.c_str(), uid));
  std::optional<uint32_t> parent = s->parent;
  for (Snapshot& o : vmsd_.snapshots)
    if (o.parent == uid) o.parent = parent;
  if (vmsd_.current == uid) vmsd_.current = parent;
  std::erase_if(vmsd_.snapshots, [&](const Snapshot& o) { return o.uid == uid; });
  // Step 1 of 2: the snapshot leaves the tree. Step 2 merges its data.
  vmsd_.need_consolidate = true;
  VMBACKUP_RETURN_IF_ERROR(SaveVmsd());
  return Consolidate();
}

Status Vm::RevertToSnapshot(uint32_t uid) {
  const Snapshot* s = vmsd_.Find(uid);
  if (!s) return NotFoundError(StrFormat("VM %s has no snapshot %u", name_.c_str(), uid));
  VMBACKUP_ASSIGN_OR_RETURN(std::vector<VmxDisk> disks, VmxDisks());
  for (size_t i = 0; i < disks.size(); ++i) {
    VMBACKUP_ASSIGN_OR_RETURN(std::string base_layer, LayerFor(i, uid));
    VMBACKUP_ASSIGN_OR_RETURN(std::string delta, NextDeltaName(dir_, DiskStem(name_, i)));
    vmdk::CreateOptions co;
    co.parent = Path(base_layer);
    co.parent_confine_to = root_;
    VMBACKUP_RETURN_IF_ERROR(vmdk::CreateDisk(Path(delta), co));
    if (vmx_.cbt_enabled()) {
      auto ctk = OpenCtk(base_layer, false);
      if (!ctk) {  // the snapshot predates CBT: start the delta's tracking from scratch
        VMBACKUP_ASSIGN_OR_RETURN(auto d, OpenDisk(i, uid, false));
        std::string fresh = Path(CtkFileFor(delta) + ".new");
        VMBACKUP_RETURN_IF_ERROR(ChangeTrackFile::Create(fresh, ChangeId::NewEpoch(), 1,
                                                         vmx_.cbt_granularity(), d->size()));
        ctk = ChangeTrackFile::Open(fresh, false);
        ::unlink(fresh.c_str());  // the open handle keeps it readable for the copy
        if (!ctk) return ctk.error();
      }
      VMBACKUP_RETURN_IF_ERROR(GiveLayerCtk(delta, **ctk, (*ctk)->change_id().seq + 1));
    }
    vmx_.SetDiskFile(disks[i].node, delta);
  }
  // A snapshot without memory state comes back powered off, as on VMware.
  vmx_.set_powered_on(false);
  VMBACKUP_RETURN_IF_ERROR(SaveVmx());
  vmsd_.current = uid;
  vmsd_.need_consolidate = true;
  VMBACKUP_RETURN_IF_ERROR(SaveVmsd());
  // Reverting discards writes the change tracking knew about: old change ids must not be used.
  if (vmx_.cbt_enabled()) VMBACKUP_RETURN_IF_ERROR(InvalidateChangeTracking());
  return Consolidate();  // removes the discarded state's deltas
}

Status Vm::DeleteAllSnapshots() {
  VMBACKUP_ASSIGN_OR_RETURN(std::vector<VmxDisk> disks, VmxDisks());
  vmsd_.snapshots.clear();
  vmsd_.current.reset();
  vmsd_.need_consolidate = true;
  VMBACKUP_RETURN_IF_ERROR(SaveVmsd());
  for (size_t i = 0; i < disks.size(); ++i) {
    std::string base = DiskStem(name_, i) + ".vmdk";
    if (disks[i].file_name == base) continue;
    VMBACKUP_RETURN_IF_ERROR(CollapseToBase(disks[i].file_name, base));
    vmx_.SetDiskFile(disks[i].node, base);
    VMBACKUP_RETURN_IF_ERROR(SaveVmx());
  }
  return Consolidate();  // now every delta is unreferenced and childless in turn: removed
}

Status Vm::Consolidate() {
  VMBACKUP_ASSIGN_OR_RETURN(std::vector<VmxDisk> disks, VmxDisks());
  for (size_t i = 0; i < disks.size(); ++i) {
    VMBACKUP_RETURN_IF_ERROR(ConsolidateDisk(i, DiskStem(name_, i)));
  }
  if (vmsd_.need_consolidate) {
    vmsd_.need_consolidate = false;
    VMBACKUP_RETURN_IF_ERROR(SaveVmsd());
  }
  return Status::Ok();
}

Status Vm::ConsolidateDisk(size_t disk, const std::string& stem) {
  for (int round = 0; round < 10000; ++round) {
    // References are read afresh every round: a merge moves them.
    VMBACKUP_ASSIGN_OR_RETURN(std::vector<VmxDisk> disks, VmxDisks());
    const std::string node = disks[disk].node;
    VMBACKUP_ASSIGN_OR_RETURN(auto layers, ScanLayers(dir_, stem));
    std::set<std::string> referenced = {disks[disk].file_name};
    for (const Snapshot& s : vmsd_.snapshots)
      for (const SnapshotDisk& d : s.disks)
        if (EqualsIgnoreCase(d.node, node)) referenced.insert(d.file_name);
    auto children = [&](const std::string& file) {
      std::vector<std::string> c;
      for (const auto& [f, n] : layers)
        if (n.parent == file) c.push_back(f);
      return c;
    };
    // Removals first: whole dead branches go without merging anything.
    bool changed = false;
    for (const auto& [file, n] : layers) {
      if (referenced.count(file) || n.is_base || !n.problem.empty() || !children(file).empty())
        continue;
      VMBACKUP_RETURN_IF_ERROR(RemoveLayerFiles(dir_, n));
      changed = true;
    }
    if (changed) continue;
    for (const auto& [file, n] : layers) {
      if (referenced.count(file) || !n.problem.empty()) continue;
      auto c = children(file);
      if (c.size() != 1 || !layers[c[0]].problem.empty()) continue;
      VMBACKUP_RETURN_IF_ERROR(MergeInto(c[0], file));
      changed = true;
      break;
    }
    if (!changed) return Status::Ok();
  }
  return InternalError("consolidation of " + stem + " does not converge");
}

Status Vm::MergeInto(const std::string& child, const std::string& parent) {
  // 1. The child's own grains (data and zeroed grains) go into the parent, CID kept.
  {
    VMBACKUP_ASSIGN_OR_RETURN(auto c, vmdk::Disk::Open(Path(child), Confined()));
    std::vector<vmdk::BlockRun> own;
    VMBACKUP_RETURN_IF_ERROR(c->layers()[0]->Map(0, c->size(), &own));
    std::vector<vmdk::ChainRun> runs;
    for (const vmdk::BlockRun& r : own)
      if (r.state != vmdk::BlockState::kUnallocated)
        runs.push_back({r.offset, r.length, r.state, 0});
    VMBACKUP_RETURN_IF_ERROR(MergeRuns(runs, *c, child, parent));
  }
  // 2. The parent takes over the child's change tracking (it now holds the child's state).
  VMBACKUP_ASSIGN_OR_RETURN(auto child_layer, vmdk::Layer::Open(Path(child), false, root_));
  vmdk::Descriptor child_desc = child_layer->descriptor();
  if (!child_desc.change_track_path.empty()) {
    auto ctk = OpenCtkFile(child_desc.change_track_path, false);
    if (ctk) VMBACKUP_RETURN_IF_ERROR(GiveLayerCtk(parent, **ctk, (*ctk)->change_id().seq));
  }
  // 3. References to the child now name the parent.
  VMBACKUP_ASSIGN_OR_RETURN(std::vector<VmxDisk> disks, VmxDisks());
  bool vmx_changed = false, vmsd_changed = false;
  for (const VmxDisk& d : disks) {
    if (d.file_name == child) {
      vmx_.SetDiskFile(d.node, parent);
      vmx_changed = true;
    }
  }
  for (Snapshot& s : vmsd_.snapshots) {
    for (SnapshotDisk& d : s.disks) {
      if (d.file_name == child) {
        d.file_name = parent;
        vmsd_changed = true;
      }
    }
  }
  if (vmx_changed) VMBACKUP_RETURN_IF_ERROR(SaveVmx());
  if (vmsd_changed) VMBACKUP_RETURN_IF_ERROR(SaveVmsd());
  // 4. The child's children hang from the parent now.
  VMBACKUP_ASSIGN_OR_RETURN(auto parent_layer, vmdk::Layer::Open(Path(parent), false, root_));
  const uint32_t parent_cid = parent_layer->descriptor().cid;
  std::string stem = child.substr(0, child.size() >= 12 ? child.size() - 12 : 0);
  VMBACKUP_ASSIGN_OR_RETURN(auto layers, ScanLayers(dir_, stem.empty() ? child : stem));
  for (const auto& [file, n] : layers) {
    if (n.parent != child) continue;
    VMBACKUP_ASSIGN_OR_RETURN(auto gl, vmdk::Layer::Open(Path(file), true, root_));
    vmdk::Descriptor gd = gl->descriptor();
    gd.parent_file_name_hint = parent;
    gd.parent_cid = parent_cid;
    VMBACKUP_RETURN_IF_ERROR(gl->ReplaceDescriptor(gd));
  }
  // 5. The child goes.
  LayerNode node;
  node.file = child;
  node.change_track_path = child_desc.change_track_path;
  return RemoveLayerFiles(dir_, node);
}

Status Vm::CollapseToBase(const std::string& leaf, const std::string& base) {
  // One pass: every range any delta holds is read through the chain and written to the base.
  VMBACKUP_ASSIGN_OR_RETURN(auto chain, vmdk::Disk::Open(Path(leaf), Confined()));
  const int base_depth = int(chain->layers().size()) - 1;
  if (io::BaseName(chain->layers().back()->path()) != base) {
    return CorruptionError(leaf + " does not descend from " + base);
  }
  std::vector<vmdk::ChainRun> all, runs;
  VMBACKUP_RETURN_IF_ERROR(chain->MapChain(0, chain->size(), &all));
  for (const vmdk::ChainRun& r : all)
    if (r.depth >= 0 && r.depth < base_depth) runs.push_back(r);
  VMBACKUP_RETURN_IF_ERROR(MergeRuns(runs, *chain, leaf, base));
  if (vmx_.cbt_enabled()) {
    auto ctk = OpenCtk(leaf, false);
    if (ctk) VMBACKUP_RETURN_IF_ERROR(GiveLayerCtk(base, **ctk, (*ctk)->change_id().seq));
  }
  return Status::Ok();
}

}  // namespace vmbackup::host
