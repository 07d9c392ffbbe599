// Locks, prune and gc on a real folder repository.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ctime>
#include <random>
#include <thread>

#include "base/testing/temp_dir.h"
#include "repo/gc.h"
#include "repo/lock.h"
#include "repo/maintenance.h"
#include "repo/prune.h"
#include "storage/local_backend.h"

namespace vmbackup::repo {
namespace {

constexpr uint64_t kChunk = 65536;

std::unique_ptr<storage::Backend> OpenBackend(const std::string& dir) {
  auto b = storage::LocalBackend::Open(dir);
  EXPECT_TRUE(b) << b.error().ToString();
  return std::move(*b);
}

void SaveLock(storage::Backend& b, const std::string& name, const std::string& host, int64_t pid,
              int64_t time, bool exclusive) {
  std::string text = "{\"host\":\"" + host + "\",\"pid\":" + std::to_string(pid) +
                     ",\"exclusive\":" + (exclusive ? "true" : "false") +
                     ",\"purpose\":\"test\",\"time\":" + std::to_string(time) + "}";
  ASSERT_TRUE(
      b.Save({storage::ObjectType::kLock, name}, {(const uint8_t*)text.data(), text.size()}).ok());
}

std::string ThisHost() {
  char buf[256] = {};
  gethostname(buf, sizeof buf - 1);
  return buf;
}

class LockTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(storage::LocalBackend::Create(dir_ / "repo")); }
  testing::TempDir dir_;
};

TEST_F(LockTest, SharedLocksCoexistAndExclusiveWaitsForThem) {
  auto b = OpenBackend(dir_ / "repo");
  auto s1 = RepoLock::Acquire(*b, {false, "backup vm1", 0});
  auto s2 = RepoLock::Acquire(*b, {false, "backup vm2", 0});
  ASSERT_TRUE(s1 && s2);
  auto x = RepoLock::Acquire(*b, {true, "gc", 0});
  ASSERT_FALSE(x);
  EXPECT_EQ(x.error().code(), ErrorCode::kLocked);
  EXPECT_NE(x.error().message().find("shared lock of backup vm"), std::string::npos)
      << x.error().message();
  EXPECT_EQ(ListLocks(*b)->size(), 2u);  // the failed attempt left nothing behind
  ASSERT_TRUE((*s1)->Release().ok());
  // The second holder lets go while the exclusive taker waits.
  std::thread releaser([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    (*s2)->Release().IgnoreError();  // checked below through the lock list
  });
  auto x2 = RepoLock::Acquire(*b, {true, "gc", 5});
  releaser.join();
  ASSERT_TRUE(x2) << x2.error().ToString();
  auto shared = RepoLock::Acquire(*b, {false, "backup vm3", 0});
  ASSERT_FALSE(shared);
  EXPECT_NE(shared.error().message().find("exclusive lock of gc"), std::string::npos);
  ASSERT_TRUE((*x2)->Release().ok());
  EXPECT_TRUE(ListLocks(*b)->empty());
}

TEST_F(LockTest, LocksOfDeadProcessesAndOldLocksAreBroken) {
  auto b = OpenBackend(dir_ / "repo");
  pid_t child = fork();
  if (child == 0) _exit(0);
  waitpid(child, nullptr, 0);  // its pid now names no process
  const int64_t now = ::time(nullptr);
  SaveLock(*b, "dead", ThisHost(), child, now, true);
  SaveLock(*b, "old", "elsewhere", 1, now - kLockStaleSeconds - 60, true);
  SaveLock(*b, "garbage", "", 0, 0, true);
  auto lock = RepoLock::Acquire(*b, {true, "gc", 0});
  ASSERT_TRUE(lock) << lock.error().ToString();
  EXPECT_EQ((*lock)->broken().size(), 3u);
  EXPECT_EQ(ListLocks(*b)->size(), 1u);
}

TEST_F(LockTest, ALiveLockElsewhereIsRespected) {
  auto b = OpenBackend(dir_ / "repo");
  SaveLock(*b, "remote", "elsewhere", 1, ::time(nullptr) - 60, false);
  EXPECT_TRUE(RepoLock::Acquire(*b, {false, "backup", 0}));  // shared with shared
  auto x = RepoLock::Acquire(*b, {true, "prune", 0});
  ASSERT_FALSE(x);
  EXPECT_NE(x.error().message().find("on elsewhere"), std::string::npos);
}

