// BlockCacheBackend over a MemBackend behind a counter of the inner calls: reads by blocks give
// the object's bytes exactly, each block is asked for once while it is kept, failures are not
// kept, and the cache stays within its bound. The backend contract itself is checked by the
// conformance suite.
#include "storage/block_cache_backend.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "storage/mem_backend.h"
#include "storage/testing/backend_conformance.h"

namespace vmbackup::storage {
namespace {

// Counts the ranged reads and Stats that reach the inner backend, and fails the next
// `fail_reads` ranged reads.
class Counting : public Backend {
 public:
  explicit Counting(Backend* inner) : inner_(inner) {}
  std::atomic<int> reads{0}, stats{0}, fail_reads{0};
  std::atomic<uint64_t> bytes{0};
  Status Save(const ObjectRef& ref, std::span<const uint8_t> data) override {
    return inner_->Save(ref, data);
  }
  Result<std::vector<uint8_t>> Load(const ObjectRef& ref) override { return inner_->Load(ref); }
  Status ReadRange(const ObjectRef& ref, uint64_t offset, std::span<uint8_t> out) override {
    ++reads;
    if (fail_reads > 0) {
      --fail_reads;
      return UnavailableError("HTTP 503 SlowDown");
    }
    bytes += out.size();
    return inner_->ReadRange(ref, offset, out);
  }
  Result<ObjectInfo> Stat(const ObjectRef& ref) override {
    ++stats;
    return inner_->Stat(ref);
  }
  Result<std::vector<ObjectInfo>> List(ObjectType type) override { return inner_->List(type); }
  Status Delete(const ObjectRef& ref) override { return inner_->Delete(ref); }
  std::string location() const override { return "counting"; }

