// MemBackend: objects in memory, for tests. Thread-safe.
#pragma once

#include <map>
#include <mutex>

#include "storage/backend.h"

namespace vmbackup::storage {

class MemBackend final : public Backend {
 public:
  Status Save(const ObjectRef& ref, std::span<const uint8_t> data) override;
  Result<std::vector<uint8_t>> Load(const ObjectRef& ref) override;
  Status ReadRange(const ObjectRef& ref, uint64_t offset, std::span<uint8_t> out) override;
  Result<ObjectInfo> Stat(const ObjectRef& ref) override;
  Result<std::vector<ObjectInfo>> List(ObjectType type) override;
  Status Delete(const ObjectRef& ref) override;
  std::string location() const override { return "memory"; }

 private:
  std::mutex mu_;
  struct Object {
    std::vector<uint8_t> data;
    int64_t mtime;
  };
  std::map<std::pair<ObjectType, std::string>, Object> objects_;
};

}  // namespace vmbackup::storage