PointSummary At(const std::string& when, const std::string& vm = "vm1", bool prot = false) {
  return {when + ".000000Z-00000000", vm, prot};
}

TEST(PlanPruneTest, KeepsTheNewestOfEachBucket) {
  std::vector<PointSummary> pts = {
      At("20261120T010000"),
      At("20261120T230000"),
      At("20261121T080000"),
      At("20261121T200000"),
      At("20261122T060000"),
      At("20261122T070000"),
      At("20261101T000000", "vm1", true),
      At("20261122T070000", "vm2"),
  };
  KeepPolicy policy;
  policy.last = 1;
  policy.daily = 2;
  auto plan = PlanPrune(pts, policy);
  ASSERT_TRUE(plan) << plan.error().ToString();
  std::map<std::string, PruneDecision> by;
  for (const auto& d : *plan) by[d.id.substr(0, 15) + d.vm] = d;
  EXPECT_TRUE(by["20261122T070000vm1"].keep);   // last, and daily 2026-11-22
  EXPECT_FALSE(by["20261122T060000vm1"].keep);  // same day as a newer one
  EXPECT_TRUE(by["20261121T200000vm1"].keep);   // daily 2026-11-21
  EXPECT_FALSE(by["20261121T080000vm1"].keep);
  EXPECT_FALSE(by["20261120T230000vm1"].keep);  // a third day: beyond daily 2
  EXPECT_FALSE(by["20261120T010000vm1"].keep);
  EXPECT_TRUE(by["20261101T000000vm1"].keep);  // protected
  EXPECT_EQ(by["20261101T000000vm1"].reasons[0], "protected");
  EXPECT_TRUE(by["20261122T070000vm2"].keep);  // each VM has its own buckets
  EXPECT_EQ(by["20261122T070000vm1"].reasons,
            (std::vector<std::string>{"last", "daily 2026-11-22"}));
}

TEST(PlanPruneTest, WeeksMonthsAndYears) {
  std::vector<PointSummary> pts = {At("20241231T120000"), At("20250105T120000"),
                                   At("20251229T120000"), At("20260101T120000"),
                                   At("20260102T120000")};
  KeepPolicy weekly;
  weekly.weekly = 2;  // ISO weeks: 2025-12-29 .. 2026-01-02 are all week 2026-W01
  auto plan = *PlanPrune(pts, weekly);
  std::vector<std::string> kept;
  for (const auto& d : plan)
    if (d.keep) kept.push_back(d.id.substr(0, 8));
  EXPECT_EQ(kept, (std::vector<std::string>{"20260102", "20250105"}));
  KeepPolicy yearly;
  yearly.yearly = 5;
  kept.clear();
  auto plan2 = *PlanPrune(pts, yearly);
  for (const auto& d : plan2)
    if (d.keep) kept.push_back(d.id.substr(0, 8));
  EXPECT_EQ(kept, (std::vector<std::string>{"20260102", "20251229", "20241231"}));
}

TEST(PlanPruneTest, RefusesAnEmptyPolicyAndBadIds) {
  EXPECT_EQ(PlanPrune({At("20261120T010000")}, {}).error().code(), ErrorCode::kInvalidArgument);
  KeepPolicy p;
  p.last = 1;
  EXPECT_FALSE(PlanPrune({{"not-a-time", "vm", false}}, p));
  // A negative count is an error, never a rule that keeps nothing (it removed every point).
  for (int KeepPolicy::*field : {&KeepPolicy::last, &KeepPolicy::hourly, &KeepPolicy::daily,
                                 &KeepPolicy::weekly, &KeepPolicy::monthly, &KeepPolicy::yearly}) {
    KeepPolicy bad;
    bad.daily = 3;
    bad.*field = -1;
    auto r = PlanPrune({At("20261120T010000")}, bad);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument);
  }
  KeepPolicy cancels;  // -1 + 1 summed to "empty" once
  cancels.last = -1;
  cancels.daily = 1;
  EXPECT_FALSE(PlanPrune({At("20261120T010000")}, cancels));
}

