"""The one error the exporter raises: what has no Kiln equivalent, and where."""


class ExportError(Exception):
    """A module, call or value the exporter cannot turn into the same Kiln network. The message names the module
    path, its type and, for traced code, the source line: `encoder.attn (MultiheadAttention) at model.py:42 has no
    Kiln equivalent`."""
