#include "io/posix_file.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <vector>

#include "io/mem_device.h"
#include "io/temp_dir.h"

namespace vmbackup::io {
namespace {

class PosixFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/vmbackup-io-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
  }
  void TearDown() override { std::system(("rm -rf " + dir_).c_str()); }
  std::string dir_;
};

TEST_F(PosixFileTest, WriteReadAndBounds) {
  std::string p = dir_ + "/f";
  auto f = PosixFile::Open(p, OpenMode::kCreateNew);
  ASSERT_TRUE(f) << f.error().ToString();
  std::vector<uint8_t> data(1000, 0xAB);
  ASSERT_TRUE((*f)->WriteAt(100, data).ok());
  EXPECT_EQ((*f)->size(), 1100u);
  std::vector<uint8_t> back(1000);
  ASSERT_TRUE((*f)->ReadAt(100, back).ok());
  EXPECT_EQ(back, data);
  Status past = (*f)->ReadAt(1000, back);
  EXPECT_EQ(past.code(), ErrorCode::kCorruption);
  EXPECT_NE(past.message().find("file ends at 1100"), std::string::npos);
  EXPECT_EQ(PosixFile::Open(p, OpenMode::kCreateNew).error().code(), ErrorCode::kAlreadyExists);
  EXPECT_EQ(PosixFile::Open(dir_ + "/missing", OpenMode::kReadOnly).error().code(),
            ErrorCode::kNotFound);
  auto ro = PosixFile::Open(p, OpenMode::kReadOnly);
  ASSERT_TRUE(ro);
  EXPECT_EQ((*ro)->WriteAt(0, data).code(), ErrorCode::kPermissionDenied);
}

TEST_F(PosixFileTest, AllocatedExtentsSeesHoles) {
  auto f = PosixFile::Open(dir_ + "/sparse", OpenMode::kCreateNew);
  ASSERT_TRUE(f);
  ASSERT_TRUE((*f)->Truncate(64 << 20).ok());
  std::vector<uint8_t> data(1 << 20, 1);
  ASSERT_TRUE((*f)->WriteAt(8 << 20, data).ok());
  auto a = (*f)->AllocatedExtents(0, (*f)->size());
  ASSERT_TRUE(a);
  EXPECT_TRUE(a->Contains(8 << 20, 1 << 20));
  EXPECT_LT(a->total_bytes(), uint64_t(64) << 20);  // the holes are not reported
}

TEST_F(PosixFileTest, AtomicWriteAndSmallRead) {
  std::string p = dir_ + "/d.txt";
  ASSERT_TRUE(WriteFileAtomic(p, "one").ok());
  ASSERT_TRUE(WriteFileAtomic(p, "two!").ok());
  EXPECT_EQ(*ReadSmallFile(p, 100), "two!");
  EXPECT_EQ(ReadSmallFile(p, 3).error().code(), ErrorCode::kInvalidArgument);
  EXPECT_FALSE(PathExists(p + ".tmp"));
}

TEST(Paths, Helpers) {
  EXPECT_EQ(DirName("a/b/c.vmdk"), "a/b");
  EXPECT_EQ(DirName("c.vmdk"), ".");
  EXPECT_EQ(DirName("/c"), "/");
  EXPECT_EQ(BaseName("a/b/c.vmdk"), "c.vmdk");
  EXPECT_EQ(JoinPath("a/b", "c"), "a/b/c");
  EXPECT_EQ(JoinPath("a/b", "/abs"), "/abs");
  EXPECT_EQ(JoinPath(".", "c"), "c");
}

TEST(MemDevice, GrowsAndBounds) {
  MemDevice m;
  uint8_t b[4] = {1, 2, 3, 4};
  ASSERT_TRUE(m.WriteAt(10, b).ok());
  EXPECT_EQ(m.size(), 14u);
  uint8_t r[4];
  ASSERT_TRUE(m.ReadAt(10, r).ok());
  EXPECT_EQ(r[3], 4);
  EXPECT_FALSE(m.ReadAt(12, r).ok());
  auto all = m.AllocatedExtents(0, 100);
  ASSERT_TRUE(all);
  EXPECT_EQ(all->total_bytes(), 14u);
}

TEST(TempDir, IsPrivateAndGoesWithItsFiles) {
  std::string path;
  {
    auto dir = TempDir::Make("vmbackup-test");
    ASSERT_TRUE(dir.ok()) << dir.error().ToString();
    path = dir->path();
    struct stat st {};
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_TRUE(S_ISDIR(st.st_mode));
    EXPECT_EQ(st.st_mode & 0777, 0700u);
    ASSERT_TRUE(WriteFileAtomic(JoinPath(path, "a"), "x").ok());
    TempDir moved(std::move(*dir));  // the moved-from one removes nothing
    EXPECT_TRUE(PathExists(JoinPath(path, "a")));
  }
  EXPECT_FALSE(PathExists(path));
}

}  // namespace
}  // namespace vmbackup::io
