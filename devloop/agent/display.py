"""What a cell shows besides its text: figures, images, its last expression's value, display().

Jupyter shows the figures a cell made and the value of its last expression; this does the same
inside the agent. Everything leaves as a `display` event:
`{"type":"display","id":ID,"cell":[file,cell],"k":N,"mime":M,"width":W,"height":H,"data":B64}`
for images (PNG, or SVG where it cannot be rasterised) and `{"mime":"text/plain","text":T}` for
values. Stdlib only: matplotlib, PIL and IPython are used only when the user's code imported
them (a post-import hook sees `import matplotlib` and points its backend at mplbackend.py, so
`plt.show()` lands here; figures still open when a cell ends are shown and closed, as
matplotlib-inline does).
"""

import ast
import base64
import builtins
import io
import os
import struct
import sys

MAX_TEXT = 10000                # characters of a value's repr shown; the rest is cut, with a note
MAX_IMAGE = 16 * 1024 * 1024    # bytes of one image; a bigger one is named, not sent
_BACKEND = "module://" + __name__.rsplit(".", 1)[0] + ".mplbackend"

_CURRENT = []  # [Display] of this process (the kernel), set by run_cell


class Display:
    """Emits display events for the request that runs now."""

    def __init__(self, kernel):
        self.kernel = kernel
        self.count = 0          # images shown by the current request (the k of cellN-k.png)
        self.request = None
        self.shown = set()      # id() of figures display() showed in this cell: not again at its end

    def _begin(self):
        if self.request != self.kernel.generation:
            self.request = self.kernel.generation
            self.count = 0
            self.shown = set()

    def _emit(self, event, image=False, drain=True):
        self._begin()
        if image:
            self.count += 1
        kernel = self.kernel
        if drain:
            kernel._finish_request()  # what the cell printed before comes first
        rid, where = kernel._current_where()
        body = {"type": "display", "id": rid, "k": self.count if image else 0}
        if where is not None:
            body["cell"] = where
        body.update(event)
        kernel.proto.emit(body)

    def image(self, data, mime="image/png", drain=True):
        """One image: PNG bytes (or SVG text as bytes). `drain`: False from a thread other
        than the one running the cell (a script's figures): no pipe drain from there."""
        if len(data) > MAX_IMAGE:
            self._emit({"mime": "text/plain", "text": "<image of %d bytes not shown: over %d MiB>"
                        % (len(data), MAX_IMAGE >> 20)}, drain=drain)
            return
        width, height = png_size(data) if mime == "image/png" else svg_size(data)
        self._emit({"mime": mime, "width": width, "height": height, "bytes": len(data),
                    "data": base64.b64encode(data).decode("ascii")}, image=True, drain=drain)

    def text(self, text):
        self._emit({"mime": "text/plain", "text": text})

    # -- what an object looks like --------------------------------------------------------

    def show(self, obj):
        """display(obj): a figure or image as an image, else its text repr."""
        self._begin()
        if _is_figure(obj):
            self.shown.add(id(obj))
            self.image(render_figure(obj))
            return
        image = _as_image(obj)
        if image is not None:
            self.image(*image)
            return
        self.text(value_text(obj))

    def value(self, obj):
        """The value of a cell's last expression (None shows nothing, as in Jupyter)."""
        if obj is None:
            return
        self.kernel.namespace["_"] = obj
        if _is_figure(obj) and id(obj) in self._open_figures():
            return  # shown with the other open figures right after
        self.show(obj)

    def _open_figures(self):
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is None:
            return set()
        try:
            return set(id(pyplot.figure(n)) for n in pyplot.get_fignums())
        except Exception:  # noqa: BLE001
            return set()

    def flush_figures(self):
        """Show every open pyplot figure, then close them (plt.show(), and a cell's end)."""
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is None:
            return
        self._begin()
        try:
            numbers = list(pyplot.get_fignums())
        except Exception:  # noqa: BLE001
            return
        for number in numbers:
            try:
                figure = pyplot.figure(number)
                if id(figure) not in self.shown and _has_artists(figure):
                    self.image(render_figure(figure))
            except Exception as exc:  # noqa: BLE001 - a figure that cannot draw is named, not fatal
                self.text("<figure %s could not be drawn: %s: %s>" % (number, type(exc).__name__, exc))
        try:
            pyplot.close("all")
        except Exception:  # noqa: BLE001
            pass
        self.shown = set()


def current():
    return _CURRENT[0] if _CURRENT else None


