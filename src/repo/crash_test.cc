// Crash safety: a child process writes restore points (and in some trials prunes and collects
// garbage) until it is killed with SIGKILL at a random moment. After every kill the repository
// must check clean, every point must verify and read back exactly the content it was written
// with, and the next writer must get in (breaking the dead child's lock) and succeed.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <random>
#include <set>

#include "base/testing/temp_dir.h"
#include "repo/gc.h"
#include "repo/lock.h"
#include "repo/maintenance.h"
#include "repo/prune.h"
#include "storage/local_backend.h"

namespace vmbackup::repo {
namespace {

constexpr uint64_t kChunk = 65536, kChunks = 16;

// The disk a point with `seed` holds: low chunks change often, high ones rarely, some are zero.
std::vector<uint8_t> DiskFor(uint64_t seed) {
  std::vector<uint8_t> disk(kChunks * kChunk, 0);
  for (uint64_t c = 0; c < kChunks; ++c) {
    uint64_t version = seed / (c + 1);
    if ((version + c) % 7 == 0) continue;
    std::mt19937_64 rng(c * 1000003 + version);
    for (uint64_t i = 0; i < kChunk; i += 8) {
      uint64_t v = rng();
      std::memcpy(disk.data() + c * kChunk + i, &v, 8);
    }
  }
  return disk;
}

Result<std::unique_ptr<Repository>> OpenRepo(const std::string& dir) {
  VMBACKUP_ASSIGN_OR_RETURN(auto b, storage::LocalBackend::Open(dir));
  return Repository::Open(std::move(b), {});
}

Status WritePoint(Repository& repo, uint64_t seed, const std::string& vm = "crash") {
  VMBACKUP_ASSIGN_OR_RETURN(auto ids, ListPoints(repo));
  Point meta;
  meta.vm_name = vm;
  meta.notes = std::to_string(seed);
  for (const auto& id : ids) {  // the VM's newest point
    VMBACKUP_ASSIGN_OR_RETURN(Point p, LoadPoint(repo, id));
    if (p.vm_name == vm) meta.parent = id;
  }
  VMBACKUP_ASSIGN_OR_RETURN(auto w, PointWriter::Start(repo, meta));
  PointDisk d;
  d.key = 2000;
  d.capacity = kChunks * kChunk;
  VMBACKUP_ASSIGN_OR_RETURN(size_t disk, w->AddDisk(d));
  std::vector<uint8_t> data = DiskFor(seed);
  for (uint64_t c = 0; c < kChunks; ++c)
    VMBACKUP_RETURN_IF_ERROR(w->WriteChunk(disk, c * kChunk, {data.data() + c * kChunk, kChunk}));
  return w->Commit().status();
}

// The child: writes points forever; with `maintain`, also prunes and collects garbage.
[[noreturn]] void Writer(const std::string& dir, uint64_t seed, bool maintain) {
  auto backend = storage::LocalBackend::Open(dir);
  if (!backend) _exit(2);
  auto lock = RepoLock::Acquire(**backend, {maintain, "crash test", 10});
  if (!lock) _exit(3);
  auto repo = OpenRepo(dir);
  if (!repo) _exit(4);
  for (uint64_t n = 0;; ++n) {
    // Maintenance first and every other point, so a kill lands in it even on a slow build.
    if (maintain && n % 2 == 0) {
      KeepPolicy keep;
      keep.last = 3;
      if (!Prune(**repo, keep, "", false).ok()) _exit(6);
      GcOptions o;
      o.grace_seconds = 0;
      o.repack_below = 0.9;
      if (!CollectGarbage(**repo, o).ok()) _exit(7);
      repo = OpenRepo(dir);  // gc leaves the in-memory index stale
      if (!repo) _exit(8);
    }
    if (!WritePoint(**repo, seed + n).ok()) _exit(5);
  }
}

TEST(CrashTest, KilledWritersNeverDamageEarlierPoints) {
  testing::TempDir tmp;
  const std::string dir = tmp / "repo";
  {
    auto b = storage::LocalBackend::Create(dir);
    ASSERT_TRUE(b);
    ASSERT_TRUE(Repository::Init(**b, {}).ok());
  }
  std::mt19937 rng(20261122);
  // How long a writer takes to commit its first point here (a sanitizer build or a loaded
  // machine is many times slower): the kills are spread around that, so that they land before,
  // in and after commits on any machine.
  useconds_t unit = 0;
  {
    const auto t0 = std::chrono::steady_clock::now();
    pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) Writer(dir, 900000, false);
    for (;;) {
      auto ids = ListPoints(**OpenRepo(dir));
      if (ids && !ids->empty()) break;
      ASSERT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(20))
          << "a writer committed nothing in 20 s";
      usleep(2000);
    }
    unit = useconds_t(
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0)
            .count());
    kill(child, SIGKILL);
    waitpid(child, nullptr, 0);
  }
  std::set<std::string> before;
  size_t notes_before = 0;
  int kills_leaving_data = 0, points_pruned = 0, points_written = 0;
  // At most 50 trials, and no more than fit in 30 s once 12 are done (a sanitizer build is
  // many times slower; 12 trials still hold 3 with maintenance).
  constexpr int kTrials = 50;
  const auto started = std::chrono::steady_clock::now();
  int trials = 0;
  for (int trial = 0; trial < kTrials; ++trial, ++trials) {
    if (trial >= 12 && std::chrono::steady_clock::now() - started > std::chrono::seconds(30)) break;
    const bool maintain = trial % 4 == 3;
    pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) Writer(dir, uint64_t(trial) * 1000, maintain);
    // Between a fifth of a commit and two (maintenance: from one commit on).
    usleep(useconds_t((maintain ? unit : unit / 5) + rng() % (2 * unit)));
    kill(child, SIGKILL);
    int status = 0;
    waitpid(child, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status))
        << "trial " << trial << ": the writer failed with exit code " << WEXITSTATUS(status);

    auto repo = OpenRepo(dir);
    ASSERT_TRUE(repo) << repo.error().ToString();
    auto check = Check(**repo);
    ASSERT_TRUE(check) << check.error().ToString();
    ASSERT_TRUE(check->problems.empty()) << "trial " << trial << ": " << check->problems[0];
    kills_leaving_data += check->notes.size() > notes_before;
    notes_before = check->notes.size();
    auto verify = Verify(**repo, {});
    ASSERT_TRUE(verify);
    ASSERT_TRUE(verify->damaged.empty()) << "trial " << trial << ": " << verify->damaged[0].error;
    auto ids = ListPoints(**repo);
    std::set<std::string> after(ids->begin(), ids->end());
    if (!maintain) {
      for (const auto& id : before)
        ASSERT_TRUE(after.count(id)) << "trial " << trial << ": lost " << id;
    }
    for (const auto& id : before) points_pruned += !after.count(id) ? 1 : 0;
    for (const auto& id : after) {
      if (before.count(id)) continue;  // read back when it was new
      ++points_written;
      auto p = LoadPoint(**repo, id);
      ASSERT_TRUE(p);
      auto reader = PointDiskReader::Open(**repo, *p, 0);
      std::vector<uint8_t> got(kChunks * kChunk);
      ASSERT_TRUE((*reader)->Read(0, got).ok());
      ASSERT_EQ(got, DiskFor(std::stoull(p->notes))) << "trial " << trial << ": point " << id;
    }
    before = after;
  }
  // The next writer breaks the last child's lock and succeeds.
  auto backend = storage::LocalBackend::Open(dir);
  auto lock = RepoLock::Acquire(**backend, {true, "after the crashes", 0});
  ASSERT_TRUE(lock) << lock.error().ToString();
  // At least the last child's lock; a child killed while taking its lock may have left its
  // own next to the one it was about to break.
  EXPECT_GE((*lock)->broken().size(), 1u);
  EXPECT_EQ(ListLocks(**backend)->size(), 1u);
  auto repo = OpenRepo(dir);
  ASSERT_TRUE(WritePoint(**repo, 999999).ok());
  GcOptions o;
  o.grace_seconds = 0;
  auto gc = CollectGarbage(**repo, o);
  ASSERT_TRUE(gc) << gc.error().ToString();
  repo = OpenRepo(dir);
  auto check = Check(**repo);
  EXPECT_TRUE(check->problems.empty());
  EXPECT_TRUE(check->notes.empty()) << check->notes[0];  // gc removed what the crashes left
  EXPECT_FALSE(before.empty());
  std::printf(
      "%d kills: %d points committed, %d pruned by the children; %d kills left "
      "unreferenced packs behind\n",
      trials, points_written, points_pruned, kills_leaving_data);
  EXPECT_GT(points_pruned, 0);
  EXPECT_GT(kills_leaving_data, 0);  // some kills did land mid-write
}

