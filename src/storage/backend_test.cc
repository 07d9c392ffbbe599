#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <utime.h>

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

}  // namespace
}  // namespace vmbackup::storage
