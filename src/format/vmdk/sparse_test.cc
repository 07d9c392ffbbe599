// Hosted sparse, stream, COWD and SEsparse readers against damaged files: every corruption is a
// clear error naming the file and field, never a crash or wrong bytes.
#include <gtest/gtest.h>

#include <random>

#include "base/endian.h"
#include "base/strings.h"
#include "base/testing/temp_dir.h"
#include "format/vmdk/convert.h"
#include "format/vmdk/create.h"
#include "format/vmdk/disk.h"
#include "format/vmdk/sparse_header.h"
#include "io/mem_device.h"

namespace vmbackup::vmdk {
namespace {

using vmbackup::testing::ReadBytes;
using vmbackup::testing::TempDir;
using vmbackup::testing::WriteBytes;

class SparseTest : public ::testing::Test {
 protected:
  // A 64 MiB monolithicSparse disk with one grain of 0x5A at 1 MiB.
  std::string MakeDisk(const std::string& name = "d.vmdk") {
    std::string p = dir_ / name;
    CreateOptions o;
    o.type = DiskType::kSparse;
    o.capacity = 64 << 20;
    EXPECT_TRUE(CreateDisk(p, o).ok());
    DiskOptions w;
    w.writable = true;
    auto disk = Disk::Open(p, w);
    EXPECT_TRUE(disk) << disk.error().ToString();
    std::vector<uint8_t> grain(65536, 0x5A);
    EXPECT_TRUE((*disk)->WriteAt(1 << 20, grain).ok());
    return p;
  }
  SparseHeader Header(const std::vector<uint8_t>& f) { return DecodeSparseHeader(f.data()); }
  // Opens, maps the whole chain, and reads every run that holds data (as `vmdk cat` does).
  Status OpenAndReadAll(const std::string& p) {
    auto disk = Disk::Open(p, DiskOptions{});
    if (!disk) return disk.error();
    std::vector<ChainRun> runs;
    VMBACKUP_RETURN_IF_ERROR((*disk)->MapChain(0, (*disk)->size(), &runs));
    for (const ChainRun& r : runs) {
      if (r.state != BlockState::kData) continue;
      std::vector<uint8_t> buf(std::min<uint64_t>(r.length, 64 << 20));
      VMBACKUP_RETURN_IF_ERROR((*disk)->ReadAt(r.offset, buf));
    }
    return Status::Ok();
  }
  void ExpectCorrupt(const std::string& p, const std::string& fragment) {
    Status s = OpenAndReadAll(p);
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.message().find(fragment), std::string::npos) << s.message();
    EXPECT_NE(s.message().find(p), std::string::npos)
        << "message must name the file: " << s.message();
  }
  TempDir dir_;
};

TEST_F(SparseTest, ReadsBackWhatWasWritten) {
  std::string p = MakeDisk();
  auto disk = Disk::Open(p, DiskOptions{});
  ASSERT_TRUE(disk);
  std::vector<uint8_t> buf(3 * 65536);
  ASSERT_TRUE((*disk)->ReadAt((1 << 20) - 65536, buf).ok());
  for (size_t i = 0; i < buf.size(); ++i) {
    ASSERT_EQ(buf[i], (i >= 65536 && i < 131072) ? 0x5A : 0) << i;
  }
  auto alloc = (*disk)->AllocatedExtents(0, (*disk)->size());
  ASSERT_TRUE(alloc);
  EXPECT_EQ(alloc->ToVector(), (std::vector<Extent>{{1 << 20, 65536}}));
}

TEST_F(SparseTest, GrainDirectoryEntryPastEnd) {
  std::string p = MakeDisk();
  auto f = ReadBytes(p);
  StoreLE32(f.data() + Header(f).gd_offset * 512, 0x00FFFFFF);
  WriteBytes(p, f);
  ExpectCorrupt(p, "grain directory entry 0 points at sector 16777215, past the end");
}

TEST_F(SparseTest, OverlappingGrainTables) {
  std::string p = MakeDisk();
  auto f = ReadBytes(p);
  uint8_t* gd = f.data() + Header(f).gd_offset * 512;
  StoreLE32(gd + 4, LoadLE32(gd) + 1);  // table 1 starts inside table 0
  WriteBytes(p, f);
  ExpectCorrupt(p, "grain tables 0 and 1 overlap");
}

TEST_F(SparseTest, GrainTableOverlapsDirectory) {
  std::string p = MakeDisk();
  auto f = ReadBytes(p);
  SparseHeader h = Header(f);
  StoreLE32(f.data() + h.gd_offset * 512, uint32_t(h.gd_offset));
  WriteBytes(p, f);
  ExpectCorrupt(p, "overlaps the grain directory");
}

TEST_F(SparseTest, GrainEntryPastEndAndInsideMetadata) {
  std::string p = MakeDisk();
  auto f = ReadBytes(p);
  SparseHeader h = Header(f);
  uint32_t gt0 = LoadLE32(f.data() + h.gd_offset * 512);
  uint8_t* entry = f.data() + gt0 * 512 + 16 * 4;  // grain 16 = offset 1 MiB
  ASSERT_NE(LoadLE32(entry), 0u);
  StoreLE32(entry, 0x7FFFFFFF);
  WriteBytes(p, f);
  ExpectCorrupt(p, "grain table 0 entry 16 points at sector 2147483647, past the end of the file");
  StoreLE32(entry, 3);
  WriteBytes(p, f);
  ExpectCorrupt(p, "inside the metadata");
}

TEST_F(SparseTest, HeaderFields) {
  std::string p = MakeDisk();
  const auto good = ReadBytes(p);
  auto patch = [&](size_t off, uint64_t v, int width) {
    auto f = good;
    if (f.size() < off + 8) return;  // (also tells GCC the store is in bounds)
    if (width == 8) {
      StoreLE64(f.data() + off, v);
    } else {
      StoreLE32(f.data() + off, uint32_t(v));
    }
    WriteBytes(p, f);
  };
  patch(12, uint64_t(1) << 60, 8);
  ExpectCorrupt(p, "capacity");
  patch(20, 100, 8);
  ExpectCorrupt(p, "grainSize 100 is not a power of two");
  // Found by the sparse fuzzer: a power of two so large that grainSize * 512 wrapped to zero.
  patch(20, uint64_t(1) << 55, 8);
  ExpectCorrupt(p, "grainSize 36028797018963968 is not a power of two up to 65536 sectors");
  patch(44, 4096, 4);
  ExpectCorrupt(p, "numGTEsPerGT is 4096");
  patch(4, 9, 4);
  ExpectCorrupt(p, "sparse header version 9");
  patch(56, 1u << 30, 8);
  ExpectCorrupt(p, "grain directory at sector 1073741824");
  patch(73, 0x0a0a0a0a, 4);
  ExpectCorrupt(p, "newline-check bytes");
  auto f = good;
  f.resize(300);
  WriteBytes(p, f);
  ExpectCorrupt(p, "too short for a sparse header");
}

TEST_F(SparseTest, EmbeddedDescriptorDamage) {
  std::string p = MakeDisk();
  auto f = ReadBytes(p);
  const char bogus[] = "version=1\ncreateType=\"monolithicSparse\"\nRW 10 NOPE \"d.vmdk\"\n";
  std::fill(f.begin() + 512, f.begin() + 512 * 21, 0);
  std::copy(bogus, bogus + sizeof bogus - 1, f.begin() + 512);
  WriteBytes(p, f);
  ExpectCorrupt(p, "embedded descriptor: line 3: unknown extent type 'NOPE'");
}

TEST_F(SparseTest, ZeroedGrainEntryReadsZerosAndHidesParent) {
  std::string base = MakeDisk("base.vmdk");
  std::string child = dir_ / "child.vmdk";
  CreateOptions o;
  o.parent = base;
  ASSERT_TRUE(CreateDisk(child, o).ok());
  auto f = ReadBytes(child);
  SparseHeader h = Header(f);
  h.flags |= kFlagZeroedGrainGte;
  EncodeSparseHeader(h, f.data());
  uint32_t gt0 = LoadLE32(f.data() + h.gd_offset * 512);
  StoreLE32(f.data() + gt0 * 512 + 16 * 4, 1);  // grain 16: zeroed
  WriteBytes(child, f);
  auto disk = Disk::Open(child, DiskOptions{});
  ASSERT_TRUE(disk) << disk.error().ToString();
  std::vector<uint8_t> buf(65536, 0xFF);
  ASSERT_TRUE((*disk)->ReadAt(1 << 20, buf).ok());
  EXPECT_TRUE(IsAllZero(buf.data(), buf.size()));
  std::vector<ChainRun> runs;
  ASSERT_TRUE((*disk)->MapChain(1 << 20, 65536, &runs).ok());
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].state, BlockState::kZero);
  EXPECT_EQ(runs[0].depth, 0);
}

