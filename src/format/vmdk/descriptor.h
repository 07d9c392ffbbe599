// The VMDK text descriptor (FORMATS.md section 1.2): parse leniently, write canonically.
//
// The reader accepts CRLF, any case for keys and extent keywords, any order, optional quotes
// and spaces around '=', comments anywhere, and NUL padding (embedded descriptors). Every
// extent line is kept, including ZERO, RDONLY and NOACCESS extents, which qemu-img drops.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.h"

namespace vmbackup::vmdk {

inline constexpr uint64_t kSectorSize = 512;
inline constexpr uint32_t kNoParentCid = 0xffffffff;
// Largest disk we accept anywhere (VMware's own limit is 62 TiB): anything bigger read from a
// file is treated as corruption rather than trusted.
inline constexpr uint64_t kMaxCapacityBytes = uint64_t(256) << 40;
inline constexpr size_t kMaxDescriptorBytes = 1 << 20;
inline constexpr size_t kMaxExtents = 4096;

enum class ExtentAccess { kReadWrite, kReadOnly, kNoAccess };
enum class ExtentType { kFlat, kSparse, kZero, kVmfs, kVmfsSparse, kSeSparse, kVmfsRdm, kVmfsRaw };

std::string_view ExtentAccessName(ExtentAccess a);  // "RW", "RDONLY", "NOACCESS"
std::string_view ExtentTypeName(ExtentType t);      // "FLAT", "SPARSE", ...

struct ExtentLine {
  ExtentAccess access = ExtentAccess::kReadWrite;
  uint64_t sectors = 0;
  ExtentType type = ExtentType::kFlat;
  std::string filename;                    // empty for ZERO
  std::optional<uint64_t> offset_sectors;  // FLAT: required by QEMU; VMFS: absent
  std::string trailing;                    // raw-device fields after the offset, kept verbatim
  bool operator==(const ExtentLine&) const = default;
};

struct Descriptor {
  int version = 1;
  std::string encoding;  // empty when the descriptor has no encoding line
  uint32_t cid = 0xfffffffe;
  uint32_t parent_cid = kNoParentCid;
  std::string create_type;
  std::string parent_file_name_hint;
  std::string change_track_path;
  // Other header keys (isNativeSnapshot, ...), in file order, values unquoted.
  std::vector<std::pair<std::string, std::string>> extra_headers;
  std::vector<ExtentLine> extents;
  // ddb.* entries in file order; keys include the "ddb." prefix.
  std::vector<std::pair<std::string, std::string>> ddb;

  bool has_parent() const { return parent_cid != kNoParentCid || !parent_file_name_hint.empty(); }
  uint64_t capacity_sectors() const;  // sum of extent sizes (validated not to overflow)
  std::optional<std::string> GetDdb(std::string_view key) const;
  void SetDdb(std::string_view key, std::string value);
  bool operator==(const Descriptor&) const = default;
};

// Parses descriptor text. Errors are kCorruption and name the line and field
// ("line 7: extent size 'abc' is not a number"). Text after the first NUL is ignored.
Result<Descriptor> ParseDescriptor(std::string_view text);

// True when `text` looks like a descriptor: its first line that is neither blank nor a
// comment is "version=N". Used to tell descriptors from raw images.
bool LooksLikeDescriptor(std::string_view text);

// Canonical text, in VMware's order and spelling; ParseDescriptor(Serialize(d)) == d.
std::string SerializeDescriptor(const Descriptor& d);

// "05e9aba7"
std::string FormatCid(uint32_t cid);

}  // namespace vmbackup::vmdk
