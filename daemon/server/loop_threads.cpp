#include "loop_threads.hpp"

namespace rgpu {

LoopThreads::LoopThreads(size_t count) {
  for (size_t i = 0; i < count; ++i) loops_.push_back(std::make_shared<EventLoop>());
  for (auto& loop : loops_) threads_.emplace_back([loop = loop.get()] { loop->run(); });
}

LoopThreads::~LoopThreads() {
  for (auto& loop : loops_) loop->stop();
  for (auto& thread : threads_) thread.join();
}

std::shared_ptr<EventLoop> LoopThreads::next() { return loops_[next_++ % loops_.size()]; }

}  // namespace rgpu
