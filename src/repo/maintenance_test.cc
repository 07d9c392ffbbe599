// verify and check against real damage: a flipped byte, a deleted pack, a truncated index.
#include "repo/maintenance.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <random>

#include "base/testing/temp_dir.h"
#include "repo/marks.h"
#include "repo/restore_tests.h"
#include "storage/local_backend.h"

namespace vmbackup::repo {
namespace {

constexpr uint64_t kChunk = 65536;

class MaintenanceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto b = storage::LocalBackend::Create(dir_ / "repo");
    ASSERT_TRUE(b);
    ASSERT_TRUE(Repository::Init(**b, {}).ok());
    Reopen(std::move(*b));
    std::mt19937_64 rng(3);
    disk_.resize(16 * kChunk);
    for (auto& x : disk_) x = uint8_t(rng());
    full_ = Write("", 16);
    for (uint64_t i = 0; i < kChunk; ++i) disk_[5 * kChunk + i] ^= 0xFF;  // chunk 5 changes
    inc_ = Write(full_, 16);
  }
  void Reopen(std::unique_ptr<storage::Backend> b = nullptr) {
    repo_.reset();
    if (!b) b = std::move(*storage::LocalBackend::Open(dir_ / "repo"));
    auto r = Repository::Open(std::move(b), {});
    ASSERT_TRUE(r) << r.error().ToString();
    repo_ = std::move(*r);
  }
  std::string Write(const std::string& parent, uint64_t chunks) {
    Point meta;
    meta.parent = parent;
    auto w = PointWriter::Start(*repo_, meta);
    PointDisk d;
    d.key = 2000;
    d.capacity = disk_.size();
    size_t i = *(*w)->AddDisk(d);
    for (uint64_t c = 0; c < chunks; ++c)
      EXPECT_TRUE((*w)->WriteChunk(i, c * kChunk, {disk_.data() + c * kChunk, kChunk}).ok());
    auto p = (*w)->Commit();
    EXPECT_TRUE(p);
    return p->id;
  }
  std::string PackPath(const Id& pack) {
    return dir_ / ("repo/packs/" + pack.Hex().substr(0, 2) + "/" + pack.Hex());
  }
  Id ChunkOf(const std::string& point, uint64_t index) {
    auto p = LoadPoint(*repo_, point);
    TreeReader t(*repo_, p->disks[0].tree, 16);
    return *t.ChunkAt(index);
  }
  testing::TempDir dir_;
  std::unique_ptr<Repository> repo_;
  std::vector<uint8_t> disk_;
  std::string full_, inc_;
};

TEST_F(MaintenanceTest, CleanRepository) {
  auto v = Verify(*repo_, {});
  ASSERT_TRUE(v);
  EXPECT_EQ(v->points, 2u);
  EXPECT_EQ(v->chunks_checked, 17u);  // 16 + the changed one, each read once
  EXPECT_TRUE(v->damaged.empty());
  auto c = Check(*repo_);
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->problems.empty()) << c->problems[0];
  EXPECT_EQ(c->points, 2u);
}

TEST_F(MaintenanceTest, ProtectMarksWithoutChangingThePoint) {
  EXPECT_FALSE(LoadPoint(*repo_, full_)->is_protected);
  ASSERT_TRUE(ProtectPoint(*repo_, full_).ok());
  ASSERT_TRUE(ProtectPoint(*repo_, full_).ok());  // twice is fine
  EXPECT_TRUE(LoadPoint(*repo_, full_)->is_protected);
  EXPECT_FALSE(LoadPoint(*repo_, inc_)->is_protected);
  EXPECT_EQ(ListPoints(*repo_)->size(), 2u);
  EXPECT_EQ(ProtectPoint(*repo_, "20200101T000000.000000Z-00000000").code(), ErrorCode::kNotFound);
}