def display(*objs, **kwargs):
    """Jupyter's display() without IPython: figures and images as images, else text reprs."""
    shower = current()
    if shower is None:  # not inside the kernel: behave like IPython outside a shell
        print(*objs)
        return None
    for obj in objs:
        shower.show(obj)
    return None


# -- running a cell -------------------------------------------------------------------------

def compile_cell(source, filename):
    """(body code, last-expression code or None): the last statement, when it is an expression
    not followed by `;`, is evaluated separately so its value can be shown."""
    tree = ast.parse(source, filename, "exec")
    last = tree.body[-1] if tree.body else None
    if isinstance(last, ast.Expr) and not _suppressed(source, last):
        body = ast.Module(body=tree.body[:-1], type_ignores=[])
        expr = ast.Expression(body=last.value)
        return (compile(body, filename, "exec", dont_inherit=True),
                compile(expr, filename, "eval", dont_inherit=True))
    return compile(tree, filename, "exec", dont_inherit=True), None


def _suppressed(source, node):
    """True when a `;` follows the expression (Jupyter's way to hide the value)."""
    lines = source.splitlines(True)
    end_line = getattr(node, "end_lineno", None)
    end_col = getattr(node, "end_col_offset", None)
    if end_line is None or end_col is None or end_line > len(lines):
        return source.rstrip().endswith(";")
    rest = lines[end_line - 1].encode("utf-8")[end_col:].decode("utf-8", "replace")
    rest += "".join(lines[end_line:])
    return rest.lstrip().startswith(";")


def run_cell(kernel, compiled, namespace):
    """Run a compiled cell, show its last value, then the figures it left open."""
    shower = _for(kernel)
    body, last = compiled
    try:
        exec(body, namespace)
        if last is not None:
            shower.value(eval(last, namespace))
    finally:
        if "matplotlib.pyplot" in sys.modules:
            try:
                shower.flush_figures()
            except Exception:  # noqa: BLE001 - never turn a cell's success into a failure
                pass


def _for(kernel):
    if not _CURRENT or _CURRENT[0].kernel is not kernel:
        del _CURRENT[:]
        _CURRENT.append(Display(kernel))
        install()
    return _CURRENT[0]


# -- a script run as a child (`run`): plt.show() there reaches the kernel over a pipe ---------

def _bundle_root():
    """The sys.path entry the agent package is imported from (the zipapp, or its folder)."""
    root = os.path.abspath(__file__)
    for _ in range(__name__.count(".") + 1):
        root = os.path.dirname(root)
    return root


def script_env(kernel, env):
    """Prepare a `run` child's env so its `plt.show()` sends figures here: MPLBACKEND (unless
    set) names mplbackend.py, PYTHONPATH gains the agent bundle (appended: the user's paths
    win), DEVLOOP_DISPLAY_FD / _INO name a pipe whose reader thread emits display events.
    Processes the script starts (torchrun's workers, a subprocess, a spawned pool) inherit the
    env but not the pipe: they connect to DEVLOOP_DISPLAY_SOCK, a Unix socket in a private
    folder (0700) served for as long as the script runs.
    Returns (pass_fds, started, finish): `started()` after Popen closes our copy of the write
    end, `finish()` after the child ended waits briefly for the last figures."""
    nothing = ((), lambda: None, lambda: None)
    if env.get("MPLBACKEND"):
        return nothing
    try:
        read_fd, write_fd = os.pipe()
        ino = os.fstat(write_fd).st_ino
    except OSError:
        return nothing
    env["MPLBACKEND"] = _BACKEND
    env["DEVLOOP_DISPLAY_FD"] = str(write_fd)
    env["DEVLOOP_DISPLAY_INO"] = str(ino)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(paths + [_bundle_root()])
    shower = _for(kernel)
    import threading
    thread = threading.Thread(target=_read_child, args=(shower, read_fd), name="devloop-figures",
                              daemon=True)
    thread.start()
    server = _descendants_socket(shower, env)

    def started():
        try:
            os.close(write_fd)
        except OSError:
            pass

    def finish():
        thread.join(2.0)  # a grandchild holding the pipe open never holds `done` up for long
        if server is not None:
            server()
    return (write_fd,), started, finish


