# NVML as programs use it (ctypes on libnvidia-ml.so.1, as pynvml does; pynvml too where it is
# installed), with device memory held by this process through CUDA: prints what must read the
# same natively and through RGPU (names, UUIDs, memory totals, PCI ids, versions, whether this
# process is listed with memory), and nothing that changes from run to run.
import ctypes
import os

cuda = ctypes.CDLL("libcuda.so.1")
assert cuda.cuInit(0) == 0
context = ctypes.c_void_p()
pointer = ctypes.c_uint64()
assert cuda.cuDevicePrimaryCtxRetain(ctypes.byref(context), 0) == 0
assert cuda.cuCtxSetCurrent(context) == 0
assert cuda.cuMemAlloc_v2(ctypes.byref(pointer), ctypes.c_size_t(256 << 20)) == 0

nvml = ctypes.CDLL("libnvidia-ml.so.1")


def check(result, what):
    if result != 0:
        nvml.nvmlErrorString.restype = ctypes.c_char_p
        raise SystemExit(f"{what}: {nvml.nvmlErrorString(result).decode()} ({result})")


class Memory(ctypes.Structure):
    _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]


class MemoryV2(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint), ("total", ctypes.c_ulonglong), ("reserved", ctypes.c_ulonglong),
                ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]


class PciInfo(ctypes.Structure):
    _fields_ = [("busIdLegacy", ctypes.c_char * 16), ("domain", ctypes.c_uint), ("bus", ctypes.c_uint),
                ("device", ctypes.c_uint), ("pciDeviceId", ctypes.c_uint), ("pciSubSystemId", ctypes.c_uint),
                ("busId", ctypes.c_char * 32)]


class ProcessInfo(ctypes.Structure):
    _fields_ = [("pid", ctypes.c_uint), ("usedGpuMemory", ctypes.c_ulonglong), ("gpuInstanceId", ctypes.c_uint),
                ("computeInstanceId", ctypes.c_uint)]


check(nvml.nvmlInit_v2(), "nvmlInit_v2")
text = ctypes.create_string_buffer(96)
check(nvml.nvmlSystemGetDriverVersion(text, 96), "nvmlSystemGetDriverVersion")
print("driver", text.value.decode())
version = ctypes.c_int()
check(nvml.nvmlSystemGetCudaDriverVersion_v2(ctypes.byref(version)), "nvmlSystemGetCudaDriverVersion_v2")
print("cuda driver", version.value)
count = ctypes.c_uint()
check(nvml.nvmlDeviceGetCount_v2(ctypes.byref(count)), "nvmlDeviceGetCount_v2")
print("devices", count.value)
for index in range(count.value):
    device = ctypes.c_void_p()
    check(nvml.nvmlDeviceGetHandleByIndex_v2(index, ctypes.byref(device)), "nvmlDeviceGetHandleByIndex_v2")
    check(nvml.nvmlDeviceGetName(device, text, 96), "nvmlDeviceGetName")
    name = text.value.decode()
    check(nvml.nvmlDeviceGetUUID(device, text, 96), "nvmlDeviceGetUUID")
    uuid = text.value.decode()
    again = ctypes.c_void_p()
    check(nvml.nvmlDeviceGetHandleByUUID(uuid.encode(), ctypes.byref(again)), "nvmlDeviceGetHandleByUUID")
    pci = PciInfo()
    check(nvml.nvmlDeviceGetPciInfo_v3(device, ctypes.byref(pci)), "nvmlDeviceGetPciInfo_v3")
    memory = Memory()
    check(nvml.nvmlDeviceGetMemoryInfo(device, ctypes.byref(memory)), "nvmlDeviceGetMemoryInfo")
    memory2 = MemoryV2(version=ctypes.sizeof(MemoryV2) | (2 << 24))
    check(nvml.nvmlDeviceGetMemoryInfo_v2(device, ctypes.byref(memory2)), "nvmlDeviceGetMemoryInfo_v2")
    major, minor = ctypes.c_int(), ctypes.c_int()
    check(nvml.nvmlDeviceGetCudaComputeCapability(device, ctypes.byref(major), ctypes.byref(minor)),
          "nvmlDeviceGetCudaComputeCapability")
    print(f"device {index}: {name} {uuid} bus {pci.busId.decode()} id {pci.pciDeviceId:#x} "
          f"compute {major.value}.{minor.value} same handle by UUID {again.value == device.value}")
    print(f"  memory total {memory.total} (v2 {memory2.total}, reserved {memory2.reserved})")
    processes = (ProcessInfo * 64)()
    listed = ctypes.c_uint(64)
    check(nvml.nvmlDeviceGetComputeRunningProcesses_v3(device, ctypes.byref(listed), processes),
          "nvmlDeviceGetComputeRunningProcesses_v3")
    mine = [p for p in processes[:listed.value] if p.pid == os.getpid()]
    if index == 0:
        print("  this process listed with at least 256 MiB:", bool(mine) and mine[0].usedGpuMemory >= 256 << 20)

try:
    import pynvml
except ImportError:
    print("pynvml: not installed")
else:
    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    print("pynvml:", pynvml.nvmlDeviceGetName(handle), pynvml.nvmlDeviceGetMemoryInfo(handle).total)
    pynvml.nvmlShutdown()
check(nvml.nvmlShutdown(), "nvmlShutdown")
