#include "catalog/catalog.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/testing/temp_dir.h"
#include "repo/marks.h"
#include "storage/mem_backend.h"

namespace vmbackup::catalog {
namespace {

class CatalogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto b = std::make_unique<storage::MemBackend>();
    ASSERT_TRUE(repo::Repository::Init(*b, {}).ok());
    repo_ = std::move(*repo::Repository::Open(std::move(b), {}));
    auto c = Catalog::Open(dir_ / "catalog.db", repo_->id());
    ASSERT_TRUE(c) << c.error().ToString();
    catalog_ = std::move(*c);
  }
  repo::Point Write(const std::string& vm, const std::string& change_id) {
    repo::Point meta;
    meta.vm_name = vm;
    auto w = repo::PointWriter::Start(*repo_, meta);
    repo::PointDisk d;
    d.key = 2000;
    d.label = "Hard disk 1";
    d.capacity = 1 << 20;
    d.change_id = change_id;
    size_t i = *(*w)->AddDisk(d);
    std::vector<uint8_t> data(65536, uint8_t(change_id.size()));
    EXPECT_TRUE((*w)->WriteChunk(i, 0, data).ok());
    auto p = (*w)->Commit();
    EXPECT_TRUE(p);
    usleep(2000);  // distinct microsecond ids
    return *p;
  }
  testing::TempDir dir_;
  std::unique_ptr<repo::Repository> repo_;
  std::unique_ptr<Catalog> catalog_;
};

TEST_F(CatalogTest, SyncFollowsTheRepository) {
  repo::Point a = Write("vm1", "52 aa/1"), b = Write("vm2", "52 bb/1"), c = Write("vm1", "52 aa/7");
  auto s = catalog_->Sync(*repo_);
  ASSERT_TRUE(s) << s.error().ToString();
  EXPECT_EQ(s->added, 3);
  EXPECT_EQ(catalog_->Sync(*repo_)->added, 0);  // nothing new the second time

  auto vm1 = *catalog_->Points({"vm1", "", ""});
  ASSERT_EQ(vm1.size(), 2u);
  EXPECT_EQ(vm1[0].id, c.id);  // newest first
  EXPECT_EQ(vm1[1].id, a.id);
  EXPECT_EQ(vm1[0].disks, 1);
  EXPECT_EQ(vm1[0].bytes_new, 0u);
  EXPECT_EQ((*catalog_->Points({})).size(), 3u);
  auto latest = *catalog_->LatestPoint("vm1");
  ASSERT_TRUE(latest);
  EXPECT_EQ(latest->id, c.id);
  EXPECT_FALSE(*catalog_->LatestPoint("nobody"));
  auto disks = *catalog_->Disks(c.id);
  ASSERT_EQ(disks.size(), 1u);
  EXPECT_EQ(disks[0].change_id, "52 aa/7");
  EXPECT_EQ(disks[0].label, "Hard disk 1");

  // Protection and removal in the repository reach the catalog at the next sync. A point that
  // was forgotten (a tombstone) goes; one that vanished is kept as lost.
  ASSERT_TRUE(repo::ProtectPoint(*repo_, a.id).ok());
  ASSERT_TRUE(repo::ForgetPoint(*repo_, b.id, "forget").ok());
  ASSERT_TRUE(repo_->backend().Delete({storage::ObjectType::kPoint, c.id}).ok());
  s = catalog_->Sync(*repo_);
  EXPECT_EQ(s->removed, 1);
  EXPECT_EQ(s->vanished, 1);
  EXPECT_TRUE((*catalog_->Points({"vm2", "", ""})).empty());
  auto left = *catalog_->Points({"vm1", "", ""});
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left[0].id, a.id);
  EXPECT_TRUE(left[0].is_protected);
  EXPECT_TRUE((*catalog_->Disks(b.id)).empty());  // the disks went with the point
  EXPECT_EQ(*catalog_->Vanished(), std::vector<std::string>{c.id});
  EXPECT_TRUE(catalog_->KnownPoints()->count(c.id));
  EXPECT_EQ(catalog_->Sync(*repo_)->vanished, 1);  // still lost, still said
  // Acknowledged with a tombstone (vmbackup forget), the lost point's row goes.
  ASSERT_TRUE(repo::ForgetPoint(*repo_, c.id, "forget").ok());
  EXPECT_EQ(catalog_->Sync(*repo_)->removed, 1);
  EXPECT_TRUE(catalog_->Vanished()->empty());
}

