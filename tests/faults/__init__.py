"""Fault-injection tests: real host, real SDK worker, answers lost after the server handled them."""
