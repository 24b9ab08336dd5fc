// libFuzzer target: what the client daemon does with the bytes of an application (the app
// protocol, common/app_protocol.hpp), and what an application makes of the daemon's messages.
//
// Input: byte 0 picks how the rest is fed (bits 1-7: chunk size - 1) and which daemon takes it
// (bit 0: 0 a daemon with an empty pool, where every application gets a session without a server;
// 1 one whose pool has GPUs of a server that cannot be reached, so that CUDA_VISIBLE_DEVICES is
// chosen among them and the session then fails). The rest is the stream an application sends.
//
// 1. The stream goes through a FrameDecoder as the daemon's (ring frames allowed), and every frame
//    through the decoders of both ends (AppHello, AppAttach, RingRelease, SessionOpen; AppWelcome),
//    the CUDA_VISIBLE_DEVICES selection, and the RingSpec check, which is compared with the
//    same check in wider arithmetic.
// 2. The stream goes to a real client daemon (rgpu::client::ClientDaemon on a thread of this
//    process, listening on a unix socket). Every frame it answers must be well-formed and decode;
//    it must close the connection once the application has.
#include <algorithm>
#include <cstdint>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "app_protocol.hpp"
#include "client/client_daemon.hpp"
#include "client/visible_devices.hpp"
#include "frame.hpp"
#include "messages.hpp"
#include "nvml_snapshot.hpp"
#include "round_trip.hpp"
#include "socket_peer.hpp"
#include "target.hpp"
#include "wire.hpp"

namespace {

using namespace rgpu;
using fuzz::round_trip;

[[noreturn]] void fail(const char* what) { fuzz::fail("fuzz_app_protocol", what); }

constexpr uint64_t kRingSize = 1u << 20;

// Three CUDA GPUs (the pool of the daemon with a server), UUIDs sharing their first bytes.
std::vector<GpuInfo> pool_infos() {
  std::vector<GpuInfo> gpus(3);
  for (size_t i = 0; i < gpus.size(); ++i) {
    gpus[i].index = static_cast<uint32_t>(i);
    gpus[i].name = "gpu " + std::to_string(i);
    gpus[i].cuda = true;
    gpus[i].vulkan = i != 1;
    gpus[i].uuid.fill(0xab);
    gpus[i].uuid[15] = static_cast<uint8_t>(i);
  }
  return gpus;
}

void check_visible(std::span<const uint8_t> payload) {
  static const std::vector<GpuInfo> pool = pool_infos();
  const std::string value(payload.begin(), payload.end());
  const std::vector<size_t> chosen = client::select_visible(value, pool);
  std::set<size_t> seen;
  for (size_t position : chosen)
    if (position >= pool.size() || !seen.insert(position).second) fail("CUDA_VISIBLE_DEVICES chose a bad position");
}

void check_ring_spec(std::span<const uint8_t> payload) {
  if (payload.size() < sizeof(RingSpec)) return;
  RingSpec spec;
  std::memcpy(&spec, payload.data(), sizeof spec);
  const uint64_t inline_size = payload.size() - sizeof spec;
  for (uint64_t ring : {kRingSize, uint64_t{0}, ~uint64_t{0}, spec.in_offset}) {
    using Wide = unsigned __int128;
    const bool expected = Wide{spec.in_offset} + spec.in_length <= ring &&
                          Wide{spec.out_offset} + spec.out_capacity <= ring &&
                          Wide{inline_size} + spec.in_length <= kMaxFramePayload;
    if (ring_spec_fits(spec, ring, inline_size) != expected) fail("ring_spec_fits is wrong");
  }
}

void decode_in_process(std::span<const uint8_t> stream, size_t chunk) {
  FrameDecoder decoder(kMaxFramePayload, kFrameRing);
  try {
    for (size_t pos = 0; pos < stream.size(); pos += chunk) {
      decoder.feed(stream.subspan(pos, std::min(chunk, stream.size() - pos)));
      while (auto frame = decoder.next()) {
        const std::span<const uint8_t> payload = frame->payload;
        round_trip(payload, decode_app_hello);
        round_trip(payload, decode_app_attach);
        round_trip(payload, decode_ring_release);
        round_trip(payload, decode_session_open);
        round_trip(payload, decode_app_welcome, false);  // its GPU list's server id is not used
        check_visible(payload);
        if (frame->header.flags & kFrameRing) check_ring_spec(payload);
      }
    }
  } catch (const FrameError&) {
  }
}

// What the daemon may send an application must decode there.
void check_answer(const Frame& frame) {
  const std::span<const uint8_t> p = frame.payload;
  try {
    switch (frame.header.type) {
      case static_cast<uint16_t>(AppMsg::AppWelcome): decode_app_welcome(p); return;
      case static_cast<uint16_t>(AppMsg::RingRelease): decode_ring_release(p); return;
      case kMsgAppNvmlSnapshot: decode_nvml_snapshot(p); return;  // the answer to an NVML question
      case static_cast<uint16_t>(AppMsg::ServerGone):
      case static_cast<uint16_t>(MsgType::Error): decode_error(p); return;
      default: fail("the daemon sent a message of an unexpected type");
    }
  } catch (const WireError& e) {
    std::fprintf(stderr, "%s\n", e.what());
    fail("the daemon sent a message the application cannot decode");
  }
}

// An in-process client daemon listening on an abstract unix socket, never stopped.
class TestDaemon {
 public:
  explicit TestDaemon(bool with_server) : socket_(with_server ? "rgpu-fuzz-app-pool" : "rgpu-fuzz-app") {
    client::ClientDaemonSettings settings;
    if (with_server) {
      // Port 1 of this host: nobody listens there, the connection is refused at once.
      settings.servers.push_back(client::ServerTarget{.address = HostPort{"127.0.0.1", 1}, .tls = TlsMode::Off});
      for (const GpuInfo& info : pool_infos()) settings.pool.gpus.push_back(client::PoolGpu{info, 0});
    }
    const int fd = socket_.listen();
    if (fd < 0) fail("cannot listen on a unix socket");
    settings.listen_fd = fd;
    settings.ring_size = kRingSize;
    settings.bulk_lanes = 0;
    daemon_ = new client::ClientDaemon(std::move(settings));  // left running until the process exits
    daemon_->start();
    std::thread([daemon = daemon_] { daemon->run(); }).detach();
  }

