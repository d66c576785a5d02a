"""Deployment on the host: the command recognizer (the firmware's, in Python) and ``listen``, which
runs a long recording as the board will."""
