#include "event_loop.hpp"

#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>
#include <string>

#include "log.hpp"

namespace rgpu {

struct EventLoop::Operation {
  Handler handler;
  __kernel_timespec timeout{};  // kept alive until a timeout operation completes
};

EventLoop::Operation* EventLoop::track(Handler handler) {
  auto* op = new Operation{std::move(handler)};
  in_flight_.insert(op);
  return op;
}

EventLoop::EventLoop(unsigned entries) {
  int rc = io_uring_queue_init(entries, &ring_, 0);
  if (rc < 0) throw std::runtime_error(std::string("io_uring_queue_init failed: ") + std::strerror(-rc));
  wakeup_fd_ = UniqueFd(::eventfd(0, EFD_CLOEXEC));
  if (!wakeup_fd_) throw std::runtime_error(std::string("eventfd failed: ") + std::strerror(errno));
  arm_wakeup();
}

EventLoop::~EventLoop() {
  io_uring_queue_exit(&ring_);
  for (Operation* op : in_flight_) delete op;
}

io_uring_sqe* EventLoop::next_sqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (sqe == nullptr) {
    io_uring_submit(&ring_);
    sqe = io_uring_get_sqe(&ring_);
  }
  if (sqe == nullptr) throw std::runtime_error("io_uring submission queue is full");
  return sqe;
}

void EventLoop::submit_with(io_uring_sqe* sqe, Handler handler) {
  io_uring_sqe_set_data(sqe, track(std::move(handler)));
}

void EventLoop::accept(int listen_fd, Handler handler) {
  io_uring_sqe* sqe = next_sqe();
  io_uring_prep_accept(sqe, listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
  submit_with(sqe, std::move(handler));
}

void EventLoop::recv(int fd, std::span<uint8_t> buffer, Handler handler) {
  io_uring_sqe* sqe = next_sqe();
  io_uring_prep_recv(sqe, fd, buffer.data(), buffer.size(), 0);
  submit_with(sqe, std::move(handler));
}

void EventLoop::send(int fd, std::span<const uint8_t> data, Handler handler) {
  io_uring_sqe* sqe = next_sqe();
  io_uring_prep_send(sqe, fd, data.data(), data.size(), MSG_NOSIGNAL);
  submit_with(sqe, std::move(handler));
}

void EventLoop::sendmsg(int fd, const msghdr* message, Handler handler) {
  io_uring_sqe* sqe = next_sqe();
  io_uring_prep_sendmsg(sqe, fd, message, MSG_NOSIGNAL);
  submit_with(sqe, std::move(handler));
}

void EventLoop::poll(int fd, short events, Handler handler) {
  io_uring_sqe* sqe = next_sqe();
  io_uring_prep_poll_add(sqe, fd, static_cast<unsigned>(events));
  submit_with(sqe, std::move(handler));
}

void EventLoop::after(std::chrono::milliseconds delay, Handler handler) {
  Operation* op = track(std::move(handler));
  op->timeout.tv_sec = delay.count() / 1000;
  op->timeout.tv_nsec = (delay.count() % 1000) * 1000000;
  io_uring_sqe* sqe = next_sqe();
  io_uring_prep_timeout(sqe, &op->timeout, 0, 0);
  io_uring_sqe_set_data(sqe, op);
}

void EventLoop::arm_wakeup() {
  io_uring_sqe* sqe = next_sqe();
  io_uring_prep_read(sqe, wakeup_fd_.get(), &wakeup_value_, sizeof wakeup_value_, 0);
  submit_with(sqe, [this](int res) {
    if (res < 0 && res != -EINTR) LOG_ERROR("event loop wakeup read failed: %s", std::strerror(-res));
    run_posted();
    if (!stopping_) arm_wakeup();
  });
}

void EventLoop::post(std::function<void()> work) {
  {
    std::lock_guard lock(posted_mutex_);
    posted_.push_back(std::move(work));
    has_posted_.store(true, std::memory_order_release);
  }
  uint64_t one = 1;
  if (::write(wakeup_fd_.get(), &one, sizeof one) != sizeof one)
    LOG_ERROR("event loop wakeup write failed: %s", std::strerror(errno));
}

void EventLoop::run_posted() {
  std::vector<std::function<void()>> work;
  {
    std::lock_guard lock(posted_mutex_);
    work.swap(posted_);
    has_posted_.store(false, std::memory_order_relaxed);
  }
  for (auto& item : work) item();
}

void EventLoop::stop() {
  post([this] { stopping_ = true; });
}

// A request's answer, or an application's next call, usually follows within microseconds of the
// work just done: looking for it a little while spares the wake-up latency of sleeping. Posted
// work found here runs at once (its wake-up completion then finds nothing left).
bool EventLoop::poll_briefly() {
  constexpr auto kBusyPoll = std::chrono::microseconds(50);
  io_uring_submit(&ring_);
  const auto until = std::chrono::steady_clock::now() + kBusyPoll;
  io_uring_cqe* cqe = nullptr;
  do {
    if (io_uring_peek_cqe(&ring_, &cqe) == 0) return true;
    if (has_posted_.load(std::memory_order_acquire)) {
      run_posted();
      return true;
    }
  } while (std::chrono::steady_clock::now() < until);
  return false;
}

void EventLoop::run() {
  stopping_ = false;
  while (!stopping_) {
    if (!poll_briefly()) io_uring_submit_and_wait(&ring_, 1);
    if (stopping_) break;
    io_uring_cqe* cqe = nullptr;
    unsigned head = 0;
    unsigned seen = 0;
    completed_.clear();
    io_uring_for_each_cqe(&ring_, head, cqe) {
      completed_.emplace_back(static_cast<Operation*>(io_uring_cqe_get_data(cqe)), cqe->res);
      ++seen;
    }
    io_uring_cq_advance(&ring_, seen);
    for (auto [op, res] : completed_) {
      if (op == nullptr) continue;
      in_flight_.erase(op);
      op->handler(res);
      delete op;
    }
  }
}

}  // namespace rgpu
