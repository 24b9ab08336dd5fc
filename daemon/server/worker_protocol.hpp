// The control channel between the server's main process and one of its workers (a unix socket
// pair made at the worker's start; the worker's end is its file descriptor 3). Frames in the usual
// format; descriptors travel with SCM_RIGHTS.
//
//   main -> worker   WorkerStart (+ the token's memory budget memfd), first and once
//   worker -> main   WorkerReady, or Error (the worker could not start its session; it exits)
//   main -> worker   WorkerAdopt (+ a connection's socket), for the session's connection first,
//                    then for each bulk lane that joins it
//   main -> worker   WorkerPing, now and then; the worker's event loop answers WorkerPong (a
//                    worker that stops answering is ended as hung)
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "app_protocol.hpp"
#include "tls_rekey.hpp"

namespace rgpu {

inline constexpr uint16_t kMsgWorkerStart = 0x0E0;
inline constexpr uint16_t kMsgWorkerReady = 0x0E1;
inline constexpr uint16_t kMsgWorkerAdopt = 0x0E2;
inline constexpr uint16_t kMsgWorkerPing = 0x0E3;
inline constexpr uint16_t kMsgWorkerPong = 0x0E4;

// Bulk lanes a CUDA session takes at most (the main process refuses more; a worker takes no more).
inline constexpr size_t kMaxLanesPerSession = 16;

// The worker's descriptor for its end of the control channel.
inline constexpr int kWorkerControlFd = 3;

struct WorkerGpu {
  uint32_t index = 0;                // the server's index (GpuList)
  std::array<uint8_t, 16> uuid{};    // how the worker finds it among the devices it sees
  int32_t vulkan_ordinal = -1;       // vkEnumeratePhysicalDevices order (same in every process)
};

struct WorkerStartMsg {
  AppApi api = AppApi::Cuda;
  std::string client;  // for logs: "rgpu client from 10.0.0.2:41234 (token 'farm')"
  std::vector<WorkerGpu> gpus;  // index = the application's device ordinal
  uint32_t budget_slot = 0;     // the worker's counter in the token's memory budget
};

enum class WorkerRole : uint8_t { Session = 0, Lane = 1 };

struct WorkerAdoptMsg {
  WorkerRole role = WorkerRole::Session;
  bool rekey = false;  // TLS: the worker runs the second handshake with `psk` (tls_rekey.hpp)
  WorkerPsk psk{};
  std::vector<uint8_t> unread;  // plain connections: bytes the main process read past its last frame
};

std::vector<uint8_t> encode(const WorkerStartMsg&);
std::vector<uint8_t> encode(const WorkerAdoptMsg&);
// Each throws WireError naming the field that did not fit.
WorkerStartMsg decode_worker_start(std::span<const uint8_t>);
WorkerAdoptMsg decode_worker_adopt(std::span<const uint8_t>);

}  // namespace rgpu
