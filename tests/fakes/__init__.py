"""Fakes for the outermost boundaries that cannot run on a test machine (the GPU driver).

Each fake stands in for the external program or library itself -- a compiled libnvidia-ml.so.1,
an `nvidia-smi` script -- so devloop's code and the real client libraries (pynvml) run unchanged.
"""
