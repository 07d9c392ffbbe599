#include "repo/marks.h"

#include <nlohmann/json.hpp>

#include "base/strings.h"
#include "repo/json_fields.h"
#include "repo/object_lock.h"
#include "repo/point.h"
#include "repo/restore_tests.h"

namespace vmbackup::repo {
namespace {

using nlohmann::json;

std::span<const uint8_t> Bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

std::string_view WhyName(FullReason why) {
  return why == FullReason::kCbtAudit ? "cbt-audit" : "in-place-restore";
}

// The mark's object name: keyed like a blob id, so an encrypted repository does not show the
// VM's name.
std::string MarkName(Repository& repo, const std::string& vm, FullReason why) {
  std::string key = "full-needed\n" + std::string(WhyName(why)) + "\n" + vm;
  return repo.codec().IdOf(Bytes(key)).Hex();
}

std::vector<uint8_t> Aad(const std::string& name) {
  std::string s = "vmbackup mark " + name;
  return {s.begin(), s.end()};
}

Status Replace(storage::Backend& b, const storage::ObjectRef& ref, std::span<const uint8_t> data) {
  Status s = b.Save(ref, data);
  if (s.code() != ErrorCode::kAlreadyExists) return s;
  VMBACKUP_RETURN_IF_ERROR(b.Delete(ref));
  return b.Save(ref, data);
}

}  // namespace

Status MarkFullNeeded(Repository& repo, const std::string& vm, FullReason why,
                      const FullNeeded& mark) {
  const std::string name = MarkName(repo, vm, why);
  std::string text = json{{"vm", vm}, {"reason", mark.reason}, {"disks", mark.disks}}.dump();
  std::vector<uint8_t> blob = repo.codec().Encode(Bytes(text), Aad(name));
  return Replace(repo.backend(), {storage::ObjectType::kMark, name}, blob)
      .WithContext("record that the next backup of " + vm + " must be a full");
}

Result<std::vector<FullNeeded>> FullNeededMarks(Repository& repo, const std::string& vm) {
  std::vector<FullNeeded> out;
  for (FullReason why : {FullReason::kCbtAudit, FullReason::kInPlaceRestore}) {
    const std::string name = MarkName(repo, vm, why);
    auto blob = repo.backend().Load({storage::ObjectType::kMark, name});
    if (!blob) {
      if (blob.error().code() == ErrorCode::kNotFound) continue;
      return blob.error();
    }
    auto text = repo.codec().Decode(*blob, Aad(name), 1 << 20);
    json j = text ? json::parse(text->begin(), text->end(), nullptr, false) : json();
    FullNeeded m;
    try {
      m.reason = j.at("reason").get<std::string>();
      for (const json& k : j.at("disks")) m.disks.push_back(IntField<int>(k));
    } catch (const std::exception&) {
      // A damaged mark still asks for a full: the safe reading.
      m.reason = "a damaged mark in the repository asks for a full";
      m.disks.clear();
    }
    out.push_back(std::move(m));
  }
  return out;
}

Status ClearFullNeeded(Repository& repo, const std::string& vm) {
  for (FullReason why : {FullReason::kCbtAudit, FullReason::kInPlaceRestore}) {
    Status s = repo.backend().Delete({storage::ObjectType::kMark, MarkName(repo, vm, why)});
    if (!s.ok() && s.code() != ErrorCode::kNotFound) return s;
  }
  return Status::Ok();
}

Status ForgetPoint(Repository& repo, const std::string& id, const std::string& why) {
  VMBACKUP_RETURN_IF_ERROR(storage::ValidateObjectName(id));
  VMBACKUP_ASSIGN_OR_RETURN(int64_t locked, PointLockedUntil(repo, id));
  if (locked) {
    return FailedPreconditionError("restore point " + id + " is locked until " +
                                   UtcRfc3339(locked) + " (Object Lock): it can go after that");
  }
  // The tombstone first: a crash in between leaves a point that is still there, not one that
  // vanished without a trace.
  std::string text = json{{"id", id}, {"by", why}, {"time", UtcNowRfc3339()}}.dump();
  std::vector<uint8_t> blob = repo.codec().Encode(Bytes(text), Aad("forgotten " + id));
  Status s = repo.backend().Save({storage::ObjectType::kForgotten, id}, blob);
  if (!s.ok() && s.code() != ErrorCode::kAlreadyExists) return s;
  // The test results go before the record: a crash between leaves a point with fewer results.
  VMBACKUP_RETURN_IF_ERROR(RemoveRestoreTests(repo, id));
  s = repo.backend().Delete({storage::ObjectType::kPoint, id + ".protected"});
  if (!s.ok() && s.code() != ErrorCode::kNotFound) return s;
  s = repo.backend().Delete({storage::ObjectType::kPoint, id});
  if (!s.ok() && s.code() != ErrorCode::kNotFound) return s;
  return Status::Ok();
}

Result<std::set<std::string>> ForgottenPoints(Repository& repo) {
  VMBACKUP_ASSIGN_OR_RETURN(auto objects, repo.backend().List(storage::ObjectType::kForgotten));
  std::set<std::string> out;
  for (const auto& o : objects) out.insert(o.name);
  return out;
}

}  // namespace vmbackup::repo
