// A fixed pool of worker threads running index-parallel loops.
//
// Determinism contract: parallel_for only decides WHICH thread computes task i, never how a
// task computes. Callers split work into tasks whose results do not depend on the number of
// threads (each output written by exactly one task, reductions inside one task), so results
// are bitwise identical for any number of threads.
//
// Hand-off: a training step runs hundreds of short loops back to back. Waking a sleeping
// thread through the kernel takes tens of microseconds, often longer than a loop's share of
// work, so the caller would finish most loops alone. Workers and the caller therefore spin
// briefly (kSpinMicros) on an atomic before sleeping on a condition variable, as OpenMP
// runtimes do; the spin is bounded, so an idle pool costs nothing.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace temper {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Runs fn(task, thread_index) for task in [0, tasks). The calling thread takes part and
  // has thread_index 0. Returns when every task is done. Exceptions from tasks are
  // rethrown (the first one) on the calling thread.
  void parallel_for(std::size_t tasks, const std::function<void(std::size_t, int)>& fn);

 private:
  void worker_loop(int index);
  void run_tasks(int index);

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  // Written by parallel_for before it publishes a new generation (release); read by workers
  // after they see it (acquire).
  const std::function<void(std::size_t, int)>* job_ = nullptr;
  std::size_t job_tasks_ = 0;
  std::atomic<std::size_t> next_task_{0};
  std::atomic<int> active_workers_{0};
  std::atomic<unsigned long> generation_{0};
  std::atomic<bool> stopping_{false};
  std::exception_ptr error_;  // guarded by mutex_
};

}  // namespace temper
