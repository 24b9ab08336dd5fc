#include "nvml_snapshot.hpp"

#include "messages.hpp"
#include "wire.hpp"

namespace rgpu {

namespace {
constexpr uint32_t kMaxFields = 256;  // values or texts of one kind, however many a newer sender knows

void put(WireWriter& w, const NvmlNumber& n) { w.put(n.result).put(n.value); }
void put(WireWriter& w, const NvmlString& s) { w.put(s.result).str(s.text); }
void get(WireReader& r, NvmlNumber& n) {
  n.result = r.get<int32_t>();
  n.value = r.get<uint64_t>();
}
void get(WireReader& r, NvmlString& s) {
  s.result = r.get<int32_t>();
  s.text = r.str(kMaxNameLength);
}

template <typename Field, size_t N>
void put_fields(WireWriter& w, const std::array<Field, N>& fields) {
  w.put<uint32_t>(static_cast<uint32_t>(N));
  for (const Field& field : fields) put(w, field);
}

template <typename Field, size_t N>
void get_fields(WireReader& r, std::array<Field, N>& fields, const char* what) {
  const uint32_t count = r.get<uint32_t>();
  if (count > kMaxFields)
    throw WireError(std::string("NvmlSnapshot: ") + std::to_string(count) + " " + what + " is over the limit");
  for (uint32_t i = 0; i < count; ++i) {
    Field field;
    get(r, field);
    if (i < N) fields[i] = std::move(field);
  }
}
}  // namespace

std::vector<uint8_t> encode(const NvmlSnapshotMsg& m) {
  WireWriter w;
  put_fields(w, m.system);
  put(w, m.cuda_driver_version);
  w.put<uint32_t>(static_cast<uint32_t>(m.gpus.size()));
  for (const NvmlGpu& gpu : m.gpus) {
    w.put(gpu.gpu_index);
    put_fields(w, gpu.values);
    put_fields(w, gpu.texts);
    w.put<uint32_t>(static_cast<uint32_t>(gpu.processes.size()));
    for (const NvmlProcess& p : gpu.processes) w.put(p.owner).put(p.used_memory).put<uint8_t>(p.graphics ? 1 : 0);
  }
  return w.take();
}

NvmlSnapshotMsg decode_nvml_snapshot(std::span<const uint8_t> data) {
  WireReader r(data, "NvmlSnapshot");
  NvmlSnapshotMsg m;
  get_fields(r, m.system, "system texts");
  get(r, m.cuda_driver_version);
  const uint32_t gpus = r.get<uint32_t>();
  if (gpus > kMaxNvmlGpus) throw WireError("NvmlSnapshot: " + std::to_string(gpus) + " GPUs is over the limit");
  for (uint32_t i = 0; i < gpus; ++i) {
    NvmlGpu gpu;
    gpu.gpu_index = r.get<uint32_t>();
    get_fields(r, gpu.values, "values");
    get_fields(r, gpu.texts, "texts");
    const uint32_t processes = r.get<uint32_t>();
    if (processes > kMaxNvmlProcesses)
      throw WireError("NvmlSnapshot: " + std::to_string(processes) + " processes on one GPU is over the limit");
    for (uint32_t j = 0; j < processes; ++j) {
      NvmlProcess p;
      p.owner = r.get<uint64_t>();
      p.used_memory = r.get<uint64_t>();
      const uint8_t graphics = r.get<uint8_t>();
      if (graphics > 1) throw WireError("NvmlSnapshot: boolean field holds " + std::to_string(graphics));
      p.graphics = graphics == 1;
      gpu.processes.push_back(p);
    }
    m.gpus.push_back(std::move(gpu));
  }
  r.expect_end();
  return m;
}

std::vector<uint8_t> encode(const NvmlQueryMsg& m) {
  WireWriter w;
  w.put<uint32_t>(static_cast<uint32_t>(m.session_keys.size()));
  for (uint64_t key : m.session_keys) w.put(key);
  return w.take();
}

NvmlQueryMsg decode_nvml_query(std::span<const uint8_t> data) {
  WireReader r(data, "NvmlQuery");
  NvmlQueryMsg m;
  const uint32_t count = r.get<uint32_t>();
  if (count > kMaxNvmlQueryKeys) throw WireError("NvmlQuery: " + std::to_string(count) + " session keys is over the limit");
  for (uint32_t i = 0; i < count; ++i) m.session_keys.push_back(r.get<uint64_t>());
  r.expect_end();
  return m;
}

}  // namespace rgpu