TEST_F(MaintenanceTest, RestoreTestResultsBelongToTheirPointAndGoWithIt) {
  RestoreTest t;
  t.point = full_;
  t.time = "2026-11-30T19:00:00Z";
  t.ok = false;
  t.summary = "fsck /dev/sda1: UNEXPECTED INCONSISTENCY";
  t.checks.push_back({{"check", "fsck"}, {"ok", false}});
  ASSERT_TRUE(RecordRestoreTest(*repo_, t).ok());
  EXPECT_EQ(RecordRestoreTest(*repo_, t).code(), ErrorCode::kAlreadyExists);  // same second
  t.time = "2026-11-30T20:00:00Z";
  t.ok = true;
  t.summary = "boot";
  ASSERT_TRUE(RecordRestoreTest(*repo_, t).ok());
  t.point = inc_;
  ASSERT_TRUE(RecordRestoreTest(*repo_, t).ok());
  t.point = "20200101T000000.000000Z-00000000";  // no such point
  EXPECT_EQ(RecordRestoreTest(*repo_, t).code(), ErrorCode::kNotFound);

  Reopen();  // the results are in the repository, not in memory
  auto of_full = RestoreTests(*repo_, full_);
  ASSERT_TRUE(of_full);
  ASSERT_EQ(of_full->size(), 2u);
  EXPECT_FALSE((*of_full)[0].ok);  // oldest first
  EXPECT_EQ((*of_full)[0].summary, "fsck /dev/sda1: UNEXPECTED INCONSISTENCY");
  EXPECT_EQ((*of_full)[0].checks.size(), 1u);
  EXPECT_TRUE((*of_full)[1].ok);
  EXPECT_EQ(RestoreTests(*repo_)->size(), 3u);
  EXPECT_EQ(ListPoints(*repo_)->size(), 2u);  // results are not points

  // A damaged result is skipped, never taken for a pass.
  const std::string victim = dir_ / ("repo/tests/" + inc_ + ".20261130T200000Z");
  ASSERT_EQ(::truncate(victim.c_str(), 5), 0);
  EXPECT_EQ(RestoreTests(*repo_, inc_)->size(), 0u);

  ASSERT_TRUE(ForgetPoint(*repo_, full_, "forget").ok());
  EXPECT_EQ(RestoreTests(*repo_, full_)->size(), 0u);
  EXPECT_EQ(RestoreTests(*repo_)->size(), 0u);
}

TEST_F(MaintenanceTest, FlippedByteNamesExactlyTheDamagedPointsAndRange) {
  Id shared = ChunkOf(full_, 3);  // used by both points
  auto loc = repo_->index().Find(shared);
  ASSERT_TRUE(loc);
  auto bytes = testing::ReadBytes(PackPath(loc->pack));
  bytes[loc->offset + 10] ^= 1;
  testing::WriteBytes(PackPath(loc->pack), bytes);
  Reopen();
  auto v = Verify(*repo_, {});
  ASSERT_TRUE(v);
  ASSERT_EQ(v->damaged.size(), 2u);
  for (const DamagedRange& d : v->damaged) {
    EXPECT_EQ(d.offset, 3 * kChunk);
    EXPECT_EQ(d.length, kChunk);
    EXPECT_EQ(d.disk_key, 2000);
    EXPECT_NE(d.error.find(shared.Hex()), std::string::npos);
  }
  EXPECT_EQ(v->damaged[0].point, full_);
  EXPECT_EQ(v->damaged[1].point, inc_);
  // Only the incremental point: one range.
  auto only = Verify(*repo_, {inc_});
  ASSERT_TRUE(only);
  EXPECT_EQ(only->damaged.size(), 1u);
  // Reading the range fails; it never returns wrong bytes.
  auto p = LoadPoint(*repo_, full_);
  auto r = PointDiskReader::Open(*repo_, *p, 0);
  std::vector<uint8_t> buf(kChunk);
  EXPECT_EQ((*r)->Read(3 * kChunk, buf).code(), ErrorCode::kCorruption);
}

// What verify finds damaged is recorded in the repository and left out of the index: the next
// point that holds the same data stores a good copy (dedup no longer trusts the bad one), after
// which every point reads again. check --repair drops the damaged copies from the index files.
TEST_F(MaintenanceTest, DamageIsRecordedAndHealedByTheNextBackupOfTheSameData) {
  Id shared = ChunkOf(full_, 3);
  auto loc = repo_->index().Find(shared);
  ASSERT_TRUE(loc);
  auto bytes = testing::ReadBytes(PackPath(loc->pack));
  bytes[loc->offset + 10] ^= 1;
  testing::WriteBytes(PackPath(loc->pack), bytes);
  Reopen();
  EXPECT_TRUE(repo_->Has(shared));  // not known yet: dedup would trust it
  ASSERT_EQ(Verify(*repo_, {})->damaged.size(), 2u);
  EXPECT_FALSE(repo_->Has(shared));
  EXPECT_EQ(repo_->backend().List(storage::ObjectType::kDamage)->size(), 1u);
  Reopen();  // the record persists
  EXPECT_TRUE(repo_->IsDamaged(shared));
  EXPECT_FALSE(repo_->Has(shared));
  auto r = repo_->Load(BlobType::kChunk, shared);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("next backup"), std::string::npos) << r.error().message();

  // A full backup of the same disk stores a good copy of the chunk instead of referencing the
  // bad one; the old points read again.
  std::string healed = Write("", 16);
  Reopen();
  EXPECT_FALSE(repo_->IsDamaged(shared));
  auto v = Verify(*repo_, {});
  ASSERT_TRUE(v);
  EXPECT_TRUE(v->damaged.empty()) << v->damaged[0].error;
  // check --repair drops the damaged copy from the index files for good.
  auto rr = RepairIndex(*repo_);
  ASSERT_TRUE(rr) << rr.error().ToString();
  EXPECT_EQ(rr->damaged_copies_dropped, 1u);
  Reopen();
  for (const auto& p : {full_, inc_, healed}) {
    auto one = Verify(*repo_, {p});
    ASSERT_TRUE(one);
    EXPECT_TRUE(one->damaged.empty()) << p;
  }
  auto c = Check(*repo_);
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->problems.empty()) << c->problems[0];
}

