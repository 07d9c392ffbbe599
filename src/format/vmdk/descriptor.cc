#include "format/vmdk/descriptor.h"

#include "base/checked_math.h"
#include "base/strings.h"

namespace vmbackup::vmdk {
namespace {

struct Keyword {
  std::string_view name;
  int value;
};

constexpr Keyword kAccessWords[] = {{"RW", int(ExtentAccess::kReadWrite)},
                                    {"RDONLY", int(ExtentAccess::kReadOnly)},
                                    {"NOACCESS", int(ExtentAccess::kNoAccess)}};
constexpr Keyword kTypeWords[] = {{"FLAT", int(ExtentType::kFlat)},
                                  {"SPARSE", int(ExtentType::kSparse)},
                                  {"ZERO", int(ExtentType::kZero)},
                                  {"VMFS", int(ExtentType::kVmfs)},
                                  {"VMFSSPARSE", int(ExtentType::kVmfsSparse)},
                                  {"SESPARSE", int(ExtentType::kSeSparse)},
                                  {"VMFSRDM", int(ExtentType::kVmfsRdm)},
                                  {"VMFSRAW", int(ExtentType::kVmfsRaw)}};

template <size_t N>
std::optional<int> LookupWord(const Keyword (&words)[N], std::string_view w) {
  for (const Keyword& k : words)
    if (EqualsIgnoreCase(k.name, w)) return k.value;
  return std::nullopt;
}

Status LineError(size_t line, const std::string& what) {
  return CorruptionError(StrFormat("line %zu: %s", line, what.c_str()));
}

std::string Quoted(std::string_view s) { return "'" + std::string(s) + "'"; }

// Splits the next whitespace-separated token, honouring double quotes.
// Returns false on an unterminated quote.
bool NextToken(std::string_view& rest, std::string& token, bool& quoted) {
  rest = Trim(rest);
  token.clear();
  quoted = false;
  if (rest.empty()) return true;
  if (rest[0] == '"') {
    size_t close = rest.find('"', 1);
    if (close == std::string_view::npos) return false;
    token = std::string(rest.substr(1, close - 1));
    quoted = true;
    rest.remove_prefix(close + 1);
    return true;
  }
  size_t end = rest.find_first_of(" \t");
  token = std::string(rest.substr(0, end));
  rest = end == std::string_view::npos ? std::string_view() : rest.substr(end);
  return true;
}

Result<ExtentLine> ParseExtentLine(std::string_view line, size_t n) {
  ExtentLine e;
  std::string tok;
  bool quoted;
  std::string_view rest = line;
  NextToken(rest, tok, quoted);
  e.access = ExtentAccess(*LookupWord(kAccessWords, tok));
  NextToken(rest, tok, quoted);
  Result<uint64_t> sectors = ParseUint(tok);
  if (!sectors || quoted) return LineError(n, "extent size " + Quoted(tok) + " is not a number");
  if (*sectors == 0) return LineError(n, "extent size is zero");
  if (*sectors > kMaxCapacityBytes / kSectorSize)
    return LineError(n, "extent size " + tok + " sectors is larger than 256 TiB");
  e.sectors = *sectors;
  NextToken(rest, tok, quoted);
  auto type = LookupWord(kTypeWords, tok);
  if (!type) return LineError(n, "unknown extent type " + Quoted(tok));
  e.type = ExtentType(*type);
  if (!NextToken(rest, tok, quoted)) return LineError(n, "extent file name has no closing quote");
  if (e.type == ExtentType::kZero) {
    if (!tok.empty()) return LineError(n, "ZERO extent must not name a file");
    return e;
  }
  if (tok.empty())
    return LineError(n, "extent of type " + std::string(ExtentTypeName(e.type)) + " names no file");
  if (!quoted) return LineError(n, "extent file name " + Quoted(tok) + " is not quoted");
  e.filename = tok;
  if (!NextToken(rest, tok, quoted)) return LineError(n, "extent offset has no closing quote");
  if (!tok.empty() || quoted) {
    Result<uint64_t> off = ParseUint(tok);
    if (!off || quoted) return LineError(n, "extent offset " + Quoted(tok) + " is not a number");
    if (*off > kMaxCapacityBytes / kSectorSize) return LineError(n, "extent offset too large");
    e.offset_sectors = *off;
  }
  e.trailing = std::string(Trim(rest));
  return e;
}

// QEMU reads a CID with sscanf("%x") into 32 bits: any number of hex digits, the value kept
// modulo 2^32 (saturating at 2^64 - 1 first, as strtoul does). Xen Orchestra writes decimal
// CIDs of up to 10 digits, which read that way too; we read them as qemu-img does.
Result<uint32_t> ParseCid(std::string_view value, size_t n, const char* field) {
  std::string_view v = value;
  if (v.size() > 2 && v[0] == '0' && (v[1] == 'x' || v[1] == 'X')) v.remove_prefix(2);
  if (v.empty() || v.size() > 64) {
    return LineError(n, std::string(field) + " " + Quoted(value) + " is not a hex number");
  }
  uint64_t x = 0;
  bool saturated = false;
  for (char c : v) {
    int d = c >= '0' && c <= '9'   ? c - '0'
            : c >= 'a' && c <= 'f' ? c - 'a' + 10
            : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                   : -1;
    if (d < 0) {
      return LineError(n, std::string(field) + " " + Quoted(value) + " is not a hex number");
    }
    if (x > (UINT64_MAX - uint64_t(d)) / 16) saturated = true;
    x = x * 16 + uint64_t(d);
  }
  return saturated ? UINT32_MAX : uint32_t(x);
}

bool IsExtentLine(std::string_view line) {
  size_t sp = line.find_first_of(" \t");
  if (sp == std::string_view::npos) return false;
  return LookupWord(kAccessWords, line.substr(0, sp)).has_value();
}

// Iterates lines, stripping CR, with 1-based line numbers.
template <class F>
void ForEachLine(std::string_view text, F&& f) {
  size_t n = 0;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (!f(++n, line)) return;
  }
}

}  // namespace

