"""`make compat`: zndraw-joblib 0.1.7's own test suite against workerledger (not part of
`make test`). compat/run.py is the harness; compat/host.py the host it serves."""
