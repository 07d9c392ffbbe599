// Chains, copy-on-write, CID checks and hand-written descriptors, against a byte-array model.
#include "format/vmdk/disk.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <random>

#include "base/testing/temp_dir.h"
#include "format/vmdk/create.h"
#include "io/posix_file.h"

namespace vmbackup::vmdk {
namespace {

using vmbackup::testing::TempDir;
using vmbackup::testing::WriteText;

std::unique_ptr<Disk> OpenRw(const std::string& p) {
  DiskOptions o;
  o.writable = true;
  auto d = Disk::Open(p, o);
  EXPECT_TRUE(d) << d.error().ToString();
  return d ? std::move(*d) : nullptr;
}

std::vector<uint8_t> ReadAll(Disk& d) {
  std::vector<uint8_t> buf(d.size());
  EXPECT_TRUE(d.ReadAt(0, buf).ok());
  return buf;
}

void WriteModel(Disk& d, std::vector<uint8_t>& model, uint64_t off, uint64_t len, uint8_t byte) {
  std::vector<uint8_t> data(len);
  for (uint64_t i = 0; i < len; ++i) data[i] = uint8_t(byte + i % 13);
  ASSERT_TRUE(d.WriteAt(off, data).ok());
  std::copy(data.begin(), data.end(), model.begin() + long(off));
}

TEST(Disk, ChainOfThreeWithCopyOnWrite) {
  TempDir dir;
  const uint64_t cap = 8 << 20;
  std::vector<uint8_t> model(cap, 0);
  CreateOptions o;
  o.type = DiskType::kSparse;
  o.capacity = cap;
  ASSERT_TRUE(CreateDisk(dir / "base.vmdk", o).ok());
  std::mt19937 rng(1);
  std::string prev = dir / "base.vmdk";
  for (int layer = 0; layer < 4; ++layer) {
    if (layer > 0) {
      std::string child = dir / ("d" + std::to_string(layer) + ".vmdk");
      CreateOptions c;
      c.parent = prev;
      ASSERT_TRUE(CreateDisk(child, c).ok());
      prev = child;
    }
    auto d = OpenRw(prev);
    ASSERT_TRUE(d);
    ASSERT_EQ(d->layers().size(), size_t(layer + 1));
    for (int w = 0; w < 20; ++w) {  // unaligned writes exercise the copy-on-write path
      uint64_t off = rng() % (cap - 200000), len = 1 + rng() % 200000;
      WriteModel(*d, model, off, len, uint8_t(rng()));
    }
    ASSERT_EQ(ReadAll(*d), model) << "layer " << layer;
  }
  auto top = Disk::Open(prev, DiskOptions{});
  ASSERT_TRUE(top);
  EXPECT_EQ(ReadAll(**top), model);
  // The map names layers: every allocated run is answered by some depth in [0, 3].
  std::vector<ChainRun> runs;
  ASSERT_TRUE((*top)->MapChain(0, cap, &runs).ok());
  bool saw_deep = false;
  for (const ChainRun& r : runs) {
    if (r.state == BlockState::kUnallocated) {
      EXPECT_EQ(r.depth, -1);
      continue;
    }
    EXPECT_GE(r.depth, 0);
    EXPECT_LE(r.depth, 3);
    saw_deep |= r.depth == 3;
  }
  EXPECT_TRUE(saw_deep);
}

TEST(Disk, ParentCidMismatchIsAnErrorUnlessIgnored) {
  TempDir dir;
  CreateOptions o;
  o.capacity = 1 << 20;
  ASSERT_TRUE(CreateDisk(dir / "base.vmdk", o).ok());
  CreateOptions c;
  c.parent = dir / "base.vmdk";
  ASSERT_TRUE(CreateDisk(dir / "child.vmdk", c).ok());
  ASSERT_TRUE(Disk::Open(dir / "child.vmdk", DiskOptions{}));
  {  // writing the parent changes its CID, which breaks the child
    auto base = OpenRw(dir / "base.vmdk");
    uint8_t b[512] = {1};
    ASSERT_TRUE(base->WriteAt(0, b).ok());
  }
  auto bad = Disk::Open(dir / "child.vmdk", DiskOptions{});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), ErrorCode::kCorruption);
  EXPECT_NE(bad.error().message().find("does not match CID"), std::string::npos);
  EXPECT_NE(bad.error().message().find("child.vmdk"), std::string::npos);
  DiskOptions ignore;
  ignore.ignore_cid_mismatch = true;
  EXPECT_TRUE(Disk::Open(dir / "child.vmdk", ignore));
}

