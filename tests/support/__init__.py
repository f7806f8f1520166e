"""What several test folders share, so that each exists once: the event and command
builders (builders.py), the scripted worker process (worker.py, its SDK modes in
sdk_worker.py, its test-side driver in worker_process.py), the jobs both sides of a
worker process name (jobs.py), and access to PostgreSQL and Redis (services.py)."""