def _descendants_socket(shower, env):
    """Serve DEVLOOP_DISPLAY_SOCK for the script's descendants; returns its closer (or None
    where Unix sockets are not available: their figures are then not shown)."""
    import shutil
    import socket
    import tempfile
    import threading
    try:
        folder = tempfile.mkdtemp(prefix="devloop-fig-")  # 0700: only this user reaches it
        path = os.path.join(folder, "s")
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(path)
        server.listen(64)
    except (OSError, AttributeError):
        return None
    env["DEVLOOP_DISPLAY_SOCK"] = path
    readers = []

    def accept():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:  # closed by finish()
                return
            reader = threading.Thread(target=_read_child, args=(shower, conn.detach()),
                                      name="devloop-figures", daemon=True)
            reader.start()
            readers.append(reader)

    threading.Thread(target=accept, name="devloop-figures-accept", daemon=True).start()

    def close():
        for reader in list(readers):
            reader.join(2.0)
        try:
            server.close()
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return close


def _read_child(shower, read_fd):
    import json
    with io.open(read_fd, "rb") as stream:
        for line in stream:
            try:
                msg = json.loads(line)
                data = base64.b64decode(msg["data"])
                shower.image(data, str(msg.get("mime") or "image/png"), drain=False)
            except Exception:  # noqa: BLE001 - a damaged line is dropped
                continue


def _figure_channel():
    """Where this process sends its figures, as (fd, ours to close): the pipe it inherited from
    the kernel (checked by inode: an fd number reused by something else is never written), else
    a connection to the kernel's socket (a descendant of the script), else (None, False)."""
    try:
        fd = int(os.environ.get("DEVLOOP_DISPLAY_FD", ""))
        if os.fstat(fd).st_ino == int(os.environ.get("DEVLOOP_DISPLAY_INO", "")):
            return fd, False
    except (ValueError, OSError):
        pass
    path = os.environ.get("DEVLOOP_DISPLAY_SOCK")
    if not path:
        return None, False
    import socket
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(path)
        return conn.detach(), True
    except (OSError, AttributeError):
        return None, False


def child_flush_figures():
    """In a `run` child or its descendants: send the open pyplot figures to the kernel, then
    close them."""
    import json
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is None:
        return
    fd, owned, opened = None, False, False
    for number in list(pyplot.get_fignums()):
        figure = pyplot.figure(number)
        if not _has_artists(figure):
            continue
        if not opened:
            (fd, owned), opened = _figure_channel(), True
        if fd is None:
            break
        try:
            data = render_figure(figure)
            line = json.dumps({"mime": "image/png", "data": base64.b64encode(data).decode("ascii")})
            view = memoryview((line + "\n").encode("ascii"))
            while view:
                view = view[os.write(fd, view):]
        except OSError:
            break
    if owned:
        os.close(fd)  # our own connection to the socket
    pyplot.close("all")


# -- hooks into the user's imports ----------------------------------------------------------

def _set_backend(module):
    if os.environ.get("MPLBACKEND"):
        return  # the user chose one
    try:
        module.rcParams["backend"] = _BACKEND
    except Exception:  # noqa: BLE001 - an old matplotlib: figures left open are still shown
        pass


def _patch_ipython(module):
    if getattr(module, "display", None) is not None:
        module.display = display


_HOOKS = {"matplotlib": _set_backend, "IPython.core.display_functions": _patch_ipython,
          "IPython.core.display": _patch_ipython, "IPython.display": _patch_ipython}


class _PostImport(object):
    """A meta path finder that runs a hook right after one of _HOOKS' modules is executed;
    it finds nothing itself, so imports cost one dict lookup more."""

    def find_spec(self, name, path=None, target=None):
        hook = _HOOKS.get(name)
        if hook is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        real = getattr(loader, "exec_module", None)
        if real is None:
            return spec

        def exec_module(module):
            real(module)
            try:
                hook(module)
            except Exception:  # noqa: BLE001
                pass
        try:
            loader.exec_module = exec_module
        except Exception:  # noqa: BLE001 - a loader that refuses attributes: no hook
            pass
        return spec


