#include "host/config_file.h"

#include "base/strings.h"

namespace vmbackup::host {
namespace {

bool StartsWithIgnoreCase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && EqualsIgnoreCase(s.substr(0, prefix.size()), prefix);
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string Unescape(std::string_view v) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] == '|' && i + 2 < v.size()) {
      int hi = HexValue(v[i + 1]), lo = HexValue(v[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out += char(hi * 16 + lo);
        i += 2;
        continue;
      }
    }
    out += v[i];
  }
  return out;
}

std::string Escape(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '"' || c == '|' || static_cast<unsigned char>(c) < 0x20) {
      out += StrFormat("|%02X", static_cast<unsigned char>(c));
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

Result<ConfigFile> ConfigFile::Parse(std::string_view text) {
  ConfigFile cf;
  size_t n = 0;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = Trim(text.substr(0, nl));
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    ++n;
    if (line.empty() || line[0] == '#') continue;
    size_t eq = line.find('=');
    std::string_view key = eq == std::string_view::npos ? line : Trim(line.substr(0, eq));
    if (eq == std::string_view::npos || key.empty() ||
        key.find_first_of(" \t\"") != std::string_view::npos) {
      return CorruptionError(StrFormat("line %zu: expected key = \"value\", got '%.*s'", n,
                                       int(std::min<size_t>(line.size(), 80)), line.data()));
    }
    std::string_view value = Trim(line.substr(eq + 1));
    if (!value.empty() && value[0] == '"') {
      if (value.size() < 2 || value.back() != '"') {
        return CorruptionError(StrFormat("line %zu: value of %.*s has no closing quote", n,
                                         int(key.size()), key.data()));
      }
      value = value.substr(1, value.size() - 2);
    }
    // Checked after unescaping: "|D0" alone is as invalid as the raw byte (vmx fuzzer).
    std::string unescaped = Unescape(value);
    if (FindInvalidUtf8(unescaped) != std::string::npos) {
      return CorruptionError(
          StrFormat("line %zu: value of %.*s is not valid UTF-8", n, int(key.size()), key.data()));
    }
    cf.Set(key, std::move(unescaped));
  }
  return cf;
}

std::string ConfigFile::Serialize() const {
  std::string s;
  for (const auto& [k, v] : entries_) s += k + " = \"" + Escape(v) + "\"\n";
  return s;
}

std::optional<std::string> ConfigFile::Get(std::string_view key) const {
  for (const auto& [k, v] : entries_)
    if (EqualsIgnoreCase(k, key)) return v;
  return std::nullopt;
}

std::string ConfigFile::GetOr(std::string_view key, std::string_view fallback) const {
  auto v = Get(key);
  return v ? *v : std::string(fallback);
}

bool ConfigFile::GetBool(std::string_view key, bool fallback) const {
  auto v = Get(key);
  if (!v) return fallback;
  return EqualsIgnoreCase(*v, "TRUE") || *v == "1" || EqualsIgnoreCase(*v, "yes");
}

void ConfigFile::Set(std::string_view key, std::string value) {
  for (auto& [k, v] : entries_) {
    if (EqualsIgnoreCase(k, key)) {
      v = std::move(value);
      return;
    }
  }
  entries_.emplace_back(std::string(key), std::move(value));
}

void ConfigFile::Remove(std::string_view key) {
  std::erase_if(entries_, [&](const auto& e) { return EqualsIgnoreCase(e.first, key); });
}

void ConfigFile::RemovePrefix(std::string_view prefix) {
  std::erase_if(entries_, [&](const auto& e) { return StartsWithIgnoreCase(e.first, prefix); });
}

}  // namespace vmbackup::host
