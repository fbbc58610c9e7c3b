"""Port forwarding: a local port that reaches a port inside the target (TensorBoard, Jupyter,
a served model), over the target's own exec channel or a native path where one is faster.

spec.py (what to forward: `6006`, `18888:8888`), busy_port.py (who holds a local port),
stream.py (a byte stream to the remote port), forwarder.py (the listeners and relays).
"""