std::string_view ExtentAccessName(ExtentAccess a) { return kAccessWords[int(a)].name; }
std::string_view ExtentTypeName(ExtentType t) { return kTypeWords[int(t)].name; }

std::string FormatCid(uint32_t cid) { return StrFormat("%08x", cid); }

uint64_t Descriptor::capacity_sectors() const {
  uint64_t total = 0;
  for (const ExtentLine& e : extents) total += e.sectors;
  return total;
}

std::optional<std::string> Descriptor::GetDdb(std::string_view key) const {
  for (const auto& [k, v] : ddb)
    if (EqualsIgnoreCase(k, key)) return v;
  return std::nullopt;
}

void Descriptor::SetDdb(std::string_view key, std::string value) {
  for (auto& [k, v] : ddb) {
    if (EqualsIgnoreCase(k, key)) {
      v = std::move(value);
      return;
    }
  }
  ddb.emplace_back(std::string(key), std::move(value));
}

bool LooksLikeDescriptor(std::string_view text) {
  bool found = false;
  ForEachLine(text, [&](size_t, std::string_view line) {
    std::string_view t = Trim(line);
    if (t.empty() || t[0] == '#') return true;
    size_t eq = t.find('=');
    found = eq != std::string_view::npos && EqualsIgnoreCase(Trim(t.substr(0, eq)), "version");
    return false;
  });
  return found;
}

