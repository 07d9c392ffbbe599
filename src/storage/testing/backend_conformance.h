// The contract every storage::Backend must meet, as one typed GoogleTest suite. A backend's
// test instantiates it with a fixture type that has `std::unique_ptr<Backend> Make()`:
//   INSTANTIATE_TYPED_TEST_SUITE_P(Mem, BackendConformance, MemFactory);
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <thread>
#include <vector>

#include "storage/backend.h"

namespace vmbackup::storage::testing {

template <class Factory>
class BackendConformance : public ::testing::Test {
 protected:
  void SetUp() override { backend_ = factory_.Make(); }
  static std::vector<uint8_t> Bytes(size_t n, uint8_t seed) {
    std::vector<uint8_t> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = uint8_t(seed + i * 31);
    return v;
  }
  Factory factory_;
  std::unique_ptr<Backend> backend_;
};

TYPED_TEST_SUITE_P(BackendConformance);

TYPED_TEST_P(BackendConformance, SaveLoadStatListDelete) {
  Backend& b = *this->backend_;
  auto data = this->Bytes(1000, 1);
  ObjectRef ref{ObjectType::kPack, "ab12cd"};
  ASSERT_TRUE(b.Save(ref, data).ok());
  EXPECT_EQ(*b.Load(ref), data);
  EXPECT_EQ(b.Stat(ref)->size, 1000u);
  ASSERT_TRUE(
      b.Save({ObjectType::kIndex, "ab12cd"}, this->Bytes(5, 2)).ok());  // same name, other type
  auto packs = b.List(ObjectType::kPack);
  ASSERT_TRUE(packs);
  ASSERT_EQ(packs->size(), 1u);
  EXPECT_EQ((*packs)[0].name, "ab12cd");
  EXPECT_EQ((*packs)[0].size, 1000u);
  EXPECT_EQ(b.List(ObjectType::kPoint)->size(), 0u);
  ASSERT_TRUE(b.Delete(ref).ok());
  EXPECT_EQ(b.Load(ref).error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(b.Stat(ref).error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(b.Delete(ref).code(), ErrorCode::kNotFound);
  EXPECT_EQ(b.LoadRange(ref, 0, 1).error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(b.Load({ObjectType::kIndex, "ab12cd"})->size(), 5u);
}

TYPED_TEST_P(BackendConformance, WriteOnce) {
  Backend& b = *this->backend_;
  ObjectRef ref{ObjectType::kPoint, "p1"};
  ASSERT_TRUE(b.Save(ref, this->Bytes(10, 1)).ok());
  EXPECT_EQ(b.Save(ref, this->Bytes(20, 2)).code(), ErrorCode::kAlreadyExists);
  EXPECT_EQ(*b.Load(ref), this->Bytes(10, 1));  // the first content stays
}

TYPED_TEST_P(BackendConformance, Ranges) {
  Backend& b = *this->backend_;
  auto data = this->Bytes(4096, 3);
  ObjectRef ref{ObjectType::kPack, "r1"};
  ASSERT_TRUE(b.Save(ref, data).ok());
  auto mid = b.LoadRange(ref, 100, 50);
  ASSERT_TRUE(mid);
  EXPECT_EQ(*mid, std::vector<uint8_t>(data.begin() + 100, data.begin() + 150));
  EXPECT_EQ(b.LoadRange(ref, 4096, 0)->size(), 0u);
  EXPECT_EQ(b.LoadRange(ref, 4000, 97).error().code(), ErrorCode::kCorruption);
  EXPECT_EQ(b.LoadRange(ref, UINT64_MAX, 2).error().code(), ErrorCode::kCorruption);
  // ReadRange fills exactly the caller's buffer and leaves the bytes around it alone.
  std::vector<uint8_t> buf(70, 0xee);
  ASSERT_TRUE(b.ReadRange(ref, 4000, std::span<uint8_t>(buf).subspan(5, 60)).ok());
  EXPECT_TRUE(std::equal(buf.begin() + 5, buf.begin() + 65, data.begin() + 4000));
  EXPECT_EQ(buf[4], 0xee);
  EXPECT_EQ(buf[65], 0xee);
  EXPECT_EQ(b.ReadRange(ref, 4030, buf).code(), ErrorCode::kCorruption);  // 4 bytes past the end
  EXPECT_EQ(b.ReadRange({ObjectType::kPack, "absent"}, 0, buf).code(), ErrorCode::kNotFound);
}

TYPED_TEST_P(BackendConformance, EmptyAndLargeObjects) {
  Backend& b = *this->backend_;
  ASSERT_TRUE(b.Save({ObjectType::kLock, "empty"}, {}).ok());
  EXPECT_EQ(b.Load({ObjectType::kLock, "empty"})->size(), 0u);
  auto big = this->Bytes(8 << 20, 9);
  ASSERT_TRUE(b.Save({ObjectType::kPack, "big"}, big).ok());
  EXPECT_EQ(*b.Load({ObjectType::kPack, "big"}), big);
}

TYPED_TEST_P(BackendConformance, RejectsUnsafeNames) {
  Backend& b = *this->backend_;
  for (const char* bad : {"", "../x", "a/b", ".hidden", "sp ace", "x\n"}) {
    EXPECT_EQ(b.Save({ObjectType::kPack, bad}, this->Bytes(1, 1)).code(),
              ErrorCode::kInvalidArgument)
        << bad;
  }
}

TYPED_TEST_P(BackendConformance, ConcurrentSaves) {
  Backend& b = *this->backend_;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        std::string name = "t" + std::to_string(t) + "-" + std::to_string(i);
        if (!b.Save({ObjectType::kPack, name}, this->Bytes(100, uint8_t(i))).ok()) ++failures;
      }
      // Every thread also races for one shared name: exactly one wins.
      if (!b.Save({ObjectType::kIndex, "shared"}, this->Bytes(10, uint8_t(t))).ok()) ++failures;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 3);
  EXPECT_EQ(b.List(ObjectType::kPack)->size(), 100u);
}

REGISTER_TYPED_TEST_SUITE_P(BackendConformance, SaveLoadStatListDelete, WriteOnce, Ranges,
                            EmptyAndLargeObjects, RejectsUnsafeNames, ConcurrentSaves);

}  // namespace vmbackup::storage::testing