// Two backups of different VMs into one repository at once: each holds a shared lock, both
// store packs and index files concurrently, and every point of both reads back exactly.
TEST(ConcurrencyTest, TwoWritersIntoOneRepository) {
  testing::TempDir tmp;
  const std::string dir = tmp / "repo";
  {
    auto b = storage::LocalBackend::Create(dir);
    ASSERT_TRUE(b);
    ASSERT_TRUE(Repository::Init(**b, {}).ok());
  }
  std::vector<pid_t> children;
  for (int vm = 0; vm < 2; ++vm) {
    pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      auto backend = storage::LocalBackend::Open(dir);
      auto lock = RepoLock::Acquire(**backend, {false, "backup", 10});
      auto repo = OpenRepo(dir);
      if (!lock || !repo) _exit(2);
      for (uint64_t n = 0; n < 8; ++n) {
        if (!WritePoint(**repo, uint64_t(vm) * 100000 + n * 3, "vm" + std::to_string(vm)).ok())
          _exit(3);
      }
      _exit((*lock)->Release().ok() ? 0 : 4);
    }
    children.push_back(child);
  }
  for (pid_t c : children) {
    int status = 0;
    waitpid(c, &status, 0);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << WEXITSTATUS(status);
  }
  auto repo = OpenRepo(dir);
  ASSERT_TRUE(repo);
  auto check = Check(**repo);
  ASSERT_TRUE(check->problems.empty()) << check->problems[0];
  auto ids = *ListPoints(**repo);
  ASSERT_EQ(ids.size(), 16u);
  std::map<std::string, int> per_vm;
  for (const auto& id : ids) {
    auto p = LoadPoint(**repo, id);
    ++per_vm[p->vm_name];
    auto reader = PointDiskReader::Open(**repo, *p, 0);
    std::vector<uint8_t> got(kChunks * kChunk);
    ASSERT_TRUE((*reader)->Read(0, got).ok());
    EXPECT_EQ(got, DiskFor(std::stoull(p->notes))) << id;
  }
  EXPECT_EQ(per_vm["vm0"], 8);
  EXPECT_EQ(per_vm["vm1"], 8);
  EXPECT_TRUE(ListLocks((*repo)->backend())->empty());
}

}  // namespace
}  // namespace vmbackup::repo