def install():
    """`display` as a builtin (as in Jupyter) and the post-import hooks (once per process)."""
    if not any(isinstance(f, _PostImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _PostImport())
    if not hasattr(builtins, "display"):
        builtins.display = display
    for name, hook in _HOOKS.items():  # imported before the first cell (sitecustomize)
        module = sys.modules.get(name)
        if module is not None and name != "matplotlib":
            try:
                hook(module)
            except Exception:  # noqa: BLE001
                pass


# -- objects -> images / text ---------------------------------------------------------------

def _is_figure(obj):
    module = getattr(type(obj), "__module__", "") or ""
    return module.startswith("matplotlib.") and type(obj).__name__ in ("Figure", "SubFigure") \
        and hasattr(obj, "savefig")


def _has_artists(figure):
    try:
        return bool(figure.get_children()[1:])  # [0] is the background patch
    except Exception:  # noqa: BLE001
        return True


def render_figure(figure):
    """PNG bytes of a figure. zlib level 1: half the encode time of the default 6 for ~1.4x
    the bytes (a 1000x1000 plot: ~70 KB), the better trade for an image shown at once."""
    buf = io.BytesIO()
    try:
        figure.savefig(buf, format="png", pil_kwargs={"compress_level": 1})
    except TypeError:  # a matplotlib without pil_kwargs
        buf = io.BytesIO()
        figure.savefig(buf, format="png")
    return buf.getvalue()


def _as_image(obj):
    """(bytes, mime) for a PIL image or an object with _repr_mimebundle_ / _repr_png_ /
    _repr_svg_; None for anything else."""
    module = getattr(type(obj), "__module__", "") or ""
    if module.startswith("PIL.") and hasattr(obj, "save") and hasattr(obj, "size"):
        buf = io.BytesIO()
        image = obj if obj.mode in ("RGB", "RGBA", "L", "LA", "P", "1", "I;16") else obj.convert("RGBA")
        image.save(buf, format="PNG")
        return buf.getvalue(), "image/png"
    bundle = _call(obj, "_repr_mimebundle_")
    if isinstance(bundle, tuple) and bundle:
        bundle = bundle[0]
    if isinstance(bundle, dict):
        png = bundle.get("image/png")
        if png:
            return _png_bytes(png), "image/png"
        svg = bundle.get("image/svg+xml")
        if svg:
            return _svg(svg)
    png = _call(obj, "_repr_png_")
    if png:
        return _png_bytes(png), "image/png"
    svg = _call(obj, "_repr_svg_")
    if svg:
        return _svg(svg)
    return None


def _call(obj, name):
    if isinstance(obj, type):
        return None  # a class has the methods unbound
    method = getattr(obj, name, None)
    if method is None or not callable(method):
        return None
    try:
        return method()
    except Exception:  # noqa: BLE001 - a broken repr shows as text instead
        return None


def _png_bytes(png):
    if isinstance(png, tuple):  # (data, metadata)
        png = png[0]
    if isinstance(png, str):
        return base64.b64decode(png)
    return bytes(png)


def _svg(svg):
    """SVG rasterised with cairosvg when the target has it, else the SVG itself."""
    if isinstance(svg, tuple):
        svg = svg[0]
    data = svg.encode("utf-8") if isinstance(svg, str) else bytes(svg)
    cairosvg = sys.modules.get("cairosvg")
    if cairosvg is None:
        try:
            import cairosvg  # noqa: F811 - optional, only where installed
        except Exception:  # noqa: BLE001 - ImportError, or its C library missing
            cairosvg = None
    if cairosvg is not None:
        try:
            return cairosvg.svg2png(bytestring=data), "image/png"
        except Exception:  # noqa: BLE001
            pass
    return data, "image/svg+xml"


def value_text(obj):
    """A value's repr, capped at MAX_TEXT characters (IPython's pretty printer when the user
    imported IPython)."""
    text = None
    if "IPython" in sys.modules:
        try:
            from IPython.lib.pretty import pretty
            text = pretty(obj, max_seq_length=1000)
        except Exception:  # noqa: BLE001
            text = None
    if text is None:
        bundle = _call(obj, "_repr_mimebundle_")
        if isinstance(bundle, tuple) and bundle:
            bundle = bundle[0]
        if isinstance(bundle, dict) and isinstance(bundle.get("text/plain"), str):
            text = bundle["text/plain"]
    if text is None:
        try:
            text = repr(obj)
        except Exception as exc:  # noqa: BLE001
            text = "<repr failed: %s: %s>" % (type(exc).__name__, exc)
    if len(text) > MAX_TEXT:
        text = text[:MAX_TEXT] + "... (%d more characters)" % (len(text) - MAX_TEXT)
    return text


def png_size(data):
    """(width, height) from a PNG's IHDR; (0, 0) when it is not a PNG."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        return struct.unpack(">II", data[16:24])
    return 0, 0


def svg_size(data):
    """(width, height) of an SVG's root element when given in plain numbers / px, else (0, 0)."""
    import re
    head = data[:4096].decode("utf-8", "replace")
    found = []
    for key in ("width", "height"):
        match = re.search(r'<svg[^>]*?\s%s="([0-9.]+)(?:px|pt)?"' % key, head)
        found.append(int(float(match.group(1))) if match else 0)
    return tuple(found)
