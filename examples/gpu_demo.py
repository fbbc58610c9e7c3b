# A GPU smoke test in cells: `devloop run examples/gpu_demo.py --profile <your GPU profile>`
# shows the GPU gauges move and ends with a per-GPU summary (peak memory, utilisation).

# %% Allocate
import time

try:
    import torch
except ImportError:
    torch = None
    print("torch is not installed here: the cells still run, the GPU stays idle")

if torch is not None and torch.cuda.is_available():
    x = torch.ones((256, 1024, 1024), device="cuda")  # 1 GiB
    print("allocated", torch.cuda.memory_allocated() >> 20, "MiB on", torch.cuda.get_device_name(0))

# %% Work
t_end = time.time() + 3
while torch is not None and torch.cuda.is_available() and time.time() < t_end:
    x = x * 1.0001
    torch.cuda.synchronize()
time.sleep(0 if torch is not None and torch.cuda.is_available() else 1)
print("done")
