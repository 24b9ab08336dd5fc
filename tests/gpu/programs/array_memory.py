# A CUDA array's memory in NVML's per-process count (what max_memory's meter reads): counted while
# the array lives and gone once it is destroyed, natively and through RGPU (whose NVML view may be
# up to half a second old, hence the polls). Prints only what must read the same.
import ctypes
import os
import sys
import time

ARRAY_BYTES = 256 << 20

cuda = ctypes.CDLL("libcuda.so.1")
nvml = ctypes.CDLL("libnvidia-ml.so.1")


def check(result, what):
    if result != 0:
        raise SystemExit(f"{what} failed ({result})")


class ArrayDescriptor(ctypes.Structure):
    _fields_ = [("Width", ctypes.c_size_t), ("Height", ctypes.c_size_t), ("Format", ctypes.c_int),
                ("NumChannels", ctypes.c_uint)]


class ProcessInfo(ctypes.Structure):
    _fields_ = [("pid", ctypes.c_uint), ("usedGpuMemory", ctypes.c_ulonglong), ("gpuInstanceId", ctypes.c_uint),
                ("computeInstanceId", ctypes.c_uint)]


check(cuda.cuInit(0), "cuInit")
context = ctypes.c_void_p()
check(cuda.cuDevicePrimaryCtxRetain(ctypes.byref(context), 0), "cuDevicePrimaryCtxRetain")
check(cuda.cuCtxSetCurrent(context), "cuCtxSetCurrent")
uuid = (ctypes.c_ubyte * 16)()
check(cuda.cuDeviceGetUuid_v2(uuid, 0), "cuDeviceGetUuid_v2")
hexes = bytes(uuid).hex()
uuid_text = f"GPU-{hexes[:8]}-{hexes[8:12]}-{hexes[12:16]}-{hexes[16:20]}-{hexes[20:]}"

check(nvml.nvmlInit_v2(), "nvmlInit_v2")
device = ctypes.c_void_p()
check(nvml.nvmlDeviceGetHandleByUUID(uuid_text.encode(), ctypes.byref(device)), "nvmlDeviceGetHandleByUUID")


def held():
    processes = (ProcessInfo * 256)()
    listed = ctypes.c_uint(256)
    check(nvml.nvmlDeviceGetComputeRunningProcesses_v3(device, ctypes.byref(listed), processes),
          "nvmlDeviceGetComputeRunningProcesses_v3")
    return sum(p.usedGpuMemory for p in processes[:listed.value] if p.pid == os.getpid())


def reads_within_10s(condition):
    deadline = time.monotonic() + 10
    while not condition(held()):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


before = held()
array = ctypes.c_void_p()
plane = ArrayDescriptor(Width=8192, Height=8192, Format=0x20, NumChannels=1)  # float: 256 MiB
check(cuda.cuArrayCreate_v2(ctypes.byref(array), ctypes.byref(plane)), "cuArrayCreate_v2")
print("array counted:", reads_within_10s(lambda now: now >= before + ARRAY_BYTES))
with_array = held()
check(cuda.cuArrayDestroy(array), "cuArrayDestroy")
print("array gone:", reads_within_10s(lambda now: now + ARRAY_BYTES <= with_array))
print(f"held before {before >> 20} MiB, with the array {with_array >> 20} MiB, after {held() >> 20} MiB", file=sys.stderr)
check(nvml.nvmlShutdown(), "nvmlShutdown")
