// WorkerPool: a fixed set of threads that live as long as the pool, for parallel loops.
// Restores decode on them: threads that live long keep their buffers, and on a VM fresh
// memory (a new thread's stack and buffers, a new mapping) is slow to get.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace vmbackup {

class WorkerPool {
 public:
  // `workers` threads besides the callers (0 runs every loop on its caller alone).
  explicit WorkerPool(int workers);
  ~WorkerPool();  // waits for the loops under way; call no ParallelFor after it starts
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Runs fn(i) for every i in [0, count) on the workers and the calling thread, and returns
  // when every call has returned. Several threads may run loops at once; they share the
  // workers. `fn` must not throw.
  void ParallelFor(size_t count, const std::function<void(size_t)>& fn);

 private:
  struct Loop {
    size_t count = 0;
    const std::function<void(size_t)>* fn = nullptr;
    size_t next = 0;  // the next index to hand out
    size_t done = 0;  // calls returned
    std::condition_variable finished;
  };
  // Hands out the next index of `loop`, which must have one left. Called with mu_ held. A
  // loop leaves the queue when its last index is handed out, so no worker touches it after
  // its caller has seen every call return.
  size_t Take(Loop* loop);
  void Run(Loop* loop, size_t index);
  void WorkerMain();

  std::mutex mu_;
  std::condition_variable work_;
  std::deque<Loop*> queue_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace vmbackup