TEST_F(CatalogTest, LatestRestoreTestOfEachPoint) {
  repo::Point a = Write("vm1", "x"), b = Write("vm1", "yy");
  ASSERT_TRUE(catalog_->Sync(*repo_));
  auto record = [&](const std::string& point, const std::string& time, bool ok,
                    const std::string& summary) {
    repo::RestoreTest t;
    t.point = point;
    t.time = time;
    t.ok = ok;
    t.summary = summary;
    ASSERT_TRUE(repo::RecordRestoreTest(*repo_, t).ok());
  };
  record(a.id, "2026-11-30T10:00:00Z", true, "boot");
  record(a.id, "2026-11-30T11:00:00Z", false, "fsck /dev/sda1 failed");
  auto s = catalog_->Sync(*repo_);
  ASSERT_TRUE(s) << s.error().ToString();
  EXPECT_EQ(s->tests_added, 2);
  EXPECT_EQ(catalog_->Sync(*repo_)->tests_added, 0);
  auto rows = *catalog_->Points({"vm1", "", ""});
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[1].id, a.id);
  EXPECT_EQ(rows[1].tested_time, "2026-11-30T11:00:00Z");  // the latest one
  EXPECT_FALSE(rows[1].tested_ok);
  EXPECT_EQ(rows[1].tested_summary, "fsck /dev/sda1 failed");
  EXPECT_TRUE(rows[0].tested_time.empty());  // b: never tested
  record(b.id, "2026-11-30T12:00:00Z", true, "boot, fsck");
  ASSERT_TRUE(catalog_->Sync(*repo_));
  EXPECT_TRUE((*catalog_->LatestPoint("vm1"))->tested_ok);
  // A forgotten point takes its results along, in the repository and in the catalog.
  ASSERT_TRUE(repo::ForgetPoint(*repo_, a.id, "forget").ok());
  ASSERT_TRUE(catalog_->Sync(*repo_));
  EXPECT_EQ(catalog_->Points({"vm1", "", ""})->size(), 1u);
  EXPECT_EQ(repo::RestoreTests(*repo_)->size(), 1u);
}

TEST_F(CatalogTest, TimeBounds) {
  repo::Point a = Write("vm1", "x");
  std::string day = a.id.substr(0, 4) + "-" + a.id.substr(4, 2) + "-" + a.id.substr(6, 2);
  ASSERT_TRUE(catalog_->Sync(*repo_));
  EXPECT_EQ((*catalog_->Points({"", day, ""})).size(), 1u);
  EXPECT_EQ((*catalog_->Points({"", "", day})).size(), 0u);  // until is exclusive
  EXPECT_EQ((*catalog_->Points({"", "2000-01-01T00:00:00Z", "2999-01-01"})).size(), 1u);
  EXPECT_EQ((*catalog_->Points({"", "2999-01-01", ""})).size(), 0u);
}

TEST_F(CatalogTest, JobsAndReopening) {
  auto j1 = catalog_->StartJob("backup", "vm1");
  ASSERT_TRUE(j1);
  ASSERT_TRUE(catalog_->FinishJob(*j1, Status::Ok(), "P1").ok());
  auto j2 = catalog_->StartJob("backup", "vm2");
  ASSERT_TRUE(catalog_->FinishJob(*j2, IOError("disk read failed")).ok());
  auto j3 = catalog_->StartJob("gc", "");
  catalog_.reset();

  auto c = Catalog::Open(dir_ / "catalog.db", repo_->id());
  ASSERT_TRUE(c);
  auto jobs = *(*c)->Jobs("", 10);
  ASSERT_EQ(jobs.size(), 3u);
  EXPECT_EQ(jobs[0].id, *j3);
  EXPECT_EQ(jobs[0].status, "running");  // this process is alive: still running
  EXPECT_EQ(jobs[1].status, "I/O error");
  EXPECT_EQ(jobs[1].message, "disk read failed");
  EXPECT_EQ(jobs[2].point, "P1");
  EXPECT_EQ((*(*c)->Jobs("vm2", 10)).size(), 1u);
  EXPECT_EQ((*(*c)->Jobs("", 1)).size(), 1u);

  auto other = Catalog::Open(dir_ / "catalog.db", "another-repository");
  ASSERT_FALSE(other);
  EXPECT_NE(other.error().message().find("belongs to repository"), std::string::npos);
}

// A job whose process died without finishing it reads as killed, not running forever.
TEST_F(CatalogTest, KilledJobsAreSaidToBeKilled) {
  catalog_.reset();
  pid_t child = ::fork();
  if (child == 0) {
    auto c = Catalog::Open(dir_ / "catalog.db", repo_->id());
    if (c) (void)(*c)->StartJob("backup", "vm1");
    ::_exit(0);
  }
  ASSERT_GT(child, 0);
  ::waitpid(child, nullptr, 0);
  auto c = Catalog::Open(dir_ / "catalog.db", repo_->id());
  ASSERT_TRUE(c);
  auto jobs = (*c)->Jobs("", 10);
  ASSERT_TRUE(jobs);
  ASSERT_EQ(jobs->size(), 1u);
  EXPECT_EQ((*jobs)[0].status, "killed");
}

TEST_F(CatalogTest, ADamagedCatalogIsRebuilt) {
  testing::WriteText(dir_ / "junk.db", std::string(4096, 'x'));
  auto c = Catalog::Open(dir_ / "junk.db", repo_->id());
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code(), ErrorCode::kCorruption);
  repo::Point a = Write("vm1", "x");
  std::string note;
  auto rebuilt = Catalog::OpenOrRebuild(dir_ / "junk.db", repo_->id(), &note);
  ASSERT_TRUE(rebuilt) << rebuilt.error().ToString();
  EXPECT_NE(note.find("rebuilt"), std::string::npos) << note;
  ASSERT_TRUE((*rebuilt)->Sync(*repo_));
  EXPECT_EQ((*(*rebuilt)->Points({})).size(), 1u);
  EXPECT_EQ(testing::ReadBytes(dir_ / "junk.db.damaged").size(), 4096u);
  // A catalog of another repository is rebuilt too (the cache belongs to one repository).
  rebuilt->reset();
  auto other = Catalog::OpenOrRebuild(dir_ / "junk.db", "another", &note);
  ASSERT_TRUE(other);
}

}  // namespace
}  // namespace vmbackup::catalog
