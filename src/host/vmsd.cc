#include "host/vmsd.h"

#include <algorithm>
#include <map>

#include "base/strings.h"
#include "host/config_file.h"

namespace vmbackup::host {

std::string_view ConsistencyName(Consistency c) {
  switch (c) {
    case Consistency::kCrash: return "crash";
    case Consistency::kFileSystem: return "filesystem";
    case Consistency::kApplication: return "application";
  }
  return "?";
}

Result<SnapshotDb> SnapshotDb::Parse(std::string_view text) {
  VMBACKUP_ASSIGN_OR_RETURN(ConfigFile cf, ConfigFile::Parse(text));
  SnapshotDb db;
  auto number = [&](const std::string& key) -> Result<uint64_t> {
    auto v = cf.Get(key);
    if (!v) return NotFoundError(key);
    Result<uint64_t> n = ParseUint(*v);
    if (!n) return CorruptionError(key + " = '" + *v + "' is not a number");
    return n;
  };
  auto last = number("snapshot.lastUID");
  if (last)
    db.last_uid = uint32_t(*last);
  else if (last.error().code() != ErrorCode::kNotFound)
    return last.error();
  auto current = number("snapshot.current");
  if (current)
    db.current = uint32_t(*current);
  else if (current.error().code() != ErrorCode::kNotFound)
    return current.error();
  db.need_consolidate = cf.GetBool("snapshot.needConsolidate");
  // Slots snapshotN may have gaps; collect every N that has a uid.
  std::map<int, Snapshot> slots;
  for (const auto& [key, value] : cf.entries()) {
    if (key.size() < 13 || !EqualsIgnoreCase(key.substr(0, 8), "snapshot")) continue;
    size_t dot = key.find('.');
    std::string idx = key.substr(8, dot - 8);
    if (idx.empty() || idx.find_first_not_of("0123456789") != std::string::npos) continue;
    if (!EqualsIgnoreCase(key.substr(dot + 1), "uid")) continue;
    // Slot numbers as VMware writes them: small, no leading zeros (a fuzzer's 11-digit slot
    // once overflowed the conversion).
    if (idx.size() > 4 || (idx.size() > 1 && idx[0] == '0')) {
      return CorruptionError("snapshot slot '" + key + "' is not a snapshot number (0-9999)");
    }
    slots[std::stoi(idx)];
  }
  for (auto& [n, s] : slots) {
    std::string p = "snapshot" + std::to_string(n) + ".";
    VMBACKUP_ASSIGN_OR_RETURN(uint64_t uid, number(p + "uid"));
    s.uid = uint32_t(uid);
    auto parent = number(p + "parent");
    if (parent)
      s.parent = uint32_t(*parent);
    else if (parent.error().code() != ErrorCode::kNotFound)
      return parent.error();
    s.name = cf.GetOr(p + "displayName", "");
    s.description = cf.GetOr(p + "description", "");
    auto hi = number(p + "createTimeHigh");
    std::string lo_text = cf.GetOr(p + "createTimeLow", "0");
    int64_t lo = 0;
    try {
      lo = std::stoll(lo_text);
    } catch (...) {
      return CorruptionError(p + "createTimeLow = '" + lo_text + "' is not a number");
    }
    s.create_time_us = int64_t((uint64_t(hi ? *hi : 0) << 32) | (uint64_t(lo) & 0xffffffffu));
    std::string c = cf.GetOr(p + "vmhost.consistency", "crash");
    s.consistency = c == "filesystem"    ? Consistency::kFileSystem
                    : c == "application" ? Consistency::kApplication
                                         : Consistency::kCrash;
    s.quiesce_requested = cf.GetBool(p + "vmhost.quiesceRequested");
    VMBACKUP_ASSIGN_OR_RETURN(uint64_t disks, number(p + "numDisks"));
    if (disks > 64)
      return CorruptionError(p + "numDisks = " + std::to_string(disks) + " is absurd");
    for (uint64_t d = 0; d < disks; ++d) {
      std::string dp = p + "disk" + std::to_string(d) + ".";
      auto file = cf.Get(dp + "fileName");
      auto node = cf.Get(dp + "node");
      if (!file || !node) return CorruptionError(dp + "fileName or " + dp + "node is missing");
      s.disks.push_back({*node, *file});
    }
    db.snapshots.push_back(std::move(s));
  }
  // The tree must be a tree: unique UIDs, parents that exist, no cycles.
  for (const Snapshot& s : db.snapshots) {
    if (std::count_if(db.snapshots.begin(), db.snapshots.end(),
                      [&](const Snapshot& o) { return o.uid == s.uid; }) != 1) {
      return CorruptionError("snapshot uid " + std::to_string(s.uid) + " appears twice");
    }
    if (s.parent && !db.Find(*s.parent)) {
      return CorruptionError("snapshot " + std::to_string(s.uid) + " names a missing parent " +
                             std::to_string(*s.parent));
    }
    if (db.PathTo(s.uid).empty()) {
      return CorruptionError("snapshot " + std::to_string(s.uid) + " is part of a parent cycle");
    }
  }
  if (db.current && !db.Find(*db.current)) {
    return CorruptionError("snapshot.current names a missing snapshot " +
                           std::to_string(*db.current));
  }
  return db;
}

std::string SnapshotDb::Serialize() const {
  ConfigFile cf;
  cf.Set(".encoding", "UTF-8");
  cf.Set("snapshot.lastUID", std::to_string(last_uid));
  if (current) cf.Set("snapshot.current", std::to_string(*current));
  cf.Set("snapshot.numSnapshots", std::to_string(snapshots.size()));
  if (need_consolidate) cf.SetBool("snapshot.needConsolidate", true);
  for (size_t n = 0; n < snapshots.size(); ++n) {
    const Snapshot& s = snapshots[n];
    std::string p = "snapshot" + std::to_string(n) + ".";
    cf.Set(p + "uid", std::to_string(s.uid));
    if (s.parent) cf.Set(p + "parent", std::to_string(*s.parent));
    cf.Set(p + "displayName", s.name);
    if (!s.description.empty()) cf.Set(p + "description", s.description);
    cf.Set(p + "type", "1");
    cf.Set(p + "createTimeHigh", std::to_string(uint64_t(s.create_time_us) >> 32));
    cf.Set(p + "createTimeLow", std::to_string(int32_t(uint32_t(s.create_time_us & 0xffffffff))));
    cf.Set(p + "vmhost.consistency", std::string(ConsistencyName(s.consistency)));
    if (s.quiesce_requested) cf.SetBool(p + "vmhost.quiesceRequested", true);
    cf.Set(p + "numDisks", std::to_string(s.disks.size()));
    for (size_t d = 0; d < s.disks.size(); ++d) {
      std::string dp = p + "disk" + std::to_string(d) + ".";
      cf.Set(dp + "fileName", s.disks[d].file_name);
      cf.Set(dp + "node", s.disks[d].node);
    }
  }
  return cf.Serialize();
}

Snapshot* SnapshotDb::Find(uint32_t uid) {
  for (Snapshot& s : snapshots)
    if (s.uid == uid) return &s;
  return nullptr;
}

const Snapshot* SnapshotDb::Find(uint32_t uid) const {
  return const_cast<SnapshotDb*>(this)->Find(uid);
}

Result<const Snapshot*> SnapshotDb::Lookup(std::string_view key) const {
  auto uid = ParseUint(key);
  if (uid) {
    if (const Snapshot* s = Find(uint32_t(*uid))) return s;
  }
  const Snapshot* found = nullptr;
  for (const Snapshot& s : snapshots) {
    if (s.name != key) continue;
    if (found)
      return InvalidArgumentError("snapshot name '" + std::string(key) +
                                  "' is ambiguous; use its uid");
    found = &s;
  }
  if (!found) return NotFoundError("no snapshot '" + std::string(key) + "'");
  return found;
}

std::vector<uint32_t> SnapshotDb::Children(uint32_t uid) const {
  std::vector<uint32_t> out;
  for (const Snapshot& s : snapshots)
    if (s.parent == uid) out.push_back(s.uid);
  return out;
}

std::vector<uint32_t> SnapshotDb::PathTo(uint32_t uid) const {
  std::vector<uint32_t> path;
  std::optional<uint32_t> at = uid;
  while (at) {
    if (path.size() > snapshots.size()) return {};  // a cycle
    const Snapshot* s = Find(*at);
    if (!s) return {};
    path.push_back(s->uid);
    at = s->parent;
  }
  std::reverse(path.begin(), path.end());
  return path;
}

}  // namespace vmbackup::host
