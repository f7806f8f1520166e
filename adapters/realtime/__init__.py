"""Socket.IO: connection handlers (joins, leaves, disconnects with grace), acks, the
emitter that delivers committed emissions, and the Redis manager for several hosts."""
