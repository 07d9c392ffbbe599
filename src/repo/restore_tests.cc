#include "repo/restore_tests.h"

#include <algorithm>

#include "repo/point.h"

namespace vmbackup::repo {
namespace {

using nlohmann::json;

std::vector<uint8_t> Aad(const std::string& name) {
  std::string s = "vmbackup test " + name;
  return {s.begin(), s.end()};
}

// "2026-11-30T19:05:37Z" -> "20261130T190537Z": the name's time part, which sorts.
std::string CompactTime(const std::string& rfc3339) {
  std::string out;
  for (char c : rfc3339) {
    if ((c >= '0' && c <= '9') || c == 'T') out += c;
  }
  return out.substr(0, 15) + "Z";
}

// The point id of a record's name: everything before its last '.' (point ids hold one too).
std::string PointOf(const std::string& name) {
  const size_t dot = name.rfind('.');
  return dot == std::string::npos ? "" : name.substr(0, dot);
}

}  // namespace

Status RecordRestoreTest(Repository& repo, const RestoreTest& t) {
  VMBACKUP_RETURN_IF_ERROR(LoadPoint(repo, t.point).status());
  const std::string name = t.point + "." + CompactTime(t.time);
  VMBACKUP_RETURN_IF_ERROR(storage::ValidateObjectName(name));
  const std::string text = json{
      {"point", t.point},
      {"time", t.time},
      {"ok", t.ok},
      {"summary", t.summary},
      {"checks", t.checks}}.dump();
  const std::vector<uint8_t> blob =
      repo.codec().Encode({reinterpret_cast<const uint8_t*>(text.data()), text.size()}, Aad(name));
  return repo.backend()
      .Save({storage::ObjectType::kTest, name}, blob)
      .WithContext("record the restore test of point " + t.point);
}

Result<std::vector<RestoreTest>> RestoreTests(Repository& repo, const std::string& point) {
  VMBACKUP_ASSIGN_OR_RETURN(auto objects, repo.backend().List(storage::ObjectType::kTest));
  std::vector<std::string> names;
  for (const auto& o : objects) {
    if (point.empty() || PointOf(o.name) == point) names.push_back(o.name);
  }
  std::sort(names.begin(), names.end());  // by point, then by time
  std::vector<RestoreTest> out;
  for (const auto& name : names) {
    auto t = LoadRestoreTest(repo, name);
    if (t) {
      out.push_back(std::move(*t));
    } else if (t.error().code() != ErrorCode::kNotFound &&  // removed meanwhile
               t.error().code() != ErrorCode::kCorruption) {
      return t.error();
    }
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const RestoreTest& a, const RestoreTest& b) { return a.time < b.time; });
  return out;
}

Result<RestoreTest> LoadRestoreTest(Repository& repo, const std::string& name) {
  VMBACKUP_ASSIGN_OR_RETURN(auto blob, repo.backend().Load({storage::ObjectType::kTest, name}));
  auto text = repo.codec().Decode(blob, Aad(name), 1 << 20);
  json j = text ? json::parse(text->begin(), text->end(), nullptr, false) : json();
  if (!j.is_object() || !j.value("point", json()).is_string() ||
      j["point"].get<std::string>() != PointOf(name))
    return CorruptionError("tests/" + name + ": the record cannot be read");
  RestoreTest t;
  t.point = PointOf(name);
  try {  // fields of the wrong type throw
    t.time = j.value("time", "");
    t.ok = j.value("ok", false);
    t.summary = j.value("summary", "");
  } catch (const json::exception&) {
    return CorruptionError("tests/" + name + ": a field of the record has the wrong type");
  }
  if (j.contains("checks") && j["checks"].is_array()) t.checks = j["checks"];
  return t;
}

Status RemoveRestoreTests(Repository& repo, const std::string& point) {
  VMBACKUP_ASSIGN_OR_RETURN(auto objects, repo.backend().List(storage::ObjectType::kTest));
  for (const auto& o : objects) {
    if (PointOf(o.name) != point) continue;
    Status s = repo.backend().Delete({storage::ObjectType::kTest, o.name});
    if (!s.ok() && s.code() != ErrorCode::kNotFound) return s;
  }
  return Status::Ok();
}

}  // namespace vmbackup::repo
