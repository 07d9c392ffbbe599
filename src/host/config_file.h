// ConfigFile: the `key = "value"` syntax of VMware's .vmx and .vmsd files (FORMATS.md section 3).
//
// Keys are dotted and compared case-insensitively; values are double-quoted, with `|XX` hex
// escapes for '"', '|' and control characters. Comments and blank lines are dropped; every
// key, known or not, is kept in file order so that a round trip preserves what we do not use.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.h"

namespace vmbackup::host {

class ConfigFile {
 public:
  // Errors: kCorruption naming the line ("line 4: expected key = \"value\"").
  static Result<ConfigFile> Parse(std::string_view text);
  std::string Serialize() const;

  std::optional<std::string> Get(std::string_view key) const;
  std::string GetOr(std::string_view key, std::string_view fallback) const;
  bool GetBool(std::string_view key, bool fallback = false) const;  // "TRUE"/"FALSE"
  // Replaces the value of `key` (keeping its place), or appends it.
  void Set(std::string_view key, std::string value);
  void SetBool(std::string_view key, bool value) { Set(key, value ? "TRUE" : "FALSE"); }
  void Remove(std::string_view key);
  // Removes every key that starts with `prefix` (case-insensitive).
  void RemovePrefix(std::string_view prefix);

  const std::vector<std::pair<std::string, std::string>>& entries() const { return entries_; }

 private:
  std::vector<std::pair<std::string, std::string>> entries_;
};

}  // namespace vmbackup::host
