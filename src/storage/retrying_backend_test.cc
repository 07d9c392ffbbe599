// RetryingBackend over a MemBackend behind a decorator that fails on command, as a remote store
// does (a 503, a reset): transient failures are retried, final answers are not, and a Save whose
// answer was lost counts as saved only when the stored bytes are the same.
#include "storage/retrying_backend.h"

#include <gtest/gtest.h>

#include "storage/mem_backend.h"

namespace vmbackup::storage {
namespace {

// Fails the next `fail_next` calls with `error`; with `store_first`, a failing Save stores the
// object before it fails (the answer lost on the way back).
class Flaky : public Backend {
 public:
  explicit Flaky(Backend* inner) : inner_(inner) {}
  int fail_next = 0;
  bool store_first = false;
  Status error = UnavailableError("HTTP 503 SlowDown");
  int calls = 0;
  Status Save(const ObjectRef& ref, std::span<const uint8_t> data) override {
    if (Fail()) {
      if (store_first) inner_->Save(ref, data).IgnoreError();
      return error;
    }
    return inner_->Save(ref, data);
  }
  Result<std::vector<uint8_t>> Load(const ObjectRef& ref) override {
    if (Fail()) return error;
    return inner_->Load(ref);
  }
  Status ReadRange(const ObjectRef& ref, uint64_t offset, std::span<uint8_t> out) override {
    if (Fail()) return error;
    return inner_->ReadRange(ref, offset, out);
  }
  Result<ObjectInfo> Stat(const ObjectRef& ref) override {
    if (Fail()) return error;
    return inner_->Stat(ref);
  }
  Result<std::vector<ObjectInfo>> List(ObjectType type) override {
    if (Fail()) return error;
    return inner_->List(type);
  }
  Status Delete(const ObjectRef& ref) override {
    if (Fail()) {
      if (store_first) inner_->Delete(ref).IgnoreError();
      return error;
    }
    return inner_->Delete(ref);
  }
  std::string location() const override { return "flaky"; }

 private:
  bool Fail() {
    ++calls;
    if (fail_next <= 0) return false;
    --fail_next;
    return true;
  }
  Backend* inner_;
};

struct Fixture {
  MemBackend mem;
  Flaky* flaky = nullptr;
  std::unique_ptr<RetryingBackend> b;
  Fixture() {
    auto f = std::make_unique<Flaky>(&mem);
    flaky = f.get();
    b = std::make_unique<RetryingBackend>(std::move(f), RetryPolicy{4, 0.001, 0.002});
  }
};

const std::vector<uint8_t> kData = {1, 2, 3, 4};

TEST(RetryingBackend, TransientFailuresAreRetried) {
  Fixture f;
  f.flaky->fail_next = 3;  // three 503s, then the fourth and last attempt works
  ASSERT_TRUE(f.b->Save({ObjectType::kPack, "p"}, kData).ok());
  EXPECT_EQ(f.b->retries(), 3u);
  f.flaky->fail_next = 2;
  auto got = f.b->Load({ObjectType::kPack, "p"});
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, kData);
  f.flaky->fail_next = 1;
  std::vector<uint8_t> two(2);
  EXPECT_TRUE(f.b->ReadRange({ObjectType::kPack, "p"}, 1, two).ok());
  EXPECT_EQ(two, (std::vector<uint8_t>{2, 3}));
  f.flaky->fail_next = 1;
  EXPECT_EQ(f.b->List(ObjectType::kPack)->size(), 1u);
  f.flaky->fail_next = 1;
  EXPECT_EQ(f.b->Stat({ObjectType::kPack, "p"})->size, 4u);
}

TEST(RetryingBackend, GivesUpAfterTheLastAttempt) {
  Fixture f;
  f.flaky->fail_next = 10;
  Status s = f.b->Save({ObjectType::kPack, "p"}, kData);
  EXPECT_EQ(s.code(), ErrorCode::kUnavailable);
  EXPECT_EQ(f.flaky->calls, 4);  // the policy's attempts, no more
}

TEST(RetryingBackend, FinalAnswersAreNotRetried) {
  Fixture f;
  for (Status e : {PermissionDeniedError("HTTP 403 SignatureDoesNotMatch"),
                   NotFoundError("HTTP 404 NoSuchKey"), CorruptionError("BadDigest")}) {
    f.flaky->calls = 0;
    f.flaky->error = e;
    f.flaky->fail_next = 1;
    EXPECT_EQ(f.b->Load({ObjectType::kPack, "x"}).error().code(), e.code());
    EXPECT_EQ(f.flaky->calls, 1);
  }
  ASSERT_TRUE(f.b->Save({ObjectType::kPack, "p"}, kData).ok());
  f.flaky->calls = 0;
  EXPECT_EQ(f.b->Save({ObjectType::kPack, "p"}, kData).code(), ErrorCode::kAlreadyExists);
  EXPECT_EQ(f.flaky->calls, 1);  // written once means written once: no retry, no read-back
}

TEST(RetryingBackend, ASaveWhoseAnswerWasLostCountsOnlyWithTheSameBytes) {
  Fixture f;
  f.flaky->store_first = true;
  f.flaky->fail_next = 1;  // stored, then "503": the retry finds it there
  EXPECT_TRUE(f.b->Save({ObjectType::kPack, "p"}, kData).ok());
  // Someone else's object under the name: a retry does not take it for ours.
  const std::vector<uint8_t> theirs = {9, 9};
  ASSERT_TRUE(f.mem.Save({ObjectType::kPack, "q"}, theirs).ok());
  f.flaky->store_first = false;
  f.flaky->fail_next = 1;
  EXPECT_EQ(f.b->Save({ObjectType::kPack, "q"}, kData).code(), ErrorCode::kAlreadyExists);
  // A delete whose answer was lost: done.
  f.flaky->store_first = true;
  f.flaky->fail_next = 1;
  EXPECT_TRUE(f.b->Delete({ObjectType::kPack, "p"}).ok());
  EXPECT_EQ(f.mem.Stat({ObjectType::kPack, "p"}).error().code(), ErrorCode::kNotFound);
}

}  // namespace
}  // namespace vmbackup::storage