TEST(Disk, MissingParentAndLoops) {
  TempDir dir;
  CreateOptions o;
  o.capacity = 1 << 20;
  ASSERT_TRUE(CreateDisk(dir / "base.vmdk", o).ok());
  CreateOptions c;
  c.parent = dir / "base.vmdk";
  ASSERT_TRUE(CreateDisk(dir / "child.vmdk", c).ok());
  ::unlink((dir / "base.vmdk").c_str());
  auto missing = Disk::Open(dir / "child.vmdk", DiskOptions{});
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
  EXPECT_NE(missing.error().message().find("base.vmdk"), std::string::npos);

  // a.vmdk -> b.vmdk -> a.vmdk over flat extents
  WriteText(dir / "data", std::string(1024, 'x'));
  auto desc = [](const char* parent) {
    return std::string("version=1\nCID=11111111\nparentCID=11111111\ncreateType=\"vmfs\"\n") +
           "parentFileNameHint=\"" + parent + "\"\nRW 2 VMFS \"data\"\n";
  };
  WriteText(dir / "a.vmdk", desc("b.vmdk"));
  WriteText(dir / "b.vmdk", desc("a.vmdk"));
  auto loop = Disk::Open(dir / "a.vmdk", DiskOptions{});
  ASSERT_FALSE(loop);
  EXPECT_NE(loop.error().message().find("loops back"), std::string::npos);
}

TEST(Disk, ZeroRdonlyAndNoAccessExtents) {
  TempDir dir;
  WriteText(dir / "one", std::string(1024, 'A'));
  WriteText(dir / "two", std::string(2048, 'B'));
  WriteText(dir / "d.vmdk",
            "version=1\ncreateType=\"custom\"\n"
            "RW 2 FLAT \"one\" 0\n"
            "RDONLY 4 ZERO\n"
            "RDONLY 2 FLAT \"two\" 2\n"
            "NOACCESS 1 FLAT \"two\" 0\n");
  auto d = OpenRw(dir / "d.vmdk");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->size(), 9u * 512);
  std::vector<uint8_t> buf(8 * 512);
  ASSERT_TRUE(d->ReadAt(0, buf).ok());
  for (size_t i = 0; i < buf.size(); ++i) {
    uint8_t want = i < 1024 ? 'A' : i < 3072 ? 0 : 'B';
    ASSERT_EQ(buf[i], want) << i;
  }
  uint8_t b[512] = {};
  EXPECT_TRUE(d->WriteAt(0, b).ok());
  EXPECT_EQ(d->WriteAt(1024, b).code(), ErrorCode::kPermissionDenied);  // RDONLY ZERO
  EXPECT_EQ(d->WriteAt(3072, b).code(), ErrorCode::kPermissionDenied);  // RDONLY FLAT
  std::vector<uint8_t> all(d->size());
  Status s = d->ReadAt(0, all);
  EXPECT_EQ(s.code(), ErrorCode::kPermissionDenied);
  EXPECT_NE(s.message().find("NOACCESS"), std::string::npos);
}

// A file that counts the allocation queries made of it.
class CountingFile final : public io::BlockWriter {
 public:
  CountingFile(std::unique_ptr<io::PosixFile> f, int* maps) : f_(std::move(f)), maps_(maps) {}
  uint64_t size() const override { return f_->size(); }
  Status ReadAt(uint64_t offset, std::span<uint8_t> buf) override {
    return f_->ReadAt(offset, buf);
  }
  Result<ExtentSet> AllocatedExtents(uint64_t offset, uint64_t length) override {
    ++*maps_;
    return f_->AllocatedExtents(offset, length);
  }
  std::string name() const override { return f_->name(); }
  Status WriteAt(uint64_t offset, std::span<const uint8_t> data) override {
    return f_->WriteAt(offset, data);
  }
  Status Flush() override { return f_->Flush(); }

