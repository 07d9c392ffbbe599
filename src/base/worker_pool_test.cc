#include "base/worker_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <vector>

namespace vmbackup {
namespace {

TEST(WorkerPoolTest, EveryIndexRunsExactlyOnce) {
  for (int workers : {0, 1, 3}) {
    WorkerPool pool(workers);
    std::vector<std::atomic<int>> calls(1000);
    pool.ParallelFor(calls.size(), [&](size_t i) { calls[i]++; });
    for (size_t i = 0; i < calls.size(); ++i) ASSERT_EQ(calls[i].load(), 1) << i;
    pool.ParallelFor(0, [&](size_t) { FAIL() << "no index to run"; });
  }
}

TEST(WorkerPoolTest, LoopsFromSeveralCallersShareTheWorkers) {
  WorkerPool pool(2);
  constexpr int kCallers = 4, kCount = 500;
  std::vector<std::vector<std::atomic<int>>> calls(kCallers);
  for (auto& c : calls) c = std::vector<std::atomic<int>>(kCount);
  std::vector<std::thread> callers;
  for (int c = 0; c < kCallers; ++c) {
    callers.emplace_back([&, c] {
      for (int round = 0; round < 20; ++round)
        pool.ParallelFor(kCount, [&](size_t i) { calls[c][i]++; });
    });
  }
  for (auto& t : callers) t.join();
  for (int c = 0; c < kCallers; ++c)
    for (int i = 0; i < kCount; ++i) ASSERT_EQ(calls[c][i].load(), 20) << c << " " << i;
}

TEST(WorkerPoolTest, RunsOnTheWorkersAndTheCallerAtOnce) {
  // Two calls that each wait for the other can only both finish when they run at once.
  WorkerPool pool(1);
  std::atomic<int> arrived{0};
  std::atomic<int> met{0};
  pool.ParallelFor(2, [&](size_t) {
    arrived++;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (arrived.load() < 2 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::yield();
    if (arrived.load() == 2) met++;
  });
  EXPECT_EQ(met.load(), 2);
}

}  // namespace
}  // namespace vmbackup
