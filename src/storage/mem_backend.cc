#include "storage/mem_backend.h"

#include <algorithm>
#include <ctime>

#include "base/checked_math.h"
#include "base/strings.h"

namespace vmbackup::storage {
namespace {
std::string Describe(const ObjectRef& ref) {
  return std::string(ObjectTypeName(ref.type)) + "/" + ref.name;
}
}  // namespace

Status MemBackend::Save(const ObjectRef& ref, std::span<const uint8_t> data) {
  VMBACKUP_RETURN_IF_ERROR(ValidateObjectName(ref.name));
  std::lock_guard<std::mutex> l(mu_);
  auto [it, inserted] = objects_.try_emplace(
      {ref.type, ref.name}, Object{{data.begin(), data.end()}, int64_t(::time(nullptr))});
  if (!inserted) return AlreadyExistsError(Describe(ref) + " already exists");
  return Status::Ok();
}

Result<std::vector<uint8_t>> MemBackend::Load(const ObjectRef& ref) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = objects_.find({ref.type, ref.name});
  if (it == objects_.end()) return NotFoundError(Describe(ref) + " not found");
  return it->second.data;
}

Status MemBackend::ReadRange(const ObjectRef& ref, uint64_t offset, std::span<uint8_t> out) {
  const uint64_t length = out.size();
  std::lock_guard<std::mutex> l(mu_);
  auto it = objects_.find({ref.type, ref.name});
  if (it == objects_.end()) return NotFoundError(Describe(ref) + " not found");
  if (!RangeWithin(offset, length, it->second.data.size())) {
    return CorruptionError(StrFormat("%s: %llu bytes at %llu asked, the object has %zu",
                                     Describe(ref).c_str(), (unsigned long long)length,
                                     (unsigned long long)offset, it->second.data.size()));
  }
  std::copy_n(it->second.data.begin() + long(offset), length, out.begin());
  return Status::Ok();
}

Result<ObjectInfo> MemBackend::Stat(const ObjectRef& ref) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = objects_.find({ref.type, ref.name});
  if (it == objects_.end()) return NotFoundError(Describe(ref) + " not found");
  return ObjectInfo{ref.name, it->second.data.size(), it->second.mtime};
}

Result<std::vector<ObjectInfo>> MemBackend::List(ObjectType type) {
  std::lock_guard<std::mutex> l(mu_);
  std::vector<ObjectInfo> out;
  for (const auto& [key, object] : objects_)
    if (key.first == type) out.push_back({key.second, object.data.size(), object.mtime});
  return out;
}

Status MemBackend::Delete(const ObjectRef& ref) {
  std::lock_guard<std::mutex> l(mu_);
  if (objects_.erase({ref.type, ref.name}) == 0) return NotFoundError(Describe(ref) + " not found");
  return Status::Ok();
}

}  // namespace vmbackup::storage
