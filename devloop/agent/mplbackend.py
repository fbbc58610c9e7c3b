"""The matplotlib backend the kernel points matplotlib at (only once the user imported it):
Agg for drawing, and `plt.show()` sends the open figures as display events (display.py)."""

from matplotlib.backend_bases import FigureManagerBase
from matplotlib.backends.backend_agg import FigureCanvasAgg

from . import display as _display

FigureCanvas = FigureCanvasAgg
FigureManager = FigureManagerBase


def show(*args, **kwargs):
    shower = _display.current()
    if shower is not None:  # a cell in the kernel
        shower.flush_figures()
    else:  # a script the kernel runs as a child: over the kernel's pipe
        _display.child_flush_figures()
