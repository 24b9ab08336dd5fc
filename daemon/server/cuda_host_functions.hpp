// Host functions of one CUDA session (cuLaunchHostFunc, cuStreamAddCallback, host nodes), which
// run in the application: the driver gets a function of the server's in their place, which tells
// the application's host function thread that the stream has reached its function, and holds the
// stream (the driver's callback thread) until the application answers that the function has run.
#pragma once

#include <cuda.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

namespace rgpu::cuda {

class HostFunctionRelay : public std::enable_shared_from_this<HostFunctionRelay> {
 public:
  // Answers one poll: its result and outputs (HostFunctionPollAnswer's bytes, or none).
  using Answer = std::function<void(CUresult result, std::vector<uint8_t> outputs)>;

  explicit HostFunctionRelay(std::string client) : client_(std::move(client)) {}

  // rgpu.LaunchHostFunction: the application's function `id` in stream order, through the driver
  // function `variant` names (cuLaunchHostFunc, cuStreamAddCallback or their _ptsz forms). Captured
  // into a graph, it runs at each of the graph's launches, as long as the graph lives.
  CUresult launch(uint32_t variant, CUstream stream, uint64_t id, uint32_t flags);
  // rgpu.GraphAddHostNode: a host node for the application's function `id`.
  CUresult add_graph_node(CUgraphNode& node, CUgraph graph, const std::vector<CUgraphNode>& dependencies, uint64_t id);

  // rgpu.HostFunctionPoll from the application's host function thread: `done` (0 for none) is
  // the reach it has finished. `answer` is called once: when a host function is reached or ids
  // are to be forgotten, or at once when the poll is refused.
  void poll(uint64_t done, Answer answer);
  // The session is over: every waiting host function returns, later ones return at once, and
  // waiting polls are dropped.
  void close();

  static constexpr size_t kMaxPolls = 16;

 private:
  // What the driver is given as userData: the application's id. A stream's host function is
  // freed once it ran (`once`); a graph's lives as long as the graph (a user object it holds).
  struct Record {
    std::shared_ptr<HostFunctionRelay> relay;
    uint64_t id;
    bool once;
  };
  static void CUDA_CB run_host_function(void* record);
  static void CUDA_CB run_stream_callback(CUstream stream, CUresult status, void* record);
  static void CUDA_CB forget_record(void* record);
  void keep_with_graph(Record* record, CUgraph graph);

  // On the driver's callback thread: tells the application and waits for its answer.
  void reached(uint64_t id, CUresult status, bool once);
  void forget(uint64_t id);
  // With mutex_ held: what can be answered now, to be sent once the lock is released.
  using Ready = std::vector<std::pair<Answer, std::vector<uint8_t>>>;
  Ready answers_due();
  static void send(Ready ready);

  struct Reach {
    uint64_t reach, id;
    CUresult status;
    bool once;
  };
  std::string client_;
  std::mutex mutex_;
  std::condition_variable finished_;  // a reach left `waiting_`, or the relay closed
  bool closed_ = false;
  uint64_t next_reach_ = 1;
  std::deque<Reach> reached_;        // not yet told to the application
  std::set<uint64_t> waiting_;       // reaches told or to be told, not yet done
  std::vector<uint64_t> forgotten_;  // ids to be forgotten, not yet told
  std::deque<Answer> polls_;
};

}  // namespace rgpu::cuda