// A repository with a full point and an incremental of one changed chunk.
class GcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto b = storage::LocalBackend::Create(dir_ / "repo");
    ASSERT_TRUE(b);
    ASSERT_TRUE(Repository::Init(**b, {}).ok());
    Reopen();
    std::mt19937_64 rng(5);
    disk_.resize(16 * kChunk);
    for (auto& x : disk_) x = uint8_t(rng());
    full_ = Write("");
    full_disk_ = disk_;
    for (uint64_t i = 0; i < kChunk; ++i) disk_[5 * kChunk + i] ^= 0x5A;
    inc_ = Write(full_);
  }
  void Reopen() {
    repo_.reset();
    auto r = Repository::Open(OpenBackend(dir_ / "repo"), {});
    ASSERT_TRUE(r) << r.error().ToString();
    repo_ = std::move(*r);
  }
  std::string Write(const std::string& parent) {
    Point meta;
    meta.vm_name = "vm1";
    meta.parent = parent;
    auto w = PointWriter::Start(*repo_, meta);
    PointDisk d;
    d.key = 2000;
    d.capacity = disk_.size();
    size_t i = *(*w)->AddDisk(d);
    for (uint64_t c = 0; c < 16; ++c)
      EXPECT_TRUE((*w)->WriteChunk(i, c * kChunk, {disk_.data() + c * kChunk, kChunk}).ok());
    auto p = (*w)->Commit();
    EXPECT_TRUE(p);
    return p->id;
  }
  std::vector<uint8_t> ReadPoint(const std::string& id) {
    auto p = LoadPoint(*repo_, id);
    EXPECT_TRUE(p) << p.error().ToString();
    auto r = PointDiskReader::Open(*repo_, *p, 0);
    std::vector<uint8_t> out(16 * kChunk);
    Status s = (*r)->Read(0, out);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return out;
  }
  size_t Count(storage::ObjectType t) { return repo_->backend().List(t)->size(); }
  void ExpectHealthy() {
    auto c = Check(*repo_);
    ASSERT_TRUE(c);
    EXPECT_TRUE(c->problems.empty()) << c->problems[0];
    auto v = Verify(*repo_, {});
    ASSERT_TRUE(v);
    EXPECT_TRUE(v->damaged.empty());
  }
  GcOptions Later(double repack_below = 0.5) {
    GcOptions o;
    o.now = ::time(nullptr) + 7200;
    o.repack_below = repack_below;
    return o;
  }
  testing::TempDir dir_;
  std::unique_ptr<Repository> repo_;
  std::vector<uint8_t> disk_, full_disk_;
  std::string full_, inc_;
};

TEST_F(GcTest, NothingIsGarbageWhileEveryPointIsThere) {
  size_t packs = Count(storage::ObjectType::kPack);
  auto r = CollectGarbage(*repo_, Later());
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->points, 2u);
  EXPECT_EQ(r->packs_deleted, 0u);
  EXPECT_EQ(r->packs_repacked, 0u);
  EXPECT_EQ(Count(storage::ObjectType::kPack), packs);
}

TEST_F(GcTest, PruneThenGcFreesWhatOnlyThePrunedPointUsed) {
  KeepPolicy keep;
  keep.last = 1;
  auto dry = Prune(*repo_, keep, "", true);
  ASSERT_TRUE(dry);
  EXPECT_EQ(dry->removed, 0u);
  EXPECT_EQ(ListPoints(*repo_)->size(), 2u);
  auto pr = Prune(*repo_, keep, "", false);
  ASSERT_TRUE(pr);
  EXPECT_EQ(pr->removed, 1u);
  EXPECT_EQ(*ListPoints(*repo_), std::vector<std::string>{inc_});

  // Young packs are left alone.
  size_t packs = Count(storage::ObjectType::kPack);
  auto young = CollectGarbage(*repo_, GcOptions{});
  ASSERT_TRUE(young);
  EXPECT_EQ(young->packs_deleted + young->packs_repacked, 0u);
  EXPECT_EQ(Count(storage::ObjectType::kPack), packs);

  auto dry_gc = CollectGarbage(*repo_, [&] {
    GcOptions o = Later();
    o.dry_run = true;
    return o;
  }());
  ASSERT_TRUE(dry_gc);
  EXPECT_EQ(dry_gc->packs_deleted, 1u);  // the full point's tree pages
  EXPECT_EQ(Count(storage::ObjectType::kPack), packs);

  auto r = CollectGarbage(*repo_, Later());
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->packs_deleted, 1u);
  EXPECT_EQ(r->packs_repacked, 0u);  // 15 of 16 chunks of the first pack are still used
  EXPECT_EQ(Count(storage::ObjectType::kPack), packs - 1);
  EXPECT_EQ(Count(storage::ObjectType::kIndex), 1u);
  Reopen();
  EXPECT_EQ(ReadPoint(inc_), disk_);
  ExpectHealthy();
}