Result<Descriptor> ParseDescriptor(std::string_view text) {
  size_t nul = text.find('\0');
  if (nul != std::string_view::npos) text = text.substr(0, nul);
  if (text.size() > kMaxDescriptorBytes) return CorruptionError("descriptor larger than 1 MiB");

  Descriptor d;
  bool have_version = false, have_create_type = false;
  Status status;
  ForEachLine(text, [&](size_t n, std::string_view raw) {
    std::string_view line = Trim(raw);
    if (line.empty() || line[0] == '#') return true;
    if (IsExtentLine(line)) {
      if (d.extents.size() >= kMaxExtents) {
        status = LineError(n, "more than 4096 extents");
        return false;
      }
      Result<ExtentLine> e = ParseExtentLine(line, n);
      if (!e) {
        status = e.error();
        return false;
      }
      d.extents.push_back(std::move(*e));
      return true;
    }
    size_t eq = line.find('=');
    if (eq == std::string_view::npos) {
      status = LineError(n, "expected 'key=value' or an extent line, got " + Quoted(line));
      return false;
    }
    std::string key(Trim(line.substr(0, eq)));
    std::string_view value = Trim(line.substr(eq + 1));
    if (!value.empty() && value[0] == '"') {
      if (value.size() < 2 || value.back() != '"') {
        status = LineError(n, "value of " + key + " has no closing quote");
        return false;
      }
      value = value.substr(1, value.size() - 2);
    }
    if (key.empty()) {
      status = LineError(n, "empty key");
      return false;
    }
    if (key.size() > 4 && EqualsIgnoreCase(key.substr(0, 4), "ddb.")) {
      d.ddb.emplace_back(key, std::string(value));
    } else if (EqualsIgnoreCase(key, "version")) {
      Result<uint64_t> v = ParseUint(value);
      if (!v || *v < 1 || *v > 3) {
        status = LineError(n, "version " + Quoted(value) + " is not 1, 2 or 3");
        return false;
      }
      d.version = int(*v);
      have_version = true;
    } else if (EqualsIgnoreCase(key, "CID")) {
      Result<uint32_t> c = ParseCid(value, n, "CID");
      if (!c) {
        status = c.error();
        return false;
      }
      d.cid = *c;
    } else if (EqualsIgnoreCase(key, "parentCID")) {
      Result<uint32_t> c = ParseCid(value, n, "parentCID");
      if (!c) {
        status = c.error();
        return false;
      }
      d.parent_cid = *c;
    } else if (EqualsIgnoreCase(key, "createType")) {
      d.create_type = std::string(value);
      have_create_type = true;
    } else if (EqualsIgnoreCase(key, "encoding")) {
      d.encoding = std::string(value);
    } else if (EqualsIgnoreCase(key, "parentFileNameHint")) {
      d.parent_file_name_hint = std::string(value);
    } else if (EqualsIgnoreCase(key, "changeTrackPath")) {
      d.change_track_path = std::string(value);
    } else {
      d.extra_headers.emplace_back(key, std::string(value));
    }
    return true;
  });
  VMBACKUP_RETURN_IF_ERROR(status);

  // Validate the encoding once the declared one is known: a descriptor that declares a legacy
  // code page (windows-1252, GBK, ...) keeps its bytes as they are; anything else must be UTF-8.
  bool utf8 = d.encoding.empty() || EqualsIgnoreCase(d.encoding, "UTF-8") ||
              EqualsIgnoreCase(d.encoding, "UTF8");
  if (utf8) {
    size_t bad = FindInvalidUtf8(text);
    if (bad != std::string_view::npos) {
      size_t line = 1;
      for (size_t i = 0; i < bad; ++i) line += text[i] == '\n';
      return LineError(line, StrFormat("byte %zu is not valid UTF-8 (declare the encoding with "
                                       "encoding=\"...\" if it is a legacy code page)",
                                       bad));
    }
  }
  if (!have_version) return CorruptionError("descriptor has no 'version' line");
  if (!have_create_type) return CorruptionError("descriptor has no 'createType' line");
  if (d.extents.empty()) return CorruptionError("descriptor has no extent lines");
  uint64_t total = 0;
  for (const ExtentLine& e : d.extents) {
    auto t = CheckedAdd(total, e.sectors);
    if (!t || *t > kMaxCapacityBytes / kSectorSize)
      return CorruptionError("extent sizes add up to more than 256 TiB");
    total = *t;
  }
  return d;
}

std::string SerializeDescriptor(const Descriptor& d) {
  std::string s = "# Disk DescriptorFile\n";
  s += StrFormat("version=%d\n", d.version);
  if (!d.encoding.empty()) s += "encoding=\"" + d.encoding + "\"\n";
  s += "CID=" + FormatCid(d.cid) + "\n";
  s += "parentCID=" + FormatCid(d.parent_cid) + "\n";
  for (const auto& [k, v] : d.extra_headers) s += k + "=\"" + v + "\"\n";
  s += "createType=\"" + d.create_type + "\"\n";
  if (!d.parent_file_name_hint.empty())
    s += "parentFileNameHint=\"" + d.parent_file_name_hint + "\"\n";
  s += "\n# Extent description\n";
  for (const ExtentLine& e : d.extents) {
    s += std::string(ExtentAccessName(e.access)) + " " + std::to_string(e.sectors) + " " +
         std::string(ExtentTypeName(e.type));
    if (e.type != ExtentType::kZero) s += " \"" + e.filename + "\"";
    if (e.offset_sectors) s += " " + std::to_string(*e.offset_sectors);
    if (!e.trailing.empty()) s += " " + e.trailing;
    s += "\n";
  }
  if (!d.change_track_path.empty()) {
    s += "\n# Change Tracking File\nchangeTrackPath=\"" + d.change_track_path + "\"\n";
  }
  s += "\n# The Disk Data Base\n#DDB\n\n";
  for (const auto& [k, v] : d.ddb) s += k + " = \"" + v + "\"\n";
  return s;
}

}  // namespace vmbackup::vmdk
