// Names and paths from a file system (outside input) before they touch the local one.
#include "files/entries.h"

#include <gtest/gtest.h>

namespace vmbackup::files {
namespace {

TEST(Entries, OnlyPlainNamesAreSafe) {
  EXPECT_TRUE(SafeName("report.txt"));
  EXPECT_TRUE(SafeName("notes with space.txt"));
  EXPECT_TRUE(SafeName("..hidden"));
  EXPECT_FALSE(SafeName(""));
  EXPECT_FALSE(SafeName("."));
  EXPECT_FALSE(SafeName(".."));
  EXPECT_FALSE(SafeName("a/b"));
  EXPECT_FALSE(SafeName(std::string_view("a\0b", 3)));
}

TEST(Entries, PathsAreMadeAbsoluteAndPlain) {
  EXPECT_EQ(NormalizeFsPath(""), "/");
  EXPECT_EQ(NormalizeFsPath("/"), "/");
  EXPECT_EQ(NormalizeFsPath("home//alice/./docs/"), "/home/alice/docs");
  EXPECT_EQ(NormalizeFsPath("/a/../b"), "/a/../b");  // looked up as names, never resolved here
  EXPECT_EQ(JoinFsPath("/", "x"), "/x");
  EXPECT_EQ(JoinFsPath("/a", "x"), "/a/x");
}

}  // namespace
}  // namespace vmbackup::files