TEST_F(GcTest, RepackCopiesLiveBlobsAndDropsTheRest) {
  KeepPolicy keep;
  keep.last = 1;
  ASSERT_TRUE(Prune(*repo_, keep, "", false));
  auto r = CollectGarbage(*repo_, Later(0.99));
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->packs_repacked, 1u);                 // the first pack; the others are all live
  EXPECT_EQ(r->bytes_repacked, 15 * (kChunk + 9));  // 15 chunks, a flag byte and a checksum each
  EXPECT_GE(r->bytes_freed, kChunk);
  Reopen();
  EXPECT_EQ(ReadPoint(inc_), disk_);
  ExpectHealthy();
  auto again = CollectGarbage(*repo_, Later(0.99));  // nothing left to do
  ASSERT_TRUE(again);
  EXPECT_EQ(again->packs_deleted + again->packs_repacked, 0u);
}

// Two writers at once (two processes, two hosts) each store what the other is storing too:
// the index lists one copy, and gc finds the other by the size of its pack.
TEST_F(GcTest, ReclaimsCopiesTwoWritersStoredAtOnce) {
  auto second = Repository::Open(OpenBackend(dir_ / "repo"), {});
  ASSERT_TRUE(second);
  std::mt19937_64 rng(9);
  // Both write the shared chunks and one of their own: whichever index is read first, the
  // other's pack is listed with its own chunk only.
  std::vector<uint8_t> disks[2];
  for (auto& d : disks) d.resize(17 * kChunk);
  for (uint64_t i = 0; i < 17 * kChunk; ++i) disks[0][i] = disks[1][i] = uint8_t(rng());
  for (uint64_t i = 16 * kChunk; i < 17 * kChunk; ++i) disks[1][i] = uint8_t(rng());
  auto write = [&](Repository& r, const std::vector<uint8_t>& disk) {
    Point meta;
    meta.vm_name = "vm1";
    auto w = PointWriter::Start(r, meta);
    PointDisk d;
    d.key = 2000;
    d.capacity = disk.size();
    size_t i = *(*w)->AddDisk(d);
    for (uint64_t c = 0; c < 17; ++c)
      EXPECT_TRUE((*w)->WriteChunk(i, c * kChunk, {disk.data() + c * kChunk, kChunk}).ok());
    auto p = (*w)->Commit();
    EXPECT_TRUE(p);
    return p->id;
  };
  const std::string ids[2] = {write(*repo_, disks[0]), write(**second, disks[1])};
  second->reset();
  auto bytes = [&] {
    uint64_t n = 0;
    auto packs = repo_->backend().List(storage::ObjectType::kPack);
    EXPECT_TRUE(packs);
    if (packs) {
      for (const auto& o : *packs) n += o.size;
    }
    return n;
  };
  Reopen();
  const uint64_t before = bytes();
  auto r = CollectGarbage(*repo_, Later());
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->packs_repacked, 1u);
  Reopen();
  EXPECT_LE(bytes() + 15 * kChunk, before) << "the second copy of the shared chunks is still there";
  ExpectHealthy();
  for (int k = 0; k < 2; ++k) {
    auto p = LoadPoint(*repo_, ids[k]);
    ASSERT_TRUE(p);
    auto rd = PointDiskReader::Open(*repo_, *p, 0);
    std::vector<uint8_t> out(17 * kChunk);
    ASSERT_TRUE((*rd)->Read(0, out).ok());
    EXPECT_EQ(out, disks[k]);
  }
}

