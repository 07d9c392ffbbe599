#include "storage/backend.h"

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
  }
  return "?";
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
