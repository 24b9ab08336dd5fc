// The call and work counters of RGPU_CALL_STATS, printed at exit, largest time first.
#include "call_stats.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "cuda_functions.gen.hpp"
#include "cuda_wire.hpp"

namespace rgpu::cuda {

namespace {
struct CallCount {
  uint64_t waited = 0, pipelined = 0, nanoseconds = 0;
};
struct WorkCount {
  uint64_t times = 0, amount = 0;
};

const char* g_destination = [] {
  const char* value = std::getenv("RGPU_CALL_STATS");
  return value != nullptr && *value != '\0' ? value : nullptr;
}();
std::mutex g_mutex;  // guards what follows
std::map<uint32_t, CallCount>& calls() {
  static auto* value = new std::map<uint32_t, CallCount>;  // never destroyed: see api_state.hpp
  return *value;
}
std::map<std::string, WorkCount>& work() {
  static auto* value = new std::map<std::string, WorkCount>;  // never destroyed: see api_state.hpp
  return *value;
}

__attribute__((destructor)) void print_stats() {
  if (g_destination == nullptr) return;
  std::lock_guard lock(g_mutex);
  FILE* out = std::strcmp(g_destination, "1") == 0 ? stderr : std::fopen(g_destination, "a");
  if (out == nullptr) return;
  std::vector<std::pair<uint32_t, CallCount>> rows(calls().begin(), calls().end());
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.nanoseconds > b.second.nanoseconds; });
  std::fprintf(out, "RGPU call stats, process %d\n%-44s %10s %10s %12s %10s\n", static_cast<int>(::getpid()), "call",
               "waited", "pipelined", "waited ms", "mean us");
  for (const auto& [function, count] : rows) {
    const char* name = function_name(function) ?: rgpu_call_name(function);
    std::fprintf(out, "%-44s %10llu %10llu %12.3f %10.2f\n", name ? name : "?",
                 static_cast<unsigned long long>(count.waited), static_cast<unsigned long long>(count.pipelined),
                 static_cast<double>(count.nanoseconds) / 1e6,
                 count.waited ? static_cast<double>(count.nanoseconds) / 1e3 / static_cast<double>(count.waited) : 0.0);
  }
  for (const auto& [what, count] : work())
    std::fprintf(out, "%-44s %10llu times, %llu in all\n", what.c_str(), static_cast<unsigned long long>(count.times),
                 static_cast<unsigned long long>(count.amount));
  if (out != stderr) std::fclose(out);
}
}  // namespace

bool call_stats_enabled() { return g_destination != nullptr; }

void count_call(uint32_t function, bool waited, uint64_t nanoseconds) {
  if (g_destination == nullptr) return;
  std::lock_guard lock(g_mutex);
  CallCount& count = calls()[function];
  (waited ? count.waited : count.pipelined) += 1;
  count.nanoseconds += nanoseconds;
}

void count_work(const char* what, uint64_t amount) {
  if (g_destination == nullptr) return;
  std::lock_guard lock(g_mutex);
  WorkCount& count = work()[what];
  count.times += 1;
  count.amount += amount;
}

}  // namespace rgpu::cuda
