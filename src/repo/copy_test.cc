// Copies of points between real repositories (memory and folder backends, plain and
// encrypted): the content, the identity, what is read and stored, resumption and refusals.
#include "repo/copy.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "base/testing/temp_dir.h"
#include "repo/maintenance.h"
#include "storage/local_backend.h"
#include "storage/mem_backend.h"

namespace vmbackup::repo {
namespace {

constexpr uint64_t kChunk = 65536;
constexpr uint64_t kDisk = 64 * kChunk;  // 4 MiB

std::unique_ptr<Repository> NewRepo(InitOptions o = {}) {
  auto b = std::make_unique<storage::MemBackend>();
  EXPECT_TRUE(Repository::Init(*b, o).ok());
  auto r = Repository::Open(std::move(b), o.key);
  EXPECT_TRUE(r) << r.error().ToString();
  return r ? std::move(*r) : nullptr;
}

// Chunk c of version v of the disk: every fourth chunk zeros, the others random by (c, v).
void Fill(std::vector<uint8_t>& disk, uint64_t c, uint64_t v) {
  uint8_t* p = disk.data() + c * kChunk;
  if (c % 4 == 2) {
    std::fill(p, p + kChunk, 0);
    return;
  }
  std::mt19937_64 rng(c * 1000 + v);
  for (uint64_t i = 0; i < kChunk; ++i) p[i] = uint8_t(rng());
}

// A point of `disk` written chunk by chunk (`chunks`, or all), on `parent`.
Point Backup(Repository& repo, const std::vector<uint8_t>& disk, const std::string& parent,
             const std::vector<uint64_t>& chunks) {
  Point meta;
  meta.vm_name = "web";
  meta.parent = parent;
  meta.consistency = "file-system";
  meta.config = "<domain/>";
  auto w = PointWriter::Start(repo, meta);
  EXPECT_TRUE(w);
  PointDisk d;
  d.key = 2000;
  d.label = "vda";
  d.capacity = disk.size();
  d.change_id = "cp-" + parent;
  auto idx = (*w)->AddDisk(d);
  EXPECT_TRUE(idx);
  for (uint64_t c : chunks)
    EXPECT_TRUE((*w)->WriteChunk(*idx, c * kChunk, {disk.data() + c * kChunk, kChunk}).ok());
  auto p = (*w)->Commit();
  EXPECT_TRUE(p) << p.error().ToString();
  return *p;
}

std::vector<uint8_t> Restore(Repository& repo, const std::string& id) {
  auto p = LoadPoint(repo, id);
  EXPECT_TRUE(p) << p.error().ToString();
  auto r = PointDiskReader::Open(repo, *p, 0);
  std::vector<uint8_t> out(kDisk);
  EXPECT_TRUE((*r)->Read(0, out).ok());
  return out;
}

struct Chain {
  std::vector<std::vector<uint8_t>> disks;  // the disk at each point
  std::vector<Point> points;
};

// Three points: a full, then 4 changed chunks (one of them now zeros), then 2 more.
Chain MakeChain(Repository& repo) {
  Chain ch;
  std::vector<uint8_t> disk(kDisk);
  std::vector<uint64_t> all;
  for (uint64_t c = 0; c < kDisk / kChunk; ++c) {
    Fill(disk, c, 0);
    all.push_back(c);
  }
  ch.disks.push_back(disk);
  ch.points.push_back(Backup(repo, disk, "", all));
  for (uint64_t c : {5, 9, 33}) Fill(disk, c, 1);
  std::fill(disk.begin() + 13 * kChunk, disk.begin() + 14 * kChunk, 0);
  ch.disks.push_back(disk);
  ch.points.push_back(Backup(repo, disk, ch.points[0].id, {5, 9, 13, 33}));
  for (uint64_t c : {40, 41}) Fill(disk, c, 2);
  ch.disks.push_back(disk);
  ch.points.push_back(Backup(repo, disk, ch.points[1].id, {40, 41}));
  return ch;
}

TEST(CopyTest, AChainIntoAnEncryptedRepositoryKeepsIdsParentsAndContentAndTakesOnlyChanges) {
  auto from = NewRepo();
  testing::TempDir dir;
  InitOptions enc;
  enc.encrypt = true;
  enc.key.key_file = dir / "key";
  auto to = NewRepo(enc);
  ASSERT_TRUE(from && to);
  Chain ch = MakeChain(*from);

  std::vector<CopyReport> reports;
  for (const Point& p : ch.points) {
    auto r = CopyPoint(*from, *to, p.id);
    ASSERT_TRUE(r) << r.error().ToString();
    EXPECT_TRUE(r->copied);
    EXPECT_FALSE(r->same_ids);  // the target's ids are keyed
    reports.push_back(*r);
  }
  // The full read its 48 non-zero chunks; the incrementals only what differs from the parent.
  EXPECT_FALSE(reports[0].parent_kept);
  EXPECT_EQ(reports[0].chunks_read, 48u);
  EXPECT_TRUE(reports[1].parent_kept);
  EXPECT_EQ(reports[1].chunks_read, 3u);  // 5, 9, 33 (13 became zeros: marked, not read)
  EXPECT_EQ(reports[1].chunks_unchanged, 60u);
  EXPECT_EQ(reports[2].chunks_read, 2u);
  EXPECT_EQ(reports[2].chunks_new, 2u);

  for (size_t i = 0; i < ch.points.size(); ++i) {
    auto copy = LoadPoint(*to, ch.points[i].id);
    ASSERT_TRUE(copy) << copy.error().ToString();
    EXPECT_EQ(copy->created, ch.points[i].created);
    EXPECT_EQ(copy->parent, ch.points[i].parent);
    EXPECT_EQ(copy->vm_name, "web");
    EXPECT_EQ(copy->consistency, "file-system");
    EXPECT_EQ(copy->config, "<domain/>");
    ASSERT_EQ(copy->disks.size(), 1u);
    EXPECT_EQ(copy->disks[0].label, "vda");
    EXPECT_EQ(copy->disks[0].change_id, ch.points[i].disks[0].change_id);
    EXPECT_TRUE(Restore(*to, ch.points[i].id) == ch.disks[i]) << "point " << i;
  }
  auto v = Verify(*to, {});
  ASSERT_TRUE(v) << v.error().ToString();
  EXPECT_EQ(v->points, 3u);
  EXPECT_TRUE(v->damaged.empty());

  // Again: nothing to do.
  auto again = CopyPoint(*from, *to, ch.points[2].id);
  ASSERT_TRUE(again);
  EXPECT_FALSE(again->copied);
  EXPECT_EQ(again->chunks_read, 0u);
}

TEST(CopyTest, AlikeRepositoriesReferenceWhatTheTargetHoldsWithoutReadingIt) {
  auto from = NewRepo();
  auto to = NewRepo();
  Chain ch = MakeChain(*from);
  ASSERT_TRUE(CopyPoint(*from, *to, ch.points[0].id).ok());
  // The last point alone: its parent is not in the target, so it is a whole disk, but only the
  // five chunks the first point lacks are read.
  auto r = CopyPoint(*from, *to, ch.points[2].id);
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_TRUE(r->same_ids);
  EXPECT_FALSE(r->parent_kept);
  EXPECT_EQ(r->chunks_read, 5u);  // 5, 9, 33, 40, 41
  auto copy = LoadPoint(*to, ch.points[2].id);
  ASSERT_TRUE(copy);
  EXPECT_EQ(copy->parent, "");
  EXPECT_TRUE(Restore(*to, ch.points[2].id) == ch.disks[2]);
  auto check = Check(*to);
  ASSERT_TRUE(check);
  EXPECT_TRUE(check->problems.empty()) << check->problems[0];
}

TEST(CopyTest, ProtectionStaysAndOtherChunkSizesAreRefused) {
  auto from = NewRepo();
  Chain ch = MakeChain(*from);
  ASSERT_TRUE(ProtectPoint(*from, ch.points[1].id).ok());
  auto to = NewRepo();
  ASSERT_TRUE(CopyPoint(*from, *to, ch.points[0].id).ok());
  ASSERT_TRUE(CopyPoint(*from, *to, ch.points[1].id).ok());
  EXPECT_TRUE(LoadPoint(*to, ch.points[1].id)->is_protected);
  EXPECT_FALSE(LoadPoint(*to, ch.points[0].id)->is_protected);

  InitOptions big;
  big.chunk_size = 4 * kChunk;
  auto other = NewRepo(big);
  auto r = CopyPoint(*from, *other, ch.points[0].id);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kFailedPrecondition);
  EXPECT_NE(r.error().message().find("--chunk-size"), std::string::npos) << r.error().message();
  EXPECT_EQ(LoadPoint(*other, ch.points[0].id).error().code(), ErrorCode::kNotFound);
}

TEST(CopyTest, ADamagedSourceChunkFailsTheCopyAndLeavesNoPoint) {
  testing::TempDir dir;
  auto backend = storage::LocalBackend::Create(dir / "from");
  ASSERT_TRUE(backend);
  ASSERT_TRUE(Repository::Init(**backend, {}).ok());
  auto from = Repository::Open(std::move(*backend), {});
  ASSERT_TRUE(from);
  Chain ch = MakeChain(**from);
  // Flip a byte in the middle of every pack: chunks stop decoding.
  int flipped = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir / "from")) {
    if (!e.is_regular_file() || e.path().string().find("/packs/") == std::string::npos) continue;
    std::fstream f(e.path(), std::ios::in | std::ios::out | std::ios::binary);
    const auto middle = std::streamoff(e.file_size() / 2);
    f.seekg(middle);
    const char c = char(f.get());
    f.seekp(middle);
    f.put(char(c ^ 0xff));
    ++flipped;
  }
  ASSERT_GT(flipped, 0);
  auto to = NewRepo();
  auto r = CopyPoint(**from, *to, ch.points[0].id);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kCorruption) << r.error().ToString();
  EXPECT_EQ(LoadPoint(*to, ch.points[0].id).error().code(), ErrorCode::kNotFound);
}

}  // namespace
}  // namespace vmbackup::repo