  void talk(std::span<const uint8_t> stream, size_t chunk) {
    fuzz::exchange("fuzz_app_protocol", socket_, stream, chunk, kFrameRing, check_answer);
  }

 private:
  fuzz::AbstractSocket socket_;
  client::ClientDaemon* daemon_ = nullptr;
};

void write_seeds(const fuzz::Seeds& seeds) {
  auto type = [](AppMsg t) { return static_cast<uint16_t>(t); };
  const AppHelloMsg cuda{4242, "app", AppApi::Cuda, false, ""};
  const AppHelloMsg vulkan{4242, "vkcube", AppApi::Vulkan, false, ""};
  const AppHelloMsg visible{4242, "app", AppApi::Cuda, true, "2,GPU-abababab-abab,0,7"};
  std::vector<uint8_t> ring_call(sizeof(RingSpec) + 4, 0);
  const RingSpec spec{0, 16, 64, 128};
  std::memcpy(ring_call.data(), &spec, sizeof spec);
  const RingReleaseMsg release{kRingSize / 2, 16};
  // A session without a server: its calls are refused; ring frames and ring releases checked.
  seeds.write("hello-calls", fuzz::Stream(0x1e).frame(type(AppMsg::AppHello), encode(cuda))
                                 .frame(0x100, {1, 2, 3, 4}, 0, 1)
                                 .frame(0x100, ring_call, kFrameRing, 2)
                                 .frame(0x100, ring_call, kFrameRing | kFrameNoReply, 0)
                                 .frame(type(AppMsg::RingRelease), encode(release))
                                 .bytes());
  seeds.write("vulkan-hello", fuzz::Stream(0x00).frame(type(AppMsg::AppHello), encode(vulkan))
                                  .frame(type(AppMsg::RingRelease), encode(release)).bytes());
  // A pool with a server: CUDA_VISIBLE_DEVICES picks among its GPUs, then the server is not there.
  seeds.write("visible-devices", fuzz::Stream(0x01).frame(type(AppMsg::AppHello), encode(visible)).bytes());
  seeds.write("attach", fuzz::Stream(0x01).frame(type(AppMsg::AppAttach), encode(AppAttachMsg{1})).bytes());
  // What the daemon answers (the application's decoders).
  AppWelcomeMsg welcome;
  welcome.session_id = 3;
  welcome.ring_size = kRingSize;
  welcome.server = "gpu-host:9876";
  welcome.devices = pool_infos();
  welcome.notes = {"GPU 1 is on another server"};
  seeds.write("welcome", fuzz::Stream(0x00).frame(type(AppMsg::AppWelcome), encode(welcome)).bytes());
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::initialize(write_seeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  static TestDaemon empty(false), with_server(true);
  const size_t chunk = (data[0] >> 1) + 1u;
  const std::span<const uint8_t> stream(data + 1, size - 1);
  decode_in_process(stream, chunk);
  (data[0] & 1 ? with_server : empty).talk(stream, chunk);
  return 0;
}
