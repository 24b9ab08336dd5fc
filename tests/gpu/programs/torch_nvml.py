# PyTorch's NVML-backed queries with a tensor on the GPU: the device count and UUIDs it reads from
# NVML, and (with pynvml installed) the device's used memory and this process among its users.
# Prints what must read the same natively and through RGPU.
import os
import warnings

import torch

x = torch.ones(1 << 26, device="cuda")  # 256 MiB held while NVML is asked
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    count = torch.cuda._raw_device_count_nvml()
    uuids = torch.cuda._raw_device_uuid_nvml()
print("NVML device count", count, "CUDA device count", torch.cuda.device_count())
print("NVML UUIDs", "read" if uuids else uuids)
print("NVML warnings", [str(w.message) for w in caught if "NVML" in str(w.message)])
try:
    used = torch.cuda.device_memory_used(0)
    listed = torch.cuda.list_gpu_processes(0)
except ModuleNotFoundError as e:  # these need pynvml
    print("pynvml:", e)
else:
    print("device memory used >= 256 MiB:", used >= 256 << 20)
    print("this process listed:", str(os.getpid()) in listed)
print("sum", x.sum().item())
