"""The store: the core's events made durable behind `ports.EventStore`.

`url.open_store` picks a backend (`memory://`, SQLite, PostgreSQL); `recorder` maps core
events onto eventsourcing's recorders; `read_models` keeps the projection's tables
(a cache, rebuilt from the log); `history` reads single streams; `snapshots` and
`upcasting` serve the readers.
"""
