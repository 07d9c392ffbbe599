#include "base/worker_pool.h"

namespace vmbackup {

WorkerPool::WorkerPool(int workers) {
  for (int i = 0; i < workers; ++i) threads_.emplace_back([this] { WorkerMain(); });
}

WorkerPool::~WorkerPool() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stopping_ = true;
  }
  work_.notify_all();
  for (auto& t : threads_) t.join();
}

size_t WorkerPool::Take(Loop* loop) {
  const size_t index = loop->next++;
  if (loop->next == loop->count) {
    for (auto it = queue_.begin(); it != queue_.end(); ++it) {
      if (*it == loop) {
        queue_.erase(it);
        break;
      }
    }
  }
  return index;
}

void WorkerPool::Run(Loop* loop, size_t index) {
  (*loop->fn)(index);
  std::lock_guard<std::mutex> l(mu_);
  if (++loop->done == loop->count) loop->finished.notify_all();
}

void WorkerPool::WorkerMain() {
  std::unique_lock<std::mutex> l(mu_);
  for (;;) {
    work_.wait(l, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, and nothing left
    Loop* loop = queue_.front();
    const size_t index = Take(loop);
    l.unlock();
    Run(loop, index);
    l.lock();
  }
}

void WorkerPool::ParallelFor(size_t count, const std::function<void(size_t)>& fn) {
  if (count == 0) return;
  if (threads_.empty() || count == 1) {
    for (size_t i = 0; i < count; ++i) fn(i);
    return;
  }
  Loop loop;
  loop.count = count;
  loop.fn = &fn;
  std::unique_lock<std::mutex> l(mu_);
  queue_.push_back(&loop);
  work_.notify_all();
  // The caller works on its own loop until every index is handed out, then waits.
  while (loop.next < loop.count) {
    const size_t index = Take(&loop);
    l.unlock();
    Run(&loop, index);
    l.lock();
  }
  loop.finished.wait(l, [&] { return loop.done == loop.count; });
}

}  // namespace vmbackup
