"""The Textual front end of `devloop up`: a thin layer that renders `devloop.core.events`.

This package is the only place textual / rich are imported; the engine never imports it.
"""
