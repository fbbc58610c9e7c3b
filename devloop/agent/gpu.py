"""GPU gauges from inside the target: NVML through pynvml, else nvidia-smi, else why not.

Runs in the target's own Python (3.8+, stdlib only): `pynvml` is imported lazily and only if that
environment has it. NVML is initialised once per process and device handles are cached, so a
1 Hz sampler costs a few dozen ctypes calls a second. A value a device does not report becomes
the string "n/a" (as nvitop shows it) instead of an error: consumer cards without power
readings, MIG slices without utilisation, containers that cannot see host PIDs.

A sample is the agent's `gpu` event:
  {"type": "gpu", "available": true, "source": "nvml" | "nvidia-smi",
   "gpus": [{"index", "name", "uuid", "util", "mem_used", "mem_total", "temp", "power",
             "power_limit", "processes": [{"pid", "name", "mem"}]}]}
  memory in bytes, power in W, util in %, temp in °C; `processes` is [] when none are reported
  or the device cannot list them. Or {"type": "gpu", "available": false, "reason": "..."}.
"""
import csv
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import warnings

NA = "n/a"
RETRY_UNAVAILABLE_S = 30.0  # how long "no GPU" is remembered before probing again
SMI_TIMEOUT_S = 10.0
SMI_GPU_FIELDS = (
    "index,name,uuid,utilization.gpu,memory.used,memory.total,temperature.gpu,"
    "power.draw,power.limit"
)
SMI_APP_FIELDS = "gpu_uuid,pid,process_name,used_memory"
MIB = 1024 * 1024


class SourceUnavailable(Exception):
    """No GPU information from this source; the message says why, for the user."""


def _safe(query, *args):
    """One NVML query; "n/a" when the device does not support it or it fails."""
    try:
        return query(*args)
    except Exception:  # pynvml.NVMLError and its subclasses, or ctypes trouble
        return NA


