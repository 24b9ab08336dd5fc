// A CUDA runtime program with host functions and stream callbacks (cudaLaunchHostFunc,
// cudaStreamAddCallback) between kernels and copies on two streams, a host function that waits
// for the other stream through an event, and host functions captured into a graph launched twice.
// The kernels carry the names and parameters of the CUDA driver test double's kernels, so that
// on the double and on a GPU the program prints the same lines. Exits 0 only when every result is
// right.
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "../gpu/programs/check.cuh"

extern "C" __global__ void fill_u32(unsigned* p, unsigned value, unsigned long long n) {
  for (unsigned long long i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) p[i] = value;
}

extern "C" __global__ void scale_f32(float* p, float s, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) p[i] *= s;
}

constexpr int kN = 1 << 20;
constexpr int kRounds = 3;
std::atomic<int> g_next{0};  // the order host functions ran in, across both streams

// What one host function saw: the sum of the host buffer its stream copied into before it.
struct Seen {
  const float* host = nullptr;
  double sum = 0;
  int order = -1;
  cudaError_t status = cudaErrorUnknown;
  cudaStream_t stream = nullptr;
  bool told_its_stream = false;
};

void CUDART_CB sum_function(void* data) {
  auto* seen = static_cast<Seen*>(data);
  double sum = 0;
  for (int i = 0; i < kN; ++i) sum += seen->host[i];
  seen->sum = sum;
  seen->order = g_next++;
}

void CUDART_CB sum_callback(cudaStream_t stream, cudaError_t status, void* data) {
  auto* seen = static_cast<Seen*>(data);
  seen->status = status;
  seen->told_its_stream = stream == seen->stream;
  sum_function(data);
}

struct After {
  const Seen* other;
  bool other_had_run = false;
};
void CUDART_CB check_other(void* data) {
  auto* after = static_cast<After*>(data);
  after->other_had_run = after->other->order >= 0;
}

void CUDART_CB count(void* data) { ++*static_cast<int*>(data); }

unsigned bits_of(float value) {
  unsigned bits;
  std::memcpy(&bits, &value, sizeof bits);
  return bits;
}

