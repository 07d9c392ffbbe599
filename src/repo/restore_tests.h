// Results of restore tests (`vmbackup test-restore`, docs/live.md): each run that tested a point
// leaves one write-once object `tests/<point id>.<YYYYMMDDTHHMMSSZ>` in the repository
// (docs/repository-format.md section 7b), so "this point was restored and worked" survives the
// loss of any cache, and `list` can show the latest result of every point.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "repo/repository.h"

namespace vmbackup::repo {

struct RestoreTest {
  std::string point;
  std::string time;  // RFC 3339, UTC, to the second
  bool ok = false;
  std::string summary;  // what passed ("boot, fsck of 2 file systems") or the first failure
  // One entry per check: {"check": "fsck", "target": "/dev/sda1", "ok": true, "detail": "..."}.
  nlohmann::json checks = nlohmann::json::array();
};

// Saves the result of one test of `t.point` (which must exist). Two results of one point in the
// same second: kAlreadyExists.
Status RecordRestoreTest(Repository& repo, const RestoreTest& t);
// The results of `point` (empty: of every point), oldest first. A record that cannot be read
// is skipped (it is a note, never data a restore needs).
Result<std::vector<RestoreTest>> RestoreTests(Repository& repo, const std::string& point = "");
// One result by its object name (as listed under storage::ObjectType::kTest): kNotFound, or
// kCorruption for a record that cannot be read.
Result<RestoreTest> LoadRestoreTest(Repository& repo, const std::string& name);
// Removes every result of `point` (the point is being removed).
Status RemoveRestoreTests(Repository& repo, const std::string& point);

}  // namespace vmbackup::repo