def _text(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def _watts(milliwatts):
    return NA if milliwatts == NA else round(milliwatts / 1000.0, 1)


class NvmlSource(object):
    """NVML through pynvml, initialised once; static per-device facts read once."""

    name = "nvml"

    def __init__(self):
        try:
            with warnings.catch_warnings():  # the old `pynvml` wrapper package warns on import
                warnings.simplefilter("ignore")
                import pynvml
        except Exception as exc:
            raise SourceUnavailable("pynvml not importable (%s: pip install nvidia-ml-py)" % exc)
        self.nvml = pynvml
        try:
            pynvml.nvmlInit()
        except Exception as exc:
            raise SourceUnavailable("NVML: %s" % _nvml_message(exc))
        try:
            count = pynvml.nvmlDeviceGetCount()
            self.driver = _text(_safe(pynvml.nvmlSystemGetDriverVersion))
            self.devices = []
            for index in range(count):
                handle = _safe(pynvml.nvmlDeviceGetHandleByIndex, index)
                self.devices.append(self._describe(index, handle))
        except Exception as exc:
            self.close()
            raise SourceUnavailable("NVML: %s" % _nvml_message(exc))
        self._memory_v2 = getattr(pynvml, "nvmlMemory_v2", None)
        self._process_names = {}

    def _describe(self, index, handle):
        nvml = self.nvml
        if handle == NA:
            return {"index": index, "handle": None, "name": NA, "uuid": NA}
        return {
            "index": index,
            "handle": handle,
            "name": _text(_safe(nvml.nvmlDeviceGetName, handle)),
            "uuid": _text(_safe(nvml.nvmlDeviceGetUUID, handle)),
        }

    def empty_reason(self):
        return "NVML sees no GPU (driver %s): start the target with GPUs" % self.driver

    def read(self):
        gpus = []
        seen_pids = set()
        for device in self.devices:
            gpu = {"index": device["index"], "name": device["name"], "uuid": device["uuid"]}
            handle = device["handle"]
            if handle is None:
                gpu.update(util=NA, mem_used=NA, mem_total=NA, temp=NA, power=NA,
                           power_limit=NA, processes=[])
            else:
                gpu.update(self._read_device(handle, seen_pids))
            gpus.append(gpu)
        for pid in list(self._process_names):
            if pid not in seen_pids:
                del self._process_names[pid]
        return gpus

    def _read_device(self, handle, seen_pids):
        nvml = self.nvml
        util = _safe(nvml.nvmlDeviceGetUtilizationRates, handle)
        used, total = self._memory(handle)
        return {
            "util": NA if util == NA else int(util.gpu),
            "mem_used": used,
            "mem_total": total,
            "temp": _safe(nvml.nvmlDeviceGetTemperature, handle, nvml.NVML_TEMPERATURE_GPU),
            "power": _watts(_safe(nvml.nvmlDeviceGetPowerUsage, handle)),
            "power_limit": _watts(_safe(nvml.nvmlDeviceGetEnforcedPowerLimit, handle)),
            "processes": self._processes(handle, seen_pids),
        }

    def _memory(self, handle):
        """(used, total) in bytes. NVML's v2 call leaves out the driver's reserved memory, as
        nvidia-smi does; the v1 call (older drivers / pynvml) counts it as used."""
        nvml = self.nvml
        if self._memory_v2 is not None:
            try:
                info = nvml.nvmlDeviceGetMemoryInfo(handle, version=self._memory_v2)
                return int(info.used), int(info.total)
            except Exception:
                self._memory_v2 = None  # not in this driver / pynvml: v1 from now on
        info = _safe(nvml.nvmlDeviceGetMemoryInfo, handle)
        if info == NA:
            return NA, NA
        return int(info.used), int(info.total)

    def _processes(self, handle, seen_pids):
        nvml = self.nvml
        found = {}
        for query in ("nvmlDeviceGetComputeRunningProcesses",
                      "nvmlDeviceGetGraphicsRunningProcesses"):
            function = getattr(nvml, query, None)
            infos = _safe(function, handle) if function else NA
            if infos == NA:
                continue
            for info in infos:
                pid = int(info.pid)
                if pid in found:
                    continue
                mem = getattr(info, "usedGpuMemory", None)
                found[pid] = {"pid": pid, "name": self._process_name(pid),
                              "mem": NA if mem is None else int(mem)}
        seen_pids.update(found)
        return [found[pid] for pid in sorted(found)]

    def _process_name(self, pid):
        # Only NVML's answer: in a container the PIDs are the host's, so /proc here would name
        # a different process.
        name = self._process_names.get(pid)
        if name is None:
            name = _text(_safe(self.nvml.nvmlSystemGetProcessName, pid))
            self._process_names[pid] = name
        return name

    def close(self):
        try:
            self.nvml.nvmlShutdown()
        except Exception:
            pass


def _nvml_message(exc):
    try:
        return str(exc) or type(exc).__name__
    except Exception:
        return type(exc).__name__


def _smi_value(text, convert):
    text = text.strip()
    if not text or text.startswith("[") or text.upper() in ("N/A", "NA"):
        return NA  # "[N/A]", "[Not Supported]", "[Unknown Error]"
    try:
        return convert(text)
    except ValueError:
        return NA


def _mib(text):
    return int(float(text) * MIB)


def _number(text):
    value = float(text)
    return int(value) if value.is_integer() else round(value, 1)


class SmiSource(object):
    """`nvidia-smi --query-gpu` each sample: slower than NVML, but needs no Python package."""

    name = "nvidia-smi"

    def __init__(self):
        path = shutil.which("nvidia-smi")
        if not path:
            raise SourceUnavailable("nvidia-smi not found on PATH")
        self.path = path
        # fail now, with nvidia-smi's own words, if it cannot talk to the driver; the answer is
        # the first sample
        self._first = self._read()

    def empty_reason(self):
        return "nvidia-smi sees no GPU: start the target with GPUs"

    def _run(self, *args):
        try:
            proc = subprocess.run(
                [self.path] + list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, timeout=SMI_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            raise SourceUnavailable("nvidia-smi did not answer in %d s" % SMI_TIMEOUT_S)
        except OSError as exc:
            raise SourceUnavailable("nvidia-smi: %s" % exc)
        text = proc.stdout.decode("utf-8", "replace")
        if proc.returncode != 0:
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            first = lines[0] if lines else "no output"
            if "no devices were found" in text.lower():
                return ""
            raise SourceUnavailable("nvidia-smi failed (exit %d): %s" % (proc.returncode, first))
        return text

    def read(self):
        first, self._first = self._first, None
        return first if first is not None else self._read()

    def _read(self):
        text = self._run("--query-gpu=" + SMI_GPU_FIELDS, "--format=csv,noheader,nounits")
        gpus = []
        for row in csv.reader(text.splitlines(), skipinitialspace=True):
            if len(row) < 9:
                continue
            gpus.append({
                "index": _smi_value(row[0], int),
                "name": row[1].strip(),
                "uuid": row[2].strip(),
                "util": _smi_value(row[3], _number),
                "mem_used": _smi_value(row[4], _mib),
                "mem_total": _smi_value(row[5], _mib),
                "temp": _smi_value(row[6], _number),
                "power": _smi_value(row[7], _number),
                "power_limit": _smi_value(row[8], _number),
                "processes": [],
            })
        if gpus:
            self._add_processes(gpus)
        return gpus

    def _add_processes(self, gpus):
        try:
            text = self._run("--query-compute-apps=" + SMI_APP_FIELDS,
                             "--format=csv,noheader,nounits")
        except SourceUnavailable:
            return  # processes are a nicety: keep the gauges
        by_uuid = dict((gpu["uuid"], gpu) for gpu in gpus)
        for row in csv.reader(text.splitlines(), skipinitialspace=True):
            if len(row) < 4 or row[0].strip() not in by_uuid:
                continue
            pid = _smi_value(row[1], int)
            if pid == NA:
                continue
            by_uuid[row[0].strip()]["processes"].append({
                "pid": pid, "name": row[2].strip() or NA, "mem": _smi_value(row[3], _mib),
            })

    def close(self):
        pass


def open_source():
    """(source, "") for the first source that works, else (None, why none did)."""
    reasons = []
    for kind in (NvmlSource, SmiSource):
        try:
            return kind(), ""
        except SourceUnavailable as exc:
            reasons.append(str(exc))
    return None, "; ".join(reasons)


class _Shared(object):
    """The process's one GPU source: opened on first use, kept; "none" re-probed now and then."""

    def __init__(self):
        self.lock = threading.Lock()
        self.source = None
        self.reason = ""
        self.probed_at = None

    def sample(self):
        with self.lock:
            now = time.monotonic()
            if self.source is None and (
                self.probed_at is None or now - self.probed_at >= RETRY_UNAVAILABLE_S
            ):
                self.source, self.reason = open_source()
                self.probed_at = now
            if self.source is None:
                return unavailable(self.reason)
            try:
                gpus = self.source.read()
            except SourceUnavailable as exc:
                return unavailable(str(exc))
            if not gpus:
                return unavailable(self.source.empty_reason())
            return {"type": "gpu", "available": True, "source": self.source.name, "gpus": gpus}


_shared = _Shared()


def unavailable(reason):
    return {"type": "gpu", "available": False, "reason": reason}


def sample():
    """One GPU sample (the agent's `gpu` event), from the process's shared source."""
    try:
        return _shared.sample()
    except Exception as exc:  # a sampler must never take the kernel down
        return unavailable("GPU sampling failed: %s: %s" % (type(exc).__name__, exc))


class Sampler(object):
    """Calls `emit(sample())` every `interval_s` on a daemon thread until stop().

    Beats are scheduled on the monotonic clock, so a slow sample does not make the gauges
    drift; a missed beat is skipped rather than caught up. If emit raises (the event stream is
    gone), the thread ends quietly.
    """

    def __init__(self, interval_s, emit):
        interval_s = float(interval_s)
        if interval_s <= 0:
            raise ValueError("interval must be > 0 seconds, got %r" % interval_s)
        self.interval_s = interval_s
        self._emit = emit
        self._thread = None
        self._stopping = None

    @property
    def running(self):
        return self._thread is not None and self._thread.is_alive()

    def start(self):
        if self.running:
            return self
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(self._stopping,), name="devloop-gpu-sampler")
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self, timeout=None):
        if self._stopping is not None:
            self._stopping.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout if timeout is not None else self.interval_s + SMI_TIMEOUT_S)

    def _run(self, stopping):
        due = time.monotonic()
        while not stopping.is_set():
            event = sample()
            if stopping.is_set():
                return
            try:
                self._emit(event)
            except Exception:
                return
            due += self.interval_s
            now = time.monotonic()
            if due < now:
                due = now
            stopping.wait(due - now)