TEST_F(SparseTest, StreamRoundTripAndDamage) {
  std::vector<uint8_t> raw(5 * 65536 + 1000, 0);
  for (size_t i = 0; i < 65536; ++i) raw[i] = uint8_t(i * 7);
  for (size_t i = 4 * 65536; i < raw.size(); ++i) raw[i] = uint8_t(i % 251);
  io::MemDevice src(raw);
  std::string p = dir_ / "s.vmdk";
  auto stats = WriteStreamOptimized(src, p);
  ASSERT_TRUE(stats) << stats.error().ToString();
  EXPECT_EQ(stats->bytes_written, 65536u + 65536 + 1000);
  auto disk = Disk::Open(p, DiskOptions{});
  ASSERT_TRUE(disk) << disk.error().ToString();
  EXPECT_EQ((*disk)->size(), 5 * 65536u + 1024);  // rounded up to a sector
  std::vector<uint8_t> back((*disk)->size());
  ASSERT_TRUE((*disk)->ReadAt(0, back).ok());
  back.resize(raw.size());
  EXPECT_EQ(back, raw);
  EXPECT_EQ(DiskOptions{}.writable, false);
  DiskOptions w;
  w.writable = true;
  EXPECT_EQ(Disk::Open(p, w).error().code(), ErrorCode::kNotSupported);

  auto good = ReadBytes(p);
  auto f = good;
  f[128 * 512 + 20] ^= 0xFF;  // inside the first compressed grain
  WriteBytes(p, f);
  ExpectCorrupt(p, "compressed grain at sector 128");
  f = good;
  StoreLE64(f.data() + 128 * 512, 999);  // marker LBA
  WriteBytes(p, f);
  ExpectCorrupt(p, "grain marker at sector 128 says LBA 999");
  f = good;
  f.resize(f.size() - 1536);
  WriteBytes(p, f);
  ExpectCorrupt(p, "no footer marker");
}

// Random damage anywhere in the metadata: never a crash, a hang or a huge allocation; reading
// either fails cleanly or succeeds.
TEST_F(SparseTest, RandomMetadataDamageNeverCrashes) {
  std::string p = MakeDisk();
  const auto good = ReadBytes(p);
  const size_t meta = Header(good).over_head * 512;
  std::mt19937 rng(7);
  int failures = 0;
  for (int i = 0; i < 300; ++i) {
    auto f = good;
    for (int k = 0; k < 4; ++k) f[rng() % meta] = uint8_t(rng());
    WriteBytes(p, f);
    if (!OpenAndReadAll(p).ok()) ++failures;
  }
  EXPECT_GT(failures, 0);
}

}  // namespace
}  // namespace vmbackup::vmdk
