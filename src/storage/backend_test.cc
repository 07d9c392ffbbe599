#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <utime.h>

#include <filesystem>

#include "base/aligned_buffer.h"
#include "base/process.h"
#include "base/testing/temp_dir.h"
#include "storage/local_backend.h"
#include "storage/mem_backend.h"
#include "storage/testing/backend_conformance.h"

namespace vmbackup::storage::testing {
namespace {

struct MemFactory {
  std::unique_ptr<Backend> Make() { return std::make_unique<MemBackend>(); }
};

struct LocalFactory {
  vmbackup::testing::TempDir dir;
  std::unique_ptr<Backend> Make() {
    auto b = LocalBackend::Create(dir / "repo");
    EXPECT_TRUE(b) << b.error().ToString();
    return std::move(*b);
  }
};

using Factories = ::testing::Types<MemFactory, LocalFactory>;
INSTANTIATE_TYPED_TEST_SUITE_P(All, BackendConformance, Factories);

}  // namespace
}  // namespace vmbackup::storage::testing

namespace vmbackup::storage {
namespace {

// Packs are written with O_DIRECT: from memory on a page boundary as it is, from any other
// through an aligned copy; both with a tail that is not a whole page.
TEST(LocalBackend, LargeObjectsFromAlignedAndUnalignedMemoryReadBackExactly) {
  vmbackup::testing::TempDir dir;
  auto b = LocalBackend::Create(dir / "repo");
  ASSERT_TRUE(b) << b.error().ToString();
  AlignedBuffer aligned;
  std::vector<uint8_t> bytes(5 * 1024 * 1024 + 123 + 1);
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = uint8_t(i * 31 + i / 4093);
  aligned.append(std::span<const uint8_t>(bytes).first(bytes.size() - 1));
  ASSERT_EQ(reinterpret_cast<uintptr_t>(aligned.data()) % 4096, 0u);
  const std::span<const uint8_t> unaligned = std::span<const uint8_t>(bytes).subspan(1);
  ASSERT_NE(reinterpret_cast<uintptr_t>(unaligned.data()) % 4096, 0u);
  ASSERT_TRUE((*b)->Save({ObjectType::kPack, std::string(64, 'a')}, aligned).ok());
  ASSERT_TRUE((*b)->Save({ObjectType::kPack, std::string(64, 'b')}, unaligned).ok());
  auto a = (*b)->Load({ObjectType::kPack, std::string(64, 'a')});
  auto u = (*b)->Load({ObjectType::kPack, std::string(64, 'b')});
  ASSERT_TRUE(a && u);
  EXPECT_TRUE(std::equal(a->begin(), a->end(), aligned.begin(), aligned.end()));
  EXPECT_TRUE(std::equal(u->begin(), u->end(), unaligned.begin(), unaligned.end()));
}

TEST(LocalBackend, CreateOpenAndLayout) {
  vmbackup::testing::TempDir dir;
  std::string repo = dir / "repo";
  ASSERT_TRUE(LocalBackend::Create(repo));
  EXPECT_EQ(LocalBackend::Create(repo).error().code(), ErrorCode::kAlreadyExists);
  EXPECT_EQ(LocalBackend::Open(dir / "nothing").error().code(), ErrorCode::kNoRepository);
  auto b = LocalBackend::Open(repo);
  ASSERT_TRUE(b);
  std::vector<uint8_t> data = {1, 2, 3};
  ASSERT_TRUE((*b)->Save({ObjectType::kPack, "f00dbabe"}, data).ok());
  struct stat st;
  EXPECT_EQ(::stat((repo + "/packs/f0/f00dbabe").c_str(), &st), 0);  // sharded by two characters
  ASSERT_TRUE((*b)->Save({ObjectType::kPoint, "p"}, data).ok());
  EXPECT_EQ(::stat((repo + "/points/p").c_str(), &st), 0);
  // No temporary file remains after saves.
  EXPECT_TRUE(vmbackup::testing::ReadBytes(repo + "/tmp/x").empty());
}

// Every object but a lock is durable when Save, Commit or Delete returns: its data and its
// folder synced. Locks are not (they need not outlive their process), and read back the same.
TEST(LocalBackend, EverythingButLocksIsSyncedBeforeItCounts) {
  vmbackup::testing::TempDir dir;
  auto b = LocalBackend::Create(dir / "repo");
  ASSERT_TRUE(b);
  LocalBackend& local = **b;
  std::vector<uint8_t> data = {1, 2, 3};
  uint64_t before = local.syncs();
  for (ObjectType t : {ObjectType::kPack, ObjectType::kIndex, ObjectType::kPoint}) {
    ASSERT_TRUE(local.Save({t, "ab01"}, data).ok());
    EXPECT_EQ(local.syncs() - before, 2u) << ObjectTypeName(t);  // the file, then its folder
    before = local.syncs();
    ASSERT_TRUE(local.Delete({t, "ab01"}).ok());
    EXPECT_EQ(local.syncs() - before, 1u) << ObjectTypeName(t);  // the folder
    before = local.syncs();
  }
  auto w = local.NewWriter(ObjectType::kPack);
  ASSERT_TRUE(w);
  ASSERT_TRUE((*w)->Append(data).ok());
  ASSERT_TRUE((*w)->Commit("cd02").ok());
  EXPECT_EQ(local.syncs() - before, 2u);
  before = local.syncs();

  ASSERT_TRUE(local.Save({ObjectType::kLock, "l1"}, data).ok());
  EXPECT_EQ(*local.Load({ObjectType::kLock, "l1"}), data);
  ASSERT_TRUE(local.Delete({ObjectType::kLock, "l1"}).ok());
  EXPECT_EQ(local.syncs(), before);
  EXPECT_EQ(local.Load({ObjectType::kLock, "l1"}).error().code(), ErrorCode::kNotFound);
}

TEST(LocalBackend, OpenRemovesStaleTemporaryFiles) {
  vmbackup::testing::TempDir dir;
  std::string repo = dir / "repo";
  ASSERT_TRUE(LocalBackend::Create(repo));
  vmbackup::testing::WriteText(repo + "/tmp/old", "left by a killed writer");
  vmbackup::testing::WriteText(repo + "/tmp/new", "a writer still at work");
  struct utimbuf old_time = {1000000000, 1000000000};
  ASSERT_EQ(::utime((repo + "/tmp/old").c_str(), &old_time), 0);
  ASSERT_TRUE(LocalBackend::Open(repo));
  struct stat st;
  EXPECT_NE(::stat((repo + "/tmp/old").c_str(), &st), 0);
  EXPECT_EQ(::stat((repo + "/tmp/new").c_str(), &st), 0);
  // A fresh file of a writer on this host that is gone goes at once; a live writer's stays.
  pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ASSERT_GT(child, 0);
  const std::string live = OwnerFileTag();
  std::string dead = live.substr(0, live.find('-')) + "-" + std::to_string(child) + "-1-0-x";
  ::waitpid(child, nullptr, 0);
  vmbackup::testing::WriteText(repo + "/tmp/" + dead, "killed");
  vmbackup::testing::WriteText(repo + "/tmp/" + live + "-0-y", "alive");
  ASSERT_TRUE(LocalBackend::Open(repo));
  EXPECT_NE(::stat((repo + "/tmp/" + dead).c_str(), &st), 0);
  EXPECT_EQ(::stat((repo + "/tmp/" + live + "-0-y").c_str(), &st), 0);
}

// Objects and folders are private to their owner whatever the umask (restic does the same).
TEST(LocalBackend, FilesArePrivate) {
  vmbackup::testing::TempDir dir;
  mode_t old = ::umask(022);
  auto b = LocalBackend::Create(dir / "repo");
  ASSERT_TRUE(b);
  std::vector<uint8_t> small = {1}, large(2 << 20, 1);
  ASSERT_TRUE((*b)->Save({ObjectType::kPack, "aa01"}, large).ok());
  ASSERT_TRUE((*b)->Save({ObjectType::kPoint, "p"}, small).ok());
  ::umask(old);
  struct stat st;
  for (const char* f : {"/packs/aa/aa01", "/points/p"}) {
    ASSERT_EQ(::stat((dir / "repo" + f).c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u) << f;
  }
  for (const char* d : {"", "/packs", "/packs/aa", "/points", "/tmp", "/index"}) {
    ASSERT_EQ(::stat((dir / "repo" + d).c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0700u) << d;
  }
}

size_t FilesIn(const std::string& folder) {
  size_t n = 0;
  for (const auto& e : std::filesystem::directory_iterator(folder)) n += e.is_regular_file();
  return n;
}

// A writer takes a pack piece by piece (aligned segments with O_DIRECT, then an unaligned tail,
// then an aligned piece again at an unaligned place) and stores exactly the bytes given; nothing
// shows under the name before Commit, and nothing is left in tmp/ after it.
TEST(LocalBackend, AWriterStoresItsPiecesInOrderOnCommit) {
  vmbackup::testing::TempDir dir;
  auto b = LocalBackend::Create(dir / "repo");
  ASSERT_TRUE(b) << b.error().ToString();
  ASSERT_TRUE((*b)->WritesInPieces());
  std::vector<uint8_t> all;
  auto w = (*b)->NewWriter(ObjectType::kPack);
  ASSERT_TRUE(w) << w.error().ToString();
  const ObjectRef ref{ObjectType::kPack, std::string(64, 'c')};
  for (size_t size : {size_t(2 << 20), size_t(1 << 20), size_t(777), size_t(1 << 20), size_t(5)}) {
    AlignedBuffer piece;
    std::vector<uint8_t> bytes(size);
    for (size_t i = 0; i < size; ++i) bytes[i] = uint8_t(all.size() + i * 7);
    piece.append(bytes);
    ASSERT_TRUE((*w)->Append({piece.data(), piece.size()}).ok());
    all.insert(all.end(), bytes.begin(), bytes.end());
  }
  EXPECT_EQ((*b)->Stat(ref).status().code(), ErrorCode::kNotFound);
  EXPECT_EQ(FilesIn(dir / "repo/tmp"), 1u);
  ASSERT_TRUE((*w)->Commit(ref.name).ok());
  auto back = (*b)->Load(ref);
  ASSERT_TRUE(back) << back.error().ToString();
  EXPECT_EQ(*back, all);
  EXPECT_EQ(FilesIn(dir / "repo/tmp"), 0u);
  EXPECT_FALSE((*w)->Append(all).ok()) << "a committed writer is spent";
}

// A writer dropped before Commit leaves nothing; one that meets an existing object says so, tells
// whether it holds the same bytes, and can replace it (a damaged copy), after which reads see
// the new bytes even through the backend's cache of open files.
TEST(LocalBackend, AWriterAbandonedLeavesNothingAndMeetsAnExistingObject) {
  vmbackup::testing::TempDir dir;
  auto b = LocalBackend::Create(dir / "repo");
  ASSERT_TRUE(b);
  {
    auto w = (*b)->NewWriter(ObjectType::kPack);
    ASSERT_TRUE(w);
    ASSERT_TRUE((*w)->Append(std::vector<uint8_t>(10000, 1)).ok());
  }
  EXPECT_EQ(FilesIn(dir / "repo/tmp"), 0u);
  const ObjectRef ref{ObjectType::kPack, std::string(64, 'd')};
  std::vector<uint8_t> good(3 << 20, 7), damaged = good;
  damaged[12345] ^= 1;
  ASSERT_TRUE((*b)->Save(ref, damaged).ok());
  std::vector<uint8_t> head(16);
  ASSERT_TRUE((*b)->ReadRange(ref, 12340, head).ok());  // the open file is cached now
  auto same = (*b)->NewWriter(ObjectType::kPack);
  ASSERT_TRUE(same);
  ASSERT_TRUE((*same)->Append(damaged).ok());
  EXPECT_EQ((*same)->Commit(ref.name).code(), ErrorCode::kAlreadyExists);
  auto is_same = (*same)->SameAsExisting();
  ASSERT_TRUE(is_same) << is_same.error().ToString();
  EXPECT_TRUE(*is_same);
  auto other = (*b)->NewWriter(ObjectType::kPack);
  ASSERT_TRUE(other);
  ASSERT_TRUE((*other)->Append(good).ok());
  EXPECT_EQ((*other)->Commit(ref.name).code(), ErrorCode::kAlreadyExists);
  auto differs = (*other)->SameAsExisting();
  ASSERT_TRUE(differs);
  EXPECT_FALSE(*differs);
  ASSERT_TRUE((*other)->ReplaceExisting().ok());
  ASSERT_TRUE((*b)->ReadRange(ref, 12340, head).ok());
  EXPECT_EQ(head, std::vector<uint8_t>(16, 7));
  auto back = (*b)->Load(ref);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, good);
  same->reset();
  other->reset();
  EXPECT_EQ(FilesIn(dir / "repo/tmp"), 0u);
}

// Backends that send whole objects say so, and refuse a writer with a clear error.
TEST(MemBackend, SavesWholeObjectsOnly) {
  MemBackend b;
  EXPECT_FALSE(b.WritesInPieces());
  auto w = b.NewWriter(ObjectType::kPack);
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().code(), ErrorCode::kNotSupported);
}

}  // namespace
}  // namespace vmbackup::storage
