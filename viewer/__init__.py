"""The live viewer: watch an agent play (or play yourself), in a pygame window or headless.

`viewer.session` holds what is shown and what the controls change (no drawing), and
`viewer.window` draws it with pygame, the only module of the project that imports a GUI
library. `python -m viewer ...` takes the flags of `run.py watch`; `train-dqn --watch` starts
it that way in its own process.
"""
