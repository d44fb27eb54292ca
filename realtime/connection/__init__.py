"""One socket's life: the consumer state machine, what it does with each frame, its liveness."""
