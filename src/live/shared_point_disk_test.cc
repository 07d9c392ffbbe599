// SharedPointDisk over a real repository in a folder: bytes at any offset from many threads,
// one load per chunk however many readers want it, holes, a bounded cache, readahead, and a
// damaged chunk reported, never served.
#include "live/shared_point_disk.h"

#include <gtest/gtest.h>

#include <chrono>
#include <random>
#include <thread>

#include "base/testing/temp_dir.h"
#include "storage/local_backend.h"

namespace vmbackup::live {
namespace {

constexpr uint64_t kChunk = 65536;
constexpr int kKey = 2001;

// Chunks in turn: random, zeros, text, random (the last one partial).
std::vector<uint8_t> MixedDisk(uint64_t size) {
  std::mt19937_64 rng(7);
  std::vector<uint8_t> d(size, 0);
  for (uint64_t off = 0; off < size; off += kChunk) {
    const uint64_t n = std::min(kChunk, size - off);
    switch ((off / kChunk) % 4) {
      case 1: break;
      case 2:
        for (uint64_t i = 0; i < n; ++i) d[off + i] = uint8_t("restore me\n"[i % 11]);
        break;
      default:
        for (uint64_t i = 0; i < n; ++i) d[off + i] = uint8_t(rng());
    }
  }
  return d;
}

struct Fixture {
  explicit Fixture(uint64_t size) : disk(MixedDisk(size)) {
    auto backend = storage::LocalBackend::Create(dir / "repo");
    EXPECT_TRUE(backend);
    EXPECT_TRUE(repo::Repository::Init(**backend, {}).ok());
    auto r = repo::Repository::Open(std::move(*backend), {});
    EXPECT_TRUE(r);
    repo = std::move(*r);
    repo::Point meta;
    meta.vm_name = "web";
    auto w = repo::PointWriter::Start(*repo, meta);
    EXPECT_TRUE(w);
    repo::PointDisk d;
    d.key = kKey;
    d.capacity = size;
    auto idx = (*w)->AddDisk(d);
    EXPECT_TRUE(idx);
    for (uint64_t off = 0; off < size; off += kChunk) {
      const uint64_t n = std::min(kChunk, size - off);
      if ((off / kChunk) % 4 == 1) {
        EXPECT_TRUE((*w)->MarkZero(*idx, off, n).ok());
      } else {
        EXPECT_TRUE((*w)->WriteChunk(*idx, off, {disk.data() + off, n}).ok());
      }
    }
    auto p = (*w)->Commit();
    EXPECT_TRUE(p);
    point = *p;
  }
  uint64_t StoredChunks() const {
    uint64_t n = 0;
    for (uint64_t off = 0; off < disk.size(); off += kChunk) n += (off / kChunk) % 4 != 1;
    return n;
  }
  testing::TempDir dir;
  std::vector<uint8_t> disk;
  std::unique_ptr<repo::Repository> repo;
  repo::Point point;
};

TEST(SharedPointDisk, ReadsAnyRangeFromManyThreads) {
  Fixture f(4 * 1024 * 1024 + 4321);
  auto d = SharedPointDisk::Open(*f.repo, f.point, kKey);
  ASSERT_TRUE(d) << d.error().ToString();
  ASSERT_EQ((*d)->capacity(), f.disk.size());
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(100 + t);
      for (int i = 0; i < 200; ++i) {
        const uint64_t off = rng() % f.disk.size();
        const uint64_t len = std::min<uint64_t>(1 + rng() % (3 * kChunk), f.disk.size() - off);
        std::vector<uint8_t> buf(len, 0xAA);
        Status s = (*d)->Read(off, buf);
        if (!s.ok() || !std::equal(buf.begin(), buf.end(), f.disk.begin() + off)) ++wrong;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0);
  std::vector<uint8_t> one(1);
  EXPECT_EQ((*d)->Read(f.disk.size(), one).code(), ErrorCode::kInvalidArgument);
}

// Eight readers of the whole disk at once, with room for all of it: each stored chunk is
// decoded exactly once, and never a zero chunk.
TEST(SharedPointDisk, LoadsEachChunkOnceForConcurrentReaders) {
  Fixture f(2 * 1024 * 1024);
  CacheOptions o;
  o.readahead_bytes = 0;
  auto d = SharedPointDisk::Open(*f.repo, f.point, kKey, o);
  ASSERT_TRUE(d);
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      std::vector<uint8_t> buf(f.disk.size());
      for (uint64_t off = 0; off < buf.size(); off += kChunk) {
        if (!(*d)->Read(off, {buf.data() + off, kChunk}).ok()) ++wrong;
      }
      if (buf != f.disk) ++wrong;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0);
  const CacheStats s = (*d)->stats();
  EXPECT_EQ(s.chunks_loaded, f.StoredChunks());
  EXPECT_EQ(s.hits + s.waits + s.chunks_loaded, 8 * f.StoredChunks());
}

TEST(SharedPointDisk, ExtentsCallZeroChunksHoles) {
  Fixture f(1024 * 1024 + 100);
  auto d = SharedPointDisk::Open(*f.repo, f.point, kKey);
  ASSERT_TRUE(d);
  auto e = (*d)->Extents(100, f.disk.size());
  ASSERT_TRUE(e) << e.error().ToString();
  uint64_t at = 100;
  for (const DiskExtent& x : *e) {
    EXPECT_EQ(x.offset, at);
    for (uint64_t o = x.offset; o < x.offset + x.length; o += kChunk / 2)
      EXPECT_EQ(x.zero, (o / kChunk) % 4 == 1) << o;
    at += x.length;
  }
  EXPECT_EQ(at, f.disk.size());
  // Chunk 0 (random) starts it, chunk 1 is a hole, chunks 2-4 are one data run.
  ASSERT_GE(e->size(), 3u);
  EXPECT_EQ((*e)[1].offset, kChunk);
  EXPECT_EQ((*e)[1].length, kChunk);
  EXPECT_TRUE((*e)[1].zero);
  EXPECT_EQ((*e)[2].length, 3 * kChunk);
  EXPECT_TRUE((*d)->Extents(f.disk.size(), 10)->empty());
}

TEST(SharedPointDisk, SmallCacheStillReadsRightAndSequentialReadsPrefetch) {
  Fixture f(4 * 1024 * 1024);
  CacheOptions o;
  o.cache_bytes = 4 * kChunk;
  o.readahead_bytes = 2 * kChunk;
  auto d = SharedPointDisk::Open(*f.repo, f.point, kKey, o);
  ASSERT_TRUE(d);
  std::vector<uint8_t> buf(f.disk.size());
  // Two reads in a row make a sequential reader: the chunks after it load in the background
  // (chunk 2; chunk 1 is zeros). The loader may lag on a busy machine: wait for it.
  ASSERT_TRUE((*d)->Read(0, {buf.data(), 4096}).ok());
  ASSERT_TRUE((*d)->Read(4096, {buf.data() + 4096, 4096}).ok());
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while ((*d)->stats().prefetched == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_GT((*d)->stats().prefetched, 0u);
  for (uint64_t off = 8192; off < buf.size(); off += 4096)
    ASSERT_TRUE((*d)->Read(off, {buf.data() + off, 4096}).ok());
  EXPECT_EQ(buf, f.disk);
  // Reading it again loads again: four chunks cannot hold the disk.
  const uint64_t loaded = (*d)->stats().chunks_loaded;
  ASSERT_TRUE((*d)->Read(0, buf).ok());
  EXPECT_EQ(buf, f.disk);
  EXPECT_GT((*d)->stats().chunks_loaded, loaded);
}

TEST(SharedPointDisk, DamagedChunkIsAnErrorEveryTime) {
  Fixture f(1024 * 1024);
  auto d = SharedPointDisk::Open(*f.repo, f.point, kKey);
  ASSERT_TRUE(d);
  repo::TreeReader tree(*f.repo, f.point.disks[0].tree, 16);
  const repo::Id first = *tree.ChunkAt(0);
  auto loc = f.repo->index().Find(first);
  ASSERT_TRUE(loc);
  const std::string hex = loc->pack.Hex();
  const std::string path = f.dir / ("repo/packs/" + hex.substr(0, 2) + "/" + hex);
  auto bytes = testing::ReadBytes(path);
  bytes[loc->offset + 50] ^= 0x40;
  testing::WriteBytes(path, bytes);
  std::vector<uint8_t> buf(2 * kChunk);
  for (int i = 0; i < 2; ++i) {  // not cached as good after the first failure
    Status s = (*d)->Read(100, buf);
    EXPECT_EQ(s.code(), ErrorCode::kCorruption) << s.ToString();
  }
  // The rest of the disk still reads.
  ASSERT_TRUE((*d)->Read(2 * kChunk, buf).ok());
  EXPECT_TRUE(std::equal(buf.begin(), buf.end(), f.disk.begin() + 2 * kChunk));
}

TEST(SharedPointDisk, UnknownDiskNamesTheDisksThereAre) {
  Fixture f(kChunk);
  auto d = SharedPointDisk::Open(*f.repo, f.point, 2000);
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().code(), ErrorCode::kNotFound);
  EXPECT_NE(d.error().message().find("2001"), std::string::npos) << d.error().message();
}

}  // namespace
}  // namespace vmbackup::live