TEST_F(GcTest, RemovesOldPacksNoIndexListsButKeepsYoungOnes) {
  PackBuilder builder(repo_->codec());
  std::vector<uint8_t> junk(1000, 7);
  builder.Add(BlobType::kChunk, repo_->codec().IdOf(junk), junk, 1000);
  auto f = builder.Finish();
  ASSERT_TRUE(repo_->backend().Save({storage::ObjectType::kPack, f.id.Hex()}, f.bytes).ok());
  auto young = CollectGarbage(*repo_, GcOptions{});
  ASSERT_TRUE(young);
  EXPECT_EQ(young->packs_deleted, 0u);
  auto r = CollectGarbage(*repo_, Later());
  ASSERT_TRUE(r);
  EXPECT_EQ(r->packs_deleted, 1u);
  EXPECT_FALSE(repo_->backend().Stat({storage::ObjectType::kPack, f.id.Hex()}));
  Reopen();
  ExpectHealthy();
}

TEST_F(GcTest, StopsBeforeDeletingWhenAPointCannotBeRead) {
  auto p = LoadPoint(*repo_, inc_);
  auto loc = repo_->index().Find(p->disks[0].tree.root);
  ASSERT_TRUE(loc);
  ASSERT_TRUE(repo_->backend().Delete({storage::ObjectType::kPack, loc->pack.Hex()}).ok());
  KeepPolicy keep;
  keep.last = 1;
  ASSERT_TRUE(Prune(*repo_, keep, "", false));  // the full point's data becomes garbage
  size_t packs = Count(storage::ObjectType::kPack);
  auto r = CollectGarbage(*repo_, Later());
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("gc stops before deleting anything"), std::string::npos)
      << r.error().message();
  EXPECT_EQ(Count(storage::ObjectType::kPack), packs);
}

// A lost index file must not turn the packs it listed into garbage: check names the problem
// and sends the user to check --repair, gc refuses, and after the repair everything reads.
TEST_F(GcTest, ALostIndexFileMakesNoPackGarbage) {
  auto files = repo_->backend().List(storage::ObjectType::kIndex);
  ASSERT_TRUE(files);
  // The index files of the first point's chunks (its first Flush) go.
  std::sort(files->begin(), files->end(),
            [](const auto& a, const auto& b) { return a.mtime < b.mtime; });
  size_t removed = 0;
  for (const auto& f : *files) {
    auto data = repo_->backend().Load({storage::ObjectType::kIndex, f.name});
    auto entries = Index::DecodeFile(repo_->codec(), *data);
    ASSERT_TRUE(entries);
    if (!entries->empty() && (*entries)[0].loc.type == BlobType::kChunk) {
      ASSERT_TRUE(repo_->backend().Delete({storage::ObjectType::kIndex, f.name}).ok());
      ++removed;
      break;
    }
  }
  ASSERT_EQ(removed, 1u);
  Reopen();
  auto c = Check(*repo_);
  ASSERT_TRUE(c);
  bool told = false;
  for (const auto& p : c->problems) told = told || p.find("check --repair") != std::string::npos;
  EXPECT_TRUE(told) << (c->problems.empty() ? "no problem" : c->problems[0]);
  for (const auto& n : c->notes) EXPECT_EQ(n.find("gc removes it"), std::string::npos) << n;
  size_t packs = Count(storage::ObjectType::kPack);
  auto r = CollectGarbage(*repo_, Later());
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("check --repair"), std::string::npos) << r.error().message();
  EXPECT_EQ(Count(storage::ObjectType::kPack), packs);
  ASSERT_TRUE(RepairIndex(*repo_));
  Reopen();
  EXPECT_EQ(ReadPoint(full_), full_disk_);
  EXPECT_EQ(ReadPoint(inc_), disk_);
  ExpectHealthy();
  auto after = CollectGarbage(*repo_, Later());
  ASSERT_TRUE(after) << after.error().ToString();
  EXPECT_EQ(after->packs_deleted, 0u);
}

}  // namespace
}  // namespace vmbackup::repo