// A missing pack is damage too: recorded, and healed the same way.
TEST_F(MaintenanceTest, AMissingPackIsHealedByTheNextBackup) {
  Id changed = ChunkOf(inc_, 5);
  auto loc = repo_->index().Find(changed);
  ASSERT_TRUE(loc);
  ASSERT_EQ(::unlink(PackPath(loc->pack).c_str()), 0);
  Reopen();
  ASSERT_EQ(Verify(*repo_, {inc_})->damaged.size(), 1u);
  Reopen();
  EXPECT_FALSE(repo_->Has(changed));
  std::string again = Write(full_, 16);  // the disk still holds the changed chunk
  EXPECT_EQ(ChunkOf(again, 5), changed) << "the new point has other data";
  Reopen();
  auto v = Verify(*repo_, {inc_});
  ASSERT_TRUE(v);
  EXPECT_TRUE(v->damaged.empty()) << v->damaged[0].error;
}

TEST_F(MaintenanceTest, DeletedPackAndTruncatedIndex) {
  Id changed = ChunkOf(inc_, 5);  // only in the incremental point, in its own pack
  auto loc = repo_->index().Find(changed);
  ASSERT_TRUE(loc);
  ASSERT_EQ(::unlink(PackPath(loc->pack).c_str()), 0);
  Reopen();
  auto c = Check(*repo_);
  ASSERT_TRUE(c);
  bool missing_pack = false, missing_chunks = false;
  for (const auto& p : c->problems) {
    missing_pack |= p.find("its pack " + loc->pack.Hex() + " is missing") != std::string::npos;
    missing_chunks |=
        p.find("point " + inc_ + " disk 2000: 1 chunks are missing") != std::string::npos;
  }
  EXPECT_TRUE(missing_pack);
  EXPECT_TRUE(missing_chunks);
  auto v = Verify(*repo_, {});
  ASSERT_TRUE(v);
  ASSERT_EQ(v->damaged.size(), 1u);
  EXPECT_EQ(v->damaged[0].point, inc_);
  EXPECT_EQ(v->damaged[0].offset, 5 * kChunk);

  // Truncate every index file: the repository still opens, and both commands say what is wrong.
  auto files = repo_->backend().List(storage::ObjectType::kIndex);
  for (const auto& f : *files) {
    std::string path = dir_ / ("repo/index/" + f.name);
    ASSERT_EQ(::truncate(path.c_str(), 20), 0);
  }
  Reopen();
  EXPECT_EQ(repo_->index_problems().size(), files->size());
  auto c2 = Check(*repo_);
  ASSERT_TRUE(c2);
  EXPECT_FALSE(c2->problems.empty());
  EXPECT_NE(c2->problems[0].find("index"), std::string::npos);
  auto v2 = Verify(*repo_, {full_});
  ASSERT_TRUE(v2);
  ASSERT_EQ(v2->damaged.size(), 1u);  // the tree pages are unknown: the whole disk
  EXPECT_EQ(v2->damaged[0].length, disk_.size());

  // Repair rebuilds the index from the pack trailers: the full point is whole again; the
  // incremental still misses the chunk whose pack was deleted, and says so.
  auto r = RepairIndex(*repo_);
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_GT(r->entries_added, 16u);
  EXPECT_EQ(r->index_files_removed.size(), files->size());
  EXPECT_TRUE(r->unreadable_packs.empty());
  Reopen();
  EXPECT_TRUE(repo_->index_problems().empty());
  auto v3 = Verify(*repo_, {full_});
  ASSERT_TRUE(v3);
  EXPECT_TRUE(v3->damaged.empty());
  auto v4 = Verify(*repo_, {inc_});
  ASSERT_EQ(v4->damaged.size(), 1u);
  EXPECT_EQ(v4->damaged[0].offset, 5 * kChunk);
}

}  // namespace
}  // namespace vmbackup::repo
