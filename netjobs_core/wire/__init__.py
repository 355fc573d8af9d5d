"""The layer the agent shares with the controller: standard library only.

Everything in this package (the sans-IO protocol, token sources, the clock and its
offset estimation, the address type and the command status vocabulary) must import
nothing but the standard library and this package, because the agent runs from a
bare Python or a small frozen executable. tests/test_layers.py enforces it.
"""