 private:
  Backend* inner_;
};

std::vector<uint8_t> Pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = uint8_t(seed + i * 7 + i / 251);
  return v;
}

struct Fixture {
  MemBackend mem;
  Counting* counting = nullptr;
  std::unique_ptr<BlockCacheBackend> b;
  explicit Fixture(BlockCacheOptions o) {
    auto c = std::make_unique<Counting>(&mem);
    counting = c.get();
    b = std::make_unique<BlockCacheBackend>(std::move(c), o);
  }
};

constexpr uint64_t kBlock = 4096;
const ObjectRef kPack{ObjectType::kPack, "p1"};

TEST(BlockCacheBackend, PiecesOfAPackReadExactlyWithOneRequestPerBlock) {
  Fixture f({kBlock, 16, 0});
  const auto data = Pattern(5 * kBlock + 123, 1);  // five blocks and a short sixth
  ASSERT_TRUE(f.mem.Save(kPack, data).ok());
  // Pieces in no order, across block borders, the last byte included.
  const std::vector<std::pair<uint64_t, uint64_t>> pieces = {
      {100, 50}, {kBlock - 10, 20}, {3 * kBlock, kBlock}, {0, 1}, {data.size() - 7, 7},
      {kBlock + 1, 3 * kBlock}, {2 * kBlock + 5, 2 * kBlock + 10}, {0, data.size()}};
  for (auto [offset, length] : pieces) {
    std::vector<uint8_t> out(length);
    ASSERT_TRUE(f.b->ReadRange(kPack, offset, out).ok()) << offset;
    EXPECT_TRUE(std::equal(out.begin(), out.end(), data.begin() + long(offset))) << offset;
  }
  auto whole = f.b->LoadRange(kPack, 0, data.size());
  ASSERT_TRUE(whole);
  EXPECT_EQ(*whole, data);
  EXPECT_EQ(f.counting->reads, 6);  // each block once
  EXPECT_EQ(f.counting->stats, 1);  // the size once
  EXPECT_EQ(f.counting->bytes, data.size());
  EXPECT_EQ(f.b->cache_stats().fetches, 6u);
}

TEST(BlockCacheBackend, RangesPastTheEndAndMissingPacksFailAsTheInnerBackendSays) {
  Fixture f({kBlock, 16, 2});
  ASSERT_TRUE(f.mem.Save(kPack, Pattern(kBlock + 10, 2)).ok());
  std::vector<uint8_t> out(20);
  EXPECT_EQ(f.b->ReadRange(kPack, kBlock, out).code(), ErrorCode::kCorruption);
  EXPECT_EQ(f.b->ReadRange(kPack, 10 * kBlock, out).code(), ErrorCode::kCorruption);
  EXPECT_EQ(f.b->ReadRange({ObjectType::kPack, "absent"}, 0, out).code(), ErrorCode::kNotFound);
  EXPECT_EQ(f.b->ReadRange({ObjectType::kPack, "../x"}, 0, out).code(),
            ErrorCode::kInvalidArgument);
  EXPECT_TRUE(f.b->ReadRange(kPack, kBlock - 10, out).ok());
}

TEST(BlockCacheBackend, AFailedFetchIsNotKept) {
  Fixture f({kBlock, 16, 0});
  const auto data = Pattern(2 * kBlock, 3);
  ASSERT_TRUE(f.mem.Save(kPack, data).ok());
  f.counting->fail_reads = 1;
  std::vector<uint8_t> out(100);
  EXPECT_EQ(f.b->ReadRange(kPack, 10, out).code(), ErrorCode::kUnavailable);
  ASSERT_TRUE(f.b->ReadRange(kPack, 10, out).ok());
  EXPECT_TRUE(std::equal(out.begin(), out.end(), data.begin() + 10));
  EXPECT_EQ(f.counting->reads, 2);
}

TEST(BlockCacheBackend, KeepsAtMostItsBoundLeastRecentlyUsedOut) {
  Fixture f({kBlock, 2, 0});
  ASSERT_TRUE(f.mem.Save(kPack, Pattern(4 * kBlock, 4)).ok());
  std::vector<uint8_t> out(10);
  for (uint64_t k : {0, 1, 0, 2}) ASSERT_TRUE(f.b->ReadRange(kPack, k * kBlock, out).ok());
  EXPECT_EQ(f.counting->reads, 3);  // block 0 was used again before block 2 came
  EXPECT_EQ(f.b->cache_stats().cached, 2u);
  ASSERT_TRUE(f.b->ReadRange(kPack, 0, out).ok());  // still kept
  EXPECT_EQ(f.counting->reads, 3);
  ASSERT_TRUE(f.b->ReadRange(kPack, kBlock, out).ok());  // block 1 went out with block 2
  EXPECT_EQ(f.counting->reads, 4);
  EXPECT_EQ(f.b->cache_stats().cached, 2u);
}

TEST(BlockCacheBackend, PrefetchedAndConcurrentlyReadBlocksAreFetchedOnce) {
  Fixture f({kBlock, 64, 3});
  const auto data = Pattern(32 * kBlock, 5);
  ASSERT_TRUE(f.mem.Save(kPack, data).ok());
  f.b->Prefetch(kPack, 0, data.size());
  std::vector<std::thread> readers;
  std::atomic<int> wrong{0};
  for (int t = 0; t < 4; ++t) {
    readers.emplace_back([&, t] {
      std::vector<uint8_t> out(3 * kBlock);
      for (uint64_t offset = uint64_t(t) * 100; offset + out.size() <= data.size();
           offset += kBlock / 2) {
        if (!f.b->ReadRange(kPack, offset, out).ok() ||
            !std::equal(out.begin(), out.end(), data.begin() + long(offset)))
          ++wrong;
      }
    });
  }
  for (auto& r : readers) r.join();
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ(f.counting->reads, 32);  // every block once, whoever fetched it
  EXPECT_EQ(f.counting->stats, 1);
}

TEST(BlockCacheBackend, SavingOrDeletingAPackDropsItsBlocks) {
  Fixture f({kBlock, 16, 0});
  ASSERT_TRUE(f.b->Save(kPack, Pattern(kBlock, 6)).ok());
  std::vector<uint8_t> out(10);
  ASSERT_TRUE(f.b->ReadRange(kPack, 0, out).ok());
  ASSERT_TRUE(f.b->Delete(kPack).ok());
  EXPECT_EQ(f.b->cache_stats().cached, 0u);
  EXPECT_EQ(f.b->ReadRange(kPack, 0, out).code(), ErrorCode::kNotFound);
  const auto other = Pattern(2 * kBlock, 9);  // the same name saved again (a repaired pack)
  ASSERT_TRUE(f.b->Save(kPack, other).ok());
  ASSERT_TRUE(f.b->ReadRange(kPack, kBlock + 5, out).ok());
  EXPECT_TRUE(std::equal(out.begin(), out.end(), other.begin() + long(kBlock) + 5));
}

TEST(BlockCacheBackend, OtherObjectsPassThrough) {
  Fixture f({kBlock, 16, 0});
  const ObjectRef index{ObjectType::kIndex, "i1"};
  ASSERT_TRUE(f.b->Save(index, Pattern(3 * kBlock, 7)).ok());
  std::vector<uint8_t> out(10);
  ASSERT_TRUE(f.b->ReadRange(index, 5, out).ok());
  ASSERT_TRUE(f.b->ReadRange(index, 5, out).ok());
  EXPECT_EQ(f.counting->reads, 2);  // as asked, nothing kept
  EXPECT_EQ(f.counting->stats, 0);
  EXPECT_EQ(f.b->cache_stats().fetches, 0u);
}

}  // namespace

namespace testing {
namespace {
struct BlockCacheFactory {
  std::unique_ptr<Backend> Make() {
    return std::make_unique<BlockCacheBackend>(std::make_unique<MemBackend>(),
                                               BlockCacheOptions{64, 4, 2});
  }
};
INSTANTIATE_TYPED_TEST_SUITE_P(BlockCache, BackendConformance, BlockCacheFactory);
}  // namespace
}  // namespace testing

}  // namespace vmbackup::storage
