#include "pool.hpp"

#include <algorithm>

#include "log.hpp"
#include "wire.hpp"

namespace rgpu::client {

void order_pool(std::vector<PoolGpu>& gpus, GpuOrdering ordering) {
  if (ordering != GpuOrdering::ByCapability) return;
  std::stable_sort(gpus.begin(), gpus.end(), [](const PoolGpu& a, const PoolGpu& b) {
    return std::tie(a.info.compute_major, a.info.compute_minor) > std::tie(b.info.compute_major, b.info.compute_minor);
  });
}

Pool build_pool(std::vector<ServerTarget>& targets, GpuOrdering ordering) {
  Pool pool;
  for (size_t i = 0; i < targets.size(); ++i) {
    ServerTarget& target = targets[i];
    SessionOptions options = target.session_options("rgpu client");
    try {
      auto session = Session::connect(options);
      GpuListMsg list = decode_gpu_list(session->call(MsgType::ListGpus).payload);
      size_t cuda = 0, vulkan = 0;
      for (auto& gpu : list.gpus) {
        if (!gpu.cuda && !gpu.vulkan) continue;
        pool.gpus.push_back(PoolGpu{gpu, i});
        cuda += gpu.cuda ? 1 : 0;
        vulkan += gpu.vulkan ? 1 : 0;
      }
      LOG_INFO("server %s: %zu GPU(s), %zu with CUDA, %zu with Vulkan%s", target.address.to_string().c_str(),
               list.gpus.size(), cuda, vulkan, session->encrypted() ? "" : " (connection NOT encrypted)");
      if (target.tls == TlsMode::Auto) target.tls = session->encrypted() ? TlsMode::On : TlsMode::Off;
    } catch (const std::exception& e) {
      pool.notes.push_back("server " + target.address.to_string() + " left out of the pool: " + e.what());
      LOG_WARN("%s", pool.notes.back().c_str());
    }
  }
  order_pool(pool.gpus, ordering);
  return pool;
}

}  // namespace rgpu::client
