// The lazy loader against real libraries: zlib (not loaded by this test program until a call
// needs it), libc's varargs (the vector-count register and a double must survive the loader),
// and a library that is not there.
#include "base/lazy_library.h"

#include <dlfcn.h>
#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "base/testing/lazy_test_libraries.h"

#define ZLIB_FUNCTIONS(X) X(crc32) X(zlibVersion)
VMBACKUP_LAZY_LIBRARY(test_zlib, "libz.so.1", "zlib1g", ZLIB_FUNCTIONS)

namespace vmbackup::lazy {
namespace {

bool Loaded(const char* soname) {
  void* h = ::dlopen(soname, RTLD_NOW | RTLD_NOLOAD);
  if (h) ::dlclose(h);
  return h != nullptr;
}

TEST(LazyLibrary, TheFirstCallLoadsTheLibraryAndEveryCallGetsTheRealFunction) {
  ASSERT_FALSE(Loaded("libz.so.1")) << "this test program must not link zlib";
  const char text[] = "The quick brown fox jumps over the lazy dog";
  std::vector<std::thread> threads;
  std::vector<uLong> got(8);
  for (size_t i = 0; i < got.size(); ++i)  // at once: one load, every caller served
    threads.emplace_back([&, i] {
      got[i] = crc32(0, reinterpret_cast<const Bytef*>(text), uInt(std::strlen(text)));
    });
  for (auto& t : threads) t.join();
  EXPECT_TRUE(Loaded("libz.so.1"));
  for (uLong v : got) EXPECT_EQ(v, 0x414fa339u);
  EXPECT_STREQ(zlibVersion(), ZLIB_VERSION);
  EXPECT_TRUE(Load(test_zlib).ok());
}

// A varargs call with doubles and many integer arguments, through the loader on its first call.
TEST(LazyLibrary, ArgumentsInEveryRegisterSurviveTheLoader) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const int n = dprintf(fds[1], "%d %d %d %d %.2f %.3f %s %d", 1, 2, 3, 4, 0.5, 2.25, "end", 9);
  ::close(fds[1]);
  char out[128] = {};
  const ssize_t got = ::read(fds[0], out, sizeof out - 1);
  ::close(fds[0]);
  EXPECT_EQ(n, got);
  EXPECT_STREQ(out, "1 2 3 4 0.50 2.250 end 9");
  EXPECT_TRUE(Load(test_libc).ok());
}

TEST(LazyLibrary, AMissingLibraryIsAnErrorNamingItsPackage) {
  Status s = Load(test_absent);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), ErrorCode::kNotFound);
  EXPECT_NE(s.message().find("libvmbackup-absent.so.7"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("vmbackup-absent-package"), std::string::npos) << s.message();
  // A call that needs it ends the program with that message (no way to return an error).
  EXPECT_EXIT(vmbackup_absent_function(), ::testing::ExitedWithCode(127),
              "cannot load libvmbackup-absent.so.7");
}

}  // namespace
}  // namespace vmbackup::lazy
