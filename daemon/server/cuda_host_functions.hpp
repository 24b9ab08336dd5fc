// Host functions of one CUDA session (cuLaunchHostFunc, cuStreamAddCallback, host nodes), which
// run in the application: the driver gets a function of the server's in their place, which tells
// the application's host function thread that the stream has reached its function, and holds the
// stream (the driver's callback thread) until the application answers that the function has run.
#pragma once

#include <cuda.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "cuda_wire.hpp"

namespace rgpu::cuda {

// The graph `stream` is capturing into, or nullptr when it is not capturing.
CUgraph capture_graph(CUstream stream);

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
  // cuGraphHostNodeGetParams: the application's id of the function a host node runs.
  CUresult node_function(CUgraphNode node, uint64_t& id);
  // cuGraphHostNodeSetParams (exec null) and cuGraphExecHostNodeSetParams: the node (of that
  // executable graph only) runs the application's function `id` from its next launch on. The
  // new record lives as long as the one the node had first (the graph and every executable graph
  // made from it hold that one).
  CUresult set_node_function(bool in_exec, CUgraphExec exec, CUgraphNode node, uint64_t id);
  // A captured copy's host end: a host function of the server's on the capturing `stream` that,
  // at each launch of `graph`, sends `size` bytes of `staging` to the application's `address`
  // (WriteToHost) or fills `staging` from there (ReadFromHost). The staging memory (from
  // cuMemHostAlloc) is the graph's from then on, whatever the result, and is handed to
  // take_released_staging() once the graph is gone.
  CUresult capture_copy(HostFunctionKind kind, CUstream stream, CUgraph graph, uint64_t address, void* staging,
                        uint64_t size);
  // Staging memory of captured copies whose graphs are gone, for the caller to free (the driver's
  // user object destructors may not call CUDA).
  std::vector<void*> take_released_staging();
  // Whether `bytes` more staging fits kMaxCapturedStaging; counts it when it does.
  bool reserve_staging(uint64_t bytes);
  void unreserve_staging(uint64_t bytes);
  static constexpr uint64_t kMaxCapturedStaging = uint64_t{1} << 30;

  // rgpu.HostFunctionPoll from the application's host function thread: `done` (0 for none) is
  // the reach it has finished, `bytes` what it read for a ReadFromHost one. `answer` is called
  // once: when a host function is reached or ids are to be forgotten, or at once when the poll is
  // refused.
  void poll(uint64_t done, std::span<const uint8_t> bytes, Answer answer);
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
    HostFunctionKind kind = HostFunctionKind::Application;
    uint64_t address = 0;  // a captured copy's: the application's host memory, its staging
    void* staging = nullptr;
    uint64_t size = 0;
    // Records set into this one's node later (freed with it, under mutex_); null in those.
    std::vector<Record*> successors = {};
    Record* root = nullptr;
  };
  static void CUDA_CB run_host_function(void* record);
  static void CUDA_CB run_stream_callback(CUstream stream, CUresult status, void* record);
  static void CUDA_CB forget_record(void* record);
  void keep_with_graph(Record* record, CUgraph graph);
  // The record of the application's function a host node runs, returned with `lock` (of mutex_)
  // taken; null, with `result` saying why, when the driver does not answer or the node holds none
  // of this relay's live records or one of a captured copy (logged).
  Record* node_record(CUgraphNode node, std::unique_lock<std::mutex>& lock, CUresult& result);

  // On the driver's callback thread: tells the application and waits for its answer.
  void reached(const Record& record, CUresult status);
  void forget(uint64_t id);
  // With mutex_ held: what can be answered now, to be sent once the lock is released.
  using Ready = std::vector<std::pair<Answer, std::vector<uint8_t>>>;
  Ready answers_due();
  static void send(Ready ready);

  struct Reach {
    uint64_t reach, id;
    CUresult status;
    bool once;
    const Record* copy = nullptr;  // a captured copy's record (it lives while its graph runs)
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
  std::map<uint64_t, const Record*> reading_;  // ReadFromHost reaches told, by reach
  std::set<const void*> graph_records_;        // records graphs hold, until their user object goes
  uint64_t next_copy_id_ = kServerHostFunctionIds;
  std::vector<void*> released_staging_;
  std::atomic<bool> any_released_{false};  // released_staging_ is not empty (read without the lock)
  uint64_t staging_bytes_ = 0;
};

}  // namespace rgpu::cuda