 private:
  std::unique_ptr<io::PosixFile> f_;
  int* maps_;
};

// Reads of a flat disk go straight to the file (its holes read as zeros); the map that
// planning asks for still shows the holes.
TEST(Disk, FlatReadsNeedNoMapButTheMapShowsHoles) {
  TempDir dir;
  const uint64_t mib = 1 << 20;
  WriteText(dir / "d.vmdk",
            "version=1\ncreateType=\"monolithicFlat\"\nRW 8192 FLAT \"d-flat.vmdk\" 0\n");
  {
    auto f = io::PosixFile::Open(dir / "d-flat.vmdk", io::OpenMode::kCreateNew);
    ASSERT_TRUE(f);
    std::vector<uint8_t> data(mib, 0x5a);
    ASSERT_TRUE((*f)->WriteAt(3 * mib, data).ok());  // 4 MiB: a hole, then data
    ASSERT_EQ(::truncate((dir / "d-flat.vmdk").c_str(), 4 * mib), 0);
  }
  int maps = 0;
  DiskOptions o;
  o.open_file = [&](const std::string& p, bool) -> Result<std::shared_ptr<io::BlockWriter>> {
    VMBACKUP_ASSIGN_OR_RETURN(auto f, io::PosixFile::Open(p, io::OpenMode::kReadOnly));
    return std::shared_ptr<io::BlockWriter>(std::make_shared<CountingFile>(std::move(f), &maps));
  };
  auto d = Disk::Open(dir / "d.vmdk", o);
  ASSERT_TRUE(d) << d.error().ToString();
  std::vector<uint8_t> buf(2 * mib, 1);
  ASSERT_TRUE((*d)->ReadAt(2 * mib, buf).ok());
  for (size_t i = 0; i < buf.size(); ++i) ASSERT_EQ(buf[i], i < mib ? 0 : 0x5a) << i;
  EXPECT_EQ(maps, 0);
  std::vector<ChainRun> runs;
  ASSERT_TRUE((*d)->MapChain(0, 4 * mib, &runs).ok());
  EXPECT_GT(maps, 0);
  ASSERT_FALSE(runs.empty());
  EXPECT_EQ(runs.front().state, BlockState::kZero);
  bool data_at_3 = false;
  for (const ChainRun& r : runs)
    data_at_3 |=
        r.state == BlockState::kData && r.offset <= 3 * mib && r.offset + r.length > 3 * mib;
  EXPECT_TRUE(data_at_3);
}

TEST(Disk, OddCapacities) {
  TempDir dir;
  for (uint64_t cap : {uint64_t(512), uint64_t(65536 + 512), uint64_t(3 * 65536 - 1024)}) {
    std::string p = dir / ("odd" + std::to_string(cap) + ".vmdk");
    CreateOptions o;
    o.capacity = cap;
    ASSERT_TRUE(CreateDisk(p, o).ok());
    auto d = OpenRw(p);
    ASSERT_TRUE(d);
    ASSERT_EQ(d->size(), cap);
    std::vector<uint8_t> model(cap, 0);
    WriteModel(*d, model, cap - 1, 1, 0x77);  // last byte: partial last grain
    WriteModel(*d, model, 0, std::min<uint64_t>(cap, 700), 0x11);
    EXPECT_EQ(ReadAll(*d), model);
    uint8_t b[2];
    EXPECT_EQ(d->WriteAt(cap - 1, b).code(), ErrorCode::kInvalidArgument);
    EXPECT_EQ(d->ReadAt(cap, {b, 1}).code(), ErrorCode::kInvalidArgument);
    auto again = Disk::Open(p, DiskOptions{});
    ASSERT_TRUE(again);
    EXPECT_EQ(ReadAll(**again), model);
  }
}

