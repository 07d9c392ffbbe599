// Process identity: alive, gone, reused, and dead but not reaped.
#include "base/process.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

namespace vmbackup {
namespace {

TEST(Process, ThisOneIsAliveAndAnotherStartIsNot) {
  const int64_t me = ::getpid();
  EXPECT_TRUE(ProcessAlive(me, ProcessStart(me)));
  EXPECT_TRUE(ProcessAlive(me, 0));
  EXPECT_FALSE(ProcessAlive(me, ProcessStart(me) + 1));  // a reused pid
  EXPECT_FALSE(ProcessAlive(0, 0));
}

// A child that exited and was not reaped yet is a zombie: dead, whatever kill(pid, 0) says.
TEST(Process, ZombieIsNotAlive) {
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) ::_exit(0);
  const uint64_t start = ProcessStart(child);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (ProcessAlive(child, start) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_FALSE(ProcessAlive(child, start));
  EXPECT_EQ(::kill(child, 0), 0);  // still there until reaped
  ::waitpid(child, nullptr, 0);
  EXPECT_FALSE(ProcessAlive(child, start));
}

}  // namespace
}  // namespace vmbackup