def gpu_main(argv):
    """The agent's `gpu` mode: one sample as a JSON line; `--interval S [--count N]` repeats
    (until stdout closes or the process is stopped)."""
    interval, count = None, None
    args = list(argv)
    try:
        while args:
            flag = args.pop(0)
            if flag == "--interval":
                interval = float(args.pop(0))
                if interval <= 0:
                    raise ValueError("--interval must be > 0")
            elif flag == "--count":
                count = int(args.pop(0))
            else:
                raise ValueError("unknown argument %r" % flag)
    except (IndexError, ValueError) as exc:
        sys.stderr.write("devloop agent gpu: %s (usage: gpu [--interval SECONDS] [--count N])\n"
                         % (exc or "a flag needs a value"))
        return 2
    if interval is None:
        count = 1
    done = 0
    due = time.monotonic()
    try:
        while count is None or done < count:
            sys.stdout.write(json.dumps(sample()) + "\n")
            sys.stdout.flush()
            done += 1
            if count is not None and done >= count:
                break
            due += interval
            time.sleep(max(0.0, due - time.monotonic()))
    except BrokenPipeError:
        try:
            sys.stdout = open(os.devnull, "w")  # nobody listens: leave without a traceback
        except OSError:
            pass
    except KeyboardInterrupt:
        return 130
    return 0