TEST(Disk, LargeSparseHoldsLittle) {
  TempDir dir;
  CreateOptions o;
  o.capacity = uint64_t(3) << 40;  // 3 TiB
  std::string p = dir / "big.vmdk";
  ASSERT_TRUE(CreateDisk(p, o).ok());
  auto d = OpenRw(p);
  ASSERT_TRUE(d);
  std::vector<uint8_t> data(4096, 0xEE);
  const uint64_t far = (uint64_t(5) << 39) + 12345;  // past 2 TiB
  ASSERT_TRUE(d->WriteAt(far, data).ok());
  std::vector<uint8_t> back(4096);
  ASSERT_TRUE(d->ReadAt(far, back).ok());
  EXPECT_EQ(back, data);
  auto alloc = d->AllocatedExtents(0, d->size());
  ASSERT_TRUE(alloc);
  EXPECT_EQ(alloc->total_bytes(), 65536u);  // one grain holds the write
}

TEST(Disk, ZeroedGrainWritesStoreNoData) {
  TempDir dir;
  CreateOptions o;
  o.capacity = 4 << 20;
  ASSERT_TRUE(CreateDisk(dir / "base.vmdk", o).ok());
  {
    auto base = OpenRw(dir / "base.vmdk");
    std::vector<uint8_t> ones(4 << 20, 1);
    ASSERT_TRUE(base->WriteAt(0, ones).ok());
  }
  CreateOptions c;
  c.parent = dir / "base.vmdk";
  c.zeroed_grain = true;
  ASSERT_TRUE(CreateDisk(dir / "child.vmdk", c).ok());
  auto child = OpenRw(dir / "child.vmdk");
  ASSERT_TRUE(child);
  const uint64_t before = child->layers()[0]->extents()[0].extent->format().version;
  EXPECT_EQ(before, 2u);
  std::vector<uint8_t> zeros(3 * 65536, 0);
  zeros[2 * 65536 + 5] = 9;  // the third grain is not all zero: it gets data
  ASSERT_TRUE(child->WriteAt(65536, zeros).ok());
  std::vector<ChainRun> runs;
  ASSERT_TRUE(child->MapChain(65536, 3 * 65536, &runs).ok());
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0].state, BlockState::kZero);
  EXPECT_EQ(runs[0].length, 2 * 65536u);
  EXPECT_EQ(runs[0].depth, 0);
  EXPECT_EQ(runs[1].state, BlockState::kData);
  EXPECT_EQ(runs[1].depth, 0);
  std::vector<uint8_t> back(zeros.size());
  ASSERT_TRUE(child->ReadAt(65536, back).ok());
  EXPECT_EQ(back, zeros);
  // A partial write into a zeroed grain copies zeros, not the parent's ones.
  uint8_t seven[10];
  std::fill(seven, seven + 10, 7);
  ASSERT_TRUE(child->WriteAt(65536 + 100, seven).ok());
  ASSERT_TRUE(child->ReadAt(65536, back).ok());
  for (size_t i = 0; i < 65536; ++i) ASSERT_EQ(back[i], (i >= 100 && i < 110) ? 7 : 0) << i;
}

TEST(Disk, CreateRefusesBadRequests) {
  TempDir dir;
  CreateOptions o;
  o.capacity = 1 << 20;
  ASSERT_TRUE(CreateDisk(dir / "a.vmdk", o).ok());
  EXPECT_EQ(CreateDisk(dir / "a.vmdk", o).code(), ErrorCode::kAlreadyExists);
  o.capacity = 0;
  EXPECT_EQ(CreateDisk(dir / "z.vmdk", o).code(), ErrorCode::kInvalidArgument);
  CreateOptions flat_child;
  flat_child.type = DiskType::kFlat;
  flat_child.parent = dir / "a.vmdk";
  EXPECT_EQ(CreateDisk(dir / "c.vmdk", flat_child).code(), ErrorCode::kInvalidArgument);
  CreateOptions wrong_size;
  wrong_size.parent = dir / "a.vmdk";
  wrong_size.capacity = 2 << 20;
  EXPECT_EQ(CreateDisk(dir / "c.vmdk", wrong_size).code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(ParseDiskType("qcow2").error().code(), ErrorCode::kInvalidArgument);
}

TEST(Disk, NotAVmdk) {
  TempDir dir;
  WriteText(dir / "raw.img", std::string(4096, '\x01'));
  auto r = Disk::Open(dir / "raw.img", DiskOptions{});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("not a VMDK"), std::string::npos);
  EXPECT_FALSE(*LooksLikeVmdk(dir / "raw.img"));
}

}  // namespace
}  // namespace vmbackup::vmdk
