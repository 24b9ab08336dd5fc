// Frame codec throughput against a memcpy of the same size, on random and on compressible payloads.
// After the usual table, prints each operation's time as a multiple of the memcpy time.
#include <benchmark/benchmark.h>
#include <lz4.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "frame.hpp"

namespace {

using Bytes = std::vector<uint8_t>;

constexpr size_t kSizes[] = {64, 4 << 10, 64 << 10, 1 << 20, 16 << 20};

std::string size_name(size_t size) {
  if (size >= (1 << 20)) return std::to_string(size >> 20) + "M";
  if (size >= (1 << 10)) return std::to_string(size >> 10) + "K";
  return std::to_string(size);
}

Bytes random_data(size_t size) {
  std::mt19937_64 rng(42);
  Bytes out(size);
  for (auto& b : out) b = static_cast<uint8_t>(rng());
  return out;
}

// GPU-like buffer: floats, three of four zero, the rest from a small set of values.
Bytes sparse_floats(size_t size) {
  std::vector<float> values((size + 3) / 4, 0.0f);
  for (size_t i = 0; i < values.size(); i += 4) values[i] = static_cast<float>(i % 100) * 0.5f;
  Bytes out(size);
  std::memcpy(out.data(), values.data(), size);
  return out;
}

Bytes text(size_t size) {
  static constexpr std::string_view kLine = "2024-05-01 12:00:00 INFO cuLaunchKernel grid=(128,1,1) block=(256,1,1)\n";
  Bytes out(size);
  for (size_t i = 0; i < size; ++i) out[i] = static_cast<uint8_t>(kLine[i % kLine.size()]);
  return out;
}

struct DataKind {
  const char* name;
  Bytes (*make)(size_t);
};
constexpr DataKind kKinds[] = {{"random", random_data}, {"sparse_f32", sparse_floats}, {"text", text}};

void memcpy_baseline(benchmark::State& state, size_t size) {
  const Bytes src = random_data(size);
  Bytes dst(size);
  for (auto _ : state) {
    std::memcpy(dst.data(), src.data(), size);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * size));
}

void encode(benchmark::State& state, Bytes payload) {
  size_t wire_size = 0;
  for (auto _ : state) {
    Bytes wire = rgpu::encode_frame(0x101, 1, payload);
    wire_size = wire.size();
    benchmark::DoNotOptimize(wire.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * payload.size()));
  state.counters["ratio"] = static_cast<double>(payload.size()) / static_cast<double>(wire_size);
}

void decode(benchmark::State& state, Bytes payload) {
  const Bytes wire = rgpu::encode_frame(0x101, 1, payload);
  rgpu::FrameDecoder decoder;  // one per connection: its buffer is reused from frame to frame
  for (auto _ : state) {
    decoder.feed(wire);
    auto frame = decoder.next();
    if (!frame || frame->payload.size() != payload.size()) {
      state.SkipWithError("decode failed");
      break;
    }
    benchmark::DoNotOptimize(frame->payload.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * payload.size()));
}

void lz4_compress(benchmark::State& state, Bytes payload) {
  const int size = static_cast<int>(payload.size());
  std::vector<char> out(static_cast<size_t>(LZ4_compressBound(size)));
  int n = 0;
  for (auto _ : state) {
    n = LZ4_compress_default(reinterpret_cast<const char*>(payload.data()), out.data(), size,
                             static_cast<int>(out.size()));
    benchmark::DoNotOptimize(n);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * payload.size()));
  state.counters["ratio"] = static_cast<double>(size) / n;
}

void lz4_decompress(benchmark::State& state, Bytes payload) {
  const int size = static_cast<int>(payload.size());
  std::vector<char> block(static_cast<size_t>(LZ4_compressBound(size)));
  const int n = LZ4_compress_default(reinterpret_cast<const char*>(payload.data()), block.data(), size,
                                     static_cast<int>(block.size()));
  Bytes out(payload.size());
  for (auto _ : state) {
    const int got = LZ4_decompress_safe(block.data(), reinterpret_cast<char*>(out.data()), n, size);
    if (got != size) {
      state.SkipWithError("lz4 decompression failed");
      break;
    }
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * payload.size()));
}

void register_all() {
  for (size_t size : kSizes)
    benchmark::RegisterBenchmark(("memcpy/" + size_name(size)).c_str(), memcpy_baseline, size);
  using Fn = void (*)(benchmark::State&, Bytes);
  const std::pair<const char*, Fn> ops[] = {
      {"encode", encode}, {"decode", decode}, {"lz4_compress", lz4_compress}, {"lz4_decompress", lz4_decompress}};
  for (const auto& [op, fn] : ops)
    for (const DataKind& kind : kKinds)
      for (size_t size : kSizes) {
        const std::string name = std::string(op) + "/" + kind.name + "/" + size_name(size);
        benchmark::RegisterBenchmark(name.c_str(), fn, kind.make(size));
      }
}

// The console table, then every operation's time per call as a multiple of memcpy's for that size.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  RatioReporter() : ConsoleReporter(OO_Tabular) {}
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& run : runs)
      if (run.run_type == Run::RT_Iteration) seconds_[run.benchmark_name()] = run.GetAdjustedRealTime();
  }
  void Finalize() override {
    ConsoleReporter::Finalize();
    std::printf("\ntime relative to memcpy of the same size (1.0 = memcpy speed)\n%-28s", "");
    for (size_t size : kSizes) std::printf("%9s", size_name(size).c_str());
    std::printf("\n");
    for (const char* op : {"encode", "decode", "lz4_compress", "lz4_decompress"})
      for (const DataKind& kind : kKinds) {
        std::printf("%-28s", (std::string(op) + "/" + kind.name).c_str());
        for (size_t size : kSizes) {
          const auto base = seconds_.find("memcpy/" + size_name(size));
          const auto it = seconds_.find(std::string(op) + "/" + kind.name + "/" + size_name(size));
          if (base == seconds_.end() || it == seconds_.end()) std::printf("%9s", "-");
          else std::printf("%9.1f", it->second / base->second);
        }
        std::printf("\n");
      }
  }

 private:
  std::map<std::string, double> seconds_;
};

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  register_all();
  RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  return 0;
}
