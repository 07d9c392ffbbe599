#include "base/extent_set.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

namespace vmbackup {
namespace {

using V = std::vector<Extent>;

TEST(ExtentSet, AddMergesOverlappingAndTouching) {
  ExtentSet s;
  s.Add(10, 10);
  s.Add(30, 10);
  EXPECT_EQ(s.ToVector(), (V{{10, 10}, {30, 10}}));
  s.Add(20, 10);  // touches both
  EXPECT_EQ(s.ToVector(), (V{{10, 30}}));
  s.Add(0, 5);
  s.Add(15, 2);  // inside
  s.Add(0, 0);   // ignored
  EXPECT_EQ(s.ToVector(), (V{{0, 5}, {10, 30}}));
  EXPECT_EQ(s.total_bytes(), 35u);
}

TEST(ExtentSet, SubtractSplits) {
  ExtentSet s{{0, 100}};
  s.Subtract(10, 10);
  s.Subtract(90, 50);
  s.Subtract(200, 5);
  EXPECT_EQ(s.ToVector(), (V{{0, 10}, {20, 70}}));
  s.Subtract(0, 1000);
  EXPECT_TRUE(s.empty());
}

TEST(ExtentSet, IntersectAndClip) {
  ExtentSet a{{0, 10}, {20, 10}, {40, 10}};
  ExtentSet b{{5, 20}, {45, 100}};
  EXPECT_EQ(a.Intersect(b).ToVector(), (V{{5, 5}, {20, 5}, {45, 5}}));
  EXPECT_EQ(a.Clip(8, 15).ToVector(), (V{{8, 2}, {20, 3}}));
}

TEST(ExtentSet, AlignOutward) {
  ExtentSet s{{100, 10}, {65530, 10}};
  EXPECT_EQ(s.AlignOutward(65536).ToVector(), (V{{0, 131072}}));
  EXPECT_EQ(s.AlignOutward(4096, 66000).ToVector(), (V{{0, 4096}, {61440, 66000 - 61440}}));
}

TEST(ExtentSet, ContainsAndOverlaps) {
  ExtentSet s{{10, 10}};
  EXPECT_TRUE(s.Contains(10, 10));
  EXPECT_TRUE(s.Contains(12, 3));
  EXPECT_FALSE(s.Contains(5, 10));
  EXPECT_FALSE(s.Contains(15, 10));
  EXPECT_TRUE(s.Overlaps(19, 5));
  EXPECT_FALSE(s.Overlaps(20, 5));
  EXPECT_FALSE(s.Overlaps(0, 10));
  EXPECT_TRUE(s.Contains(0, 0));
}

// Random operations against a byte-array model.
TEST(ExtentSet, MatchesBitmapModel) {
  std::mt19937 rng(42);
  constexpr size_t kSize = 512;
  for (int round = 0; round < 200; ++round) {
    ExtentSet s;
    std::vector<bool> model(kSize, false);
    for (int op = 0; op < 30; ++op) {
      uint64_t off = rng() % kSize, len = rng() % (kSize - off);
      bool add = rng() % 3 != 0;
      if (add)
        s.Add(off, len);
      else
        s.Subtract(off, len);
      for (uint64_t i = off; i < off + len; ++i) model[i] = add;
    }
    std::vector<bool> got(kSize, false);
    uint64_t prev_end = 0;
    bool first = true;
    for (Extent e : s) {
      EXPECT_GT(e.length, 0u);
      if (!first) {
        EXPECT_GT(e.offset, prev_end);  // disjoint and not touching
      }
      first = false;
      prev_end = e.end();
      for (uint64_t i = e.offset; i < e.end(); ++i) got[i] = true;
    }
    ASSERT_EQ(got, model) << "round " << round;
  }
}

}  // namespace
}  // namespace vmbackup
