#include "storage/backend.h"

#include "base/checked_math.h"
#include "base/strings.h"

namespace vmbackup::storage {

std::string_view ObjectTypeName(ObjectType t) {
  switch (t) {
    case ObjectType::kConfig: return "config";
    case ObjectType::kKey: return "keys";
    case ObjectType::kPack: return "packs";
    case ObjectType::kIndex: return "index";
    case ObjectType::kTree: return "trees";
    case ObjectType::kPoint: return "points";
    case ObjectType::kLock: return "locks";
    case ObjectType::kMark: return "marks";
    case ObjectType::kForgotten: return "forgotten";
    case ObjectType::kDamage: return "damage";
    case ObjectType::kTest: return "tests";
  }
  return "?";
}

Result<std::vector<uint8_t>> Backend::LoadRange(const ObjectRef& ref, uint64_t offset,
                                                uint64_t length) {
  VMBACKUP_ASSIGN_OR_RETURN(ObjectInfo info, Stat(ref));
  if (!RangeWithin(offset, length, info.size)) {
    return CorruptionError(StrFormat("%s/%s: %llu bytes at %llu asked, the object has %llu",
                                     std::string(ObjectTypeName(ref.type)).c_str(),
                                     ref.name.c_str(), (unsigned long long)length,
                                     (unsigned long long)offset, (unsigned long long)info.size));
  }
  std::vector<uint8_t> data(length);
  VMBACKUP_RETURN_IF_ERROR(ReadRange(ref, offset, data));
  return data;
}

bool IsLockable(const ObjectRef& ref) {
  if (ref.type == ObjectType::kPoint && ref.name.ends_with(".protected")) return false;
  switch (ref.type) {
    case ObjectType::kConfig:
    case ObjectType::kKey:
    case ObjectType::kPack:
    case ObjectType::kPoint: return true;
    default: return false;
  }
}

Result<std::unique_ptr<ObjectWriter>> Backend::NewWriter(ObjectType) {
  return NotSupportedError(location() + " saves whole objects only");
}

Status Backend::LockNewObjects(LockMode, int64_t) {
  return NotSupportedError(location() + " has no Object Lock (an S3 bucket made with it has)");
}

Result<int64_t> Backend::LockedUntil(const ObjectRef& ref) {
  VMBACKUP_RETURN_IF_ERROR(Stat(ref).status());
  return int64_t(0);
}

Status Backend::ExtendLock(const ObjectRef&, int64_t) {
  return NotSupportedError(location() + " has no Object Lock");
}

Status ValidateObjectName(std::string_view name) {
  bool ok = !name.empty() && name.size() <= 128 && name[0] != '.';
  for (char c : name) {
    ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '.' || c == '_' || c == '-');
  }
  if (!ok) return InvalidArgumentError("object name '" + std::string(name) + "' is not allowed");
  return Status::Ok();
}

}  // namespace vmbackup::storage