int main() {
  CHECK(cudaSetDevice(0));
  const unsigned blocks = (kN + 255) / 256;
  cudaStream_t streams[2];
  float* device[2];
  float* host[2][2];
  for (int s = 0; s < 2; ++s) {
    CHECK(cudaStreamCreateWithFlags(&streams[s], cudaStreamNonBlocking));
    CHECK(cudaMalloc(&device[s], kN * sizeof(float)));
    for (auto& buffer : host[s]) CHECK(cudaMallocHost(&buffer, kN * sizeof(float)));
  }
  // Per round and stream: fill, copy back, a host function reads the copy; scale, copy back, a
  // stream callback reads that copy.
  static Seen seen[kRounds][2][2];
  for (int round = 0; round < kRounds; ++round)
    for (int s = 0; s < 2; ++s) {
      const float value = 1000.0f * s + round + 1;
      Seen* mine = seen[round][s];
      fill_u32<<<blocks, 256, 0, streams[s]>>>(reinterpret_cast<unsigned*>(device[s]), bits_of(value), kN);
      CHECK(cudaGetLastError());
      CHECK(cudaMemcpyAsync(host[s][0], device[s], kN * sizeof(float), cudaMemcpyDeviceToHost, streams[s]));
      mine[0].host = host[s][0];
      CHECK(cudaLaunchHostFunc(streams[s], sum_function, &mine[0]));
      scale_f32<<<blocks, 256, 0, streams[s]>>>(device[s], 3.0f, kN);
      CHECK(cudaGetLastError());
      CHECK(cudaMemcpyAsync(host[s][1], device[s], kN * sizeof(float), cudaMemcpyDeviceToHost, streams[s]));
      mine[1].host = host[s][1];
      mine[1].stream = streams[s];
      CHECK(cudaStreamAddCallback(streams[s], sum_callback, &mine[1], 0));
    }
  // Stream 1's last host function waits for stream 0's last callback through an event.
  cudaEvent_t done0;
  CHECK(cudaEventCreateWithFlags(&done0, cudaEventDisableTiming));
  CHECK(cudaEventRecord(done0, streams[0]));
  CHECK(cudaStreamWaitEvent(streams[1], done0, 0));
  After after{&seen[kRounds - 1][0][1]};
  CHECK(cudaLaunchHostFunc(streams[1], check_other, &after));
  for (cudaStream_t stream : streams) CHECK(cudaStreamSynchronize(stream));

  bool all_ok = true;
  for (int round = 0; round < kRounds; ++round)
    for (int s = 0; s < 2; ++s) {
      const Seen* mine = seen[round][s];
      const double value = 1000.0 * s + round + 1;
      const bool ok = mine[0].sum == value * kN && mine[1].sum == 3 * value * kN && mine[1].status == cudaSuccess &&
                      mine[1].told_its_stream && mine[0].order < mine[1].order &&
                      (round == 0 || seen[round - 1][s][1].order < mine[0].order);
      all_ok = all_ok && ok;
      std::printf("round %d stream %d: function sum=%.0f, callback sum=%.0f status=%s, in stream order: %s\n", round, s,
                  mine[0].sum, mine[1].sum, cudaGetErrorName(mine[1].status), ok ? "ok" : "wrong");
    }
  std::printf("stream 1 waited for stream 0's callback: %s\n", after.other_had_run ? "yes" : "no");
  all_ok = all_ok && after.other_had_run;

  // Captured host functions run at each launch of the graph, between its kernels.
  static int runs[2] = {};
  CHECK(cudaStreamBeginCapture(streams[0], cudaStreamCaptureModeRelaxed));
  fill_u32<<<blocks, 256, 0, streams[0]>>>(reinterpret_cast<unsigned*>(device[0]), bits_of(7.0f), kN);
  CHECK(cudaLaunchHostFunc(streams[0], count, &runs[0]));
  scale_f32<<<blocks, 256, 0, streams[0]>>>(device[0], 5.0f, kN);
  CHECK(cudaLaunchHostFunc(streams[0], count, &runs[1]));
  cudaGraph_t graph;
  CHECK(cudaStreamEndCapture(streams[0], &graph));
  const bool none_at_capture = runs[0] == 0 && runs[1] == 0;
  cudaGraphExec_t exec;
  CHECK(cudaGraphInstantiateWithFlags(&exec, graph, 0));
  CHECK(cudaGraphDestroy(graph));  // the executable graph keeps what it needs
  for (int launch = 0; launch < 2; ++launch) CHECK(cudaGraphLaunch(exec, streams[0]));
  CHECK(cudaMemcpyAsync(host[0][0], device[0], kN * sizeof(float), cudaMemcpyDeviceToHost, streams[0]));
  CHECK(cudaStreamSynchronize(streams[0]));
  double sum = 0;
  for (int i = 0; i < kN; ++i) sum += host[0][0][i];
  const bool graph_ok = none_at_capture && runs[0] == 2 && runs[1] == 2 && sum == 35.0 * kN;
  std::printf("graph: host functions ran %d and %d times, sum=%.0f %s\n", runs[0], runs[1], sum,
              graph_ok ? "ok" : "wrong");
  all_ok = all_ok && graph_ok;
  CHECK(cudaGraphExecDestroy(exec));

  CHECK(cudaEventDestroy(done0));
  for (int s = 0; s < 2; ++s) {
    CHECK(cudaStreamDestroy(streams[s]));
    CHECK(cudaFree(device[s]));
    for (auto* buffer : host[s]) CHECK(cudaFreeHost(buffer));
  }
  std::printf("host functions %s\n", all_ok ? "ok" : "wrong");
  return all_ok ? 0 : 1;
}
