"""Fuzzing harness for every parser that reads bytes from the network or a config file.

``targets.py`` holds one target per parser: a function of ``bytes`` that feeds the pure decoder
the way pyfrp's adapters do (split into chunks or datagrams, as a socket would) and lets only that
decoder's documented errors escape. ``test_fuzz.py`` runs a short hypothesis version of each in
the default suite; ``python3 -m tests.fuzz.run`` is the long run (atheris when installed).
"""
