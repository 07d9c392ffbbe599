// A Backend that passes every call to another one, for tests that watch or change a few calls
// (count reads, slow down saves) and leave the rest alone: derive and override those.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "storage/backend.h"

namespace vmbackup::storage::testing {

class ForwardingBackend : public Backend {
 public:
  // Forwards to `inner`, which the caller keeps (and may use alongside).
  explicit ForwardingBackend(Backend& inner) : inner_(&inner) {}
  // Forwards to a backend of its own.
  explicit ForwardingBackend(std::unique_ptr<Backend> owned)
      : owned_(std::move(owned)), inner_(owned_.get()) {}

  Status Save(const ObjectRef& r, std::span<const uint8_t> d) override {
    return inner_->Save(r, d);
  }
  Result<std::vector<uint8_t>> Load(const ObjectRef& r) override { return inner_->Load(r); }
  Status ReadRange(const ObjectRef& r, uint64_t offset, std::span<uint8_t> out) override {
    return inner_->ReadRange(r, offset, out);
  }
  uint64_t CoalesceGap() const override { return inner_->CoalesceGap(); }
  int SavesInFlight() const override { return inner_->SavesInFlight(); }
  bool WritesInPieces() const override { return inner_->WritesInPieces(); }
  Result<std::unique_ptr<ObjectWriter>> NewWriter(ObjectType t) override {
    return inner_->NewWriter(t);
  }
  Result<ObjectInfo> Stat(const ObjectRef& r) override { return inner_->Stat(r); }
  Result<std::vector<ObjectInfo>> List(ObjectType t) override { return inner_->List(t); }
  Status Delete(const ObjectRef& r) override { return inner_->Delete(r); }
  std::string location() const override { return inner_->location(); }

 private:
  std::unique_ptr<Backend> owned_;
  Backend* inner_;
};

}  // namespace vmbackup::storage::testing
